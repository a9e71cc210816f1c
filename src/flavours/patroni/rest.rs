//! The one client for Patroni's and etcd's REST APIs. The APIs listen on the cluster's
//! network, which pgha reaches only over SSH: a request runs on a host as a fixed, small
//! Python program (Python is on every Debian host Patroni runs on) that makes a batch of
//! requests and prints one JSON line of replies. Requests and replies are typed here; nothing
//! else in pgha speaks HTTP.
//!
//! What the program needs besides the requests it reads on the host, from the file the
//! playbook writes there (`CLIENT_SETTINGS`): the cluster CA and the host's client certificate
//! when the cluster has TLS, and where Patroni's configuration is. The REST API's password is
//! read from that configuration when a request needs it, so it is never on a command line,
//! in a plan or in a log.

/// Written on every Patroni and etcd host by the playbook (paths only, no secret).
pub const CLIENT_SETTINGS: &str = "/etc/pgha/api-client.json";

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::flavours::ProcedureError;
use crate::transport::{RemoteCommand, Transport};

/// Runs the requests given as a JSON list in argv[1]; prints a JSON list of
/// `{"status": N, "body": ...}`, status 0 when the server did not answer. With conditions in
/// argv[2] (a list per reply, see `Expect`) it prints nothing and exits 0 only when every
/// reply is a success and meets its conditions: a shell condition a host can poll on.
const CLIENT: &str = r#"import base64, json, ssl, sys, urllib.request, urllib.error
def at(v, path):
    for k in path.split("."):
        v = v.get(k) if isinstance(v, dict) else None
    return v
try:
    with open("/etc/pgha/api-client.json") as f:
        cfg = json.load(f)
except (OSError, ValueError):
    cfg = {}
ctx = None
if cfg.get("ca"):
    ctx = ssl.create_default_context(cafile=cfg["ca"])
    ctx.load_cert_chain(cfg["cert"], cfg["key"])
def credentials():
    import yaml
    with open(cfg["patroni_config"]) as f:
        a = (yaml.safe_load(f).get("restapi") or {}).get("authentication") or {}
    if "username" not in a:
        return None
    return "Basic " + base64.b64encode(("%s:%s" % (a["username"], a["password"])).encode()).decode()
out = []
for r in json.loads(sys.argv[1]):
    data = None if r.get("body") is None else json.dumps(r["body"]).encode()
    try:
        headers = {"Content-Type": "application/json"}
        auth = credentials() if r.get("auth") and cfg.get("patroni_config") else None
        if auth:
            headers["Authorization"] = auth
        req = urllib.request.Request(r["url"], data=data, method=r["method"], headers=headers)
        resp = urllib.request.urlopen(req, timeout=r.get("timeout", 5), context=ctx)
        status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    except Exception as e:
        status, text = 0, json.dumps(str(e))
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        body = text
    out.append({"status": status, "body": body})
if len(sys.argv) < 3:
    print(json.dumps(out))
    sys.exit(0)
def holds(reply, c):
    v = at(reply["body"], c["path"])
    if "is" in c:
        return v == c["is"]
    if "is_not" in c:
        return v is not None and v != c["is_not"]
    return v is not None and v == at(reply["body"], c["same_as"])
ok = all(200 <= r["status"] < 300 and all(holds(r, c) for c in cs) for r, cs in zip(out, json.loads(sys.argv[2])))
sys.exit(0 if ok else 1)
"#;

/// A condition on a reply's JSON body; `path` is dotted (`header.member_id`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Expect {
    Is { path: String, is: Value },
    IsNot { path: String, is_not: Value },
    SameAs { path: String, same_as: String },
}

impl Expect {
    pub fn is(path: &str, value: Value) -> Expect {
        Expect::Is {
            path: path.to_owned(),
            is: value,
        }
    }

    pub fn is_not(path: &str, value: Value) -> Expect {
        Expect::IsNot {
            path: path.to_owned(),
            is_not: value,
        }
    }

    pub fn same_as(path: &str, other: &str) -> Expect {
        Expect::SameAs {
            path: path.to_owned(),
            same_as: other.to_owned(),
        }
    }
}

/// A shell condition, true once every request succeeds and meets its conditions (one list per
/// request). For waits that poll on the host: one round trip instead of one per attempt.
pub fn condition(requests: &[Request], expects: &[Vec<Expect>]) -> String {
    format!(
        "python3 -c {} {} {} >/dev/null 2>&1",
        shell_words::quote(CLIENT),
        shell_words::quote(&serde_json::to_string(requests).unwrap_or_default()),
        shell_words::quote(&serde_json::to_string(expects).unwrap_or_default()),
    )
}

/// The same requests as a shell command printing the replies' JSON line.
pub fn shell(requests: &[Request]) -> String {
    format!(
        "python3 -c {} {}",
        shell_words::quote(CLIENT),
        shell_words::quote(&serde_json::to_string(requests).unwrap_or_default()),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Patch,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    pub method: Method,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Seconds the server has to answer.
    pub timeout: u32,
    /// Sent with the REST API's credentials (Patroni's unsafe endpoints).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth: bool,
}

impl Request {
    pub fn get(url: impl Into<String>) -> Request {
        Request {
            method: Method::Get,
            url: url.into(),
            body: None,
            timeout: 5,
            auth: false,
        }
    }

    pub fn post(url: impl Into<String>, body: Value) -> Request {
        Request {
            method: Method::Post,
            body: Some(body),
            // A switchover or a restart answers when it is done.
            timeout: 60,
            auth: true,
            ..Request::get(url)
        }
    }

    pub fn patch(url: impl Into<String>, body: Value) -> Request {
        Request {
            method: Method::Patch,
            body: Some(body),
            auth: true,
            ..Request::get(url)
        }
    }

    /// A request to etcd's gateway: a client certificate is its authentication, no password.
    pub fn to_etcd(self) -> Request {
        Request {
            auth: false,
            ..self
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Reply {
    /// The HTTP status; 0 when nothing answered.
    pub status: u16,
    #[serde(default)]
    pub body: Value,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The command that makes `requests` from a host, in one round trip.
pub fn command(requests: &[Request]) -> RemoteCommand {
    RemoteCommand::new([
        "python3".to_owned(),
        "-c".to_owned(),
        CLIENT.to_owned(),
        serde_json::to_string(requests).unwrap_or_else(|_| "[]".to_owned()),
    ])
}

/// Parse what `command` printed.
pub fn parse(stdout: &str) -> Option<Vec<Reply>> {
    serde_json::from_str(stdout.trim()).ok()
}

/// Make `requests` from `host` (its transport); one reply per request.
pub async fn send(
    host: &dyn Transport,
    requests: &[Request],
) -> Result<Vec<Reply>, ProcedureError> {
    let failed = |reason: String| ProcedureError::Step {
        host: host.host().to_owned(),
        what: "REST API".to_owned(),
        reason,
    };
    let out = host
        .run(&command(requests))
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !out.success() {
        return Err(failed(out.stderr.trim().to_owned()));
    }
    parse(&out.stdout)
        .filter(|r| r.len() == requests.len())
        .ok_or_else(|| failed(format!("unreadable replies: {}", out.stdout.trim())))
}

/// One request from `host`.
pub async fn one(host: &dyn Transport, request: Request) -> Result<Reply, ProcedureError> {
    let mut replies = send(host, std::slice::from_ref(&request)).await?;
    Ok(replies.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_reads_its_settings_where_the_playbook_writes_them() {
        assert!(CLIENT.contains(&format!("open({CLIENT_SETTINGS:?})")));
    }

    #[test]
    fn requests_travel_as_one_json_argument_and_replies_parse() {
        let cmd = command(&[
            Request::get("http://10.0.0.1:8008/patroni"),
            Request::patch(
                "http://10.0.0.1:8008/config",
                serde_json::json!({"ttl": 20}),
            ),
        ]);
        let shown = cmd.display(true);
        assert!(shown.contains(r#""method":"GET","url":"http://10.0.0.1:8008/patroni""#));
        assert!(shown.contains(r#""method":"PATCH""#) && shown.contains(r#""body":{"ttl":20}"#));
        let replies = parse(
            r#"[{"status": 200, "body": {"state": "running"}}, {"status": 0, "body": "refused"}]"#,
        )
        .expect("parses");
        assert!(replies[0].ok() && !replies[1].ok());
        assert_eq!(replies[0].body["state"], "running");
    }
}
