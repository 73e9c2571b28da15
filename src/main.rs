fn main() -> std::process::ExitCode {
    qunyun::cli::main()
}
