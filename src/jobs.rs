//! Background jobs, all of one shape: a [`Job`] does one pass with
//! `run_once(now)` (tests call it directly), and [`run_loop`] repeats it on an
//! interval until shutdown. [`supervise`] runs that loop in its own task and
//! restarts it after a short back-off when it panics, keeping [`WorkerHealth`]
//! (what `/readyz` reports) up to date.

pub mod analytics;
pub mod archive;
pub mod customer_tags;
pub mod expiry;
pub mod groupsync;
pub mod honour;
pub mod invites;
pub mod longconn;
pub mod lottery;
pub mod outbox;
pub mod polls;
pub mod retention;
pub mod review_sla;
pub mod scheduler;
pub mod welcome_material;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;

/// First wait before restarting a worker that stopped; doubled per restart in a row.
pub const RESTART_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between restarts.
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A worker that ran this long before stopping starts again from the shortest back-off.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// One background job.
pub trait Job: Send + Sync + 'static {
    /// What one pass did.
    type Outcome: Send;

    /// Short stable name for logs and `/readyz` (`pipeline`, `sender`, ...).
    fn name(&self) -> &'static str;

    /// One pass at `now`. An error is logged by the loop, which goes on.
    fn run_once(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<Self::Outcome>> + Send;

    /// More work was left after this pass: run the next one without waiting.
    fn more_waiting(&self, _outcome: &Self::Outcome) -> bool {
        false
    }

    /// Shutdown was requested during a pass, which is allowed to finish: a
    /// job that can hand work back early (the sender) does so from now on.
    fn stopping(&self) {}
}

/// Runs `job` until `stop` is cancelled: a pass, then a wait of `every` (none
/// while [`Job::more_waiting`]). A pass in progress when `stop` fires is
/// finished; a failed pass is logged and the next one runs as usual.
pub async fn run_loop<J: Job>(
    job: &J,
    clock: &SharedClock,
    every: Duration,
    stop: &CancellationToken,
) {
    loop {
        let pass = job.run_once(clock.now());
        tokio::pin!(pass);
        let result = tokio::select! {
            result = &mut pass => result,
            () = stop.cancelled() => {
                job.stopping();
                pass.await
            }
        };
        let again = match result {
            Ok(outcome) => job.more_waiting(&outcome),
            Err(error) => {
                tracing::error!(
                    worker = job.name(),
                    error = format!("{error:#}"),
                    "worker pass failed"
                );
                false
            }
        };
        if stop.is_cancelled() {
            return;
        }
        if !again {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// Where a worker stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    Running,
    /// Its task stopped (a panic outside a single row) and is restarted soon.
    Restarting {
        reason: String,
    },
    /// Shut down.
    Stopped,
}

/// A worker's state and how often it was restarted since the service started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    pub state: WorkerState,
    pub restarts: u32,
}

/// The state of every supervised worker (clone freely: one shared map).
#[derive(Debug, Clone, Default)]
pub struct WorkerHealth {
    workers: Arc<Mutex<BTreeMap<&'static str, WorkerStatus>>>,
}

impl WorkerHealth {
    pub fn new() -> WorkerHealth {
        WorkerHealth::default()
    }

    /// Every worker by name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, WorkerStatus> {
        self.lock().clone()
    }

    /// The first worker that is not running, with a one-line reason.
    pub fn problem(&self) -> Option<String> {
        self.lock()
            .iter()
            .find_map(|(name, status)| match &status.state {
                WorkerState::Running => None,
                WorkerState::Restarting { reason } => {
                    Some(format!("worker {name} restarting: {reason}"))
                }
                WorkerState::Stopped => Some(format!("worker {name} stopped")),
            })
    }

    fn set(&self, name: &'static str, state: WorkerState) {
        let mut workers = self.lock();
        let status = workers.entry(name).or_insert(WorkerStatus {
            state: WorkerState::Running,
            restarts: 0,
        });
        if matches!(state, WorkerState::Restarting { .. }) {
            status.restarts += 1;
        }
        status.state = state;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, WorkerStatus>> {
        // Plain data: a panic elsewhere while holding the lock leaves it usable.
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs [`run_loop`] for `job` in its own task; when that task panics, logs
/// the panic at error, marks the worker restarting in `health`, waits a short
/// back-off (1 s, doubling to 30 s for restarts in a row) and starts it again.
/// The returned task ends after `stop` is cancelled and the loop returned.
pub fn supervise<J: Job>(
    job: Arc<J>,
    clock: SharedClock,
    every: Duration,
    stop: CancellationToken,
    health: WorkerHealth,
) -> JoinHandle<()> {
    let name = job.name();
    crate::metrics::worker_supervised(name);
    tokio::spawn(async move {
        let mut backoff = RESTART_BACKOFF_MIN;
        loop {
            health.set(name, WorkerState::Running);
            let started = tokio::time::Instant::now();
            let task = tokio::spawn({
                let (job, clock, stop) = (job.clone(), clock.clone(), stop.clone());
                async move { run_loop(&*job, &clock, every, &stop).await }
            });
            let reason = match task.await {
                Ok(()) => {
                    health.set(name, WorkerState::Stopped);
                    return;
                }
                Err(error) if error.is_panic() => {
                    format!("panicked: {}", panic_message(&*error.into_panic()))
                }
                Err(error) => format!("task ended: {error}"),
            };
            if started.elapsed() >= HEALTHY_RUN {
                backoff = RESTART_BACKOFF_MIN;
            }
            tracing::error!(
                worker = name,
                reason,
                backoff_ms = backoff.as_millis() as u64,
                "worker stopped; restarting"
            );
            crate::metrics::worker_restarted(name);
            health.set(name, WorkerState::Restarting { reason });
            tokio::select! {
                () = stop.cancelled() => {
                    health.set(name, WorkerState::Stopped);
                    return;
                }
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
        }
    })
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Panics on its first `panics` passes, then counts quiet passes.
    struct Flaky {
        panics: usize,
        passes: AtomicUsize,
    }

    impl Job for Flaky {
        type Outcome = ();

        fn name(&self) -> &'static str {
            "flaky"
        }

        async fn run_once(&self, _now: DateTime<Utc>) -> anyhow::Result<()> {
            let pass = self.passes.fetch_add(1, Ordering::SeqCst);
            if pass < self.panics {
                panic!("pass {pass} broke");
            }
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_panics_is_restarted_with_backoff_and_reported() {
        let job = Arc::new(Flaky {
            panics: 2,
            passes: AtomicUsize::new(0),
        });
        let health = WorkerHealth::new();
        let stop = CancellationToken::new();
        let clock = crate::clock::system();
        let task = supervise(
            job.clone(),
            clock,
            Duration::from_secs(3600),
            stop.clone(),
            health.clone(),
        );
        // The first pass panics at once: restarting, with the panic's text.
        while job.passes.load(Ordering::SeqCst) < 1 || health.problem().is_none() {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            health.problem().as_deref(),
            Some("worker flaky restarting: panicked: pass 0 broke")
        );
        // 1 s, then 2 s of back-off (paused time auto-advances): the third pass runs.
        while job.passes.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::task::yield_now().await;
        assert_eq!(health.problem(), None, "running again");
        assert_eq!(health.snapshot()["flaky"].restarts, 2);

        stop.cancel();
        task.await.unwrap();
        assert_eq!(health.problem().as_deref(), Some("worker flaky stopped"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_pass_is_logged_and_the_loop_goes_on() {
        struct Failing(AtomicUsize);
        impl Job for Failing {
            type Outcome = ();
            fn name(&self) -> &'static str {
                "failing"
            }
            async fn run_once(&self, _now: DateTime<Utc>) -> anyhow::Result<()> {
                self.0.fetch_add(1, Ordering::SeqCst);
                anyhow::bail!("no database")
            }
        }
        let job = Failing(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let clock = crate::clock::system();
        let looping = run_loop(&job, &clock, Duration::from_secs(5), &stop);
        let stopper = async {
            while job.0.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            stop.cancel();
        };
        tokio::join!(looping, stopper);
        assert_eq!(job.0.load(Ordering::SeqCst), 3);
    }
}
