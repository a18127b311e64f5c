//! The `medrl` binary: all the work happens in the library.
fn main() -> std::process::ExitCode {
    medrl::cli::main()
}
