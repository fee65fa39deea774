//! `cacheops-cli`: the operator's tool. Everything lives in [`cacheops::cli`].

fn main() -> std::process::ExitCode {
    cacheops::cli::main()
}
