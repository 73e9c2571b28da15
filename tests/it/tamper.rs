//! An independent WeCom client's battery of replayed and tampered deliveries
//! against the default config: every one is refused, none is stored, the
//! server neither crashes nor hangs, and a genuine delivery still lands.
//!
//! The ciphertexts here are built from the cipher crates directly (not with
//! qunyun's `MsgCrypt::encrypt`), so a flaw shared by both sides cannot hide.

use std::time::Duration;

use aes::Aes256;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use qunyun::wecom::crypto;

use crate::callback::chat_join_xml;
use crate::helpers::{spawn_app, Callback, TestApp, APP_KEY, APP_TOKEN, CORP_ID};

/// WeCom's layout: 16 random bytes, a 4-byte big-endian length, the message,
/// the receive id, then `pad` bytes of value `pad_byte`.
fn seal_raw(msg: &[u8], receive_id: &str, pad: usize, pad_byte: u8) -> String {
    let key = crypto::decode_aes_key(APP_KEY).unwrap();
    let mut plain = b"RANDOMRANDOM1234".to_vec();
    plain.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    plain.extend_from_slice(msg);
    plain.extend_from_slice(receive_id.as_bytes());
    plain.extend(std::iter::repeat_n(pad_byte, pad));
    assert_eq!(plain.len() % 16, 0, "block aligned");
    let len = plain.len();
    let cipher = cbc::Encryptor::<Aes256>::new_from_slices(&key, &key[..16])
        .unwrap()
        .encrypt_padded_mut::<NoPadding>(&mut plain, len)
        .unwrap()
        .to_vec();
    STANDARD.encode(cipher)
}

/// Correct PKCS#7-to-32 padding for this content.
fn correct_pad(msg: &[u8], receive_id: &str) -> usize {
    32 - (20 + msg.len() + receive_id.len()) % 32
}

struct Delivery {
    what: String,
    query: String,
    body: String,
}

/// A delivery signed with the app's Token over `encrypt`, stamped `timestamp`.
fn signed(what: &str, encrypt: &str, timestamp: &str) -> Delivery {
    let signature = crypto::signature(APP_TOKEN, timestamp, "4711", encrypt);
    Delivery {
        what: what.to_owned(),
        query: format!(
            "msg_signature={signature}&timestamp={}&nonce=4711",
            crate::helpers::encode(timestamp)
        ),
        body: format!("<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"),
    }
}

fn battery(app: &TestApp) -> Vec<Delivery> {
    let now = app.now().timestamp();
    let ts = now.to_string();
    let msg = chat_join_xml("wmTAMPER01", now);
    let msg = msg.as_bytes();
    let good = seal_raw(
        msg,
        CORP_ID,
        correct_pad(msg, CORP_ID),
        correct_pad(msg, CORP_ID) as u8,
    );
    let mut out = Vec::new();

    // Signatures.
    let mut d = signed("signature of another timestamp", &good, &ts);
    d.query = d.query.replace(
        &format!("timestamp={ts}"),
        &format!("timestamp={}", now - 1),
    );
    out.push(d);
    let wrong_token = crypto::signature("SomeoneElsesToken", &ts, "4711", &good);
    out.push(Delivery {
        what: "signed with another token".into(),
        query: format!("msg_signature={wrong_token}&timestamp={ts}&nonce=4711"),
        body: signed("", &good, &ts).body,
    });
    let right = crypto::signature(APP_TOKEN, &ts, "4711", &good);
    let flipped = format!(
        "{}{}",
        if right.starts_with('0') { '1' } else { '0' },
        &right[1..]
    );
    out.push(Delivery {
        what: "one signature digit changed".into(),
        query: format!("msg_signature={flipped}&timestamp={ts}&nonce=4711"),
        body: signed("", &good, &ts).body,
    });
    let mut d = signed("body swapped after signing", &good, &ts);
    let other_msg = chat_join_xml("wmSWAPPED01", now);
    let other_msg = other_msg.as_bytes();
    let pad = correct_pad(other_msg, CORP_ID);
    d.body = d
        .body
        .replace(&good, &seal_raw(other_msg, CORP_ID, pad, pad as u8));
    out.push(d);

    // Receive id and padding (each correctly signed).
    let other = "wwSOMEOTHERCORP00001";
    out.push(signed(
        "another corp's receive id",
        &seal_raw(
            msg,
            other,
            correct_pad(msg, other),
            correct_pad(msg, other) as u8,
        ),
        &ts,
    ));
    out.push(signed(
        "the smart bot's empty receive id on the app endpoint",
        &seal_raw(msg, "", correct_pad(msg, ""), correct_pad(msg, "") as u8),
        &ts,
    ));
    let pad = correct_pad(msg, CORP_ID);
    out.push(signed("pad byte 0", &seal_raw(msg, CORP_ID, pad, 0), &ts));
    out.push(signed(
        "pad byte larger than 32",
        &seal_raw(msg, CORP_ID, pad, 33),
        &ts,
    ));
    out.push(signed(
        "pad byte off by one from the padding added",
        &seal_raw(
            msg,
            CORP_ID,
            pad,
            if pad < 32 { pad + 1 } else { pad - 1 } as u8,
        ),
        &ts,
    ));
    out.push(signed(
        "not a multiple of the block size",
        &STANDARD.encode(&STANDARD.decode(&good).unwrap()[..40]),
        &ts,
    ));
    out.push(signed("empty ciphertext", "", &ts));
    out.push(signed("not base64", "%%%%not-base64%%%%", &ts));

    // Timestamps (the default window is on).
    for (what, timestamp) in [
        ("stale by an hour", (now - 3600).to_string()),
        ("stale by a day", (now - 86_400).to_string()),
        ("an hour in the future", (now + 3600).to_string()),
        ("garbage timestamp", "abc".to_owned()),
        ("fractional timestamp", format!("{now}.5")),
        ("timestamp with a sign and spaces", format!(" +{now}")),
        ("huge timestamp", "99999999999999999999999".to_owned()),
    ] {
        out.push(signed(what, &good, &timestamp));
    }

    // XML entity tricks in the envelope.
    let sig = crypto::signature(APP_TOKEN, &ts, "4711", &good);
    let query = format!("msg_signature={sig}&timestamp={ts}&nonce=4711");
    for (what, body) in [
        (
            "billion laughs",
            r#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><xml><Encrypt>&c;</Encrypt></xml>"#.to_owned(),
        ),
        (
            "external entity",
            r#"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>"#.to_owned(),
        ),
        (
            "entity standing for the ciphertext",
            format!(r#"<!DOCTYPE x [<!ENTITY e "{good}">]><xml><Encrypt>&e;</Encrypt></xml>"#),
        ),
        (
            "two Encrypt elements",
            format!("<xml><Encrypt>{good}</Encrypt><Encrypt>{good}</Encrypt></xml>"),
        ),
        ("deeply nested", format!("{}{}", "<a>".repeat(50_000), "</a>".repeat(50_000))),
    ] {
        out.push(Delivery {
            what: what.to_owned(),
            query: query.clone(),
            body,
        });
    }

    // Oversized.
    out.push(Delivery {
        what: "a 2 MiB body".into(),
        query: query.clone(),
        body: format!("<xml><Encrypt>{}</Encrypt></xml>", "A".repeat(2 << 20)),
    });
    out
}

#[tokio::test]
async fn a_battery_of_tampered_deliveries_is_refused_without_crash_or_hang() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for delivery in battery(&app) {
        let response = client
            .post(format!("{}?{}", app.app_callback(), delivery.query))
            .body(delivery.body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: no answer ({e})", delivery.what));
        let status = response.status().as_u16();
        assert!(
            (400..500).contains(&status),
            "{}: answered {status}",
            delivery.what
        );
    }
    // URL verification with a stale or garbage timestamp is refused as well.
    let crypt = crypto::MsgCrypt::new(APP_TOKEN, APP_KEY, CORP_ID).unwrap();
    let echostr = crypt.encrypt(b"12345");
    for timestamp in [(app.now().timestamp() - 86_400).to_string(), "abc".into()] {
        let signature = crypt.signature(&timestamp, "1", &echostr);
        let response = client
            .get(format!(
                "{}?msg_signature={signature}&timestamp={timestamp}&nonce=1&echostr={}",
                app.app_callback(),
                crate::helpers::encode(&echostr)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "verification at {timestamp}");
    }
    assert!(app.inbox().await.is_empty(), "nothing was stored");

    // Still serving, and a genuine delivery lands.
    let genuine = chat_join_xml("wmGENUINE01", app.now().timestamp());
    let response = app.post_event(Callback::App(genuine)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.inbox().await.len(), 1);
    app.stop().await;
}
