//! The `medrl` binary: parse the command line, start logging, call the library, render the
//! error, exit. All the work happens in the library (`medrl::…`); `cli/` is glue.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
