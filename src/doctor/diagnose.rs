//! What a failed WeCom answer means for the person setting qunyun up: the
//! problem in words and the fix, naming the config field or the WeCom admin
//! page. Pure: the error and what was being checked go in, text comes out.

use crate::wecom::api::ApiError;

/// What the failed call was checking, with the app it used.
#[derive(Debug, Clone, Copy)]
pub enum Probe<'a> {
    /// `gettoken` with `wecom.apps[index].secret`.
    Token { index: usize, app: &'a str },
    /// `agent/get`: the app's visible range (app groups).
    AppGroup { app: &'a str },
    /// `externalcontact/groupchat/list`: the customer-contact permission.
    Contacts { app: &'a str },
}

impl Probe<'_> {
    fn app(&self) -> &str {
        match self {
            Probe::Token { app, .. } | Probe::AppGroup { app } | Probe::Contacts { app } => app,
        }
    }
}

/// One line's worth: what went wrong, then what to change.
pub fn explain(error: &ApiError, probe: Probe<'_>, api_base: &str) -> String {
    let app = probe.app();
    match error {
        ApiError::WeCom { errcode, errmsg } => match (*errcode, probe) {
            (40001 | 40091, Probe::Token { index, .. }) => format!(
                "WeCom rejects the secret ({errcode}). Fix wecom.apps[{index}].secret: \
                 the Secret of app {app:?} (应用管理 → {app} → Secret)"
            ),
            (40013, _) => "WeCom does not know this corp id (40013). Fix wecom.corp_id: \
                           我的企业 → 企业信息 → 企业ID"
                .to_owned(),
            (60020, _) => {
                let ip = ip_from_errmsg(errmsg)
                    .map(|ip| format!("WeCom saw {ip}"))
                    .unwrap_or_else(|| "WeCom did not say which IP it saw".to_owned());
                let add = ip_from_errmsg(errmsg).unwrap_or("this server's egress IP");
                format!(
                    "this server's IP is not trusted (60020; {ip}). Add {add} to app {app:?}'s \
                     企业可信IP (应用管理 → {app} → 企业可信IP)"
                )
            }
            (48002, Probe::Contacts { .. }) => format!(
                "app {app:?} may not call the customer-contact APIs (48002). Add it under \
                 客户联系 → 可调用接口的应用, or set wecom.contacts_app to an app listed there"
            ),
            (48002 | 60011, Probe::AppGroup { .. }) => format!(
                "app {app:?} may not read its own settings ({errcode}). Check 应用管理 → {app}"
            ),
            (code, _) => format!("WeCom answered errcode {code}: {errmsg}"),
        },
        ApiError::HttpStatus { status: 404 } => format!(
            "{api_base} answered HTTP 404. Fix wecom.api_base: WeCom's API base ends in /cgi-bin/"
        ),
        other => {
            format!("could not reach {api_base}: {other}. Check wecom.api_base and the network")
        }
    }
}

/// The IP in a 60020 errmsg (`…, from ip: 203.0.113.7, more info at …`).
pub fn ip_from_errmsg(errmsg: &str) -> Option<&str> {
    let start = errmsg.find("from ip:")? + "from ip:".len();
    let ip = errmsg[start..]
        .trim_start()
        .split(|c: char| c == ',' || c.is_whitespace())
        .next()?;
    (!ip.is_empty()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://qyapi.weixin.qq.com/cgi-bin/";

    fn wecom(errcode: i64, errmsg: &str) -> ApiError {
        ApiError::WeCom {
            errcode,
            errmsg: errmsg.to_owned(),
        }
    }

    #[test]
    fn each_configuration_error_names_its_fix() {
        let token = Probe::Token {
            index: 1,
            app: "main",
        };
        let contacts = Probe::Contacts { app: "main" };
        let cases = [
            (
                wecom(40001, "invalid credential"),
                token,
                "wecom.apps[1].secret",
            ),
            (wecom(40013, "invalid corpid"), token, "wecom.corp_id"),
            (
                wecom(48002, "api forbidden"),
                contacts,
                "客户联系 → 可调用接口的应用",
            ),
            (
                wecom(60020, "not allow to access from your ip"),
                contacts,
                "企业可信IP",
            ),
            (
                ApiError::HttpStatus { status: 404 },
                token,
                "wecom.api_base",
            ),
            (ApiError::Timeout, token, "wecom.api_base"),
            (
                wecom(45009, "api freq out of limit"),
                token,
                "errcode 45009",
            ),
        ];
        for (error, probe, expected) in cases {
            let text = explain(&error, probe, BASE);
            assert!(text.contains(expected), "{error:?}: {text}");
        }
    }

    #[test]
    fn the_ip_wecom_saw_is_read_from_its_errmsg() {
        let errmsg = "not allow to access from your ip, hint: [1655799424626], \
                      from ip: 101.43.7.9, more info at https://open.work.weixin.qq.com/devtool/query?e=60020";
        assert_eq!(ip_from_errmsg(errmsg), Some("101.43.7.9"));
        assert_eq!(ip_from_errmsg("from ip: 2001:db8::1"), Some("2001:db8::1"));
        assert_eq!(ip_from_errmsg("not allow to access from your ip"), None);
        let text = explain(
            &wecom(60020, errmsg),
            Probe::Token {
                index: 0,
                app: "main",
            },
            BASE,
        );
        assert!(
            text.contains("Add 101.43.7.9 to app \"main\"'s 企业可信IP"),
            "{text}"
        );
    }
}
