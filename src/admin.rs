//! The manager's web console: server-rendered pages under `/admin` and a JSON
//! API under `/admin/api/v1` for integrations.
//!
//! Security first: every page needs a live session (HttpOnly, SameSite=Strict
//! cookie), every API call a bearer token; every mutation checks the role
//! (viewer < operator < owner) and, for forms, a CSRF token; every mutation is
//! written to the audit log in the same transaction as the change.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use crate::active_rules::ActiveRules;
use crate::clock::SharedClock;
use crate::ops::queues::ItemAction;
use crate::ops::schedules::SchedulerSettings;
use crate::ops::Ops;
use pages::AccountAction;

pub mod api;
pub mod auth;
pub mod chart;
pub mod diff;
pub mod error;
pub mod i18n;
pub mod lottery;
pub mod moderation;
pub mod pages;
pub mod polls;
pub mod review;
pub mod schedules;
pub mod segments;
pub mod views;

pub use crate::ops::Role;
pub use error::AdminError;

/// Console settings the lead wires from `Config`.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Adds `Secure` to cookies; turn on when the console is served over TLS.
    pub secure_cookies: bool,
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Failed logins allowed per username within `login_window` before refusing.
    pub login_max_failures: i64,
    pub login_window: Duration,
    /// Failed logins allowed per client address (any username) within `login_window`.
    pub login_failures_per_ip: i64,
    /// Take the client address from the right-most `X-Forwarded-For` entry
    /// (only behind a reverse proxy that sets it).
    pub trust_forwarded_for: bool,
    /// How manual runs and previews address chats (the app posting to app groups).
    pub scheduler: SchedulerSettings,
    /// The timezone pages show times in (`[community] timezone`).
    pub timezone: chrono_tz::Tz,
    /// The largest manual points adjustment (`admin.max_point_adjustment`).
    pub max_point_adjustment: i64,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            secure_cookies: false,
            session_ttl: Duration::from_secs(8 * 3600),
            login_max_failures: 5,
            login_window: Duration::from_secs(15 * 60),
            login_failures_per_ip: 20,
            trust_forwarded_for: false,
            scheduler: SchedulerSettings::default(),
            timezone: chrono_tz::Asia::Shanghai,
            max_point_adjustment: crate::config::DEFAULT_MAX_POINT_ADJUSTMENT,
        }
    }
}

/// What every console handler needs.
#[derive(Clone)]
pub struct AdminState {
    pub pool: SqlitePool,
    pub clock: SharedClock,
    pub settings: Arc<AdminSettings>,
    /// Every action and read the console offers.
    pub ops: Ops,
    views: Arc<views::Views>,
}

impl AdminState {
    /// Builds the state with its own active-rules cache (see
    /// [`with_active_rules`](Self::with_active_rules) to share the app's);
    /// fails only if an embedded template does not compile.
    pub fn new(
        pool: SqlitePool,
        clock: SharedClock,
        settings: AdminSettings,
    ) -> anyhow::Result<AdminState> {
        let views = views::Views::load(settings.timezone).context("loading console templates")?;
        let ops = Ops::new(pool.clone(), ActiveRules::new(), settings.scheduler.clone())
            .with_max_point_adjustment(settings.max_point_adjustment);
        Ok(AdminState {
            pool,
            clock,
            settings: Arc::new(settings),
            ops,
            views: Arc::new(views),
        })
    }

    /// Uses the app's active-rules cache instead of one of its own.
    pub fn with_active_rules(mut self, rules: ActiveRules) -> AdminState {
        self.ops.rules = rules;
        self
    }

    /// See [`Ops::with_configured_apps`].
    pub fn with_configured_apps(mut self, apps: Vec<String>) -> AdminState {
        self.ops.configured_apps = apps;
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn views(&self) -> &views::Views {
        &self.views
    }
}

/// The console's routes, with their state applied; merge into the app router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin", get(pages::dashboard))
        .route("/admin/", get(pages::dashboard))
        .route("/admin/login", get(pages::login_form).post(pages::login))
        .route("/admin/logout", post(pages::logout))
        .route("/admin/lang/{lang}", get(pages::switch_language))
        .route("/admin/chats", get(pages::chats))
        .route("/admin/chats/{chat_id}", get(pages::chat))
        .route("/admin/chats/{chat_id}/route", post(pages::set_chat_route))
        .route("/admin/chats/{chat_id}/tags", post(pages::tag_chat))
        .route("/admin/broadcasts", post(pages::broadcast))
        .route("/admin/members", get(pages::members))
        .route("/admin/members/{user_id}", get(pages::member))
        .route(
            "/admin/members/{user_id}/points",
            post(pages::adjust_points),
        )
        .route(
            "/admin/members/{user_id}/essence",
            post(pages::mark_essence),
        )
        .route("/admin/rules", get(pages::rules))
        .route("/admin/rules/check", post(pages::check_rules))
        .route("/admin/rules/apply", post(pages::apply_rules))
        .route("/admin/rules/history", get(pages::rules_history))
        .route("/admin/rules/versions/{version}", get(pages::rules_version))
        .route(
            "/admin/rules/versions/{version}/rollback",
            post(pages::rollback_rules),
        )
        .route("/admin/queues", get(pages::queues))
        .route(
            "/admin/redemptions/{id}/fulfil",
            post(|s, m, id, f| pages::item_action(s, m, id, f, ItemAction::FulfilRedemption)),
        )
        .route(
            "/admin/inbox/{id}/retry",
            post(|s, m, id, f| pages::item_action(s, m, id, f, ItemAction::RetryParked)),
        )
        .route(
            "/admin/outbox/{id}/retry",
            post(|s, m, id, f| pages::item_action(s, m, id, f, ItemAction::RetryOutbox)),
        )
        .route(
            "/admin/redemptions/{id}/cancel",
            post(pages::cancel_redemption),
        )
        .route(
            "/admin/outbox/retry-uncertain",
            post(pages::retry_uncertain),
        )
        .route("/admin/audit", get(pages::audit))
        .route("/admin/users", get(pages::users).post(pages::create_user))
        .route(
            "/admin/users/{username}/disable",
            post(|s, m, h, u, f| pages::account_action(s, m, h, u, f, AccountAction::Disable)),
        )
        .route(
            "/admin/users/{username}/enable",
            post(|s, m, h, u, f| pages::account_action(s, m, h, u, f, AccountAction::Enable)),
        )
        .route(
            "/admin/users/{username}/password",
            post(|s, m, h, u, f| {
                pages::account_action(s, m, h, u, f, AccountAction::ResetPassword)
            }),
        )
        .route(
            "/admin/users/{username}/sessions/end",
            post(|s, m, h, u, f| pages::account_action(s, m, h, u, f, AccountAction::EndSessions)),
        )
        .route("/admin/tokens", post(pages::create_token))
        .route("/admin/tokens/{id}/revoke", post(pages::revoke_token))
        .route("/admin/export/{name}", get(pages::export_csv))
        .merge(api::routes())
        .merge(schedules::routes())
        .merge(lottery::routes())
        .merge(moderation::routes())
        .merge(review::routes())
        .merge(segments::routes())
        .merge(polls::routes())
        .with_state(state)
}
