//! The `consentry` binary: parses the command line and hands over to the library.

/// mimalloc instead of the C library's allocator: the server allocates and frees many small
/// buffers per request across threads, where glibc's malloc spent about 15% of the server's
/// CPU on a public write (perf, bench/ write workload; see BENCHMARKS.md). Built without
/// transparent huge pages (`no_thp`): with them the server's resident memory doubled.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options we set (`mi_option_t` of the bundled mimalloc 3, `include/mimalloc.h`;
/// the test below checks the numbers against their documented defaults).
mod allocator {
    use std::ffi::{c_int, c_long};

    pub const ARENA_EAGER_COMMIT: c_int = 4;
    pub const PURGE_DELAY: c_int = 15;

    extern "C" {
        #[cfg(test)]
        pub fn mi_option_get(option: c_int) -> c_long;
        pub fn mi_option_set(option: c_int, value: c_long);
    }

    /// Memory freed is given back to the system at once (not after a second), and arenas are
    /// committed as they are used: the server's peak resident set stays where it was with the C
    /// library's allocator (bench/: 71 → 5x MiB), at no measured cost in throughput. mimalloc's
    /// own environment variables (`MIMALLOC_PURGE_DELAY`, `MIMALLOC_ARENA_EAGER_COMMIT`) win.
    pub fn keep_resident_memory_small() {
        for (option, name, value) in
            [(PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 0), (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0)]
        {
            if std::env::var_os(name).is_none() {
                // SAFETY: a plain setter of mimalloc's global options, valid at any time.
                unsafe { mi_option_set(option, value) };
            }
        }
    }
}

fn main() {
    allocator::keep_resident_memory_small();
    let status = consentry::cli::run_to_status();
    // End here, without the C library's exit handlers. The PostgreSQL client's OpenSSL registers
    // one that frees its global state, while threads of the connection pool may still be
    // connecting (a TLS handshake) or polling: a command that had finished its work then
    // crashed now and then with `double free or corruption` (seen in `tenants create`). Output
    // is flushed and every transaction has ended by now; nothing else needs those handlers.
    // SAFETY: `_exit` ends the process at once; it touches no Rust state.
    unsafe { libc::_exit(status) }
}

#[cfg(test)]
mod tests {
    use super::allocator::*;

    #[test]
    fn the_mimalloc_option_numbers_are_those_of_the_bundled_header() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
            || std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_some()
        {
            return; // the environment overrides the defaults this test recognises the options by
        }
        // SAFETY: plain getters of mimalloc's global options.
        let (eager, delay) = unsafe { (mi_option_get(ARENA_EAGER_COMMIT), mi_option_get(PURGE_DELAY)) };
        assert_eq!((eager, delay), (2, 1000), "defaults of arena_eager_commit (2) and purge_delay (1000 ms)");
    }
}
