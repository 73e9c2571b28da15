//! Who is calling: the session cookie or bearer token of a request, CSRF
//! checks, cookies and the client address. Accounts and credentials live in
//! `ops::accounts`.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::{AdminError, AdminState};
pub use crate::ops::accounts::{
    check_password_strength, dummy_password_hash, hash_password, hash_secret, issue_api_token,
    random_secret, same_secret, start_session, valid_username, verify_password,
};
pub use crate::ops::Role;
use crate::ops::{accounts, Actor};

pub const SESSION_COOKIE: &str = "qunyun_session";
pub const LOGIN_CSRF_COOKIE: &str = "qunyun_login_csrf";
pub const LANG_COOKIE: &str = "qunyun_lang";

/// A signed-in manager (by session cookie) or an integration (by bearer token).
#[derive(Debug, Clone)]
pub struct Manager {
    pub user_id: i64,
    pub username: String,
    /// The session's CSRF token; empty for bearer-token callers (no cookies, no CSRF).
    pub csrf: String,
    /// Who the audit log names (the username, or `api:<label>` for a token)
    /// and the account's role.
    pub actor: Actor,
}

impl Manager {
    pub fn role(&self) -> Role {
        self.actor.role
    }

    /// Refuses unless the role is at least `need`.
    pub fn require(&self, need: Role) -> Result<(), AdminError> {
        Ok(self.actor.require(need)?)
    }

    /// For form posts: the role, then the CSRF token (constant-time).
    pub fn authorize_form(&self, need: Role, csrf: &str) -> Result<(), AdminError> {
        self.require(need)?;
        if self.csrf.is_empty() || !same_secret(&self.csrf, csrf) {
            return Err(AdminError::BadCsrf);
        }
        Ok(())
    }
}

impl From<accounts::Caller> for Manager {
    fn from(caller: accounts::Caller) -> Manager {
        Manager {
            user_id: caller.user_id,
            username: caller.username,
            csrf: caller.csrf,
            actor: caller.actor,
        }
    }
}

/// Page extractor: the session's manager, or a redirect to the login page.
impl FromRequestParts<AdminState> for Manager {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(AdminError::NotSignedIn);
        };
        accounts::session_caller(&state.ops, state.now(), &token)
            .await?
            .map(Manager::from)
            .ok_or(AdminError::NotSignedIn)
    }
}

/// API extractor: a bearer token's manager, or 401.
pub struct ApiCaller(pub Manager);

impl FromRequestParts<AdminState> for ApiCaller {
    type Rejection = super::api::ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(AdminError::Unauthorized.into());
        };
        accounts::token_caller(&state.ops, state.now(), token)
            .await
            .map_err(AdminError::from)?
            .map(|caller| ApiCaller(Manager::from(caller)))
            .ok_or_else(|| AdminError::Unauthorized.into())
    }
}

/// The client address login throttling counts by: the right-most
/// `X-Forwarded-For` entry when the console sits behind a trusted proxy (the
/// one that proxy appended; entries to its left are whatever the client sent),
/// else the TCP peer. `None` when neither is known.
pub fn client_ip(
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
    trust_forwarded_for: bool,
) -> Option<String> {
    if trust_forwarded_for {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|entry| !entry.is_empty())
            .and_then(|entry| entry.parse::<std::net::IpAddr>().ok());
        if let Some(ip) = forwarded {
            return Some(address_group(ip));
        }
    }
    peer.map(|addr| address_group(addr.ip()))
}

/// The unit login throttling counts by: an IPv4 address, or an IPv6 address's
/// /64 network, since one client usually holds a whole /64 and could
/// otherwise try from 2^64 addresses.
pub fn address_group(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        v4 => v4.to_string(),
    }
}

/// The value of cookie `name` in the request, if present.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// A `Set-Cookie` value for the console's cookies: HttpOnly, SameSite=Strict,
/// scoped to `/admin`, Secure when configured. `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> String {
    let mut cookie =
        format!("{name}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}");
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_authorization_checks_role_then_csrf() {
        let manager = |role| Manager {
            user_id: 1,
            username: "a".into(),
            csrf: "token".into(),
            actor: Actor::new("a", role),
        };
        assert!(matches!(
            manager(Role::Viewer).authorize_form(Role::Operator, "token"),
            Err(AdminError::Forbidden)
        ));
        assert!(matches!(
            manager(Role::Operator).authorize_form(Role::Operator, "tokeN"),
            Err(AdminError::BadCsrf)
        ));
        assert!(manager(Role::Owner)
            .authorize_form(Role::Operator, "token")
            .is_ok());
        let token_caller = Manager {
            csrf: String::new(),
            ..manager(Role::Owner)
        };
        assert!(matches!(
            token_caller.authorize_form(Role::Operator, ""),
            Err(AdminError::BadCsrf)
        ));
    }

    #[test]
    fn cookies_are_parsed_from_every_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "a=1; qunyun_session=abc".parse().unwrap());
        headers.append(COOKIE, "qunyun_lang=en".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, LANG_COOKIE).as_deref(), Some("en"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn client_ip_is_the_peer_unless_a_proxy_is_trusted() {
        let peer: std::net::SocketAddr = "10.0.0.5:4431".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        headers.append("x-forwarded-for", "203.0.113.7".parse().unwrap());
        assert_eq!(
            client_ip(Some(peer), &headers, false).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            client_ip(Some(peer), &headers, true).as_deref(),
            Some("203.0.113.7")
        );
        let mut garbage = HeaderMap::new();
        garbage.append("x-forwarded-for", "1.1.1.1, not-an-ip".parse().unwrap());
        assert_eq!(
            client_ip(Some(peer), &garbage, true).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(client_ip(None, &HeaderMap::new(), true), None);
        let mut v6 = HeaderMap::new();
        v6.append("x-forwarded-for", "2001:db8:1:2:aaaa::1".parse().unwrap());
        assert_eq!(
            client_ip(Some(peer), &v6, true).as_deref(),
            Some("2001:db8:1:2::/64")
        );
    }

    #[test]
    fn session_cookie_is_httponly_strict_and_secure_when_asked() {
        let plain = set_cookie(SESSION_COOKIE, "v", 60, false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        assert!(set_cookie(SESSION_COOKIE, "v", 60, true).ends_with("; Secure"));
    }
}
