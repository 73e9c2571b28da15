//! The URL verification WeCom performs when an admin saves a callback URL: a
//! signed GET with an encrypted `echostr`, which a running `qunyun serve` must
//! answer with the decrypted echo, within one second (docs/wecom.md).

use std::time::{Duration, Instant};

use crate::wecom::crypto::{fresh_nonce, MsgCrypt};

/// WeCom gives up on a verification answer after this long.
pub const WECOM_DEADLINE: Duration = Duration::from_secs(1);

/// One callback endpoint as WeCom would verify it.
pub struct Endpoint<'a> {
    pub url: String,
    pub token: &'a str,
    pub encoding_aes_key: &'a str,
    /// The corp id for apps, empty for smart bots.
    pub receive_id: &'a str,
}

/// `Ok(ms)` when the endpoint answered with the echo in time, else why not.
pub async fn verify(http: &reqwest::Client, endpoint: &Endpoint<'_>) -> Result<u128, String> {
    let crypt = MsgCrypt::new(
        endpoint.token,
        endpoint.encoding_aes_key,
        endpoint.receive_id,
    )
    .map_err(|e| format!("cannot build the callback crypto: {e}"))?;
    // WeCom's echo is a long decimal string.
    let echo = (rand::random::<u64>() | (1 << 62)).to_string();
    let echostr = crypt.encrypt(echo.as_bytes());
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let nonce = fresh_nonce();
    let signature = crypt.signature(&timestamp, &nonce, &echostr);
    let started = Instant::now();
    let response = http
        .get(&endpoint.url)
        .query(&[
            ("msg_signature", signature.as_str()),
            ("timestamp", timestamp.as_str()),
            ("nonce", nonce.as_str()),
            ("echostr", echostr.as_str()),
        ])
        // Longer than WeCom waits, so a slow answer is reported as slow.
        .timeout(WECOM_DEADLINE * 5)
        .send()
        .await
        .map_err(|e| {
            format!(
                "no answer ({}). Is `qunyun serve` running there? Point --url at it",
                e.without_url()
            )
        })?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("answer broke off ({})", e.without_url()))?;
    let elapsed = started.elapsed();
    if !status.is_success() {
        return Err(format!(
            "answered HTTP {status}: is this qunyun, and are this endpoint's token and \
             encoding_aes_key the ones the running service uses?"
        ));
    }
    if body != echo {
        return Err("answered without the echo WeCom expects".to_owned());
    }
    if elapsed > WECOM_DEADLINE {
        return Err(format!(
            "answered in {} ms; WeCom gives up after {} ms",
            elapsed.as_millis(),
            WECOM_DEADLINE.as_millis()
        ));
    }
    Ok(elapsed.as_millis())
}

/// `http://HOST:PORT` for a listen address; wildcard addresses are reached
/// through loopback.
pub fn base_url_for_listen(listen: &str) -> Option<String> {
    let addr: std::net::SocketAddr = listen.parse().ok()?;
    if addr.port() == 0 {
        return None;
    }
    let host = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    Some(format!("http://{host}:{}", addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_become_reachable_base_urls() {
        assert_eq!(
            base_url_for_listen("0.0.0.0:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            base_url_for_listen("[::]:8080").as_deref(),
            Some("http://[::1]:8080")
        );
        assert_eq!(
            base_url_for_listen("10.0.0.5:80").as_deref(),
            Some("http://10.0.0.5:80")
        );
        assert_eq!(base_url_for_listen("127.0.0.1:0"), None);
    }
}
