//! `qunyun serve` as a whole: the same app, database and simulator as
//! [`TestApp`](super::TestApp), but with the service's own background workers
//! running on their own schedule (optionally with test seams in them).

use std::sync::Arc;
use std::time::Duration;

use qunyun::app::WorkerHooks;
use qunyun::clock::{self, ManualClock, SharedClock};
use qunyun::sim::{Sim, SimHandle};
use qunyun::store::inbox::{self, InboxRow};
use sqlx::SqlitePool;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{callback_targets, sim_config, TestConfig};

/// Long-connection bots dial the simulator's `/ws`, which knows their secret.
pub fn point_long_connections_at(config: &mut qunyun::config::Config, sim: &SimHandle) {
    for bot in &mut config.wecom.bots {
        if bot.mode == qunyun::config::BotMode::Websocket {
            bot.ws_url = format!("ws://{}/ws", sim.addr());
            sim.sim()
                .register_long_connection_bot(&bot.bot_id, bot.secret.expose());
        }
    }
}

pub struct Service {
    pub sim: SimHandle,
    pub pool: SqlitePool,
    /// The manual clock, unless the service runs on the system clock.
    pub clock: Option<Arc<ManualClock>>,
    pub http: reqwest::Client,
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: TempDir,
}

impl Service {
    /// Starts `qunyun serve` on `127.0.0.1:0` with the simulator as WeCom,
    /// its callback driver pointed at the service.
    pub async fn start(mut test: TestConfig, hooks: WorkerHooks) -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let manual = (!test.system_clock).then(|| ManualClock::new(test.start));
        let shared: SharedClock = match &manual {
            Some(clock) => clock.clone(),
            None => clock::system(),
        };
        let mut config = test.build(&dir.path().join("qunyun.db"));
        let sim = Sim::spawn(sim_config(&config, &test), shared.clone())
            .await
            .expect("simulator starts");
        config.wecom.api_base = sim.api_base_url();
        point_long_connections_at(&mut config, &sim);
        // Migrated before the service starts, so the test may seed at once.
        let pool = qunyun::store::open(&config.database.path)
            .await
            .expect("database opens");
        if let Some(rules) = &test.rules {
            let ops = qunyun::ops::Ops::over(pool.clone());
            let actor = qunyun::ops::Actor::cli(Some("test"));
            qunyun::ops::rules::apply(&ops, &actor, test.start, rules)
                .await
                .expect("the test's rule set applies");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        sim.set_callbacks(callback_targets(&config, &base));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(qunyun::app::run_with_hooks(
            config,
            shared,
            listener,
            async {
                let _ = stopped.await;
            },
            hooks,
        ));
        Service {
            sim,
            pool,
            clock: manual,
            http: reqwest::Client::new(),
            base,
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    pub async fn inbox(&self) -> Vec<InboxRow> {
        let mut conn = self.pool.acquire().await.unwrap();
        inbox::list_all(&mut conn).await.unwrap()
    }

    pub async fn readyz(&self) -> (u16, String) {
        let reply = self
            .http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .unwrap();
        (reply.status().as_u16(), reply.text().await.unwrap())
    }

    /// Polls `/readyz` until `expected` holds; the last answer either way.
    pub async fn readyz_until(&self, expected: impl Fn(u16, &str) -> bool) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            let (status, body) = self.readyz().await;
            if expected(status, &body) || tokio::time::Instant::now() >= deadline {
                return (status, body);
            }
            tick.tick().await;
        }
    }

    /// Shuts the service down (in-flight work finishes); the simulator's
    /// record and the database stay for the test to read.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}
