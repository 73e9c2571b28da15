//! Errors answered over HTTP. Client mistakes carry a short, safe message; anything
//! else is logged with its cause chain and answered with an opaque 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("signature check failed")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::BadRequest(reason.into())
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        Self::Internal(error.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                "internal error".to_owned()
            }
            other => {
                tracing::debug!(%status, reason = %other, "request refused");
                other.to_string()
            }
        };
        (status, body).into_response()
    }
}
