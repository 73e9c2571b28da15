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
    /// The call was not made: its target is not WeCom (a `response_url`
    /// outside the API base). The text says why.
    #[error("request refused: {0}")]
    Refused(String),
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
            // Sending again would be refused again.
            ApiError::Refused(_) => ErrorClass::Drop,
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

    /// True for WeCom's answer that a one-shot code (smart-bot
    /// `response_code`, welcome code) was already used. After an attempt of
    /// ours whose answer was lost, that use was ours: the message is delivered.
    pub fn is_code_already_used(&self) -> bool {
        matches!(
            self.errcode(),
            Some(RESPONSE_CODE_USED) | Some(WELCOME_CODE_USED)
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

/// 42022: a smart bot's one-shot `response_code` was already used. WeCom's
/// smart-bot pages (主动回复消息, path/101138) give no code list; 42022 is what
/// a second use is answered with (docs/wecom.md#response_url).
pub const RESPONSE_CODE_USED: i64 = 42022;
/// 41051: the welcome code was already used, or member and customer already
/// chat (发送新客户欢迎语, path/92137; docs/wecom.md#customer-welcome).
pub const WELCOME_CODE_USED: i64 = 41051;

/// The errcode table of docs/wecom.md#error-codes: what each code means for
/// the row that met it. Codes come from WeCom's 全局错误码 (path/90313)
/// unless a comment names the API page.
pub fn classify_errcode(errcode: i64) -> ErrorClass {
    match errcode {
        // System busy: nothing was done, try again.
        -1 => ErrorClass::Retry,
        40014 | 42001 => ErrorClass::RefreshToken,
        45009 => ErrorClass::BackOff {
            wait: FREQUENCY_LIMIT_WAIT,
        },
        45033 => ErrorClass::BackOff {
            wait: CONCURRENCY_LIMIT_WAIT,
        },
        // The corp, secret, app or network is set up wrongly; 41001/41002/
        // 41004/41011 (token, corp id, secret, agent id missing) and 40056
        // (agent id invalid) are our bug or our configuration. Waiting for a
        // human, not a hot retry.
        40001 | 40013 | 40056 | 40091 | 41001 | 41002 | 41004 | 41011 | 48002 | 60011 | 60020 => {
            ErrorClass::Config
        }
        // This row can never be delivered as it stands: bad recipient
        // (40003/40096/81013/82001, 40032 too many), chat gone or not ours
        // (40050/86001/86003/86008), robot gone (93000), a code that is
        // unknown, expired or used (40058 response_code, 41049/41050/41051
        // welcome code, 42022 response_code — a used code counts as delivery
        // only after our own earlier attempt lost its answer, which the
        // sender decides with the row's history), content WeCom refuses
        // (40008 type, 44004 empty, 45002 too long, 45008 article count,
        // 47001 format, 41065 attachment), 41048 no group to send to,
        // 81017 owner range too large for groupchat/list.
        40003 | 40008 | 40032 | 40050 | 40058 | 40096 | 41048 | 41049 | 41050 | 41065
        | RESPONSE_CODE_USED | WELCOME_CODE_USED | 44004 | 45002 | 45008 | 47001 | 81013
        | 81017 | 82001 | 86001 | 86003 | 86008 | 93000 => ErrorClass::Drop,
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
        for code in [
            81013, 86001, 86003, 93000, 40003, 40096, 41051, 42022, 41050, 40058, 44004, 45002,
        ] {
            assert_eq!(wecom(code).class(), ErrorClass::Drop, "{code}");
        }
        assert_eq!(wecom(123_456).class(), ErrorClass::Retry);
        assert!(wecom(42022).is_code_already_used());
        assert!(wecom(41051).is_code_already_used());
        assert!(!wecom(41050).is_code_already_used());
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
