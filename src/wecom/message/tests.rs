use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------------------
// Sample documents (docs/wecom.md#callback-events)
// ---------------------------------------------------------------------------

const ENVELOPE: &str = "<xml>\n  <ToUserName><![CDATA[ww0000000000000000]]></ToUserName>\n  <Encrypt><![CDATA[c2VjcmV0+/=]]></Encrypt>\n  <AgentID><![CDATA[1000002]]></AgentID>\n</xml>";

const CHAT_ADD_MEMBER: &str = r#"<xml>
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
  <MemChangeCnt>2</MemChangeCnt>
  <MemChangeList>
    <Item><![CDATA[wmTESTEXTERNAL0000000000000000]]></Item>
    <Item><![CDATA[zhangsan]]></Item>
  </MemChangeList>
  <LastMemVer><![CDATA[0a1b2c3d4e5f60718293a4b5c6d7e8f9]]></LastMemVer>
  <CurMemVer><![CDATA[f9e8d7c6b5a4938271605f4e3d2c1b0a]]></CurMemVer>
</xml>"#;

const CONTACT_ADD: &str = r#"<xml>
  <ToUserName><![CDATA[ww0000000000000000]]></ToUserName>
  <FromUserName><![CDATA[sys]]></FromUserName>
  <CreateTime>1700000200</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[change_external_contact]]></Event>
  <ChangeType><![CDATA[add_external_contact]]></ChangeType>
  <UserID><![CDATA[lisi]]></UserID>
  <ExternalUserID><![CDATA[wmTESTEXTERNAL0000000000000000]]></ExternalUserID>
  <State><![CDATA[poster_2024_spring]]></State>
  <WelcomeCode><![CDATA[WELCOMECODE_TEST]]></WelcomeCode>
</xml>"#;

const APP_TEXT: &str = r#"<xml>
  <ToUserName><![CDATA[ww0000000000000000]]></ToUserName>
  <FromUserName><![CDATA[zhangsan]]></FromUserName>
  <CreateTime>1700000300</CreateTime>
  <MsgType><![CDATA[text]]></MsgType>
  <Content><![CDATA[签到]]></Content>
  <MsgId>7300000000000000001</MsgId>
  <AgentID>1000002</AgentID>
</xml>"#;

const ENTER_AGENT: &str = r#"<xml>
  <ToUserName><![CDATA[ww0000000000000000]]></ToUserName>
  <FromUserName><![CDATA[zhangsan]]></FromUserName>
  <CreateTime>1700000400</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[enter_agent]]></Event>
  <EventKey><![CDATA[]]></EventKey>
  <AgentID>1000002</AgentID>
</xml>"#;

const BOT_TEXT: &str = r#"{
  "msgid": "MSGID-TEST-0001",
  "aibotid": "AIBOT-TEST",
  "chatid": "CHATID-TEST",
  "chattype": "group",
  "from": {"userid": "zhangsan"},
  "response_url": "https://example.invalid/aibot/response?response_code=TESTCODE",
  "msgtype": "text",
  "text": {"content": "@运营助手 签到"},
  "quote": {"msgtype": "text", "text": {"content": "（被引用的消息）"}}
}"#;

const BOT_MIXED: &str = r#"{
  "msgid": "MSGID-TEST-0002", "aibotid": "AIBOT-TEST", "chatid": "CHATID-TEST",
  "chattype": "group", "from": {"userid": "lisi"},
  "msgtype": "mixed",
  "mixed": {"msg_item": [
    {"msgtype": "text", "text": {"content": "@运营助手\u2005兑换"}},
    {"msgtype": "image", "image": {"url": "https://example.invalid/img1"}},
    {"msgtype": "text", "text": {"content": "杯子"}}
  ]}
}"#;

const BOT_STREAM: &str = r#"{
  "msgid": "MSGID-TEST-0003", "aibotid": "AIBOT-TEST", "chatid": "CHATID-TEST",
  "chattype": "group", "from": {"userid": "zhangsan"},
  "msgtype": "stream", "stream": {"id": "STREAM-1"}
}"#;

const BOT_ENTER_CHAT: &str = r#"{
  "msgid": "MSGID-TEST-0004", "create_time": 1700000500, "aibotid": "AIBOT-TEST",
  "from": {"corpid": "wpCORP", "userid": "wangwu"}, "chattype": "single",
  "msgtype": "event", "event": {"eventtype": "enter_chat"}
}"#;

const BOT_CARD_EVENT: &str = r#"{
  "msgid": "MSGID-TEST-0005", "create_time": 1700000600, "aibotid": "AIBOT-TEST",
  "from": {"userid": "wangwu"}, "chatid": "CHATID-TEST", "chattype": "group",
  "response_url": "https://example.invalid/r",
  "msgtype": "event",
  "event": {"eventtype": "template_card_event",
            "template_card_event": {"card_type": "button_interaction",
                                    "event_key": "confirm", "task_id": "TASK-1"}}
}"#;

const BOT_FEEDBACK: &str = r#"{
  "msgid": "MSGID-TEST-0006", "create_time": 1700000700, "aibotid": "AIBOT-TEST",
  "from": {"userid": "wangwu"}, "chattype": "single", "msgtype": "event",
  "event": {"eventtype": "feedback_event",
            "feedback_event": {"id": "FB-1", "type": 2, "content": "不准确",
                               "inaccurate_reason_list": [2, 4]}}
}"#;

fn app(plaintext: &str) -> Event {
    match parse_app_xml(plaintext) {
        Ok(event) => event,
        Err(error) => panic!("expected a parsed event, got {error}"),
    }
}

fn bot(plaintext: &str) -> Event {
    match parse_bot_json(plaintext) {
        Ok(event) => event,
        Err(error) => panic!("expected a parsed event, got {error}"),
    }
}

fn header(from: &str, create_time: i64, agent_id: Option<&str>) -> AppHeader {
    AppHeader {
        to_user_name: "ww0000000000000000".into(),
        from_user_name: from.into(),
        create_time,
        agent_id: agent_id.map(Into::into),
    }
}

/// A `change_external_contact` document with the given change type and extra elements.
fn contact_doc(change_type: &str, extra: &str) -> String {
    format!(
        "<xml><ToUserName>ww0000000000000000</ToUserName><FromUserName>sys</FromUserName>\
         <CreateTime>1700000200</CreateTime><MsgType>event</MsgType>\
         <Event>change_external_contact</Event><ChangeType>{change_type}</ChangeType>{extra}</xml>"
    )
}

/// A `change_external_chat` document for `ChatId` wrTEST with the given extra elements.
fn chat_doc(extra: &str) -> String {
    format!(
        "<xml><ToUserName>ww0000000000000000</ToUserName><FromUserName>sys</FromUserName>\
         <CreateTime>1700000100</CreateTime><MsgType>event</MsgType>\
         <Event>change_external_chat</Event><ChatId>wrTEST</ChatId>{extra}</xml>"
    )
}

// ---------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------

#[test]
fn xml_envelope_reads_encrypt_receiver_and_agent() {
    let envelope = parse_xml_envelope(ENVELOPE).unwrap();
    assert_eq!(
        envelope,
        XmlEnvelope {
            to_user_name: Some("ww0000000000000000".into()),
            encrypt: "c2VjcmV0+/=".into(),
            agent_id: Some("1000002".into()),
        }
    );
}

#[test]
fn xml_envelope_agent_id_may_be_empty_or_absent_and_values_plain() {
    let empty = "<xml><AgentID><![CDATA[]]></AgentID><Encrypt>abc</Encrypt></xml>";
    let envelope = parse_xml_envelope(empty).unwrap();
    assert_eq!(envelope.agent_id, None);
    assert_eq!(envelope.to_user_name, None);
    assert_eq!(envelope.encrypt, "abc");

    let self_closing = "<xml><Encrypt>abc</Encrypt><AgentID/></xml>";
    assert_eq!(parse_xml_envelope(self_closing).unwrap().agent_id, None);
}

#[test]
fn xml_envelope_without_encrypt_is_refused() {
    assert_eq!(
        parse_xml_envelope("<xml><ToUserName>ww</ToUserName></xml>"),
        Err(ParseError::MissingField("Encrypt"))
    );
    assert!(matches!(
        parse_xml_envelope("<xml><Encrypt><![CDATA[]]></Encrypt></xml>"),
        Err(ParseError::InvalidField {
            field: "Encrypt",
            ..
        })
    ));
}

#[test]
fn json_envelope_reads_encrypt_case_insensitively_and_ignores_other_keys() {
    for body in [
        r#"{"encrypt": "abc"}"#,
        r#"{"Encrypt": "abc", "tousername": "ww", "agentid": 1000002}"#,
        r#"{"agentid": "", "ENCRYPT": "abc"}"#,
    ] {
        assert_eq!(parse_json_envelope(body).as_deref(), Ok("abc"), "{body}");
    }
}

#[test]
fn json_envelope_rejects_missing_empty_ambiguous_or_non_string_ciphertext() {
    assert_eq!(
        parse_json_envelope(r#"{"tousername": "ww"}"#),
        Err(ParseError::MissingField("encrypt"))
    );
    for body in [
        r#"{"encrypt": ""}"#,
        r#"{"encrypt": 5}"#,
        r#"{"encrypt": "a", "Encrypt": "b"}"#,
    ] {
        assert!(
            matches!(
                parse_json_envelope(body),
                Err(ParseError::InvalidField {
                    field: "encrypt",
                    ..
                })
            ),
            "{body}"
        );
    }
    for body in ["", "[\"encrypt\"]", "{\"encrypt\": \"a\"", "null"] {
        assert!(
            matches!(parse_json_envelope(body), Err(ParseError::Malformed { .. })),
            "{body}"
        );
    }
}

// ---------------------------------------------------------------------------
// change_external_chat
// ---------------------------------------------------------------------------

#[test]
fn chat_add_member_with_item_list_reads_every_field() {
    let expected = ExternalChatChange {
        header: header("sys", 1_700_000_100, None),
        chat_id: "wrTESTCHAT000000000000000000000".into(),
        change_type: ChatChangeType::Update,
        update_detail: Some(ChatUpdateDetail::AddMember),
        join_scene: Some(3),
        quit_scene: Some(0),
        mem_change_cnt: Some(2),
        mem_change_list: vec!["wmTESTEXTERNAL0000000000000000".into(), "zhangsan".into()],
        last_mem_ver: Some("0a1b2c3d4e5f60718293a4b5c6d7e8f9".into()),
        cur_mem_ver: Some("f9e8d7c6b5a4938271605f4e3d2c1b0a".into()),
    };
    assert_eq!(app(CHAT_ADD_MEMBER), Event::ExternalChatChange(expected));
}

#[test]
fn chat_member_list_accepts_old_comma_separated_text() {
    let cdata = chat_doc(
        "<ChangeType>update</ChangeType><UpdateDetail>del_member</UpdateDetail>\
         <QuitScene>1</QuitScene><MemChangeList><![CDATA[wmA, wmB,,zhangsan]]></MemChangeList>",
    );
    let Event::ExternalChatChange(change) = app(&cdata) else {
        panic!("wrong kind")
    };
    assert_eq!(change.mem_change_list, ["wmA", "wmB", "zhangsan"]);
    assert_eq!(change.update_detail, Some(ChatUpdateDetail::DelMember));
    assert_eq!(change.quit_scene, Some(1));

    let single = chat_doc("<ChangeType>update</ChangeType><MemChangeList>wmA</MemChangeList>");
    let Event::ExternalChatChange(change) = app(&single) else {
        panic!("wrong kind")
    };
    assert_eq!(change.mem_change_list, ["wmA"]);
}

#[test]
fn chat_create_and_dismiss_carry_only_chat_and_type() {
    for (wire, change_type) in [
        ("create", ChatChangeType::Create),
        ("dismiss", ChatChangeType::Dismiss),
    ] {
        let doc = chat_doc(&format!("<ChangeType><![CDATA[{wire}]]></ChangeType>"));
        let expected = ExternalChatChange {
            header: header("sys", 1_700_000_100, None),
            chat_id: "wrTEST".into(),
            change_type,
            update_detail: None,
            join_scene: None,
            quit_scene: None,
            mem_change_cnt: None,
            mem_change_list: vec![],
            last_mem_ver: None,
            cur_mem_ver: None,
        };
        assert_eq!(app(&doc), Event::ExternalChatChange(expected));
    }
}

#[test]
fn chat_update_details_known_and_unknown_are_kept() {
    for (wire, detail) in [
        ("change_owner", ChatUpdateDetail::ChangeOwner),
        ("change_name", ChatUpdateDetail::ChangeName),
        ("change_notice", ChatUpdateDetail::ChangeNotice),
        ("add_member", ChatUpdateDetail::AddMember),
        (
            "change_avatar",
            ChatUpdateDetail::Other("change_avatar".into()),
        ),
    ] {
        let doc = chat_doc(&format!(
            "<ChangeType>update</ChangeType><UpdateDetail>{wire}</UpdateDetail>"
        ));
        let Event::ExternalChatChange(change) = app(&doc) else {
            panic!("wrong kind")
        };
        assert_eq!(change.update_detail, Some(detail.clone()));
        assert_eq!(detail.as_str(), wire);
    }
    let doc = chat_doc("<ChangeType>archive</ChangeType>");
    let Event::ExternalChatChange(change) = app(&doc) else {
        panic!("wrong kind")
    };
    assert_eq!(change.change_type, ChatChangeType::Other("archive".into()));
}

#[test]
fn chat_change_without_chat_id_or_with_bad_numbers_is_refused() {
    let no_chat = CHAT_ADD_MEMBER.replace(
        "<ChatId><![CDATA[wrTESTCHAT000000000000000000000]]></ChatId>",
        "",
    );
    assert_eq!(
        parse_app_xml(&no_chat),
        Err(ParseError::MissingField("ChatId"))
    );
    let bad_scene = CHAT_ADD_MEMBER.replace("<JoinScene>3</JoinScene>", "<JoinScene>x</JoinScene>");
    assert!(matches!(
        parse_app_xml(&bad_scene),
        Err(ParseError::InvalidField {
            field: "JoinScene",
            ..
        })
    ));
    let no_time = CHAT_ADD_MEMBER.replace("<CreateTime>1700000100</CreateTime>", "");
    assert_eq!(
        parse_app_xml(&no_time),
        Err(ParseError::MissingField("CreateTime"))
    );
}

// ---------------------------------------------------------------------------
// change_external_contact
// ---------------------------------------------------------------------------

#[test]
fn contact_add_reads_state_and_welcome_code() {
    let expected = ExternalContactChange {
        header: header("sys", 1_700_000_200, None),
        change_type: ContactChangeType::AddExternalContact,
        user_id: "lisi".into(),
        external_user_id: "wmTESTEXTERNAL0000000000000000".into(),
        state: Some("poster_2024_spring".into()),
        welcome_code: Some("WELCOMECODE_TEST".into()),
        source: None,
        fail_reason: None,
    };
    assert_eq!(app(CONTACT_ADD), Event::ExternalContactChange(expected));
}

#[test]
fn contact_every_change_type_reads_its_fields() {
    let ids = "<UserID>lisi</UserID><ExternalUserID>wmX</ExternalUserID>";
    let cases = [
        (
            "add_external_contact",
            ContactChangeType::AddExternalContact,
            "<State>s1</State><WelcomeCode>WC1</WelcomeCode>",
        ),
        (
            "add_half_external_contact",
            ContactChangeType::AddHalfExternalContact,
            "<State>s2</State><WelcomeCode><![CDATA[WC2]]></WelcomeCode>",
        ),
        (
            "edit_external_contact",
            ContactChangeType::EditExternalContact,
            "",
        ),
        (
            "del_external_contact",
            ContactChangeType::DelExternalContact,
            "<Source>DELETE_BY_TRANSFER</Source>",
        ),
        ("del_follow_user", ContactChangeType::DelFollowUser, ""),
        (
            "transfer_fail",
            ContactChangeType::TransferFail,
            "<FailReason>customer_refused</FailReason>",
        ),
        (
            "msg_audit_approved",
            ContactChangeType::Other("msg_audit_approved".into()),
            "<WelcomeCode>WC3</WelcomeCode>",
        ),
    ];
    for (wire, change_type, extra) in cases {
        let Event::ExternalContactChange(change) =
            app(&contact_doc(wire, &format!("{ids}{extra}")))
        else {
            panic!("{wire}: wrong kind")
        };
        assert_eq!(change.change_type, change_type, "{wire}");
        assert_eq!(change.change_type.as_str(), wire);
        assert_eq!(change.user_id, "lisi");
        assert_eq!(change.external_user_id, "wmX");
        let expect = |tag: &str| {
            extra
                .contains(&format!("<{tag}>"))
                .then(|| extra.split(&format!("<{tag}>")).nth(1))
                .flatten()
                .and_then(|rest| rest.split('<').next())
                .map(|value| value.to_string())
        };
        assert_eq!(change.state, expect("State"), "{wire}");
        assert_eq!(change.source, expect("Source"), "{wire}");
        assert_eq!(change.fail_reason, expect("FailReason"), "{wire}");
        let welcome = match wire {
            "add_external_contact" => Some("WC1"),
            "add_half_external_contact" => Some("WC2"),
            "msg_audit_approved" => Some("WC3"),
            _ => None,
        };
        assert_eq!(change.welcome_code.as_deref(), welcome, "{wire}");
    }
}

#[test]
fn contact_known_change_without_ids_is_refused_but_unknown_one_becomes_unknown() {
    assert_eq!(
        parse_app_xml(&contact_doc("del_follow_user", "<UserID>lisi</UserID>")),
        Err(ParseError::MissingField("ExternalUserID"))
    );
    let doc = contact_doc("something_new", "<UserID>lisi</UserID>");
    assert_eq!(
        app(&doc),
        Event::Unknown {
            msg_type: Some("event".into()),
            event: Some("change_external_contact".into()),
            raw: doc.clone(),
        }
    );
}

// ---------------------------------------------------------------------------
// Messages to the app and enter_agent
// ---------------------------------------------------------------------------

#[test]
fn app_text_reads_64_bit_msg_id_exactly() {
    let expected = AppText {
        header: header("zhangsan", 1_700_000_300, Some("1000002")),
        content: "签到".into(),
        msg_id: 7_300_000_000_000_000_001,
    };
    assert_eq!(app(APP_TEXT), Event::AppText(expected));

    let max = APP_TEXT.replace("7300000000000000001", "18446744073709551615");
    let Event::AppText(text) = app(&max) else {
        panic!("wrong kind")
    };
    assert_eq!(text.msg_id, u64::MAX);
}

#[test]
fn app_text_refuses_msg_id_that_is_not_an_unsigned_integer() {
    for bad in [
        "7.3e18",
        "-1",
        "18446744073709551616",
        "73000000000000000x1",
        "",
    ] {
        let doc = APP_TEXT.replace("7300000000000000001", bad);
        let result = parse_app_xml(&doc);
        if bad.is_empty() {
            assert_eq!(result, Err(ParseError::MissingField("MsgId")));
        } else {
            assert!(
                matches!(result, Err(ParseError::InvalidField { field: "MsgId", .. })),
                "{bad}: {result:?}"
            );
        }
    }
}

#[test]
fn app_text_content_is_never_trimmed() {
    let content = "  第一行\n第二行 😀\t\r\n  ";
    for doc in [
        APP_TEXT.replace("签到", content),
        APP_TEXT.replace("<![CDATA[签到]]>", content),
    ] {
        let Event::AppText(text) = app(&doc) else {
            panic!("wrong kind")
        };
        assert_eq!(text.content, content);
    }
}

#[test]
fn app_text_unescapes_predefined_entities_and_character_references_only() {
    let doc = APP_TEXT.replace(
        "<![CDATA[签到]]>",
        "a&lt;b&gt;c&amp;d&apos;e&quot;f&#20013;&#x6587;",
    );
    let Event::AppText(text) = app(&doc) else {
        panic!("wrong kind")
    };
    assert_eq!(text.content, "a<b>c&d'e\"f中文");

    // Inside CDATA nothing is markup: entity-looking text is kept literally.
    let literal = APP_TEXT.replace("签到", "&xxe; <!DOCTYPE x> &lt;");
    let Event::AppText(text) = app(&literal) else {
        panic!("wrong kind")
    };
    assert_eq!(text.content, "&xxe; <!DOCTYPE x> &lt;");
}

#[test]
fn enter_agent_with_empty_event_key() {
    let expected = EnterAgent {
        header: header("zhangsan", 1_700_000_400, Some("1000002")),
        event_key: None,
    };
    assert_eq!(app(ENTER_AGENT), Event::EnterAgent(expected));
}

// ---------------------------------------------------------------------------
// XML shapes: CDATA vs plain, order, unknown elements, layout
// ---------------------------------------------------------------------------

/// Strips every `<![CDATA[...]]>` wrapper (the samples contain no markup characters).
fn without_cdata(doc: &str) -> String {
    doc.replace("<![CDATA[", "").replace("]]>", "")
}

/// Reverses the order of the root's direct children (one per line in the samples).
fn reversed_children(doc: &str) -> String {
    let lines: Vec<&str> = doc.lines().collect();
    let (first, rest) = lines.split_first().unwrap();
    let (last, children) = rest.split_last().unwrap();
    // Keep multi-line MemChangeList together by reversing top-level blocks.
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    for line in children {
        if line.starts_with("    ") || line.trim_start().starts_with("</MemChangeList") {
            blocks.last_mut().unwrap().push(line);
        } else {
            blocks.push(vec![line]);
        }
    }
    blocks.reverse();
    let mut out = vec![*first];
    out.extend(blocks.into_iter().flatten());
    out.push(last);
    out.join("\n")
}

#[test]
fn cdata_and_plain_text_give_the_same_event() {
    for doc in [CHAT_ADD_MEMBER, CONTACT_ADD, APP_TEXT, ENTER_AGENT] {
        let plain = without_cdata(doc);
        assert_ne!(plain, doc);
        assert_eq!(strip_raw(app(&plain)), strip_raw(app(doc)), "{plain}");
    }
}

#[test]
fn element_order_does_not_matter() {
    for doc in [CHAT_ADD_MEMBER, CONTACT_ADD, APP_TEXT, ENTER_AGENT] {
        let shuffled = reversed_children(doc);
        assert_ne!(shuffled, doc);
        assert_eq!(app(&shuffled), app(doc), "{shuffled}");
    }
}

#[test]
fn compact_documents_without_layout_whitespace_parse() {
    let compact: String = APP_TEXT.lines().map(str::trim).collect();
    assert_eq!(app(&compact), app(APP_TEXT));
}

#[test]
fn unknown_elements_attributes_comments_and_declarations_are_ignored() {
    let noisy = APP_TEXT
        .replace(
            "<xml>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- hi --><xml lang=\"zh\">\n  <Extra a=\"1\"><Deep><Item>x</Item><MsgId>1</MsgId></Deep></Extra><Empty/>",
        )
        .replace("<Content>", "<Content kind=\"plain\">")
        .replace("</xml>", "<?pi data?><NewField><![CDATA[v]]></NewField></xml>\n");
    assert_eq!(app(&noisy), app(APP_TEXT));
}

#[test]
fn whitespace_around_cdata_is_layout_but_mixed_text_is_kept() {
    let padded = APP_TEXT.replace("<![CDATA[签到]]>", "\n    <![CDATA[签到]]>\n  ");
    assert_eq!(app(&padded), app(APP_TEXT));

    let mixed = APP_TEXT.replace("<![CDATA[签到]]>", "a <![CDATA[b]]> c");
    let Event::AppText(text) = app(&mixed) else {
        panic!("wrong kind")
    };
    assert_eq!(text.content, "a b c");
}

#[test]
fn element_names_match_case_insensitively() {
    let doc = APP_TEXT
        .replace("AgentID", "AgentId")
        .replace("MsgId", "MsgID");
    assert_eq!(app(&doc), app(APP_TEXT));
}

#[test]
fn duplicate_fields_are_refused() {
    let doc = APP_TEXT.replace(
        "<MsgId>7300000000000000001</MsgId>",
        "<MsgId>1</MsgId><MsgId>2</MsgId>",
    );
    assert!(matches!(
        parse_app_xml(&doc),
        Err(ParseError::InvalidField { field: "MsgId", .. })
    ));
}

#[test]
fn unknown_events_and_message_types_become_unknown_with_raw_text() {
    let subscribe = ENTER_AGENT.replace("enter_agent", "subscribe");
    assert_eq!(
        app(&subscribe),
        Event::Unknown {
            msg_type: Some("event".into()),
            event: Some("subscribe".into()),
            raw: subscribe.clone(),
        }
    );
    let image = APP_TEXT.replace("[text]", "[image]");
    assert_eq!(
        app(&image),
        Event::Unknown {
            msg_type: Some("image".into()),
            event: None,
            raw: image.clone(),
        }
    );
    let bare = "<xml><Foo>bar</Foo></xml>";
    assert_eq!(
        app(bare),
        Event::Unknown {
            msg_type: None,
            event: None,
            raw: bare.into(),
        }
    );
}

#[test]
fn malformed_xml_is_refused() {
    for doc in [
        "",
        "   ",
        "not xml",
        "<xml><Encrypt>abc</Encrypt>",
        "<xml><Encrypt>abc</Wrong></xml>",
        "<xml></xml><xml></xml>",
        "<xml></xml>trailing",
        "<xml><Encrypt>a&b</Encrypt></xml>",
        "<xml><Encrypt>&#xZZ;</Encrypt></xml>",
        "<xml><Encrypt><![CDATA[abc</Encrypt></xml>",
        "</xml>",
    ] {
        let result = parse_xml_envelope(doc);
        assert!(
            matches!(result, Err(ParseError::Malformed { .. })),
            "{doc:?}: {result:?}"
        );
    }
}

#[test]
fn deeply_nested_xml_is_handled_without_recursion() {
    let depth = 100_000;
    let closed = format!(
        "<xml>{}{}<Encrypt>abc</Encrypt></xml>",
        "<a>".repeat(depth),
        "</a>".repeat(depth)
    );
    assert_eq!(parse_xml_envelope(&closed).unwrap().encrypt, "abc");
    let unclosed = format!("<xml>{}", "<a>".repeat(depth));
    assert!(matches!(
        parse_app_xml(&unclosed),
        Err(ParseError::Malformed { .. })
    ));
}

// ---------------------------------------------------------------------------
// XXE and entity hardening
// ---------------------------------------------------------------------------

const BILLION_LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<xml><Encrypt>&lol9;</Encrypt><MsgType>text</MsgType><Content>&lol9;</Content></xml>"#;

const EXTERNAL_ENTITY: &str = r#"<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><Encrypt>&xxe;</Encrypt><MsgType>text</MsgType><Content>&xxe;</Content></xml>"#;

#[test]
fn doctype_billion_laughs_and_external_entities_are_refused() {
    for doc in [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        "<!DOCTYPE xml><xml><Encrypt>abc</Encrypt></xml>",
        "<!doctype xml><xml><Encrypt>abc</Encrypt></xml>",
        "<!DOCTYPE><xml><Encrypt>abc</Encrypt></xml>",
        "<xml><Encrypt>abc</Encrypt></xml><!DOCTYPE xml>",
        "<!ENTITY xxe SYSTEM \"file:///etc/passwd\"><xml><Encrypt>abc</Encrypt></xml>",
        "<xml><!ENTITY a \"b\"><Encrypt>abc</Encrypt></xml>",
        "<xml><!ELEMENT xml ANY><Encrypt>abc</Encrypt></xml>",
        "<!DOCTYPE xml [<!ENTITY a \"b\">",
    ] {
        assert_eq!(
            parse_xml_envelope(doc),
            Err(ParseError::DoctypeNotAllowed),
            "{doc}"
        );
        assert_eq!(
            parse_app_xml(doc),
            Err(ParseError::DoctypeNotAllowed),
            "{doc}"
        );
    }
}

#[test]
fn undeclared_entity_references_are_refused_not_expanded() {
    for doc in [
        "<xml><Encrypt>&xxe;</Encrypt></xml>",
        "<xml><Encrypt>abc</Encrypt><Unknown>&nbsp;</Unknown></xml>",
    ] {
        assert_eq!(
            parse_xml_envelope(doc),
            Err(ParseError::EntityNotAllowed),
            "{doc}"
        );
    }
}

#[test]
fn error_messages_never_echo_document_content() {
    let secret = "SECRET-VALUE";
    let docs = [
        APP_TEXT.replace("7300000000000000001", secret),
        APP_TEXT.replace("</Content>", &format!("</{secret}>")),
        APP_TEXT.replace("签到", &format!("]]>&{secret};<![CDATA[")),
        format!("<xml><{secret}>"),
        format!("<!DOCTYPE {secret}><xml/>"),
    ];
    for doc in docs {
        let error = parse_app_xml(&doc).unwrap_err();
        assert!(!error.to_string().contains(secret), "{error}");
    }
    let json = format!(
        r#"{{"msgtype": "text", "msgid": "m", "text": {{"content": 1}}, "x": "{secret}"}}"#
    );
    let error = parse_bot_json(&json).unwrap_err();
    assert!(!error.to_string().contains(secret), "{error}");
}

// ---------------------------------------------------------------------------
// Smart bot
// ---------------------------------------------------------------------------

#[test]
fn bot_text_strips_mention_and_keeps_quote() {
    let expected = BotMessage {
        msg_id: "MSGID-TEST-0001".into(),
        aibot_id: "AIBOT-TEST".into(),
        chat_id: Some("CHATID-TEST".into()),
        chat_type: BotChatType::Group,
        from_user_id: "zhangsan".into(),
        from_corp_id: None,
        response_url: Some("https://example.invalid/aibot/response?response_code=TESTCODE".into()),
        msg_type: BotMsgType::Text,
        text: "签到".into(),
        raw_text: "@运营助手 签到".into(),
        image_urls: vec![],
        file_url: None,
        quote: Some(BotQuote {
            msg_type: "text".into(),
            text: Some("（被引用的消息）".into()),
            image_urls: vec![],
        }),
        create_time: None,
    };
    assert_eq!(bot(BOT_TEXT), Event::BotMessage(expected));
}

#[test]
fn bot_mixed_joins_text_parts_and_keeps_image_urls() {
    let Event::BotMessage(message) = bot(BOT_MIXED) else {
        panic!("wrong kind")
    };
    assert_eq!(message.msg_type, BotMsgType::Mixed);
    assert_eq!(message.raw_text, "@运营助手\u{2005}兑换\n杯子");
    assert_eq!(message.text, "兑换\n杯子");
    assert_eq!(message.image_urls, ["https://example.invalid/img1"]);
    assert_eq!(message.from_user_id, "lisi");
    assert_eq!(message.quote, None);
}

#[test]
fn bot_single_chat_image_voice_and_file() {
    let base = r#""msgid": "M", "aibotid": "B", "chattype": "single", "from": {"userid": "u"}"#;
    let image = format!(
        r#"{{{base}, "msgtype": "image", "image": {{"url": "https://example.invalid/i"}}}}"#
    );
    let Event::BotMessage(message) = bot(&image) else {
        panic!("wrong kind")
    };
    assert_eq!(message.msg_type, BotMsgType::Image);
    assert_eq!(message.image_urls, ["https://example.invalid/i"]);
    assert_eq!(message.chat_id, None);
    assert_eq!(message.chat_type, BotChatType::Single);
    assert_eq!(message.text, "");

    let voice = format!(r#"{{{base}, "msgtype": "voice", "voice": {{"content": "积分"}}}}"#);
    let Event::BotMessage(message) = bot(&voice) else {
        panic!("wrong kind")
    };
    assert_eq!(
        (message.msg_type, message.text.as_str()),
        (BotMsgType::Voice, "积分")
    );

    let file =
        format!(r#"{{{base}, "msgtype": "file", "file": {{"url": "https://example.invalid/f"}}}}"#);
    let Event::BotMessage(message) = bot(&file) else {
        panic!("wrong kind")
    };
    assert_eq!(
        message.file_url.as_deref(),
        Some("https://example.invalid/f")
    );
}

#[test]
fn bot_quote_of_mixed_and_image_messages() {
    let doc = BOT_TEXT.replace(
        r#""quote": {"msgtype": "text", "text": {"content": "（被引用的消息）"}}"#,
        r#""quote": {"msgtype": "mixed", "mixed": {"msg_item": [
            {"msgtype": "text", "text": {"content": "原文"}},
            {"msgtype": "image", "image": {"url": "https://example.invalid/q"}}]}}"#,
    );
    let Event::BotMessage(message) = bot(&doc) else {
        panic!("wrong kind")
    };
    assert_eq!(
        message.quote,
        Some(BotQuote {
            msg_type: "mixed".into(),
            text: Some("原文".into()),
            image_urls: vec!["https://example.invalid/q".into()],
        })
    );
}

#[test]
fn bot_message_requires_its_identifying_fields() {
    for (field, doc) in [
        (
            "msgid",
            BOT_TEXT.replace(r#""msgid": "MSGID-TEST-0001","#, ""),
        ),
        (
            "from",
            BOT_TEXT.replace(r#""from": {"userid": "zhangsan"},"#, ""),
        ),
        (
            "from.userid",
            BOT_TEXT.replace(r#""userid": "zhangsan""#, r#""x": 1"#),
        ),
        (
            "text.content",
            BOT_TEXT.replace(r#""text": {"content": "@运营助手 签到"},"#, ""),
        ),
        ("chattype", BOT_TEXT.replace(r#""chattype": "group","#, "")),
    ] {
        assert_eq!(parse_bot_json(&doc), Err(ParseError::MissingField(field)));
    }
    let numeric_text = BOT_TEXT.replace(r#""@运营助手 签到""#, "5");
    assert!(matches!(
        parse_bot_json(&numeric_text),
        Err(ParseError::InvalidField {
            field: "text.content",
            ..
        })
    ));
}

#[test]
fn bot_numeric_msgid_keeps_all_64_bits() {
    let doc = BOT_TEXT.replace(r#""MSGID-TEST-0001""#, "7300000000000000001");
    let Event::BotMessage(message) = bot(&doc) else {
        panic!("wrong kind")
    };
    assert_eq!(message.msg_id, "7300000000000000001");
}

#[test]
fn bot_stream_refresh() {
    assert_eq!(
        bot(BOT_STREAM),
        Event::BotStreamRefresh(BotStreamRefresh {
            msg_id: Some("MSGID-TEST-0003".into()),
            stream_id: "STREAM-1".into(),
            aibot_id: Some("AIBOT-TEST".into()),
            chat_id: Some("CHATID-TEST".into()),
            chat_type: Some(BotChatType::Group),
            from_user_id: Some("zhangsan".into()),
        })
    );
    let no_id = BOT_STREAM.replace(r#"{"id": "STREAM-1"}"#, "{}");
    assert_eq!(
        parse_bot_json(&no_id),
        Err(ParseError::MissingField("stream.id"))
    );
}

#[test]
fn bot_events_enter_chat_card_click_and_feedback() {
    assert_eq!(
        bot(BOT_ENTER_CHAT),
        Event::BotEvent(BotEvent {
            msg_id: Some("MSGID-TEST-0004".into()),
            event_type: BotEventType::EnterChat,
            aibot_id: Some("AIBOT-TEST".into()),
            from_user_id: Some("wangwu".into()),
            chat_id: None,
            chat_type: Some(BotChatType::Single),
            create_time: Some(1_700_000_500),
            response_url: None,
            event_key: None,
            task_id: None,
            detail: serde_json::Value::Null,
        })
    );

    let Event::BotEvent(card) = bot(BOT_CARD_EVENT) else {
        panic!("wrong kind")
    };
    assert_eq!(card.event_type, BotEventType::TemplateCardEvent);
    assert_eq!(card.event_key.as_deref(), Some("confirm"));
    assert_eq!(card.task_id.as_deref(), Some("TASK-1"));
    assert_eq!(card.chat_id.as_deref(), Some("CHATID-TEST"));
    assert_eq!(
        card.response_url.as_deref(),
        Some("https://example.invalid/r")
    );
    assert_eq!(card.detail["card_type"], "button_interaction");

    let Event::BotEvent(feedback) = bot(BOT_FEEDBACK) else {
        panic!("wrong kind")
    };
    assert_eq!(feedback.event_type, BotEventType::FeedbackEvent);
    assert_eq!(feedback.event_key, None);
    assert_eq!(feedback.detail["id"], "FB-1");
    assert_eq!(feedback.detail["inaccurate_reason_list"][1], 4);
    assert_eq!(feedback.create_time, Some(1_700_000_700));
}

#[test]
fn bot_unknown_message_types_and_events_become_unknown() {
    let doc = BOT_STREAM.replace(r#""stream""#, r#""video""#);
    assert_eq!(
        bot(&doc),
        Event::Unknown {
            msg_type: Some("video".into()),
            event: None,
            raw: doc.clone(),
        }
    );
    let doc = BOT_ENTER_CHAT.replace("enter_chat", "disconnected_event");
    assert_eq!(
        bot(&doc),
        Event::Unknown {
            msg_type: Some("event".into()),
            event: Some("disconnected_event".into()),
            raw: doc.clone(),
        }
    );
    assert_eq!(
        bot("{}"),
        Event::Unknown {
            msg_type: None,
            event: None,
            raw: "{}".into(),
        }
    );
}

#[test]
fn bot_malformed_json_is_refused_without_panicking() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for doc in ["", "[]", "\"x\"", "{", "{\"msgtype\": 1}", deep.as_str()] {
        assert!(parse_bot_json(doc).is_err(), "{doc:.20}");
    }
}

#[test]
fn mention_stripping() {
    for (input, expected) in [
        ("@运营助手 签到", "签到"),
        ("@运营助手\u{2005}签到", "签到"),
        ("@运营助手\u{3000}签到", "签到"),
        ("@运营助手\u{00A0}\u{00A0}签到 今天", "签到 今天"),
        ("@运营助手\u{200B}签到", "签到"),
        ("＠运营助手 签到", "签到"),
        ("  @运营助手 签到", "签到"),
        ("@运营助手 @李四 签到", "@李四 签到"),
        ("签到 @运营助手", "签到 @运营助手"),
        ("签到", "签到"),
        ("  签到", "  签到"),
        ("@运营助手", ""),
        ("@运营助手 ", ""),
        ("@", ""),
        ("", ""),
        ("@bot 第一行\n第二行", "第一行\n第二行"),
    ] {
        assert_eq!(strip_leading_mention(input), expected, "{input:?}");
    }
}

// ---------------------------------------------------------------------------
// Event helpers, dedupe keys and serde
// ---------------------------------------------------------------------------

/// One of every variant, with the plaintext it came from.
fn every_variant() -> Vec<(String, Event)> {
    let mut samples: Vec<(String, Event)> = [CHAT_ADD_MEMBER, CONTACT_ADD, APP_TEXT, ENTER_AGENT]
        .into_iter()
        .map(|doc| (doc.to_string(), app(doc)))
        .collect();
    samples.extend(
        [
            BOT_TEXT,
            BOT_MIXED,
            BOT_STREAM,
            BOT_ENTER_CHAT,
            BOT_CARD_EVENT,
            BOT_FEEDBACK,
        ]
        .into_iter()
        .map(|doc| (doc.to_string(), bot(doc))),
    );
    let unknown = ENTER_AGENT.replace("enter_agent", "subscribe");
    samples.push((unknown.clone(), app(&unknown)));
    samples
}

/// `raw` differs between otherwise equal Unknown events from different spellings.
fn strip_raw(event: Event) -> Event {
    match event {
        Event::Unknown {
            msg_type, event, ..
        } => Event::Unknown {
            msg_type,
            event,
            raw: String::new(),
        },
        other => other,
    }
}

#[test]
fn every_variant_round_trips_through_serde_json_with_kind_as_tag() {
    let samples = every_variant();
    let kinds: std::collections::BTreeSet<&str> =
        samples.iter().map(|(_, event)| event.kind()).collect();
    assert_eq!(kinds.len(), 8, "{kinds:?}");
    for (_, event) in samples {
        let json = serde_json::to_string(&event).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["kind"], event.kind());
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event, "{json}");
    }
}

#[test]
fn serialized_msg_id_is_exact_64_bit_integer() {
    let json = serde_json::to_string(&app(APP_TEXT)).unwrap();
    assert!(json.contains("\"msg_id\":7300000000000000001"), "{json}");
    let other = serde_json::to_string(&app(&chat_doc("<ChangeType>archive</ChangeType>"))).unwrap();
    assert!(other.contains("\"change_type\":\"archive\""), "{other}");
}

#[test]
fn chat_id_is_reported_for_group_events() {
    let chat_ids: Vec<(&str, Option<String>)> = every_variant()
        .iter()
        .map(|(_, event)| (event.kind(), event.chat_id().map(str::to_owned)))
        .collect();
    for (kind, chat_id) in chat_ids {
        let expected = match kind {
            "change_external_chat" => Some("wrTESTCHAT000000000000000000000"),
            "bot_message" | "bot_stream_refresh" => Some("CHATID-TEST"),
            _ => None,
        };
        // Of the bot events only the card click happened in a group.
        if kind == "bot_event" {
            continue;
        }
        assert_eq!(chat_id.as_deref(), expected, "{kind}");
    }
    assert_eq!(bot(BOT_CARD_EVENT).chat_id(), Some("CHATID-TEST"));
    assert_eq!(bot(BOT_ENTER_CHAT).chat_id(), None);
}

#[test]
fn dedupe_keys_use_message_ids_or_the_plaintext_hash() {
    assert_eq!(
        app(APP_TEXT).dedupe_key(APP_TEXT.as_bytes()),
        "msg:7300000000000000001"
    );
    assert_eq!(
        bot(BOT_TEXT).dedupe_key(BOT_TEXT.as_bytes()),
        "bot:MSGID-TEST-0001"
    );
    assert_eq!(
        bot(BOT_STREAM).dedupe_key(BOT_STREAM.as_bytes()),
        "bot:MSGID-TEST-0003"
    );
    assert_eq!(
        bot(BOT_FEEDBACK).dedupe_key(BOT_FEEDBACK.as_bytes()),
        "bot:MSGID-TEST-0006"
    );
    // Known SHA-256 vector: the key is the hash of exactly the bytes given.
    assert_eq!(
        app(CONTACT_ADD).dedupe_key(b"abc"),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let no_msgid = BOT_ENTER_CHAT.replace(r#""msgid": "MSGID-TEST-0004","#, "");
    assert!(bot(&no_msgid)
        .dedupe_key(no_msgid.as_bytes())
        .starts_with("sha256:"));
}

#[test]
fn distinct_sys_events_in_the_same_second_get_distinct_keys() {
    // Two customers scan the same QR code within one second: same FromUserName
    // (`sys`) and CreateTime, different events.
    let first = contact_doc(
        "add_external_contact",
        "<UserID>lisi</UserID><ExternalUserID>wmA</ExternalUserID>",
    );
    let second = contact_doc(
        "add_external_contact",
        "<UserID>lisi</UserID><ExternalUserID>wmB</ExternalUserID>",
    );
    let first_key = app(&first).dedupe_key(first.as_bytes());
    let second_key = app(&second).dedupe_key(second.as_bytes());
    assert_ne!(first_key, second_key);
    // A re-delivery of the same plaintext gets the same key.
    assert_eq!(app(&first).dedupe_key(first.as_bytes()), first_key);
    for (plaintext, event) in every_variant() {
        assert_eq!(
            event.dedupe_key(plaintext.as_bytes()),
            event.dedupe_key(plaintext.as_bytes())
        );
    }
}

// ---------------------------------------------------------------------------
// Properties: no panics, whatever arrives
// ---------------------------------------------------------------------------

fn valid_documents() -> Vec<&'static str> {
    vec![
        ENVELOPE,
        CHAT_ADD_MEMBER,
        CONTACT_ADD,
        APP_TEXT,
        ENTER_AGENT,
        BILLION_LAUGHS,
        BOT_TEXT,
        BOT_MIXED,
        BOT_STREAM,
        BOT_ENTER_CHAT,
        BOT_CARD_EVENT,
        BOT_FEEDBACK,
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
    Truncate(usize),
    Duplicate(usize, usize),
}

/// Characters that matter to the parsers, plus anything at all.
fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(vec![
            '<', '>', '/', '!', '?', '&', ';', '#', '[', ']', '"', '\'', '{', '}', ':', ',', '@',
            ' ', '\n', '\u{3000}', '\u{2005}', '0', '9', 'x', '-',
        ]),
        any::<char>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), interesting_char()).prop_map(|(at, c)| Mutation::Insert(at, c)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), interesting_char()).prop_map(|(at, c)| Mutation::Replace(at, c)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Mutation::Duplicate(at, len)),
    ]
}

fn mutate(document: &str, mutations: &[Mutation]) -> String {
    let mut chars: Vec<char> = document.chars().collect();
    for mutation in mutations {
        let len = chars.len().max(1);
        match *mutation {
            Mutation::Insert(at, c) => chars.insert(at % (chars.len() + 1), c),
            Mutation::Delete(at) if !chars.is_empty() => {
                chars.remove(at % len);
            }
            Mutation::Replace(at, c) if !chars.is_empty() => chars[at % len] = c,
            Mutation::Truncate(at) => chars.truncate(at % (chars.len() + 1)),
            Mutation::Duplicate(at, span) if !chars.is_empty() => {
                let start = at % len;
                let end = (start + span).min(chars.len());
                let copy: Vec<char> = chars[start..end].to_vec();
                chars.splice(end..end, copy);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// Runs every parser; any event produced must survive the inbox round trip.
fn exercise_all_parsers(input: &str) {
    let _ = parse_xml_envelope(input);
    let _ = parse_json_envelope(input);
    let _ = strip_leading_mention(input);
    for event in [parse_app_xml(input), parse_bot_json(input)]
        .into_iter()
        .flatten()
    {
        let json = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
        let _ = event.dedupe_key(input.as_bytes());
        let _ = event.chat_id();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsers_never_panic_on_arbitrary_strings(input in any::<String>()) {
        exercise_all_parsers(&input);
    }

    #[test]
    fn parsers_never_panic_on_markup_soup(input in "[<>/!?&;#\\[\\]CDATxmlEncryptMsgId \"{}:,@0-9]{0,200}") {
        exercise_all_parsers(&input);
    }

    #[test]
    fn parsers_never_panic_on_mutated_valid_documents(
        index in 0usize..12,
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let document = valid_documents()[index];
        exercise_all_parsers(&mutate(document, &mutations));
    }

    #[test]
    fn stripped_mention_is_a_suffix_of_the_input(input in "[@＠ \u{2005}\u{3000}a-z签到]{0,30}") {
        let stripped = strip_leading_mention(&input);
        prop_assert!(input.ends_with(stripped));
    }

    #[test]
    fn any_msg_id_round_trips_exactly(msg_id in any::<u64>()) {
        let doc = APP_TEXT.replace("7300000000000000001", &msg_id.to_string());
        let event = parse_app_xml(&doc).unwrap();
        let Event::AppText(text) = &event else { panic!("wrong kind") };
        prop_assert_eq!(text.msg_id, msg_id);
        let back: Event = serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
        prop_assert_eq!(back, event);
    }
}

// ---------------------------------------------------------------------------
// The canonical-shape fast path agrees with the quick-xml path
// ---------------------------------------------------------------------------

#[test]
fn canonical_samples_take_the_fast_path_and_unusual_ones_do_not() {
    for doc in [
        ENVELOPE,
        CHAT_ADD_MEMBER,
        CONTACT_ADD,
        APP_TEXT,
        ENTER_AGENT,
    ] {
        let fast = xml::scan_canonical(doc);
        assert!(fast.is_some(), "{doc}");
        assert_eq!(fast, xml::scan_general(doc).ok(), "{doc}");
        let plain = without_cdata(doc);
        assert!(xml::scan_canonical(&plain).is_some(), "{plain}");
    }
    for doc in [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        "<xml><Encrypt>a&amp;b</Encrypt></xml>",
        "<xml><!-- c --><Encrypt>a</Encrypt></xml>",
        "<xml><Encrypt a=\"1\">a</Encrypt></xml>",
        "<xml><Encrypt/></xml>",
        "<xml><Encrypt> <![CDATA[a]]></Encrypt></xml>",
        "<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>",
        "<xml><Encrypt>a</Encrypt></xml><x/>",
        "<xml><MemChangeList><item>a</item></MemChangeList></xml>",
    ] {
        assert_eq!(xml::scan_canonical(doc), None, "{doc}");
    }
}

/// Canonical-looking documents built from random pieces, some of them broken.
fn canonical_like_document() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "ToUserName",
        "Encrypt",
        "AgentID",
        "MsgId",
        "Content",
        "MemChangeList",
        "Item",
        "Foo",
        "xml",
        "msgid",
    ]);
    let value = prop_oneof![
        "[a-z0-9 \n,&;<>\\]]{0,12}",
        "[a-z0-9 \n,&;<>\\]]{0,12}".prop_map(|text| format!("<![CDATA[{text}]]>")),
        prop::collection::vec("[a-z,]{0,5}", 0..3).prop_map(|items| {
            items
                .iter()
                .map(|item| format!("\n  <Item>{item}</Item>"))
                .collect::<String>()
        }),
    ];
    let space = prop::sample::select(vec!["", " ", "\n  ", "\t"]);
    let child = (space.clone(), name.clone(), value, name, any::<bool>()).prop_map(
        |(space, open, value, close, matched)| {
            let close = if matched { open } else { close };
            format!("{space}<{open}>{value}</{close}>")
        },
    );
    (prop::collection::vec(child, 0..6), space)
        .prop_map(|(children, tail)| format!("<xml>{}{tail}</xml>{tail}", children.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn fast_path_agrees_with_quick_xml_on_canonical_like_documents(doc in canonical_like_document()) {
        if let Some(fast) = xml::scan_canonical(&doc) {
            prop_assert_eq!(Some(fast), xml::scan_general(&doc).ok(), "{}", doc);
        }
    }

    #[test]
    fn fast_path_agrees_with_quick_xml_on_mutated_documents(
        index in 0usize..5,
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let doc = mutate(valid_documents()[index], &mutations);
        if let Some(fast) = xml::scan_canonical(&doc) {
            prop_assert_eq!(Some(fast), xml::scan_general(&doc).ok(), "{}", doc);
        }
    }
}
