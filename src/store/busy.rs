//! How a connection waits for SQLite's write lock.
//!
//! SQLite's built-in busy handler (what `busy_timeout` installs) sleeps 1, 2,
//! 5, 10, 15, 20, 25, 25, 25, 50, 50 and then 100 ms between attempts
//! (`sqliteDefaultBusyCallback` in SQLite's `main.c`). Our write transactions
//! hold the lock for well under a millisecond, so under load those sleeps, not
//! the work, were the slow tail of acknowledged callbacks: a callback whose
//! batch met the pipeline's transaction waited tens of milliseconds for a lock
//! that had been free for most of that time.
//!
//! [`install_short_waits`] replaces it with a handler that retries every 50 µs
//! for the first 5 ms and every 0.5 ms after that, and gives up after about the
//! same 5 s as before (the caller then sees `SQLITE_BUSY`). The sleep blocks
//! the connection's own worker thread, as SQLite's handler does.
//!
//! [`no_open_transaction`] keeps a connection that still holds a transaction
//! out of the pool. A task cancelled while `BEGIN IMMEDIATE` is answered (a
//! sender stopped mid-pass, a timeout around a store call) leaves a
//! transaction that no `Transaction` value owns, so nothing rolls it back:
//! back in the pool, that connection would hold the write lock and every
//! other writer would give up after 5 s with "database is locked".

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::SqliteConnection;

const QUICK_RETRIES: c_int = 100;
const QUICK_WAIT: Duration = Duration::from_micros(50);
const SLOW_RETRIES: c_int = 10_000;
const SLOW_WAIT: Duration = Duration::from_micros(500);

/// How long to wait before attempt `retries + 1`, or `None` to give up.
fn wait_before_retry(retries: c_int) -> Option<Duration> {
    if retries < QUICK_RETRIES {
        Some(QUICK_WAIT)
    } else if retries < QUICK_RETRIES + SLOW_RETRIES {
        Some(SLOW_WAIT)
    } else {
        None
    }
}

/// Attempts turned away by a held lock since start-up (for tests and metrics).
pub static BUSY_RETRIES: AtomicU64 = AtomicU64::new(0);

/// The busy handler itself: counts the attempt, sleeps and answers whether to
/// try again. Also installed on the inbox writer's own connection
/// (`rusqlite`'s `busy_handler` takes exactly this signature).
pub fn wait_for_lock(retries: c_int) -> bool {
    BUSY_RETRIES.fetch_add(1, Ordering::Relaxed);
    match wait_before_retry(retries) {
        Some(wait) => {
            std::thread::sleep(wait);
            true
        }
        None => false,
    }
}

extern "C" fn short_waits(_state: *mut c_void, retries: c_int) -> c_int {
    c_int::from(wait_for_lock(retries))
}

/// Installs the short-wait busy handler on `conn` (replacing its busy timeout).
pub async fn install_short_waits(conn: &mut SqliteConnection) -> sqlx::Result<()> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this connection's open handle, locked for us for the
    // duration of the call; the handler is a plain function that keeps no state
    // and never unwinds, so the null user pointer is never read.
    let code = unsafe {
        libsqlite3_sys::sqlite3_busy_handler(db, Some(short_waits), std::ptr::null_mut())
    };
    if code == libsqlite3_sys::SQLITE_OK {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(format!(
            "sqlite3_busy_handler answered {code}"
        )))
    }
}

/// The pool's release check: `true` (keep the connection) unless it is still
/// inside a transaction, which closing the connection rolls back.
pub async fn no_open_transaction(conn: &mut SqliteConnection) -> sqlx::Result<bool> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this connection's open handle, locked for us for the
    // duration of the call; sqlite3_get_autocommit only reads its state.
    let autocommit = unsafe { libsqlite3_sys::sqlite3_get_autocommit(db) };
    Ok(autocommit != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_short_and_give_up_after_about_five_seconds() {
        let total: Duration = (0..).map_while(wait_before_retry).sum();
        assert!(
            total >= Duration::from_secs(5) && total < Duration::from_secs(6),
            "{total:?}"
        );
        assert_eq!(wait_before_retry(0), Some(Duration::from_micros(50)));
    }

    #[tokio::test]
    async fn a_writer_that_meets_the_lock_waits_for_it_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("busy.db"))
            .await
            .unwrap();
        let mut holder = pool.acquire().await.unwrap();
        let mut waiter = pool.acquire().await.unwrap();
        sqlx::query("begin immediate")
            .execute(&mut *holder)
            .await
            .unwrap();
        let retries_before = BUSY_RETRIES.load(Ordering::Relaxed);
        let waiting = tokio::spawn(async move {
            sqlx::query("begin immediate").execute(&mut *waiter).await?;
            sqlx::query("commit").execute(&mut *waiter).await
        });
        // Release the lock only once the waiter has been turned away at least once.
        while BUSY_RETRIES.load(Ordering::Relaxed) == retries_before {
            tokio::task::yield_now().await;
        }
        sqlx::query("commit").execute(&mut *holder).await.unwrap();
        waiting.await.unwrap().expect("the waiter got the lock");
    }

    #[tokio::test]
    async fn a_connection_released_inside_a_transaction_is_closed_and_its_writes_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("release.db"))
            .await
            .unwrap();
        sqlx::query("create table t (x integer)")
            .execute(&pool)
            .await
            .unwrap();
        // A transaction no `Transaction` value owns (as a cancelled `begin`
        // leaves one), then the connection goes back to the pool.
        let mut abandoned = pool.acquire().await.unwrap();
        sqlx::query("begin immediate")
            .execute(&mut *abandoned)
            .await
            .unwrap();
        sqlx::query("insert into t values (1)")
            .execute(&mut *abandoned)
            .await
            .unwrap();
        drop(abandoned);

        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .expect("the lock is free");
        sqlx::query("insert into t values (2)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let rows: Vec<i64> = sqlx::query_scalar("select x from t")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(rows, vec![2]);
    }
}
