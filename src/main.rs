/// mimalloc rather than the system allocator: every connection and callback
/// allocates on whichever worker thread runs it, and with many connections
/// glibc's malloc cost a quarter of the durable callback rate
/// (`bench/load.sh`, 1,024 connections).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    qunyun::cli::main()
}
