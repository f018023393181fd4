//! SQLite settings that have no `PRAGMA`: an auto-extension applies them to every connection
//! this process opens (<https://sqlite.org/c3ref/auto_extension.html>), before diesel or
//! anything else runs a statement on it.

use libsqlite3_sys as ffi;
use std::ffi::{c_char, c_int};

/// Registers [`on_open`] for every SQLite connection opened from now on; once per process.
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `on_open` has the signature SQLite calls an auto-extension with, and stays
        // valid for the life of the process.
        let rc = unsafe { ffi::sqlite3_auto_extension(Some(on_open)) };
        if rc != ffi::SQLITE_OK {
            tracing::warn!(rc, "SQLite's connection settings could not be registered");
        }
    });
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
