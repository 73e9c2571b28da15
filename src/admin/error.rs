//! What the console answers when it refuses or fails. Pages get a redirect to
//! the login page or a short plain message; internal errors are logged with
//! their cause chain and answered opaquely.

use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::ops::OpsError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A page asked for without a live session.
    #[error("sign in first")]
    NotSignedIn,
    /// An API call without a valid bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The role does not allow this.
    #[error("your role does not allow this")]
    Forbidden,
    /// A form post whose CSRF token does not match the session's.
    #[error("the form expired or was not sent by this console; reload and try again")]
    BadCsrf,
    #[error("too many failed sign-ins; wait a few minutes")]
    TooManyAttempts,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AdminError {
    pub fn bad_request(reason: impl Into<String>) -> Self {
        AdminError::BadRequest(reason.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::NotSignedIn => StatusCode::SEE_OTHER,
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden | AdminError::BadCsrf => StatusCode::FORBIDDEN,
            AdminError::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            AdminError::NotFound => StatusCode::NOT_FOUND,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message safe to show a client (never an internal cause).
    pub fn public_message(&self) -> String {
        match self {
            AdminError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "console internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl From<OpsError> for AdminError {
    fn from(error: OpsError) -> Self {
        match error {
            OpsError::Forbidden => AdminError::Forbidden,
            OpsError::NotFound(_) => AdminError::NotFound,
            invalid @ OpsError::Invalid { .. } => AdminError::BadRequest(invalid.to_string()),
            OpsError::Internal(error) => AdminError::Internal(error),
        }
    }
}

impl From<sqlx::Error> for AdminError {
    fn from(error: sqlx::Error) -> Self {
        AdminError::Internal(error.into())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        if let AdminError::NotSignedIn = self {
            return (StatusCode::SEE_OTHER, [(LOCATION, "/admin/login")]).into_response();
        }
        let status = self.status();
        let message = self.public_message();
        let body = format!(
            "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{status}</title></head>\
             <body><main><h1>{status}</h1><p class=\"error\">{}</p><p><a href=\"/admin\">qunyun</a></p></main></body></html>",
            super::views::escape_html(&message)
        );
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response()
    }
}
