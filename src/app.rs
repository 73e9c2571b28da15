//! Wiring: the shared state, the HTTP router and the supervised background
//! workers. `run(config, clock, listener, shutdown)` is what `qunyun serve` and
//! the tests call; `run_with_hooks` adds the test seams.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use sqlx::SqlitePool;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::active_rules::ActiveRules;
use crate::admin::{self, AdminSettings, AdminState};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::ingest;
use crate::jobs::analytics::{Analytics, AnalyticsSettings};
use crate::jobs::groupsync::GroupSync;
use crate::jobs::invites::InviteRewards;
use crate::jobs::outbox::{AppCredentials, OutboxSender, SenderLane, SenderSettings};
use crate::jobs::retention::{self, Retention, RetentionSettings};
use crate::jobs::scheduler::{Scheduler, SchedulerSettings};
use crate::jobs::{self, Job, WorkerHealth};
use crate::metrics::{self, MetricsAccess};
use crate::pipeline::{Pipeline, PipelineHooks, PipelineSettings};
use crate::store;
use crate::store::inbox_writer::InboxWriter;
use crate::wecom::api::{ApiClient, ApiConfig};
use crate::wecom::callback::{self, CallbackState};
use crate::wecom::crypto::MsgCrypt;

mod server;

/// Everything a request handler or worker may need.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: SqlitePool,
    pub clock: SharedClock,
    /// The one active-rules cache every worker reads through.
    pub rules: ActiveRules,
    /// The supervised workers' states, for `/readyz`.
    pub workers: WorkerHealth,
    /// Group commit for callbacks and ingest batches (one writer task).
    pub inbox: InboxWriter,
}

/// Test seams handed to the workers; production passes the default (none).
#[derive(Clone, Default)]
pub struct WorkerHooks {
    pub pipeline: PipelineHooks,
}

pub struct App {
    pub state: AppState,
}

impl App {
    /// Opens the database (running migrations) and prepares the state.
    pub async fn new(config: Config, clock: SharedClock) -> anyhow::Result<App> {
        let pool = store::open(&config.database.path).await?;
        // Push decisions read which smart bots run on a long connection.
        jobs::longconn::record_long_connection_bots(
            &pool,
            &config.wecom.bots,
            clock.now().timestamp(),
        )
        .await
        .context("recording the long-connection bots")?;
        // The writer task ends when the last handle (in the router) is dropped.
        let (inbox, _writer) = InboxWriter::spawn(&pool).await?;
        Ok(App {
            state: AppState {
                config: Arc::new(config),
                pool,
                clock,
                rules: ActiveRules::new(),
                workers: WorkerHealth::new(),
                inbox,
            },
        })
    }

    /// Every route on one router (callbacks, ingest, health and the console).
    pub fn router(&self) -> anyhow::Result<Router> {
        let (public, console) = self.routers()?;
        Ok(public.merge(console))
    }

    /// The public routes (callbacks, ingest, health) and the console's routes,
    /// each with request ids and a trace span; `serve` puts them on one listener
    /// or, with `admin.listen`, on two.
    fn routers(&self) -> anyhow::Result<(Router, Router)> {
        let mut callbacks = callback::router(callback_state(&self.state)?);
        if let Some(secret) = &self.state.config.ingest.secret {
            callbacks = callbacks.merge(ingest::router(ingest::IngestState {
                pool: self.state.pool.clone(),
                clock: self.state.clock.clone(),
                secret: secret.clone(),
                inbox: self.state.inbox.clone(),
            }));
        }
        // Every answer of the callback and ingest routes is counted (/metrics).
        let endpoints = callback_endpoints(&self.state.config);
        metrics::callback_endpoints(&endpoints);
        callbacks = callbacks.layer(axum::middleware::from_fn_with_state(
            Arc::new(endpoints),
            metrics::track_callbacks,
        ));
        let admin_config = &self.state.config.admin;
        let admin = admin::router(
            AdminState::new(
                self.state.pool.clone(),
                self.state.clock.clone(),
                AdminSettings {
                    secure_cookies: admin_config
                        .secure_cookies_for(&self.state.config.listen_addr()?),
                    max_point_adjustment: admin_config.max_point_adjustment,
                    session_ttl: Duration::from_secs(u64::from(admin_config.session_hours) * 3600),
                    timezone: self.state.config.timezone()?,
                    login_failures_per_ip: i64::from(admin_config.login_failures_per_ip),
                    trust_forwarded_for: admin_config.trust_forwarded_for,
                    scheduler: crate::jobs::scheduler::SchedulerSettings {
                        app: self
                            .state
                            .config
                            .wecom
                            .apps
                            .first()
                            .map(|app| app.name.clone())
                            .unwrap_or_else(|| "ops".to_owned()),
                        ..Default::default()
                    },
                    ..AdminSettings::default()
                },
            )?
            .with_active_rules(self.state.rules.clone())
            .with_configured_apps(self.state.config.app_names()),
        );
        let public = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self.state.clone())
            .merge(callbacks)
            .merge(metrics::router(
                self.state.pool.clone(),
                self.state.clock.clone(),
                MetricsAccess {
                    token: self.state.config.metrics.token.clone(),
                    public: self.state.config.metrics.public,
                },
            ));
        Ok((observed(public), observed(admin)))
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests. The
    /// console gets its own listener when `admin.listen` is set.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let admin = match self.state.config.admin_listen_addr()? {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding admin.listen {addr}"))?,
            ),
            None => None,
        };
        self.serve_listeners(listener, admin, shutdown).await
    }

    /// [`App::serve`] on listeners the caller bound: the console on `admin`
    /// if given, otherwise beside the callbacks on `listener`.
    pub async fn serve_listeners(
        self,
        listener: TcpListener,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (public, console) = self.routers()?;
        let limits = server::Limits::from(&self.state.config.server);
        let stop = CancellationToken::new();
        let stopping = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopping.cancel();
        });
        let addr = listener.local_addr().context("reading listener address")?;
        match admin {
            Some(admin) => {
                let admin_addr = admin.local_addr().context("reading admin address")?;
                tracing::info!(%addr, admin = %admin_addr, "qunyun listening (console on its own listener)");
                tokio::try_join!(
                    server::serve(listener, public, limits, stop.clone()),
                    server::serve(admin, console, limits, stop.clone()),
                )?;
            }
            None => {
                tracing::info!(%addr, "qunyun listening");
                server::serve(listener, public.merge(console), limits, stop).await?;
            }
        }
        self.state.pool.close().await;
        tracing::info!("qunyun stopped");
        Ok(())
    }
}

/// Request ids and a trace span per request.
fn observed(router: Router) -> Router {
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    router
        .layer(
            // Span fields: method and route only; the query carries ciphertext.
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let route = request
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "unmatched".to_owned());
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                tracing::info_span!("http", method = %request.method(), route, request_id = id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The service: database, callbacks and the background workers (pipeline,
/// scheduler, sender, ...); until `shutdown`, after which in-flight requests and the current
/// worker step finish.
pub async fn run(
    config: Config,
    clock: SharedClock,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_hooks(config, clock, listener, shutdown, WorkerHooks::default()).await
}

/// [`run`] with test seams in the workers (tests inject panics through them).
pub async fn run_with_hooks(
    config: Config,
    clock: SharedClock,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    hooks: WorkerHooks,
) -> anyhow::Result<()> {
    let app = App::new(config, clock).await?;
    let stop = CancellationToken::new();
    let workers = app.spawn_workers(stop.clone(), hooks)?;
    let http_stop = stop.clone();
    let served = app
        .serve(listener, async move {
            shutdown.await;
            http_stop.cancel();
        })
        .await;
    stop.cancel();
    for worker in workers {
        let _ = worker.await;
    }
    served
}

impl App {
    /// Starts the background workers (pipeline, scheduler, outbox sender,
    /// customer-group sync, invite rewards, analytics), each under
    /// [`jobs::supervise`]: restarted after a panic, reported in `/readyz`.
    /// They stop when `stop` is cancelled.
    pub fn spawn_workers(
        &self,
        stop: CancellationToken,
        hooks: WorkerHooks,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let state = &self.state;
        let wecom = &state.config.wecom;
        let default_app = wecom
            .apps
            .first()
            .map(|app| app.name.clone())
            .unwrap_or_else(|| "ops".to_owned());
        let api = ApiClient::new(
            ApiConfig::new(wecom.api_base.clone(), wecom.corp_id.clone()),
            state.clock.clone(),
        )
        .map_err(|e| anyhow::anyhow!("building the WeCom API client: {e}"))?;
        let worker = Worker { state, stop: &stop };
        let pipeline = Pipeline::new(
            state.pool.clone(),
            state.clock.clone(),
            default_app.clone(),
            PipelineSettings::default(),
        )
        .with_rules(state.rules.clone())
        .with_ingest(state.inbox.clone())
        .with_hooks(hooks.pipeline);
        let mut tasks = vec![worker.spawn(pipeline, Duration::from_millis(500))];

        let scheduler = Scheduler::new(
            state.pool.clone(),
            SchedulerSettings {
                app: default_app.clone(),
                ..SchedulerSettings::default()
            },
        )
        .with_rules(state.rules.clone());
        let tick = scheduler.tick();
        tasks.push(worker.spawn(scheduler, tick));

        // One supervised connection per long-connection smart bot; the
        // senders hand it answers through `long_connections`.
        let (long_connections, connections) = jobs::longconn::connections(
            &wecom.bots,
            &state.pool,
            &state.clock,
            &state.rules,
            &default_app,
            &jobs::longconn::LongConnSettings::default(),
        );
        for connection in connections {
            tasks.push(worker.spawn(connection, Duration::ZERO));
        }

        // Two senders: welcome codes and bot replies (deadlines of seconds)
        // never wait behind a batch of other traffic.
        for routes in SenderLane::ALL.map(SenderLane::routes) {
            let sender = OutboxSender::new(
                state.pool.clone(),
                api.clone(),
                state.clock.clone(),
                SenderSettings {
                    apps: wecom.apps.iter().map(AppCredentials::from).collect(),
                    contacts_secret: wecom.contacts_app().map(|app| app.secret.clone()),
                    customer_tag_group: wecom.customer_tag_group.clone(),
                    routes: Some(routes),
                    ..SenderSettings::default()
                },
            )
            .with_long_connections(long_connections.clone());
            let idle_wait = sender.idle_wait();
            tasks.push(worker.spawn(sender, idle_wait));
        }

        // Customer-group reconciliation needs the contacts app's secret.
        if let Some(app) = wecom.contacts_app() {
            let group_sync = GroupSync::new(
                state.pool.clone(),
                api.clone(),
                app.secret.clone(),
                state.clock.clone(),
            );
            tasks.push(worker.spawn(group_sync, Duration::from_secs(5)));
            // Keeps the rule set's group welcome material in WeCom (same secret).
            let material = crate::jobs::welcome_material::WelcomeMaterialSync::new(
                state.pool.clone(),
                api.clone(),
                app.secret.clone(),
            )
            .with_rules(state.rules.clone());
            tasks.push(worker.spawn(material, Duration::from_secs(30)));
        }

        // Polls open and close on time; cards go out where a long-connection bot sits.
        let polls = crate::jobs::polls::PollJob::new(
            state.pool.clone(),
            state.rules.clone(),
            default_app.clone(),
            wecom
                .bots
                .iter()
                .filter(|bot| bot.mode == crate::config::BotMode::Websocket)
                .map(|bot| bot.name.clone())
                .collect(),
        );
        tasks.push(worker.spawn(polls, Duration::from_secs(1)));

        let invites = InviteRewards::new(state.pool.clone(), state.clock.clone())
            .with_rules(state.rules.clone());
        tasks.push(worker.spawn(invites, Duration::from_secs(60)));

        let draws =
            crate::jobs::lottery::LotteryDraws::new(state.pool.clone(), state.rules.clone());
        tasks.push(worker.spawn(draws, Duration::from_secs(15)));
        let expiry =
            crate::jobs::expiry::PointsExpiry::new(state.pool.clone(), state.rules.clone());
        tasks.push(worker.spawn(expiry, Duration::from_secs(300)));
        let review_sla =
            crate::jobs::review_sla::ReviewSla::new(state.pool.clone(), state.rules.clone());
        tasks.push(worker.spawn(review_sla, Duration::from_secs(60)));
        let honour = jobs::honour::HonourBoards::new(state.pool.clone(), default_app.clone())
            .with_rules(state.rules.clone());
        tasks.push(worker.spawn(honour, Duration::from_secs(60)));

        let analytics = Analytics::new(state.pool.clone(), AnalyticsSettings::default())
            .with_rules(state.rules.clone());
        let interval = analytics.interval();
        tasks.push(worker.spawn(analytics, interval));

        // The message archive: only when enabled (the vendor library is
        // opened now, so a wrong path or key stops the start).
        if state.config.archive.enabled {
            let puller = crate::jobs::archive::ArchivePuller::open(
                &state.config,
                state.pool.clone(),
                state.clock.clone(),
                state.rules.clone(),
            )?;
            tasks.push(worker.spawn(puller, Duration::ZERO));
        }

        let retention = Retention::new(
            state.pool.clone(),
            RetentionSettings::from_config(&state.config.retention),
        );
        tasks.push(worker.spawn(retention, retention::INTERVAL));
        Ok(tasks)
    }
}

/// Starts supervised workers on the service's clock, stop token and health map.
struct Worker<'a> {
    state: &'a AppState,
    stop: &'a CancellationToken,
}

impl Worker<'_> {
    fn spawn<J: Job>(&self, job: J, every: Duration) -> JoinHandle<()> {
        jobs::supervise(
            Arc::new(job),
            self.state.clock.clone(),
            every,
            self.stop.clone(),
            self.state.workers.clone(),
        )
    }
}

/// `app:<name>` and `bot:<name>` of every configured callback endpoint.
fn callback_endpoints(config: &Config) -> std::collections::HashSet<String> {
    let apps = config
        .wecom
        .apps
        .iter()
        .map(|app| format!("app:{}", app.name));
    let bots = config
        .wecom
        .bots
        .iter()
        .map(|bot| format!("bot:{}", bot.name));
    apps.chain(bots).collect()
}

fn callback_state(state: &AppState) -> anyhow::Result<CallbackState> {
    let wecom = &state.config.wecom;
    let mut apps = HashMap::new();
    for app in &wecom.apps {
        let crypt = MsgCrypt::new(
            app.token.expose(),
            app.encoding_aes_key.expose(),
            &wecom.corp_id,
        )
        .map_err(|e| anyhow::anyhow!("wecom.apps {}: {e}", app.name))?;
        apps.insert(app.name.clone(), crypt);
    }
    let mut bots = HashMap::new();
    // A long-connection bot has no callback URL.
    for bot in wecom
        .bots
        .iter()
        .filter(|bot| bot.mode == crate::config::BotMode::Callback)
    {
        // Smart bots in API mode use an empty receive id (docs/wecom.md#receive-id).
        let crypt = MsgCrypt::new(bot.token.expose(), bot.encoding_aes_key.expose(), "")
            .map_err(|e| anyhow::anyhow!("wecom.bots {}: {e}", bot.name))?;
        bots.insert(bot.name.clone(), crypt);
    }
    let window = state.config.server.timestamp_window_secs;
    Ok(CallbackState {
        pool: state.pool.clone(),
        clock: state.clock.clone(),
        apps: Arc::new(apps),
        bots: Arc::new(bots),
        timestamp_window_secs: (window > 0).then_some(window),
        inbox: state.inbox.clone(),
        rules: state.rules.clone(),
    })
}

async fn healthz() -> &'static str {
    "ok"
}

/// 200 `ready`, or 503 with a one-line reason: the database does not answer,
/// a worker is down or restarting, or the oldest pending inbox event is older
/// than `server.ready_max_inbox_age_secs` (callbacks are stored, not processed).
async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    let unavailable = |reason: String| (StatusCode::SERVICE_UNAVAILABLE, reason);
    if !store::ping(&state.pool).await {
        return unavailable("database unavailable".to_owned());
    }
    if let Some(problem) = state.workers.problem() {
        return unavailable(problem);
    }
    let oldest = match state.pool.acquire().await {
        Ok(mut conn) => store::inbox::oldest_pending_received_at(&mut conn).await,
        Err(error) => Err(error),
    };
    match oldest {
        Err(_) => unavailable("database unavailable".to_owned()),
        Ok(Some(received_at)) => {
            let age = state.clock.now().timestamp() - received_at;
            let limit = state.config.server.ready_max_inbox_age_secs;
            if age > i64::try_from(limit).unwrap_or(i64::MAX) {
                unavailable(format!(
                    "inbox backlog: oldest pending event is {age} s old (limit {limit} s)"
                ))
            } else {
                (StatusCode::OK, "ready".to_owned())
            }
        }
        Ok(None) => (StatusCode::OK, "ready".to_owned()),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested");
}
