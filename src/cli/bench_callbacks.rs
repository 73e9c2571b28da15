//! `qunyun bench-callbacks` (hidden): writes distinct, correctly encrypted
//! `change_external_chat` callbacks for the configured first app, one request
//! per line (`PATH?QUERY<TAB>BODY`), for the load script in `bench/`.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;

use crate::config::Config;
use crate::wecom::crypto::MsgCrypt;

#[derive(Debug, clap::Args)]
pub struct BenchCallbacksArgs {
    /// How many distinct callbacks to write.
    #[arg(long, default_value_t = 100_000)]
    pub count: usize,
    /// The file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(config: &Config, args: &BenchCallbacksArgs) -> anyhow::Result<()> {
    let app = config
        .wecom
        .apps
        .first()
        .context("bench-callbacks needs an app in wecom.apps")?;
    let crypt = MsgCrypt::new(
        app.token.expose(),
        app.encoding_aes_key.expose(),
        &config.wecom.corp_id,
    )
    .map_err(|e| anyhow::anyhow!("wecom.apps {}: {e}", app.name))?;
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = BufWriter::new(file);
    let corp_id = &config.wecom.corp_id;
    // A current timestamp, so a configured timestamp window accepts the requests.
    let timestamp = chrono::Utc::now().timestamp().to_string();
    for i in 0..args.count {
        let xml = event_xml(corp_id, i);
        let encrypt = crypt.encrypt(xml.as_bytes());
        let nonce = format!("{i}");
        let signature = crypt.signature(&timestamp, &nonce, &encrypt);
        writeln!(
            out,
            "/wecom/apps/{name}/callback?msg_signature={signature}&timestamp={timestamp}&nonce={nonce}\t\
             <xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt>\
             <AgentID><![CDATA[{agent}]]></AgentID></xml>",
            name = app.name,
            agent = app.agent_id,
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Event `i`: a member joins one of 500 chats, with distinct member versions,
/// so every event has its own dedupe key.
fn event_xml(corp_id: &str, i: usize) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
         <CreateTime>1700000100</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[wrLOAD{chat:06}]]></ChatId>\
         <ChangeType><![CDATA[update]]></ChangeType><UpdateDetail><![CDATA[add_member]]></UpdateDetail>\
         <JoinScene>3</JoinScene><MemChangeCnt>1</MemChangeCnt>\
         <MemChangeList><Item><![CDATA[wmLOAD{i:08}]]></Item></MemChangeList>\
         <LastMemVer><![CDATA[v{i}]]></LastMemVer><CurMemVer><![CDATA[v{next}]]></CurMemVer></xml>",
        chat = i % 500,
        next = i + 1,
    )
}
