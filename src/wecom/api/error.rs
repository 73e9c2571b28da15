//! Errors from WeCom's server API and what the caller should do about each
//! (docs/wecom.md#error-codes).

use std::time::Duration;

/// Why an API call did not succeed. Never carries a token or a secret: reqwest
/// errors are stripped of their URL (which holds `access_token=`) before they
/// are turned into text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No answer within the configured timeout.
    #[error("request timed out")]
    Timeout,
    /// The TCP/TLS connection could not be made.
    #[error("could not connect: {0}")]
    Connect(String),
    /// Any other transport failure (connection reset mid-response, ...).
    #[error("transport error: {0}")]
    Transport(String),
    /// WeCom answers errors with HTTP 200, so any other status is a server or
    /// proxy problem (or a wrong base URL).
    #[error("unexpected HTTP status {status}")]
    HttpStatus { status: u16 },
    /// HTTP 200, but the body was not the JSON we expected.
    #[error("response could not be decoded: {0}")]
    Decode(String),
    /// WeCom answered with a non-zero `errcode`. `errmsg` is WeCom's own text
    /// (a description plus a hint id), safe to log.
    #[error("WeCom errcode {errcode}: {errmsg}")]
    WeCom { errcode: i64, errmsg: String },
}

/// What to do after an [`ApiError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: retry later with exponential backoff.
    Retry,
    /// The access token was rejected: refresh it and retry once.
    RefreshToken,
    /// A frequency or concurrency limit: do not retry before `wait` has passed.
    /// Waiting is not a failed attempt.
    BackOff { wait: Duration },
    /// Our configuration is wrong (secret, corp id, permissions, trusted IP).
    /// Surface to the manager; retrying hot cannot help.
    Config,
    /// This particular message can never be delivered (bad recipient, chat
    /// gone, welcome code used). Record the reason and drop it.
    Drop,
}

/// 45009: per-minute limits block for one minute (docs/wecom.md#rate-limits).
pub const FREQUENCY_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// 45033: too many concurrent calls; a short pause is enough.
pub const CONCURRENCY_LIMIT_WAIT: Duration = Duration::from_secs(5);

impl ApiError {
    /// WeCom's `errcode`, when the failure came from WeCom itself.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            ApiError::WeCom { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// Classifies the error per docs/wecom.md#error-codes.
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Timeout | ApiError::Connect(_) | ApiError::Transport(_) => ErrorClass::Retry,
            ApiError::HttpStatus { status } => classify_http_status(*status),
            // A garbled 200 is most likely a proxy or a truncated body.
            ApiError::Decode(_) => ErrorClass::Retry,
            ApiError::WeCom { errcode, .. } => classify_errcode(*errcode),
        }
    }

    /// True when WeCom may have acted on the request even though we got no
    /// usable answer: the request went out and then the answer timed out, the
    /// connection broke, or a 200 came back garbled. Errors WeCom answered
    /// itself, HTTP statuses and failed connects mean nothing was done.
    pub fn may_have_been_delivered(&self) -> bool {
        matches!(
            self,
            ApiError::Timeout | ApiError::Transport(_) | ApiError::Decode(_)
        )
    }

    pub fn is_token_rejected(&self) -> bool {
        self.class() == ErrorClass::RefreshToken
    }

    pub(crate) fn from_reqwest(error: reqwest::Error) -> Self {
        // The URL holds the access token; never let it reach a message.
        let error = error.without_url();
        if error.is_timeout() {
            ApiError::Timeout
        } else if error.is_connect() {
            ApiError::Connect(error_chain(&error))
        } else if let Some(status) = error.status() {
            ApiError::HttpStatus {
                status: status.as_u16(),
            }
        } else if error.is_decode() {
            ApiError::Decode(error_chain(&error))
        } else {
            ApiError::Transport(error_chain(&error))
        }
    }
}

fn classify_http_status(status: u16) -> ErrorClass {
    match status {
        429 | 500..=599 => ErrorClass::Retry,
        // 404/403 and friends: a wrong base URL or a proxy refusing us.
        _ => ErrorClass::Config,
    }
}

/// The errcode table of docs/wecom.md#error-codes.
pub fn classify_errcode(errcode: i64) -> ErrorClass {
    match errcode {
        -1 => ErrorClass::Retry,
        40014 | 42001 => ErrorClass::RefreshToken,
        45009 => ErrorClass::BackOff {
            wait: FREQUENCY_LIMIT_WAIT,
        },
        45033 => ErrorClass::BackOff {
            wait: CONCURRENCY_LIMIT_WAIT,
        },
        // 41001 (token missing) is our bug, not WeCom's; like the config
        // errors it needs a human, not a hot retry.
        40001 | 40013 | 40091 | 41001 | 48002 | 60011 | 60020 => ErrorClass::Config,
        // 40003/40096 bad (external) userid, 41051 welcome already sent,
        // 81013 no valid recipient, 86001/86003 appchat gone, 93000 robot
        // gone, 81017 owner range too large for groupchat/list.
        40003 | 40096 | 41051 | 81013 | 81017 | 86001 | 86003 | 93000 => ErrorClass::Drop,
        // Unknown codes: retry with backoff; the attempt limit turns a
        // persistent one into a dead letter that keeps the errcode.
        _ => ErrorClass::Retry,
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wecom(errcode: i64) -> ApiError {
        ApiError::WeCom {
            errcode,
            errmsg: "test".into(),
        }
    }

    #[test]
    fn errcodes_are_classified_per_protocol_table() {
        assert_eq!(wecom(-1).class(), ErrorClass::Retry);
        for code in [40014, 42001] {
            assert_eq!(wecom(code).class(), ErrorClass::RefreshToken, "{code}");
            assert!(wecom(code).is_token_rejected());
        }
        assert_eq!(
            wecom(45009).class(),
            ErrorClass::BackOff {
                wait: Duration::from_secs(60)
            }
        );
        assert!(matches!(wecom(45033).class(), ErrorClass::BackOff { .. }));
        for code in [40001, 40013, 40091, 48002, 60011, 60020] {
            assert_eq!(wecom(code).class(), ErrorClass::Config, "{code}");
        }
        for code in [81013, 86001, 86003, 93000, 40003, 40096, 41051] {
            assert_eq!(wecom(code).class(), ErrorClass::Drop, "{code}");
        }
        assert_eq!(wecom(123_456).class(), ErrorClass::Retry);
    }

    #[test]
    fn transport_failures_and_server_errors_are_retried() {
        assert_eq!(ApiError::Timeout.class(), ErrorClass::Retry);
        assert!(ApiError::Timeout.may_have_been_delivered());
        assert!(ApiError::Transport("reset".into()).may_have_been_delivered());
        assert!(!ApiError::Connect("refused".into()).may_have_been_delivered());
        assert!(!ApiError::HttpStatus { status: 502 }.may_have_been_delivered());
        assert!(!ApiError::WeCom {
            errcode: -1,
            errmsg: "busy".into()
        }
        .may_have_been_delivered());
        assert_eq!(
            ApiError::Connect("refused".into()).class(),
            ErrorClass::Retry
        );
        assert_eq!(
            ApiError::HttpStatus { status: 500 }.class(),
            ErrorClass::Retry
        );
        assert_eq!(
            ApiError::HttpStatus { status: 503 }.class(),
            ErrorClass::Retry
        );
        assert_eq!(
            ApiError::HttpStatus { status: 404 }.class(),
            ErrorClass::Config
        );
        assert!(!ApiError::HttpStatus { status: 500 }.is_token_rejected());
    }
}
