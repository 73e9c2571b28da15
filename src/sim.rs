//! The built-in WeCom simulator (`qunyun sim`, `qunyun demo`, integration
//! tests).
//!
//! An axum server that answers the WeCom server API under `/cgi-bin/` the way
//! docs/wecom.md describes it (errors as HTTP 200 + `errcode`, tokens that
//! expire, per-member silent drops, robot rate limits, owner-confirmed mass
//! messages, one-shot welcome and response codes), keeps its world in memory,
//! records every accepted delivery, injects failures on request, and drives
//! correctly encrypted callbacks into a qunyun instance.
//!
//! In tests: `Sim::spawn(config, clock)` binds `127.0.0.1:0` and returns a
//! [`SimHandle`]; point the API client at [`SimHandle::api_base_url`].
//! Standalone: [`run`] with a bound listener and a shutdown future.
//!
//! Control endpoints (JSON) next to the API:
//! `GET /sim/messages`, `GET /sim/dropped`, `GET /sim/calls`, `GET /sim/stats`,
//! `POST /sim/reset`,
//! `GET|POST /sim/state` (seed: [`SeedState`]), `POST /sim/faults`
//! ([`FaultRequest`]), `POST /sim/confirm_mass/{msgid}`, `POST /sim/callbacks`
//! ([`CallbackTargets`]), `POST /sim/drive/{join,leave,add_contact,app_text,
//! bot_mention,archive_text,verify_url,raw,steps}` (see [`driver`]).
//!
//! All time (token expiry, rate windows, code lifetimes) comes from the
//! injected [`Clock`](crate::clock::Clock).

mod api;
mod control;
pub mod driver;
pub mod faults;
pub mod longconn;
pub mod model;
pub mod scenario;
mod state;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{self, ManualClock, SharedClock};

pub use driver::{
    AddContactRequest, AppCallback, AppTextRequest, ArchiveTextRequest, BotCallback,
    BotMentionRequest, CallbackTargets, CardClickRequest, DriveError, DriveOutcome, IngestSecret,
    JoinRequest, JoinVia, LeaveRequest, NewMember, RawRequest, VerifyRequest,
};
pub use faults::{FaultKind, FaultRequest, FaultRule, RandomFaults};
pub use longconn::LongConnFault;
pub use model::{
    ApiCall, AppChatView, CustomerGroupView, Delivery, DropReason, Dropped, GroupWelcomeTemplate,
    Route, SeedAppChat, SeedCustomerGroup, SeedGroupMember, SeedRobot, SeedState, Stats,
    WorldRefusal,
};
pub use scenario::{Scenario, Step, StepOutcome};

use faults::Fault;
use state::SimState;

/// One app (or the contacts secret) the simulated corp knows.
#[derive(Clone)]
pub struct SimApp {
    pub name: String,
    pub secret: String,
    /// `None` for secrets that belong to no app (e.g. the contacts secret):
    /// their tokens cannot send app messages.
    pub agent_id: Option<i64>,
}

impl fmt::Debug for SimApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimApp")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("agent_id", &self.agent_id)
            .finish()
    }
}

/// How the simulated corp is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub corp_id: String,
    pub apps: Vec<SimApp>,
    /// `expires_in` of issued tokens, seconds (WeCom: 7200).
    pub token_ttl_secs: i64,
    /// Confirm customer-group mass messages as soon as they are created, as if
    /// the owner tapped "send" at once (demo/scenario mode). Otherwise they
    /// wait for `POST /sim/confirm_mass/{msgid}` / [`Sim::confirm_mass`].
    pub auto_confirm_mass: bool,
    /// Seed state, callback targets and steps applied at start-up.
    pub scenario: Option<Scenario>,
}

impl SimConfig {
    pub const DEFAULT_AGENT_ID: i64 = 1_000_002;
    pub const DEFAULT_TOKEN_TTL_SECS: i64 = 7200;

    /// A corp with one app (`agent_id` 1000002) using `secret`.
    pub fn new(corp_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            corp_id: corp_id.into(),
            apps: vec![SimApp {
                name: "app".into(),
                secret: secret.into(),
                agent_id: Some(Self::DEFAULT_AGENT_ID),
            }],
            token_ttl_secs: Self::DEFAULT_TOKEN_TTL_SECS,
            auto_confirm_mass: false,
            scenario: None,
        }
    }

    /// Another app secret (or, with `agent_id = None`, e.g. a contacts secret).
    pub fn with_app(
        mut self,
        name: impl Into<String>,
        secret: impl Into<String>,
        agent_id: Option<i64>,
    ) -> Self {
        self.apps.push(SimApp {
            name: name.into(),
            secret: secret.into(),
            agent_id,
        });
        self
    }

    pub fn with_token_ttl_secs(mut self, secs: i64) -> Self {
        self.token_ttl_secs = secs;
        self
    }

    pub fn with_auto_confirm_mass(mut self, on: bool) -> Self {
        self.auto_confirm_mass = on;
        self
    }

    pub fn with_scenario(mut self, scenario: Scenario) -> Self {
        self.scenario = Some(scenario);
        self
    }

    /// What `QUNYUN_SIM_SECRET=SECRET qunyun sim --corp-id ID [--token-ttl SECS]
    /// [--scenario FILE]` means.
    pub fn from_args(
        corp_id: &str,
        secret: &str,
        token_ttl_secs: Option<i64>,
        scenario: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let mut config = Self::new(corp_id, secret);
        if let Some(ttl) = token_ttl_secs {
            anyhow::ensure!(ttl > 0, "--token-ttl must be positive");
            config = config.with_token_ttl_secs(ttl);
        }
        if let Some(path) = scenario {
            let scenario = Scenario::load(path)?;
            state::SimState::default()
                .seed(scenario.state.clone())
                .with_context(|| format!("in scenario {}", path.display()))?;
            config = config.with_scenario(scenario);
        }
        Ok(config)
    }
}

/// The simulator: cheap to clone, all clones share one world.
#[derive(Clone)]
pub struct Sim {
    shared: Arc<Shared>,
}

struct Shared {
    config: SimConfig,
    clock: SharedClock,
    state: Mutex<SimState>,
    callbacks: Mutex<Option<CallbackTargets>>,
    /// Our own base URL once serving; smart-bot `response_url`s point here.
    base_url: Mutex<Option<String>>,
    /// Hanging calls wait on this; cancelled at shutdown so graceful
    /// shutdown doesn't wait forever.
    release_hangs: CancellationToken,
    /// Signalled when a call starts hanging (one stored permit), so a test
    /// can act while a client waits on a call that never answers.
    hang_started: tokio::sync::Notify,
    /// The clock `Takes` faults move, when the simulator may move it.
    movable_clock: Mutex<Option<Arc<ManualClock>>>,
    http: reqwest::Client,
    /// The smart bots' long-connection endpoint (`/ws`).
    longconn: longconn::Hub,
}

impl Sim {
    pub fn new(mut config: SimConfig, clock: SharedClock) -> Self {
        let mut state = SimState::default();
        let mut callbacks = None;
        if let Some(scenario) = &config.scenario {
            // `SimConfig::from_args` refuses an impossible scenario up front;
            // one built in code is refused here, loudly, and not seeded.
            if let Err(refusal) = state.seed(scenario.state.clone()) {
                tracing::error!(%refusal, "scenario state refused");
            }
            callbacks = scenario.callbacks.clone();
            config.auto_confirm_mass |= scenario.auto_confirm_mass;
        }
        Self {
            shared: Arc::new(Shared {
                config,
                clock,
                state: Mutex::new(state),
                callbacks: Mutex::new(callbacks),
                base_url: Mutex::new(None),
                release_hangs: CancellationToken::new(),
                hang_started: tokio::sync::Notify::new(),
                movable_clock: Mutex::new(None),
                http: reqwest::Client::new(),
                longconn: longconn::Hub::default(),
            }),
        }
    }

    /// Bind `127.0.0.1:0`, serve in a background task, return a handle.
    pub async fn spawn(config: SimConfig, clock: SharedClock) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sim = Sim::new(config, clock);
        // Known before the server task runs, so response_urls are right at once.
        *lock(&sim.shared.base_url) = Some(format!("http://{addr}"));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let server = sim.clone();
        let task =
            tokio::spawn(async move { server.serve(listener, stop.cancelled_owned()).await });
        Ok(SimHandle {
            sim,
            addr,
            shutdown,
            task: Some(task),
        })
    }

    /// Serve on `listener` until `shutdown` resolves.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        *lock(&self.shared.base_url) = Some(format!("http://{addr}"));
        let release_hangs = self.shared.release_hangs.clone();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                shutdown.await;
                release_hangs.cancel();
            })
            .await
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/cgi-bin/{*path}", any(cgi_bin))
            .merge(control::routes())
            .merge(longconn::routes())
            .with_state(self.clone())
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    /// `http://127.0.0.1:PORT` once serving.
    pub fn base_url(&self) -> Option<String> {
        lock(&self.shared.base_url).clone()
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        lock(&self.shared.state)
    }

    // ------------------------------------------------------------ seeding ---

    /// Adds `seed` to the world, or refuses all of it when WeCom would not
    /// offer that world (docs/wecom.md#chat-kinds).
    pub fn seed(&self, seed: SeedState) -> Result<(), WorldRefusal> {
        self.state().seed(seed)
    }

    pub fn add_directory_members<I, S>(&self, userids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.state()
            .directory
            .extend(userids.into_iter().map(Into::into));
    }

    /// Test and demo setup: seeds a customer group.
    ///
    /// # Panics
    /// When `chat_id` is already an internal group (robot, smart bot, app
    /// group): use [`Sim::seed`] to see the refusal instead.
    pub fn add_customer_group(&self, group: SeedCustomerGroup) {
        self.seed(SeedState {
            customer_groups: vec![group],
            ..SeedState::default()
        })
        .unwrap_or_else(|refusal| panic!("{refusal}"));
    }

    /// Adds a group robot to `chat_id`, refused for a customer group.
    pub fn try_add_robot(
        &self,
        key: impl Into<String>,
        chat_id: impl Into<String>,
    ) -> Result<(), WorldRefusal> {
        self.seed(SeedState {
            robots: vec![SeedRobot {
                key: key.into(),
                chat_id: chat_id.into(),
                name: String::new(),
            }],
            ..SeedState::default()
        })
    }

    /// Test and demo setup: [`Sim::try_add_robot`].
    ///
    /// # Panics
    /// When `chat_id` is a customer group, where WeCom offers no robots.
    pub fn add_robot(&self, key: impl Into<String>, chat_id: impl Into<String>) {
        self.try_add_robot(key, chat_id)
            .unwrap_or_else(|refusal| panic!("{refusal}"));
    }

    pub fn add_app_chat(&self, chat: SeedAppChat) {
        self.state().insert_app_chat(chat);
    }

    /// Make every issued token unknown (40014), as WeCom may invalidate
    /// tokens early (docs/wecom.md#access-token).
    pub fn revoke_tokens(&self) {
        self.state().tokens.clear();
    }

    // ------------------------------------------------------------ records ---

    pub fn messages(&self) -> Vec<Delivery> {
        self.state().messages.clone()
    }

    pub fn dropped(&self) -> Vec<Dropped> {
        self.state().dropped.clone()
    }

    pub fn stats(&self) -> Stats {
        self.state().stats_snapshot()
    }

    /// Every `/cgi-bin/` call in arrival order, credentials left out.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.state().calls.clone()
    }

    /// Clear records, counters, rate windows, duplicate guards, faults and
    /// pending codes/mass tasks; the world and issued tokens stay.
    pub fn reset(&self) {
        self.state().reset_records();
    }

    pub fn customer_group(&self, chat_id: &str) -> Option<CustomerGroupView> {
        self.state().customer_groups.get(chat_id).map(|g| g.view())
    }

    pub fn app_chat(&self, chatid: &str) -> Option<AppChatView> {
        self.state().app_chats.get(chatid).map(|c| c.view())
    }

    pub fn group_welcome_templates(&self) -> Vec<GroupWelcomeTemplate> {
        self.state().welcome_templates.clone()
    }

    /// `userid` has `external_userid` as a customer contact (what an
    /// add_external_contact also records).
    pub fn add_contact(&self, userid: &str, external_userid: &str) {
        self.state()
            .contacts
            .entry(external_userid.to_owned())
            .or_default()
            .insert(userid.to_owned());
    }

    /// The names of the corp tags marked on a customer (by any member).
    pub fn contact_tags(&self, external_userid: &str) -> Vec<String> {
        self.state().contact_tag_names(external_userid)
    }

    /// The corp customer tag groups with their tags.
    pub fn tag_groups(&self) -> Vec<model::TagGroup> {
        self.state().tag_groups.clone()
    }

    // ------------------------------------------------------------- faults ---

    pub fn inject(&self, rule: FaultRule) {
        self.state().faults.push(rule);
    }

    pub fn apply_faults(&self, request: FaultRequest) {
        self.state().faults.apply(request);
    }

    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Let `Takes` faults move `clock` (the one the simulator was built with)
    /// instead of waiting for real.
    pub fn move_clock(&self, clock: Arc<ManualClock>) {
        *lock(&self.shared.movable_clock) = Some(clock);
    }

    /// Resolves once a call is hanging on an injected `Hang` fault (at once
    /// if one started since the last wait).
    pub async fn hang_started(&self) {
        self.shared.hang_started.notified().await;
    }

    // --------------------------------------------------- one-shot things ---

    /// The owner confirms mass message `msgid`; false if unknown or already
    /// confirmed.
    pub fn confirm_mass(&self, msgid: &str) -> bool {
        let now = self.now();
        api::confirm_mass(&mut self.state(), msgid, now)
    }

    /// Msgids of mass messages still waiting for the owner.
    pub fn pending_mass(&self) -> Vec<String> {
        let mut pending: Vec<String> = self
            .state()
            .mass_tasks
            .iter()
            .filter(|(_, task)| task.sent_at.is_none())
            .map(|(msgid, _)| msgid.clone())
            .collect();
        pending.sort();
        pending
    }

    /// A welcome code valid for 20 s from now, once (what an
    /// add_external_contact event carries).
    pub fn issue_welcome_code(&self, userid: &str, external_userid: &str) -> String {
        let now = self.now();
        api::issue_welcome_code(&mut self.state(), userid, external_userid, now)
    }

    /// A smart-bot response code valid for 1 h, once.
    pub fn issue_response_code(&self, aibotid: &str, target: &str, is_group: bool) -> String {
        let now = self.now();
        api::issue_response_code(&mut self.state(), aibotid, target, is_group, now)
    }

    /// The `response_url` for `code` (needs the simulator to be serving).
    pub fn response_url(&self, code: &str) -> String {
        let base = self.base_url().unwrap_or_default();
        format!("{base}/cgi-bin/aibot/response?response_code={code}")
    }

    // ---------------------------------------------------------- callbacks ---

    /// Where and how the driver delivers callbacks.
    pub fn set_callbacks(&self, targets: CallbackTargets) {
        *lock(&self.shared.callbacks) = Some(targets);
    }

    fn callbacks(&self) -> Option<CallbackTargets> {
        lock(&self.shared.callbacks).clone()
    }

    // ---------------------------------------------------------- API glue ---

    /// Count and record the call and pick its fault, if any.
    fn arrive(&self, path: &str, query: &HashMap<String, String>, body: &[u8]) -> Option<Fault> {
        let call = ApiCall {
            path: path.to_owned(),
            query: query
                .iter()
                .filter(|(name, _)| !ApiCall::SECRET_PARAMS.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
            time: self.now().timestamp(),
        };
        let mut state = self.state();
        state.calls.push(call);
        *state.stats.calls.entry(path.to_owned()).or_default() += 1;
        let fault = state.faults.next_for(path);
        if fault.is_some() {
            state.stats.faults_injected += 1;
        }
        fault
    }

    /// Carry out `fault`; `Some` replaces the real answer.
    async fn misbehave(&self, fault: &Fault) -> Option<Response> {
        if let Some(body) = fault.kind.reply() {
            return Some(wecom_json(body));
        }
        match &fault.kind {
            FaultKind::Errcode { .. } | FaultKind::UntrustedIp { .. } | FaultKind::Reply { .. } => {
                None
            }
            FaultKind::Http500 => Some(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
            FaultKind::Hang => {
                self.shared.hang_started.notify_one();
                self.shared.release_hangs.cancelled().await;
                Some(StatusCode::SERVICE_UNAVAILABLE.into_response())
            }
            FaultKind::Slow { .. } => {
                if let Some(delay) = fault.delay() {
                    tokio::time::sleep(delay).await;
                }
                None
            }
            FaultKind::Takes { secs } => {
                let movable = lock(&self.shared.movable_clock).clone();
                match movable {
                    Some(clock) => clock.advance(chrono::Duration::seconds(i64::from(*secs))),
                    None => {
                        if let Some(delay) = fault.delay() {
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
                None
            }
        }
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("corp_id", &self.shared.config.corp_id)
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

/// A simulator serving on `127.0.0.1:PORT` in a background task. Dropping it
/// stops the server.
pub struct SimHandle {
    sim: Sim,
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/cgi-bin/`: the API client's base URL.
    pub fn api_base_url(&self) -> String {
        format!("http://{}/cgi-bin/", self.addr)
    }

    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// Stop serving and wait for the server task.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl std::ops::Deref for SimHandle {
    type Target = Sim;
    fn deref(&self) -> &Sim {
        &self.sim
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `qunyun sim`: serve `config` on `listener` with the system clock until
/// `shutdown` resolves. Scenario steps (if any) run once the server is up;
/// their outcomes are logged.
pub async fn run(
    config: SimConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let steps = config
        .scenario
        .as_ref()
        .map(|scenario| scenario.steps.clone())
        .unwrap_or_default();
    let sim = Sim::new(config, clock::system());
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "WeCom simulator listening");
    // `serve` sets the base URL synchronously before awaiting, but the steps
    // task may run first; set it here too so response_urls are right.
    *lock(&sim.shared.base_url) = Some(format!("http://{addr}"));
    if !steps.is_empty() {
        let driver = sim.clone();
        tokio::spawn(async move {
            for outcome in driver.run_steps(&steps).await {
                tracing::info!(step = %outcome.step, status = ?outcome.status, error = ?outcome.error, "scenario step");
            }
        });
    }
    sim.serve(listener, shutdown).await?;
    Ok(())
}

async fn cgi_bin(
    State(sim): State<Sim>,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let fault = sim.arrive(&path, &query, &body);
    // A call that takes long has its effect first, then answers late.
    let answers_after_effect =
        |fault: &&Fault| fault.after_effect || matches!(fault.kind, FaultKind::Takes { .. });
    if let Some(fault) = fault.as_ref().filter(|fault| !answers_after_effect(fault)) {
        if let Some(response) = sim.misbehave(fault).await {
            return response;
        }
    }
    let outcome = {
        let call = api::Call {
            path: &path,
            query: &query,
            body: &body[..],
            now: sim.now(),
        };
        api::dispatch(&mut sim.state(), sim.config(), &call)
    };
    if let Some(fault) = fault.as_ref().filter(answers_after_effect) {
        if let Some(response) = sim.misbehave(fault).await {
            return response;
        }
    }
    match outcome {
        api::Outcome::Json(value) => {
            // Ids and outcomes only, never bodies or tokens.
            tracing::debug!(path = %path, errcode = ?value.get("errcode"), "sim api call");
            wecom_json(value)
        }
        api::Outcome::NotFound => (StatusCode::NOT_FOUND, Body::empty()).into_response(),
    }
}

/// HTTP 200 JSON, with the errcode mirrored in the `error-code` header as
/// WeCom does.
fn wecom_json(value: Value) -> Response {
    let errcode = value.get("errcode").and_then(Value::as_i64).unwrap_or(0);
    let mut response = Json(value).into_response();
    if let Ok(header) = HeaderValue::from_str(&errcode.to_string()) {
        response.headers_mut().insert("error-code", header);
    }
    response
}

/// A poisoned lock only means another request panicked mid-update; the
/// simulator's state is still usable, so keep serving.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
