//! The one client for Patroni's and etcd's REST APIs. The APIs listen on the cluster's
//! network, which pgha reaches only over SSH: a request runs on a host as a fixed, small
//! Python program (Python is on every Debian host Patroni runs on) that makes a batch of
//! requests and prints one JSON line of replies. Requests and replies are typed here; nothing
//! else in pgha speaks HTTP.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::flavours::ProcedureError;
use crate::transport::{RemoteCommand, Transport};

/// Runs the requests given as a JSON list in argv[1]; prints a JSON list of
/// `{"status": N, "body": ...}`, status 0 when the server did not answer.
const CLIENT: &str = r#"import json, sys, urllib.request, urllib.error
out = []
for r in json.loads(sys.argv[1]):
    data = None if r.get("body") is None else json.dumps(r["body"]).encode()
    req = urllib.request.Request(r["url"], data=data, method=r["method"], headers={"Content-Type": "application/json"})
    try:
        resp = urllib.request.urlopen(req, timeout=r.get("timeout", 5))
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
print(json.dumps(out))
"#;

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
}

impl Request {
    pub fn get(url: impl Into<String>) -> Request {
        Request {
            method: Method::Get,
            url: url.into(),
            body: None,
            timeout: 5,
        }
    }

    pub fn post(url: impl Into<String>, body: Value) -> Request {
        Request {
            method: Method::Post,
            body: Some(body),
            // A switchover or a restart answers when it is done.
            timeout: 60,
            ..Request::get(url)
        }
    }

    pub fn patch(url: impl Into<String>, body: Value) -> Request {
        Request {
            method: Method::Patch,
            body: Some(body),
            ..Request::get(url)
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
