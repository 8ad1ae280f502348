//! The `roster` command; see [`roster::cli`].

fn main() -> std::process::ExitCode {
    roster::cli::main()
}
