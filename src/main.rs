//! The `roster` command: the agent, the client commands, `cluster`, `demo`
//! and `cert`, on top of the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
