//! Issue 2: the callback server — URL verification, durable inbox, refusals.

use qunyun::clock::Clock;
use qunyun::wecom::crypto::{self, MsgCrypt};

use crate::helpers::{
    encode, seal_xml, spawn_app, spawn_app_with, Callback, APP_KEY, APP_TOKEN, CORP_ID,
};

pub(crate) fn chat_join_xml(member: &str, create_time: i64) -> String {
    format!(
        r#"<xml>
  <ToUserName><![CDATA[{CORP_ID}]]></ToUserName>
  <FromUserName><![CDATA[sys]]></FromUserName>
  <CreateTime>{create_time}</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[change_external_chat]]></Event>
  <ChatId><![CDATA[wrTESTCHAT000000000000000000001]]></ChatId>
  <ChangeType><![CDATA[update]]></ChangeType>
  <UpdateDetail><![CDATA[add_member]]></UpdateDetail>
  <JoinScene>3</JoinScene>
  <QuitScene>0</QuitScene>
  <MemChangeCnt>1</MemChangeCnt>
  <MemChangeList><Item><![CDATA[{member}]]></Item></MemChangeList>
  <LastMemVer><![CDATA[v1]]></LastMemVer>
  <CurMemVer><![CDATA[v2]]></CurMemVer>
</xml>"#
    )
}

fn contact_add_xml() -> String {
    format!(
        r#"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1763776801</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[lisi]]></UserID><ExternalUserID><![CDATA[wmEXTERNAL01]]></ExternalUserID><State><![CDATA[poster]]></State><WelcomeCode><![CDATA[WELCOMECODE1]]></WelcomeCode></xml>"#
    )
}

fn app_text_xml() -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName><CreateTime>1763776802</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[签到\n😀]]></Content><MsgId>7300000000000000001</MsgId><AgentID>1000002</AgentID></xml>"
    )
}

fn enter_agent_xml() -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName><CreateTime>1763776803</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[enter_agent]]></Event><EventKey><![CDATA[]]></EventKey><AgentID>1000002</AgentID></xml>"
    )
}

fn bot_text_json() -> String {
    serde_json::json!({
        "msgid": "MSGID-IT-0001",
        "aibotid": "AIBOT-IT",
        "chatid": "CHAT-IT",
        "chattype": "group",
        "from": {"userid": "zhangsan"},
        "response_url": "http://127.0.0.1:1/cgi-bin/aibot/response?response_code=X",
        "msgtype": "text",
        "text": {"content": "@运营助手 签到"}
    })
    .to_string()
}

#[tokio::test]
async fn url_verification_answers_the_decrypted_echostr_exactly() {
    let app = spawn_app().await;
    let crypt = MsgCrypt::new(APP_TOKEN, APP_KEY, CORP_ID).unwrap();
    // Find a ciphertext that contains both '+' and '/', the characters that break
    // naive query decoding (docs/wecom.md#query-decoding).
    let echo = "7193518460327719024";
    let echostr = (0..1000)
        .map(|_| crypt.encrypt(echo.as_bytes()))
        .find(|c| c.contains('+') && c.contains('/'))
        .expect("a ciphertext with + and /");
    // Deliveries are stamped with WeCom's clock, which the test's clock stands for.
    let timestamp = app.now().timestamp().to_string();
    let timestamp = timestamp.as_str();
    let nonce = "98765";
    let signature = crypt.signature(timestamp, nonce, &echostr);
    let response = app
        .http
        .get(format!(
            "{}?msg_signature={signature}&timestamp={timestamp}&nonce={nonce}&echostr={}",
            app.app_callback(),
            encode(&echostr)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), echo);

    // The same for the smart bot (receive id "").
    let bot = MsgCrypt::new(crate::helpers::BOT_TOKEN, crate::helpers::BOT_KEY, "").unwrap();
    let echostr = bot.encrypt(b"424242");
    let signature = bot.signature(timestamp, nonce, &echostr);
    let response = app
        .http
        .get(format!(
            "{}?msg_signature={signature}&timestamp={timestamp}&nonce={nonce}&echostr={}",
            app.bot_callback(),
            encode(&echostr)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "424242");
    app.stop().await;
}

#[tokio::test]
async fn each_event_kind_lands_once_when_delivered_three_times() {
    let app = spawn_app().await;
    let app_plaintexts = [
        chat_join_xml("wmMEMBER01", 1763776800),
        contact_add_xml(),
        app_text_xml(),
        enter_agent_xml(),
    ];
    for plaintext in &app_plaintexts {
        for _ in 0..3 {
            let response = app.post_event(Callback::App(plaintext.clone())).await;
            assert_eq!(response.status(), 200);
            assert_eq!(response.text().await.unwrap(), "", "200 with an empty body");
        }
    }
    for _ in 0..3 {
        let response = app.post_event(Callback::Bot(bot_text_json())).await;
        assert_eq!(response.status(), 200);
    }
    let inbox = app.inbox().await;
    let kinds: Vec<&str> = inbox.iter().map(|row| row.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "change_external_chat",
            "change_external_contact",
            "app_text",
            "enter_agent",
            "bot_message"
        ]
    );
    assert!(inbox
        .iter()
        .all(|row| row.status == qunyun::store::inbox::InboxStatus::Pending));
    let text_row = &inbox[2];
    assert_eq!(text_row.dedupe_key, "app:ops:msg:7300000000000000001");
    assert!(text_row.event_json.contains("签到\\n😀"));
    assert_eq!(inbox[4].dedupe_key, "bot:helper:bot:MSGID-IT-0001");
    assert_eq!(
        inbox[0].chat_id.as_deref(),
        Some("wrTESTCHAT000000000000000000001")
    );
    app.stop().await;
}

#[tokio::test]
async fn two_distinct_events_in_the_same_second_both_land() {
    let app = spawn_app().await;
    for member in ["wmMEMBER01", "wmMEMBER02"] {
        let response = app
            .post_event(Callback::App(chat_join_xml(member, 1763776800)))
            .await;
        assert_eq!(response.status(), 200);
    }
    let inbox = app.inbox().await;
    assert_eq!(inbox.len(), 2);
    assert_ne!(inbox[0].dedupe_key, inbox[1].dedupe_key);
    app.stop().await;
}

/// Sends `body` with a correct signature over `encrypt`.
async fn post_signed(
    app: &crate::helpers::TestApp,
    encrypt: &str,
    body: String,
) -> reqwest::Response {
    let now = app.now().timestamp();
    let signature = crypto::signature(APP_TOKEN, &now.to_string(), "1", encrypt);
    app.http
        .post(format!(
            "{}?msg_signature={signature}&timestamp={now}&nonce=1",
            app.app_callback()
        ))
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_deliveries_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let good = chat_join_xml("wmMEMBER01", 1763776800);
    let now = app.now().timestamp().to_string();
    let (query, body) = seal_xml(&app.app_crypt, &good, &now, "1234");

    let mut refusals: Vec<(&str, reqwest::Response, u16)> = Vec::new();

    // Wrong signature: one hex digit changed.
    let signature = &query["msg_signature=".len().."msg_signature=".len() + 40];
    let flipped: String = signature
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 7 {
                if c == '0' {
                    '1'
                } else {
                    '0'
                }
            } else {
                c
            }
        })
        .collect();
    let bad_query = query.replace(signature, &flipped);
    let r = app
        .http
        .post(format!("{}?{}", app.app_callback(), bad_query))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    refusals.push(("wrong signature", r, 401));

    // A signature for another body.
    let other = app.app_crypt.encrypt(b"something else");
    let other_sig = app.app_crypt.signature(&now, "1234", &other);
    let r = app
        .http
        .post(format!(
            "{}?msg_signature={other_sig}&timestamp={now}&nonce=1234",
            app.app_callback()
        ))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    refusals.push(("signature of another ciphertext", r, 401));

    // Missing parameters.
    let r = app
        .http
        .post(app.app_callback())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    refusals.push(("no query", r, 400));

    // Garbage XML.
    let r = app
        .http
        .post(format!("{}?{query}", app.app_callback()))
        .body("<xml><Encrypt>unterminated")
        .send()
        .await
        .unwrap();
    refusals.push(("garbage xml", r, 400));

    // Entity bomb in the envelope.
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><xml><Encrypt>&lol2;</Encrypt></xml>"#;
    let r = app
        .http
        .post(format!("{}?{query}", app.app_callback()))
        .body(bomb)
        .send()
        .await
        .unwrap();
    refusals.push(("entity bomb envelope", r, 400));

    // Signed, but not base64.
    let r = post_signed(
        &app,
        "not*base64!",
        "<xml><Encrypt>not*base64!</Encrypt></xml>".into(),
    )
    .await;
    refusals.push(("bad base64", r, 400));

    // Signed and encrypted for another corp (wrong receive id).
    let foreign = MsgCrypt::new(APP_TOKEN, crate::helpers::APP_KEY, "wwOTHERCORP").unwrap();
    let encrypt = foreign.encrypt(good.as_bytes());
    let r = post_signed(
        &app,
        &encrypt,
        format!("<xml><Encrypt>{encrypt}</Encrypt></xml>"),
    )
    .await;
    refusals.push(("wrong receive id", r, 400));

    // Oversized body (refused before being read whole).
    let huge = format!("<xml><Encrypt>{}</Encrypt></xml>", "A".repeat(300 * 1024));
    let r = app
        .http
        .post(format!("{}?{query}", app.app_callback()))
        .body(huge)
        .send()
        .await
        .unwrap();
    refusals.push(("oversized body", r, 413));

    // Unknown endpoint name.
    let r = app
        .http
        .post(format!(
            "{}?{query}",
            app.url("/wecom/apps/nobody/callback")
        ))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    refusals.push(("unknown app", r, 404));

    // Bot endpoint with a non-JSON body.
    let r = app
        .http
        .post(format!("{}?{query}", app.bot_callback()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    refusals.push(("bot garbage json", r, 400));

    for (what, response, status) in refusals {
        assert_eq!(response.status().as_u16(), status, "{what}");
        let text = response.text().await.unwrap();
        for internal in ["sqlx", "panicked", "src/", "Error {", "backtrace"] {
            assert!(
                !text.contains(internal),
                "{what}: body leaks internals: {text}"
            );
        }
    }
    assert!(app.inbox().await.is_empty(), "nothing was stored");

    // The server keeps serving: health and a genuine delivery still work.
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let response = app.post_event(Callback::App(good.clone())).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.inbox().await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_timestamp_window_refuses_stale_deliveries_when_enabled() {
    let app = spawn_app_with(|config| config.server.timestamp_window_secs = 300).await;
    let now = app.clock.now().timestamp();
    let plaintext = chat_join_xml("wmMEMBER01", now);
    for (timestamp, status) in [(now - 3600, 400), (now + 3600, 400), (now - 10, 200)] {
        let (query, body) = seal_xml(&app.app_crypt, &plaintext, &timestamp.to_string(), "5");
        let response = app
            .http
            .post(format!("{}?{query}", app.app_callback()))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "timestamp {timestamp}");
    }
    assert_eq!(app.inbox().await.len(), 1);
    app.stop().await;
}
