//! Group commit for the inbox: every request that must make rows durable before
//! it answers (callbacks, ingest batches) hands them to one writer task. The
//! writer takes whatever requests are waiting, inserts all their rows in one
//! transaction on its own `synchronous=FULL` connection, commits (one fsync for
//! the whole batch, durable against power loss), and only then answers each
//! request. A failed batch is rolled back whole and every request in it gets
//! the error; a row whose dedupe key is already stored comes back as
//! [`Inserted::Duplicate`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnection, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Sqlite, SqlitePool};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use super::inbox::{InboxKind, Inserted, NewInboxEvent};

/// Rows gathered into one transaction at most (a request is never split, so a
/// batch may exceed this by one request's rows).
const MAX_BATCH_ROWS: usize = 4096;
/// Rows per INSERT statement: six parameters each, far below SQLite's limit,
/// and few distinct statement shapes for the statement cache.
const ROWS_PER_STATEMENT: usize = 128;
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
    /// Opens the writer's own connection (the pool's options with
    /// `synchronous=FULL`) and starts the writer task.
    pub async fn spawn(pool: &SqlitePool) -> anyhow::Result<(InboxWriter, JoinHandle<()>)> {
        let options = pool
            .connect_options()
            .as_ref()
            .clone()
            .synchronous(SqliteSynchronous::Full);
        let mut conn = options
            .connect()
            .await
            .context("opening the inbox writer's connection")?;
        super::busy::install_short_waits(&mut conn).await?;
        // Checkpoints (copying the log into the database file, with its own
        // fsync) never run inside the writer's commits, where they would hold
        // every waiting callback: the pool's connections run them as they commit.
        sqlx::query("pragma wal_autocheckpoint = 0")
            .execute(&mut conn)
            .await?;
        // 2 = FULL: the WAL is synced at every commit, not only at checkpoints.
        let synchronous: i64 = sqlx::query_scalar("pragma synchronous")
            .fetch_one(&mut conn)
            .await?;
        anyhow::ensure!(
            synchronous == 2,
            "inbox writer: synchronous is {synchronous}, not FULL"
        );
        let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
        let stats = Arc::new(WriterStats::default());
        let task = tokio::spawn(run(conn, requests, stats.clone(), pool.clone()));
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

async fn run(
    mut conn: SqliteConnection,
    mut requests: mpsc::Receiver<Request>,
    stats: Arc<WriterStats>,
    pool: SqlitePool,
) {
    let mut batch: Vec<Request> = Vec::new();
    // Closing the pool closes the database for good (shutdown, restore): the
    // writer then stops taking requests and lets go of its connection too.
    let closed = pool.close_event();
    tokio::pin!(closed);
    // Waits for the first request, then takes whatever else is already queued:
    // under load the batch grows while the previous commit's fsync runs.
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
        let committed = commit_batch(&mut conn, &batch).await;
        crate::metrics::inbox_batch(rows, started.elapsed().as_secs_f64());
        match committed {
            Ok(mut answers) => {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
                let requests = batch.len();
                for request in batch.drain(..).rev() {
                    let own = answers.split_off(answers.len() - request.rows.len());
                    let _ = request.reply.send(Ok(own));
                }
                stats.answered(requests);
            }
            Err(error) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %format!("{error:#}"), requests = batch.len(), rows, "inbox batch failed, rolled back");
                let error = WriteError(format!("{error:#}").into());
                let requests = batch.len();
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(error.clone()));
                }
                stats.answered(requests);
            }
        }
    }
    let _ = conn.close().await;
}

/// Inserts every request's rows in one transaction and commits; the answers
/// in the order of the rows. On error the transaction is rolled back (by
/// dropping it) and nothing of the batch is kept.
async fn commit_batch(
    conn: &mut SqliteConnection,
    batch: &[Request],
) -> anyhow::Result<Vec<Inserted>> {
    let rows: Vec<&InboxRecord> = batch.iter().flat_map(|r| r.rows.iter()).collect();
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .context("beginning the inbox batch")?;
    let mut stored: HashMap<String, i64> = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        stored.extend(
            insert_chunk(&mut tx, chunk)
                .await?
                .into_iter()
                .map(|(id, key)| (key, id)),
        );
    }
    tx.commit().await.context("committing the inbox batch")?;
    // The first row with a new key is the one stored; later rows with the same
    // key (in this batch or before it) are duplicates.
    Ok(rows
        .iter()
        .map(|row| match stored.remove(row.dedupe_key.as_str()) {
            Some(id) => Inserted::New(id),
            None => Inserted::Duplicate,
        })
        .collect())
}

/// One multi-row INSERT; the (id, dedupe key) of each row actually stored.
async fn insert_chunk(
    conn: &mut SqliteConnection,
    chunk: &[&InboxRecord],
) -> anyhow::Result<Vec<(i64, String)>> {
    let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
        "insert into inbox (source, kind, dedupe_key, received_at, event_json, chat_id) ",
    );
    query.push_values(chunk, |mut values, row| {
        let row = row.as_new();
        values
            .push_bind(row.source)
            .push_bind(row.kind)
            .push_bind(row.dedupe_key)
            .push_bind(row.received_at)
            .push_bind(row.event_json)
            .push_bind(row.chat_id);
    });
    query.push(" on conflict (dedupe_key) do nothing returning id, dedupe_key");
    query
        .build_query_as::<(i64, String)>()
        .fetch_all(&mut *conn)
        .await
        .context("inserting inbox rows")
}

#[cfg(test)]
mod tests {
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
