//! verify + decrypt + parse of one ~650-byte change_external_chat event: the CPU cost
//! of a callback before it touches the database. Run: `cargo bench --bench callback`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qunyun::wecom::crypto::MsgCrypt;
use qunyun::wecom::message;

const CORP_ID: &str = "ww0000000000000000";
const TOKEN: &str = "QDG6eK";
const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

fn event_xml() -> String {
    r#"<xml>
  <ToUserName><![CDATA[ww0000000000000000]]></ToUserName>
  <FromUserName><![CDATA[sys]]></FromUserName>
  <CreateTime>1700000100</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[change_external_chat]]></Event>
  <ChatId><![CDATA[wrTESTCHAT000000000000000000000]]></ChatId>
  <ChangeType><![CDATA[update]]></ChangeType>
  <UpdateDetail><![CDATA[add_member]]></UpdateDetail>
  <JoinScene>3</JoinScene>
  <QuitScene>0</QuitScene>
  <MemChangeCnt>1</MemChangeCnt>
  <MemChangeList>
    <Item><![CDATA[wmTESTEXTERNAL0000000000000000]]></Item>
  </MemChangeList>
  <LastMemVer><![CDATA[0a1b2c3d4e5f60718293a4b5c6d7e8f9]]></LastMemVer>
  <CurMemVer><![CDATA[f9e8d7c6b5a4938271605f4e3d2c1b0a]]></CurMemVer>
</xml>"#
        .to_owned()
}

fn bench_callback(c: &mut Criterion) {
    let crypt = MsgCrypt::new(TOKEN, KEY, CORP_ID).expect("valid key");
    let plaintext = event_xml();
    let encrypt = crypt.encrypt(plaintext.as_bytes());
    let (timestamp, nonce) = ("1700000100", "1320562132");
    let signature = crypt.signature(timestamp, nonce, &encrypt);
    let envelope = format!(
        "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
    );

    let mut group = c.benchmark_group("callback");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_decrypt_parse_change_external_chat", |b| {
        b.iter(|| {
            let envelope = message::parse_xml_envelope(std::hint::black_box(&envelope)).unwrap();
            let plain = crypt
                .verify_and_decrypt(&signature, timestamp, nonce, &envelope.encrypt)
                .unwrap();
            let text = std::str::from_utf8(&plain).unwrap();
            std::hint::black_box(message::parse_app_xml(text).unwrap());
        })
    });
    // Plus what the handler does next: the SHA-256 dedupe key and the JSON for the inbox.
    group.bench_function("..._plus_dedupe_key_and_inbox_json", |b| {
        b.iter(|| {
            let envelope = message::parse_xml_envelope(std::hint::black_box(&envelope)).unwrap();
            let plain = crypt
                .verify_and_decrypt(&signature, timestamp, nonce, &envelope.encrypt)
                .unwrap();
            let text = std::str::from_utf8(&plain).unwrap();
            let event = message::parse_app_xml(text).unwrap();
            std::hint::black_box(event.dedupe_key(&plain));
            std::hint::black_box(serde_json::to_string(&event).unwrap());
        })
    });
    group.finish();

    // The same path split into its steps, to see where the time goes.
    let mut parts = c.benchmark_group("callback_parts");
    parts.bench_function("envelope_xml", |b| {
        b.iter(|| message::parse_xml_envelope(std::hint::black_box(&envelope)).unwrap())
    });
    parts.bench_function("signature", |b| {
        b.iter(|| {
            crypt
                .verify_signature(&signature, timestamp, nonce, std::hint::black_box(&encrypt))
                .unwrap()
        })
    });
    parts.bench_function("base64_aes_padding", |b| {
        b.iter(|| crypt.decrypt(std::hint::black_box(&encrypt)).unwrap())
    });
    parts.bench_function("event_xml", |b| {
        b.iter(|| message::parse_app_xml(std::hint::black_box(&plaintext)).unwrap())
    });
    parts.finish();
}

criterion_group!(benches, bench_callback);
criterion_main!(benches);
