//! Group commit for the inbox: every request that must make rows durable before
//! it answers (callbacks, ingest batches) hands them to one writer task. The
//! writer takes whatever requests are waiting, inserts all their rows in one
//! transaction on its own `synchronous=FULL` connection, commits (one fsync for
//! the whole batch, durable against power loss), and only then answers each
//! request. A failed batch is rolled back whole and every request in it gets
//! the error; a row whose dedupe key is already stored comes back as
//! [`Inserted::Duplicate`].
//!
//! The writer's connection is a plain blocking one (`rusqlite`), driven on the
//! blocking pool once per batch: a batch is one hop to that thread and back,
//! not an async round trip per statement and per returned row as through the
//! pool's connections. At full load this connection is the one serial step of
//! every acknowledgement, so its cost per row bounds the callback rate.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{OpenFlags, TransactionBehavior};
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use super::inbox::{InboxKind, Inserted, NewInboxEvent};

/// Rows gathered into one transaction at most (a request is never split, so a
/// batch may exceed this by one request's rows).
const MAX_BATCH_ROWS: usize = 4096;
/// Requests that may wait for the writer before senders wait for room.
const QUEUE_DEPTH: usize = 65_536;

/// An inbox row owned by its request until the writer has stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRecord {
    pub source: String,
    pub kind: InboxKind,
    pub dedupe_key: String,
    pub received_at: i64,
    pub event_json: String,
    pub chat_id: Option<String>,
}

impl InboxRecord {
    pub fn as_new(&self) -> NewInboxEvent<'_> {
        NewInboxEvent {
            source: &self.source,
            kind: self.kind,
            dedupe_key: &self.dedupe_key,
            received_at: self.received_at,
            event_json: &self.event_json,
            chat_id: self.chat_id.as_deref(),
        }
    }
}

/// Why rows were not stored: the batch failed (and was rolled back) or the
/// writer is gone. Either way nothing of the request is in the inbox.
#[derive(Debug, Clone, thiserror::Error)]
#[error("inbox write failed: {0}")]
pub struct WriteError(Arc<str>);

/// What the writer has committed so far (batches and rows), for tests and
/// metrics, and how many requests wait for an answer (see
/// [`InboxWriter::wait_until_idle`]).
#[derive(Debug, Default)]
pub struct WriterStats {
    batches: AtomicU64,
    rows: AtomicU64,
    failed_batches: AtomicU64,
    /// Requests handed to the writer and not answered yet.
    waiting: AtomicUsize,
    /// Signalled whenever `waiting` drops to zero.
    idle: Notify,
}

impl WriterStats {
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
    pub fn failed_batches(&self) -> u64 {
        self.failed_batches.load(Ordering::Relaxed)
    }
    /// Requests waiting for the writer's answer.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    fn answered(&self, requests: usize) {
        if self.waiting.fetch_sub(requests, Ordering::AcqRel) == requests {
            self.idle.notify_waiters();
        }
    }
}

struct Request {
    rows: Vec<InboxRecord>,
    reply: oneshot::Sender<Result<Vec<Inserted>, WriteError>>,
}

/// The handle requests write through; cheap to clone. The writer task stops
/// once every handle is dropped.
#[derive(Clone)]
pub struct InboxWriter {
    queue: mpsc::Sender<Request>,
    stats: Arc<WriterStats>,
}

impl InboxWriter {
    /// Opens the writer's own connection to the pool's database file and
    /// starts the writer task.
    pub async fn spawn(pool: &SqlitePool) -> anyhow::Result<(InboxWriter, JoinHandle<()>)> {
        let path = pool.connect_options().get_filename().to_owned();
        let conn = tokio::task::spawn_blocking({
            let path = path.clone();
            move || open_connection(&path)
        })
        .await
        .context("opening the inbox writer's connection")??;
        let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
        let stats = Arc::new(WriterStats::default());
        let task = tokio::spawn(run(conn, path, requests, stats.clone(), pool.clone()));
        Ok((InboxWriter { queue, stats }, task))
    }

    /// Stores `rows` (all of them or none) and answers once they are durable:
    /// one [`Inserted`] per row, in order.
    pub async fn write(&self, rows: Vec<InboxRecord>) -> Result<Vec<Inserted>, WriteError> {
        let (reply, answer) = oneshot::channel();
        let gone = || WriteError("the inbox writer has stopped".into());
        self.stats.waiting.fetch_add(1, Ordering::AcqRel);
        if self.queue.send(Request { rows, reply }).await.is_err() {
            self.stats.answered(1);
            return Err(gone());
        }
        answer.await.map_err(|_| gone())?
    }

    /// Waits until no request waits for the writer, or `at_most` has passed;
    /// answers whether the writer was idle. The pipeline calls it before each
    /// event: in a burst of callbacks their acknowledgements (WeCom's 5 s
    /// deadline) go before handling what is already stored, whose write
    /// transactions would otherwise queue with the writer's for the lock.
    /// `at_most` keeps the pipeline moving however long the burst lasts.
    pub async fn wait_until_idle(&self, at_most: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + at_most;
        loop {
            let idle = self.stats.idle.notified();
            if self.stats.waiting() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.stats.waiting() == 0;
            }
        }
    }

    /// Stores one row; see [`InboxWriter::write`].
    pub async fn write_one(&self, row: InboxRecord) -> Result<Inserted, WriteError> {
        let mut inserted = self.write(vec![row]).await?;
        inserted.pop().ok_or_else(|| WriteError("no answer".into()))
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

/// The writer's connection: the same database and WAL as everywhere.
/// Commits run with `synchronous=NORMAL` (the log is written, not synced);
/// [`sync_and_answer`] syncs the log before anything is acknowledged, so an
/// acknowledged row is as durable as under `synchronous=FULL`, and the next
/// batch is inserted while the previous one's fsync runs.
fn open_connection(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} for the inbox writer", path.display()))?;
    conn.busy_handler(Some(super::busy::wait_for_lock))?;
    let journal: String =
        conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
    anyhow::ensure!(
        journal == "wal",
        "inbox writer: journal mode is {journal}, not WAL"
    );
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Each row lands on a random page of the dedupe key's unique index (keys
    // are hashes and message ids): keep the index's pages in memory rather
    // than reading one from the file for nearly every insert. 64 MiB.
    conn.pragma_update(None, "cache_size", -65_536)?;
    // Checkpoints (copying the log into the database file, with its own
    // fsync) never run inside the writer's commits, where they would hold
    // every waiting callback: the pool's connections run them as they commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// The write-ahead log beside the database file.
fn wal_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Makes everything written to the log so far durable. SQLite appends each
/// commit to the log in order, so one sync covers every commit before it; a
/// checkpoint that empties the log has already synced the database file.
fn sync_log(wal: &Path) -> std::io::Result<()> {
    std::fs::File::open(wal)?.sync_data()
}

/// A committed batch waiting for the log sync before its answers go out.
struct Committed {
    batch: Vec<Request>,
    answers: Vec<Inserted>,
    rows: usize,
    started: std::time::Instant,
}

async fn run(
    mut conn: rusqlite::Connection,
    path: PathBuf,
    mut requests: mpsc::Receiver<Request>,
    stats: Arc<WriterStats>,
    pool: SqlitePool,
) {
    let (to_sync, committed) = mpsc::unbounded_channel();
    let syncer = tokio::spawn(sync_and_answer(wal_path(&path), committed, stats.clone()));
    let mut batch: Vec<Request> = Vec::new();
    // Closing the pool closes the database for good (shutdown, restore): the
    // writer then stops taking requests and lets go of its connection too.
    let closed = pool.close_event();
    tokio::pin!(closed);
    // Waits for the first request, then takes whatever else is already queued:
    // under load the batch grows while the previous commit runs.
    loop {
        let first = tokio::select! {
            biased;
            request = requests.recv() => match request {
                Some(request) => request,
                None => break,
            },
            _ = &mut closed => break,
        };
        let mut rows = first.rows.len();
        batch.push(first);
        while rows < MAX_BATCH_ROWS {
            match requests.try_recv() {
                Ok(request) => {
                    rows += request.rows.len();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let requests_in_batch = batch.len();
        let work = tokio::task::spawn_blocking(move || {
            let committed = commit_batch(&mut conn, &batch);
            (conn, batch, committed)
        })
        .await;
        let (returned, returned_batch, committed) = match work {
            Ok(done) => done,
            Err(panicked) => {
                // The batch and the connection went down with the thread; the
                // dropped reply senders answer each request with an error, and
                // dropping the connection rolled the transaction back.
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                stats.answered(requests_in_batch);
                tracing::error!(error = %panicked, rows, "inbox batch panicked");
                let reopened = tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || open_connection(&path)
                })
                .await;
                match reopened {
                    Ok(Ok(reopened)) => {
                        conn = reopened;
                        batch = Vec::new();
                        continue;
                    }
                    _ => break,
                }
            }
        };
        conn = returned;
        match committed {
            Ok(answers) => {
                let committed = Committed {
                    batch: returned_batch,
                    answers,
                    rows,
                    started,
                };
                if to_sync.send(committed).is_err() {
                    // The syncer stopped (the log could not be synced): the
                    // dropped batch answers each of its requests with an
                    // error, as the syncer did its own; stop too.
                    stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                    stats.answered(requests_in_batch);
                    break;
                }
                batch = Vec::new();
            }
            Err(error) => {
                // Nothing of the batch was kept: answer at once.
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %format!("{error:#}"), requests = requests_in_batch, rows, "inbox batch failed, rolled back");
                let error = WriteError(format!("{error:#}").into());
                batch = returned_batch;
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(error.clone()));
                }
                stats.answered(requests_in_batch);
            }
        }
    }
    // Answer what is committed before letting go of the connection.
    drop(to_sync);
    let _ = syncer.await;
}

/// Syncs the log behind each committed batch, then answers its requests. A
/// sync covers every batch committed before it started, so batches that
/// queue up during one sync are answered after the next, together.
async fn sync_and_answer(
    wal: PathBuf,
    mut committed: mpsc::UnboundedReceiver<Committed>,
    stats: Arc<WriterStats>,
) {
    let mut ready: Vec<Committed> = Vec::new();
    while let Some(first) = committed.recv().await {
        ready.push(first);
        while let Ok(more) = committed.try_recv() {
            ready.push(more);
        }
        let synced = tokio::task::spawn_blocking({
            let wal = wal.clone();
            move || sync_log(&wal)
        })
        .await
        .map_err(|panicked| std::io::Error::other(panicked.to_string()))
        .and_then(|synced| synced);
        if let Err(error) = synced {
            // After a failed fsync the kernel may have dropped the unwritten
            // pages and a later fsync can succeed without them: nothing
            // written since can be trusted, so the writer stops and every
            // request from now on fails (500: WeCom retries later).
            tracing::error!(%error, path = %wal.display(), "syncing the inbox log failed; the inbox writer stops");
            let error = WriteError(format!("syncing the log failed: {error}").into());
            // No batch is taken from now on; those already queued fail too.
            committed.close();
            while let Some(more) = committed.recv().await {
                ready.push(more);
            }
            for Committed { batch, .. } in ready.drain(..) {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                let requests = batch.len();
                for request in batch {
                    let _ = request.reply.send(Err(error.clone()));
                }
                stats.answered(requests);
            }
            return;
        }
        for Committed {
            batch,
            mut answers,
            rows,
            started,
        } in ready.drain(..)
        {
            crate::metrics::inbox_batch(rows, started.elapsed().as_secs_f64());
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
            let requests = batch.len();
            for request in batch.into_iter().rev() {
                let own = answers.split_off(answers.len() - request.rows.len());
                let _ = request.reply.send(Ok(own));
            }
            stats.answered(requests);
        }
    }
}

/// Inserts every request's rows in one transaction and commits; the answers
/// in the order of the rows. On error the transaction is rolled back (by
/// dropping it) and nothing of the batch is kept. A row whose key is stored
/// already (before this batch or earlier in it) changes nothing and is a
/// duplicate.
fn commit_batch(
    conn: &mut rusqlite::Connection,
    batch: &[Request],
) -> anyhow::Result<Vec<Inserted>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("beginning the inbox batch")?;
    let mut answers = Vec::with_capacity(batch.iter().map(|r| r.rows.len()).sum());
    {
        let mut insert = tx.prepare_cached(
            "insert into inbox (source, kind, dedupe_key, received_at, event_json, chat_id) \
             values (?1, ?2, ?3, ?4, ?5, ?6) on conflict (dedupe_key) do nothing",
        )?;
        for row in batch.iter().flat_map(|request| &request.rows) {
            let changed = insert
                .execute(rusqlite::params![
                    row.source,
                    row.kind.as_str(),
                    row.dedupe_key,
                    row.received_at,
                    row.event_json,
                    row.chat_id,
                ])
                .context("inserting inbox rows")?;
            answers.push(match changed {
                0 => Inserted::Duplicate,
                _ => Inserted::New(tx.last_insert_rowid()),
            });
        }
    }
    tx.commit().context("committing the inbox batch")?;
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    async fn pool() -> (tempfile::TempDir, SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("writer.db"))
            .await
            .unwrap();
        (dir, pool)
    }

    fn record(key: &str) -> InboxRecord {
        InboxRecord {
            source: "app:ops".into(),
            kind: InboxKind::ChangeExternalChat,
            dedupe_key: key.into(),
            received_at: 1_700_000_000,
            event_json: "{}".into(),
            chat_id: Some("wrCHAT".into()),
        }
    }

    async fn keys(pool: &SqlitePool) -> Vec<String> {
        sqlx::query_scalar("select dedupe_key from inbox order by id")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_commit_and_each_gets_its_own_answer() {
        let (_dir, pool) = pool().await;
        let (writer, _task) = InboxWriter::spawn(&pool).await.unwrap();
        // On this single-threaded runtime every request is queued before the
        // writer runs, so they must all land in one batch.
        let writes = (0..50).map(|i| {
            let writer = writer.clone();
            async move {
                let rows = vec![record(&format!("k{i}a")), record(&format!("k{i}b"))];
                writer.write(rows).await.unwrap()
            }
        });
        let answers = futures_util::future::join_all(writes).await;
        assert_eq!(writer.stats().batches(), 1);
        assert_eq!(writer.stats().rows(), 100);
        let stored: HashMap<i64, String> = sqlx::query_as("select id, dedupe_key from inbox")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
        for (i, answer) in answers.iter().enumerate() {
            assert_eq!(answer.len(), 2);
            for (row, suffix) in answer.iter().zip(["a", "b"]) {
                let Inserted::New(id) = row else {
                    panic!("request {i}: {answer:?}")
                };
                assert_eq!(stored[id], format!("k{i}{suffix}"));
            }
        }
    }

    #[tokio::test]
    async fn known_keys_and_repeats_within_a_batch_are_duplicates() {
        let (_dir, pool) = pool().await;
        let (writer, _task) = InboxWriter::spawn(&pool).await.unwrap();
        let first = writer.write_one(record("seen")).await.unwrap();
        assert!(matches!(first, Inserted::New(_)));
        let answer = writer
            .write(vec![record("seen"), record("new"), record("new")])
            .await
            .unwrap();
        assert_eq!(answer[0], Inserted::Duplicate);
        assert!(matches!(answer[1], Inserted::New(_)));
        assert_eq!(answer[2], Inserted::Duplicate);
        assert_eq!(keys(&pool).await, ["seen", "new"]);
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_request_in_it_and_keeps_nothing() {
        let (_dir, pool) = pool().await;
        sqlx::query(
            "create trigger poison before insert on inbox when new.dedupe_key = 'poison'
             begin select raise(abort, 'poisoned row'); end",
        )
        .execute(&pool)
        .await
        .unwrap();
        let (writer, _task) = InboxWriter::spawn(&pool).await.unwrap();
        let writes = ["good1", "poison", "good2"].map(|key| {
            let writer = writer.clone();
            async move { writer.write_one(record(key)).await }
        });
        let answers = futures_util::future::join_all(writes).await;
        assert!(answers.iter().all(Result::is_err), "{answers:?}");
        assert_eq!(writer.stats().failed_batches(), 1);
        assert!(keys(&pool).await.is_empty());
        // The writer carries on with the next batch.
        writer.write_one(record("good1")).await.unwrap();
        assert_eq!(keys(&pool).await, ["good1"]);
    }

    #[tokio::test]
    async fn rows_whose_log_cannot_be_synced_are_not_acknowledged_and_the_writer_stops() {
        let (dir, pool) = pool().await;
        let (writer, task) = InboxWriter::spawn(&pool).await.unwrap();
        writer.write_one(record("first")).await.unwrap();
        // The log's name is gone: the commit still lands in the open file,
        // but the sync that must come before any answer fails.
        std::fs::remove_file(dir.path().join("writer.db-wal")).unwrap();
        let second = writer.write_one(record("second")).await;
        assert!(second.is_err(), "{second:?}");
        assert_eq!(writer.stats().failed_batches(), 1);
        // Nothing written after a failed sync is trusted: the writer stops.
        assert!(writer.write_one(record("third")).await.is_err());
        task.await.unwrap();
        assert!(writer.write_one(record("fourth")).await.is_err());
        assert_eq!(writer.stats().waiting(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_for_an_idle_writer_ends_when_its_requests_are_answered() {
        let (_dir, pool) = pool().await;
        let (writer, _task) = InboxWriter::spawn(&pool).await.unwrap();
        let long = std::time::Duration::from_secs(60);
        assert!(writer.wait_until_idle(long).await, "nothing waits");

        // Another writer holds the lock, so the request stays unanswered.
        let mut holder = pool.acquire().await.unwrap();
        sqlx::query("begin immediate")
            .execute(&mut *holder)
            .await
            .unwrap();
        let writing = tokio::spawn({
            let writer = writer.clone();
            async move { writer.write_one(record("late")).await }
        });
        while writer.stats().waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(
            !writer
                .wait_until_idle(std::time::Duration::from_millis(1))
                .await,
            "a request still waits"
        );
        let idle = tokio::spawn({
            let writer = writer.clone();
            async move { writer.wait_until_idle(long).await }
        });
        sqlx::query("commit").execute(&mut *holder).await.unwrap();
        assert!(idle.await.unwrap(), "idle once the request is answered");
        assert_eq!(writer.stats().waiting(), 0);
        assert!(matches!(writing.await.unwrap(), Ok(Inserted::New(_))));
    }
}
