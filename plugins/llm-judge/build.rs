//! Strips debug information from the judge's cdylib on Linux. A debug build links the debug
//! information of candle, tokenizers and medrl into it (about 350 MB), and every load of a rule
//! set that pins the library hashes and stages all of it; stripped it is a few tens of MB. The
//! rlib, which the workspace's tests link, keeps its debug information.
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-cdylib-link-arg=-Wl,--strip-debug");
    }
}
