//! The `kiwi-infra` binary: everything lives in the library so tests can reach it.

fn main() -> std::process::ExitCode {
    kiwi_infra::cli::main()
}
