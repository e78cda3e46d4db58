//! wulfd: the wulf head node daemon (see the library for the services).

/// mimalloc returns freed memory to the system promptly, so a bulk operation's peak does not
/// stay as the head's footprint.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wulfd::main()
}
