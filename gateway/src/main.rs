//! The `wagelink` command; everything it does lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    wagelink_gateway::cli::main()
}
