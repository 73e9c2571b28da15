//! Failure injection: scripted ("the next N calls to X fail like this") and
//! seeded-random. Only `/cgi-bin/*` calls are affected, never `/sim/*`.
//!
//! Besides transport trouble this models the answers of a corp that is set up
//! wrongly, for rehearsing `qunyun doctor`: the egress IP missing from the app's
//! 企业可信IP (`untrusted_ip`: 60020 naming the IP), an app not allowed to call the
//! customer-contact APIs (`errcode` 48002 on `externalcontact/`), or any answer
//! verbatim (`reply`, e.g. an `agent/get` whose visible range is one department).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How a faulty call misbehaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// HTTP 200 with this errcode (WeCom's "system busy" is -1).
    Errcode {
        #[serde(default = "busy_errcode")]
        errcode: i64,
    },
    /// HTTP 500 with an empty body.
    Http500,
    /// Never answer: the connection stays open until the simulator shuts
    /// down, so the client must time out.
    Hang,
    /// Answer normally, but only after this delay.
    Slow { delay_ms: u64 },
    /// HTTP 200 with errcode 60020: the caller's IP is not in the app's
    /// 企业可信IP. WeCom's errmsg names the IP it saw (`from ip: …`).
    UntrustedIp { ip: String },
    /// HTTP 200 with exactly this JSON body.
    Reply { body: Value },
    /// Answer normally, but the call takes `secs` on the simulator's clock:
    /// with a clock the simulator may move ([`Sim::move_clock`]) it moves
    /// that clock forward after the effect, else it waits that long for real.
    /// Models a slow WeCom without slowing tests down.
    ///
    /// [`Sim::move_clock`]: crate::sim::Sim::move_clock
    Takes { secs: u32 },
}

fn busy_errcode() -> i64 {
    -1
}

impl FaultKind {
    pub fn busy() -> Self {
        FaultKind::Errcode {
            errcode: busy_errcode(),
        }
    }

    /// The JSON that replaces the real answer, for faults that answer at all
    /// (HTTP 200, as WeCom answers errors).
    pub fn reply(&self) -> Option<Value> {
        match self {
            FaultKind::Errcode { errcode } => Some(json!({
                "errcode": errcode,
                "errmsg": format!("{} (injected)", errmsg_for(*errcode)),
            })),
            FaultKind::UntrustedIp { ip } => Some(json!({
                "errcode": 60020,
                "errmsg": format!(
                    "not allow to access from your ip, hint: [{}], from ip: {ip}, \
                     more info at https://open.work.weixin.qq.com/devtool/query?e=60020",
                    hint_id()
                ),
            })),
            FaultKind::Reply { body } => Some(body.clone()),
            FaultKind::Http500
            | FaultKind::Hang
            | FaultKind::Slow { .. }
            | FaultKind::Takes { .. } => None,
        }
    }
}

/// The text WeCom puts beside the codes a rehearsal injects (its global error
/// code list); callers decide on `errcode` only.
fn errmsg_for(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system busy",
        40001 => "invalid credential",
        40013 => "invalid corpid",
        45009 => "api freq out of limit",
        48002 => "api forbidden",
        60011 => "no privilege to access/modify contact/party/agent",
        60020 => "not allow to access from your ip",
        _ => "error",
    }
}

/// WeCom's errmsg carries a request id (`hint: [...]`); any digits do here.
fn hint_id() -> String {
    format!("{:019}", rand::random::<u64>() % 10_000_000_000_000_000_000)
}

/// "The next `times` calls whose path contains `path` fail with `kind`."
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Substring of the API path below `/cgi-bin/` (e.g. `"webhook/send"`);
    /// `None` matches every API call.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "one")]
    pub times: u32,
    /// Let the call take effect (the message is delivered and recorded) and
    /// only then fail the response: models a lost answer, which is what makes
    /// retries double-send.
    #[serde(default)]
    pub after_effect: bool,
    /// Let this many matching calls through untouched before the rule starts
    /// firing ("the third call hangs" is `skip: 2`).
    #[serde(default)]
    pub skip: u32,
}

fn one() -> u32 {
    1
}

impl FaultRule {
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            path: None,
            times: 1,
            after_effect: false,
            skip: 0,
        }
    }

    pub fn on_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }

    pub fn after_effect(mut self) -> Self {
        self.after_effect = true;
        self
    }

    pub fn skip(mut self, calls: u32) -> Self {
        self.skip = calls;
        self
    }
}

/// Random faults: each matching call independently draws one of the kinds
/// with the given probabilities (their sum must be ≤ 1), from an RNG seeded
/// with `seed`, so a run is reproducible for a given call sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomFaults {
    pub seed: u64,
    #[serde(default)]
    pub errcode: f64,
    #[serde(default)]
    pub http500: f64,
    #[serde(default)]
    pub hang: f64,
    #[serde(default)]
    pub slow: f64,
    #[serde(default = "default_slow_ms")]
    pub slow_delay_ms: u64,
    #[serde(default)]
    pub path: Option<String>,
}

fn default_slow_ms() -> u64 {
    2_000
}

/// What `POST /sim/faults` accepts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultRequest {
    /// Remove every scripted rule and the random mode first.
    pub clear: bool,
    pub rules: Vec<FaultRule>,
    pub random: Option<RandomFaults>,
}

/// The decision for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub after_effect: bool,
}

impl Fault {
    pub fn delay(&self) -> Option<Duration> {
        match self.kind {
            FaultKind::Slow { delay_ms } => Some(Duration::from_millis(delay_ms)),
            FaultKind::Takes { secs } => Some(Duration::from_secs(u64::from(secs))),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Vec<FaultRule>,
    random: Option<(RandomFaults, StdRng)>,
}

impl Faults {
    pub fn clear(&mut self) {
        self.rules.clear();
        self.random = None;
    }

    pub fn push(&mut self, rule: FaultRule) {
        if rule.times > 0 {
            self.rules.push(rule);
        }
    }

    pub fn set_random(&mut self, random: Option<RandomFaults>) {
        self.random = random.map(|config| {
            let rng = StdRng::seed_from_u64(config.seed);
            (config, rng)
        });
    }

    pub fn apply(&mut self, request: FaultRequest) {
        if request.clear {
            self.clear();
        }
        for rule in request.rules {
            self.push(rule);
        }
        if request.random.is_some() {
            self.set_random(request.random);
        }
    }

    /// Consume the first scripted rule matching `path`, else draw from the
    /// random mode. Scripted rules fire in the order they were added; a rule
    /// still skipping calls lets this one through (and counts it).
    pub fn next_for(&mut self, path: &str) -> Option<Fault> {
        if let Some(index) = self.rules.iter().position(|rule| matches(&rule.path, path)) {
            let rule = &mut self.rules[index];
            if rule.skip > 0 {
                rule.skip -= 1;
                return None;
            }
            let fault = Fault {
                kind: rule.kind.clone(),
                after_effect: rule.after_effect,
            };
            rule.times -= 1;
            if rule.times == 0 {
                self.rules.remove(index);
            }
            return Some(fault);
        }
        let (config, rng) = self.random.as_mut()?;
        if !matches(&config.path, path) {
            return None;
        }
        let draw: f64 = rng.gen();
        let choices = [
            (config.errcode, FaultKind::busy()),
            (config.http500, FaultKind::Http500),
            (config.hang, FaultKind::Hang),
            (
                config.slow,
                FaultKind::Slow {
                    delay_ms: config.slow_delay_ms,
                },
            ),
        ];
        let mut cumulative = 0.0;
        for (probability, kind) in choices {
            cumulative += probability;
            if draw < cumulative {
                return Some(Fault {
                    kind,
                    after_effect: false,
                });
            }
        }
        None
    }
}

fn matches(filter: &Option<String>, path: &str) -> bool {
    filter.as_deref().is_none_or(|wanted| path.contains(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_rule_fires_exactly_n_times_on_matching_path() {
        let mut faults = Faults::default();
        faults.push(
            FaultRule::new(FaultKind::Http500)
                .on_path("webhook")
                .times(2),
        );
        assert_eq!(faults.next_for("message/send"), None);
        assert!(faults.next_for("webhook/send").is_some());
        assert!(faults.next_for("webhook/send").is_some());
        assert_eq!(faults.next_for("webhook/send"), None);
    }

    #[test]
    fn a_skipping_rule_lets_the_first_calls_through_then_fires() {
        let mut faults = Faults::default();
        faults.push(FaultRule::new(FaultKind::Hang).on_path("appchat").skip(2));
        assert_eq!(faults.next_for("appchat/send"), None);
        assert_eq!(faults.next_for("appchat/send"), None);
        assert_eq!(
            faults.next_for("appchat/send").map(|fault| fault.kind),
            Some(FaultKind::Hang)
        );
        assert_eq!(faults.next_for("appchat/send"), None);
    }

    #[test]
    fn random_mode_is_reproducible_for_a_seed() {
        let config = RandomFaults {
            seed: 7,
            errcode: 0.2,
            http500: 0.2,
            hang: 0.0,
            slow: 0.1,
            slow_delay_ms: 10,
            path: None,
        };
        let run = || {
            let mut faults = Faults::default();
            faults.set_random(Some(config.clone()));
            (0..200)
                .map(|_| faults.next_for("message/send").map(|f| f.kind))
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        let faulty = first.iter().filter(|f| f.is_some()).count();
        // 50 % expected; a wide band keeps the test meaningful but stable.
        assert!((60..=140).contains(&faulty), "faulty = {faulty}");
        assert!(!first.contains(&Some(FaultKind::Hang)));
    }

    #[test]
    fn fault_request_json_shape() {
        let request: FaultRequest = serde_json::from_str(
            r#"{"rules":[{"kind":"errcode","times":3,"path":"gettoken"},
                          {"kind":"slow","delay_ms":1500},{"kind":"hang","skip":2},
                          {"kind":"takes","secs":50,"times":3}],
                "random":{"seed":1,"http500":0.5}}"#,
        )
        .unwrap();
        assert_eq!(request.rules[0].kind, FaultKind::busy());
        assert_eq!(request.rules[0].times, 3);
        assert_eq!(request.rules[1].kind, FaultKind::Slow { delay_ms: 1500 });
        assert_eq!(request.rules[2].times, 1);
        assert_eq!(request.rules[2].skip, 2);
        assert_eq!(request.rules[3].kind, FaultKind::Takes { secs: 50 });
        assert_eq!(request.rules[3].times, 3);
        assert_eq!(request.random.unwrap().http500, 0.5);
    }

    #[test]
    fn untrusted_ip_answers_60020_naming_the_ip_and_reply_answers_verbatim() {
        let request: FaultRequest = serde_json::from_str(
            r#"{"rules":[{"kind":"untrusted_ip","ip":"203.0.113.7","path":"gettoken"},
                          {"kind":"errcode","errcode":48002,"path":"externalcontact/"},
                          {"kind":"reply","body":{"errcode":0,"agentid":1}}]}"#,
        )
        .unwrap();
        let untrusted = request.rules[0].kind.reply().unwrap();
        assert_eq!(untrusted["errcode"], 60020);
        assert!(untrusted["errmsg"]
            .as_str()
            .unwrap()
            .contains("from ip: 203.0.113.7,"));
        let forbidden = request.rules[1].kind.reply().unwrap();
        assert_eq!(forbidden["errcode"], 48002);
        assert_eq!(
            request.rules[2].kind.reply(),
            Some(json!({"errcode":0,"agentid":1}))
        );
        assert_eq!(FaultKind::Http500.reply(), None);
    }
}
