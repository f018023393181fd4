//! SQLite settings that have no `PRAGMA`: its memory allocator, set once for the process, and
//! an auto-extension that applies the rest to every connection this process opens
//! (<https://sqlite.org/c3ref/auto_extension.html>), before diesel or anything else runs a
//! statement on it.

use libsqlite3_sys as ffi;
use std::ffi::{c_char, c_int, c_void};

/// Sets SQLite's allocator ([`allocate_with_mimalloc`]) and registers [`on_open`] for every
/// SQLite connection opened from now on; once per process, before its first connection.
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        allocate_with_mimalloc();
        // SAFETY: `on_open` has the signature SQLite calls an auto-extension with, and stays
        // valid for the life of the process.
        let rc = unsafe { ffi::sqlite3_auto_extension(Some(on_open)) };
        if rc != ffi::SQLITE_OK {
            tracing::warn!(rc, "SQLite's connection settings could not be registered");
        }
    });
}

extern "C" {
    // Part of mimalloc's C library (linked by `libmimalloc-sys`), declared there only behind
    // its `extended` feature.
    fn mi_usable_size(p: *const c_void) -> usize;
    fn mi_good_size(size: usize) -> usize;
}

/// SQLite allocates from mimalloc, the server's allocator (`main.rs`), instead of the C
/// library's malloc (`SQLITE_CONFIG_MALLOC`, <https://sqlite.org/c3ref/mem_methods.html>).
/// glibc keeps what SQLite frees in one arena per thread that touched it: under the bench/
/// workloads that was 16–22 MiB of the server's resident memory beyond the pages SQLite
/// caches, a third of the whole. mimalloc returns freed pages to the system at once (the
/// options `main.rs` sets). Must run before SQLite initialises; if something opened a SQLite
/// connection earlier in the process, SQLite keeps its default allocator (logged).
fn allocate_with_mimalloc() {
    unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
        // SAFETY: any size is valid for mi_malloc; SQLite never asks for a negative one.
        unsafe { libmimalloc_sys::mi_malloc(n.max(0) as usize) }
    }
    unsafe extern "C" fn free(p: *mut c_void) {
        // SAFETY: SQLite frees only what `malloc`/`realloc` gave it (or null).
        unsafe { libmimalloc_sys::mi_free(p) }
    }
    unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
        // SAFETY: as `free`, for `p`.
        unsafe { libmimalloc_sys::mi_realloc(p, n.max(0) as usize) }
    }
    unsafe extern "C" fn size(p: *mut c_void) -> c_int {
        // SAFETY: as `free`; SQLite's allocations are below 2 GiB (its own limit).
        unsafe { mi_usable_size(p) as c_int }
    }
    unsafe extern "C" fn roundup(n: c_int) -> c_int {
        // SAFETY: a pure function of the size.
        unsafe { mi_good_size(n.max(0) as usize).min(c_int::MAX as usize) as c_int }
    }
    unsafe extern "C" fn init(_: *mut c_void) -> c_int {
        ffi::SQLITE_OK
    }
    unsafe extern "C" fn shutdown(_: *mut c_void) {}
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(malloc),
        xFree: Some(free),
        xRealloc: Some(realloc),
        xSize: Some(size),
        xRoundup: Some(roundup),
        xInit: Some(init),
        xShutdown: Some(shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to a `sqlite3_mem_methods`, which SQLite
    // copies before it returns; it fails (SQLITE_MISUSE) without effect once SQLite is initialised.
    let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const ffi::sqlite3_mem_methods) };
    if rc != ffi::SQLITE_OK {
        tracing::info!(rc, "SQLite was initialised before its allocator could be set; it keeps the C library's");
    }
}

/// Turns on the query planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`,
/// <https://sqlite.org/c3ref/c_dbconfig_defensive.html#sqlitedbconfigenableqpsg>): a plan
/// never depends on the values bound to it.
///
/// Without it, SQLite (3.47 and later) plans a bound `LIMIT` with its value
/// (`sqlite3ExprIsInteger`) and marks the statement to be prepared again whenever that
/// parameter is bound anew. Diesel binds the `LIMIT 1` of `first()` and `single_value()`, and
/// binds every parameter on every run: each such statement, cached or not, was parsed and
/// planned again every time it ran, 7% of the writer thread on public writes (SQLite's one
/// writer is its bottleneck; perf, `bench/` write workload). With no statistics tables
/// (Consentry never runs `ANALYZE`), values never changed a plan anyway.
unsafe extern "C" fn on_open(
    db: *mut ffi::sqlite3,
    _error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: `db` is the connection being opened, valid during this call; the option takes
    // an int (1: on) and an optional `int*` for the new setting (none).
    unsafe { ffi::sqlite3_db_config(db, ffi::SQLITE_DBCONFIG_ENABLE_QPSG, 1 as c_int, std::ptr::null_mut::<c_int>()) };
    ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" {
        fn mi_is_in_heap_region(p: *const c_void) -> bool;
    }

    /// Memory SQLite allocates comes from mimalloc's heap once [`register`] ran.
    #[test]
    fn sqlite_allocates_from_mimalloc() {
        register();
        // SAFETY: a plain allocation through SQLite, freed below.
        let p = unsafe { ffi::sqlite3_malloc(1000) };
        assert!(!p.is_null());
        // SAFETY: a query on any pointer; `p` is SQLite's and freed by SQLite.
        let (from_mimalloc, usable) = unsafe { (mi_is_in_heap_region(p), ffi::sqlite3_msize(p)) };
        // SAFETY: `p` came from sqlite3_malloc and is not used after this.
        unsafe { ffi::sqlite3_free(p) };
        assert!(from_mimalloc, "SQLite's allocation is in mimalloc's heap");
        assert!(usable >= 1000, "SQLite sees the usable size of its allocation ({usable} bytes)");
    }

    /// Opens a connection with SQLite's own API (not diesel's) and reads the setting back.
    #[test]
    fn every_connection_opened_after_registering_plans_without_bound_values() {
        register();
        let mut db: *mut ffi::sqlite3 = std::ptr::null_mut();
        // SAFETY: a NUL-terminated name; `db` receives the handle, closed below.
        let rc = unsafe { ffi::sqlite3_open(c":memory:".as_ptr(), &mut db) };
        assert_eq!(rc, ffi::SQLITE_OK);
        let mut on: c_int = -1;
        // SAFETY: -1 leaves the setting as it is and writes it to `on`.
        let rc =
            unsafe { ffi::sqlite3_db_config(db, ffi::SQLITE_DBCONFIG_ENABLE_QPSG, -1 as c_int, &mut on as *mut c_int) };
        // SAFETY: `db` was opened above and is not used after this.
        unsafe { ffi::sqlite3_close(db) };
        assert_eq!(rc, ffi::SQLITE_OK);
        assert_eq!(on, 1, "SQLITE_DBCONFIG_ENABLE_QPSG is on for a new connection");
    }
}
