//! A manager's browser and an API client against the served console: plain
//! HTTP over loopback, redirects not followed, cookies handled by the test.

use std::net::IpAddr;
use std::sync::Arc;

use qunyun::admin::{auth, Role};
use qunyun::clock::{Clock, ManualClock};
use qunyun::store::admin as q;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use sqlx::SqlitePool;

/// A signed-in browser: its session cookie and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// What the console answered.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// `name=value` of a cookie this reply sets.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap().to_owned())
    }

    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
pub struct Console {
    http: reqwest::Client,
    base: String,
    pub pool: SqlitePool,
    pub clock: Arc<ManualClock>,
}

impl Console {
    pub(super) fn new(base: String, pool: SqlitePool, clock: Arc<ManualClock>) -> Self {
        Self {
            http: client(None),
            base,
            pool,
            clock,
        }
    }

    /// The same console reached from another loopback address, so the
    /// server sees a different peer (per-address login throttling).
    pub fn reached_from(&self, ip: &str) -> Console {
        let ip: IpAddr = ip.parse().expect("an IP address");
        assert!(
            ip.is_loopback(),
            "{ip}: only loopback addresses reach the test server"
        );
        Console {
            http: client(Some(ip)),
            ..self.clone()
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("console request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("console body read");
        Reply {
            status,
            headers,
            body,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, session: Option<&Session>) -> Reply {
        self.get_with(path, session, &[]).await
    }

    /// A GET with extra request headers (e.g. `referer`).
    pub async fn get_with(
        &self,
        path: &str,
        session: Option<&Session>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http.get(self.url(path));
        if let Some(s) = session {
            request = request.header(header::COOKIE, &s.cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// POSTs a form as given (tests of refused requests leave out the CSRF
    /// field or the cookie on purpose).
    pub async fn post_form(
        &self,
        path: &str,
        cookie: Option<&str>,
        form: &[(&str, &str)],
    ) -> Reply {
        self.post_form_with(path, cookie, &[], form).await
    }

    /// POSTs a form with extra request headers (e.g. `x-forwarded-for`).
    pub async fn post_form_with(
        &self,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        form: &[(&str, &str)],
    ) -> Reply {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .http
            .post(self.url(path))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// POSTs a form as `session`, with its CSRF token added.
    pub async fn post_as(&self, path: &str, session: &Session, form: &[(&str, &str)]) -> Reply {
        let mut fields = form.to_vec();
        fields.push(("csrf", &session.csrf));
        self.post_form(path, Some(&session.cookie), &fields).await
    }

    /// A JSON API call, with `token` as the bearer token.
    pub async fn api(&self, method: Method, path: &str, token: Option<&str>, json: &str) -> Reply {
        let mut request = self
            .http
            .request(method, self.url(path))
            .header(header::CONTENT_TYPE, "application/json")
            .body(json.to_owned());
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(request).await
    }

    /// A JSON API call with extra request headers (e.g. `idempotency-key`).
    pub async fn api_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        json: &str,
    ) -> Reply {
        let mut request = self
            .http
            .request(method, self.url(path))
            .header(header::CONTENT_TYPE, "application/json")
            .body(json.to_owned());
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// Signs in through the login form, as a browser would.
    pub async fn sign_in(&self, username: &str, password: &str) -> Reply {
        self.sign_in_with(&[], username, password).await
    }

    /// Signs in through the login form with extra headers on the POST.
    pub async fn sign_in_with(
        &self,
        headers: &[(&str, &str)],
        username: &str,
        password: &str,
    ) -> Reply {
        let form = self.get("/admin/login", None).await;
        assert_eq!(form.status, StatusCode::OK);
        let login_cookie = form.set_cookie(auth::LOGIN_CSRF_COOKIE).unwrap();
        let csrf = hidden_value(&form.body, "csrf").to_owned();
        self.post_form_with(
            "/admin/login",
            Some(&login_cookie),
            headers,
            &[
                ("username", username),
                ("password", password),
                ("csrf", &csrf),
            ],
        )
        .await
    }

    /// A user with `role` (created if new) with a live session and an API
    /// token, bypassing the password form (which has its own tests).
    pub async fn session_for(&self, username: &str, role: Role) -> (Session, String) {
        let mut conn = self.pool.acquire().await.unwrap();
        let now = self.clock.now().timestamp();
        let id = match q::user_by_name(&mut conn, username).await.unwrap() {
            Some(user) => user.id,
            None => q::insert_user(&mut conn, username, "x", role.as_str(), now)
                .await
                .unwrap()
                .unwrap(),
        };
        let secret = auth::start_session(&mut conn, id, now, 3600).await.unwrap();
        let live = q::live_session(&mut conn, &auth::hash_secret(&secret), now)
            .await
            .unwrap()
            .unwrap();
        let token = auth::issue_api_token(&mut conn, id, "test", now)
            .await
            .unwrap();
        (
            Session {
                cookie: format!("{}={secret}", auth::SESSION_COOKIE),
                csrf: live.csrf_token,
            },
            token,
        )
    }

    /// The console page at `path` as a signed-in `role`, asserting 200.
    pub async fn page_as(&self, role: Role, path: &str) -> String {
        let (session, _) = self.session_for(role.as_str(), role).await;
        let reply = self.get(path, Some(&session)).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.body);
        reply.body
    }

    /// The JSON API read at `path` with a `role` token, asserting 200.
    pub async fn api_as(&self, role: Role, path: &str) -> serde_json::Value {
        let (_, token) = self.session_for(role.as_str(), role).await;
        let reply = self.api(Method::GET, path, Some(&token), "").await;
        assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.body);
        serde_json::from_str(&reply.body).expect("API answers JSON")
    }
}

fn client(local_address: Option<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(local_address)
        .build()
        .expect("console HTTP client")
}

pub fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The `value` of the hidden input `name` in a page.
pub fn hidden_value<'a>(html: &'a str, name: &str) -> &'a str {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in page"))
        + marker.len();
    &html[start..start + html[start..].find('"').unwrap()]
}
