//! The `consentry` binary: parses the command line and hands over to the library.

/// mimalloc instead of the C library's allocator: the server allocates and frees many small
/// buffers per request across threads, where glibc's malloc spent about 15% of the server's
/// CPU on a public write (perf, bench/ write workload; see BENCHMARKS.md). Built without
/// transparent huge pages (`no_thp`): with them the server's resident memory doubled.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let status = consentry::cli::run_to_status();
    // End here, without the C library's exit handlers. The PostgreSQL client's OpenSSL registers
    // one that frees its global state, while threads of the connection pool may still be
    // connecting (a TLS handshake) or polling: a command that had finished its work then
    // crashed now and then with `double free or corruption` (seen in `tenants create`). Output
    // is flushed and every transaction has ended by now; nothing else needs those handlers.
    // SAFETY: `_exit` ends the process at once; it touches no Rust state.
    unsafe { libc::_exit(status) }
}
