//! A host's certificate, signed by the cluster's CA: issued when missing, and again when it
//! was signed by another CA, lacks a name or address the host is reached by, or expires
//! within the renewal window. The check reads only the certificate (public) and whether the
//! key file exists, never the key. Issuing is a procedure: the key is made by pgha at apply
//! time (so no plan, saved or shown, can hold it), the certificate signed with the CA's key
//! (a secret resolved like the others) and both written over SSH, 0600 for the key, each
//! replacing the old one only once both are in place.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::facts::gather::{Query, Sections};
use crate::model::Secrets;
use crate::steps::{Action, Change, Check, Module, StepContext};
use crate::transport::{BoxFuture, RemoteCommand, Transport};

/// The secret that holds the CA's key.
pub const CA_KEY: &str = "tls.ca_key";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCertificate {
    pub cert: String,
    pub key: String,
    /// Who reads the key (the server runs as this user).
    pub owner: String,
    /// Names and IP addresses the certificate must carry (each as a DNS name or an IP).
    pub names: Vec<String>,
    /// The cluster CA's certificate (PEM).
    pub ca_cert: String,
    pub validity_days: i64,
    pub renew_before_days: i64,
}

impl TlsCertificate {
    /// Why the certificate must be issued now, or how it stands when it need not be.
    fn assess(&self, cx: &StepContext) -> Result<String, (Action, String)> {
        let Some(file) = cx.facts.files.get(&self.cert) else {
            return Err((Action::Create, "no certificate yet".to_owned()));
        };
        let info = crate::tls::inspect(&file.content, &self.ca_cert)
            .map_err(|e| (Action::Update, format!("unreadable ({e})")))?;
        if !info.signed_by_ca {
            return Err((
                Action::Update,
                format!("signed by another CA (it names its subject {})", info.subject),
            ));
        }
        let missing: Vec<&str> = self
            .names
            .iter()
            .filter(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => !info.ips.contains(&ip),
                Err(_) => !info.dns.contains(n),
            })
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err((
                Action::Update,
                format!("it lacks {} in its names", missing.join(", ")),
            ));
        }
        let left = info.days_left();
        if left < self.renew_before_days {
            return Err((
                Action::Update,
                if left < 0 {
                    "expired".to_owned()
                } else {
                    format!("renew (expires in {left} days)")
                },
            ));
        }
        if !cx.facts.present.contains(&self.key) {
            return Err((Action::Update, "its key is missing".to_owned()));
        }
        Ok(format!(
            "signed by the cluster CA, expires in {left} days (serial {})",
            info.serial
        ))
    }
}

impl Module for TlsCertificate {
    fn kind(&self) -> &'static str {
        "tls_certificate"
    }

    fn ask(&self, query: &mut Query) {
        query.files.push(self.cert.clone());
        query.present.push(self.key.clone());
    }

    fn invalidates(&self) -> Sections {
        Sections {
            files: true,
            present: true,
            ..Sections::NONE
        }
    }

    fn check(&self, cx: &StepContext) -> Check {
        match self.assess(cx) {
            Ok(fine) => Check::InSync(fine),
            Err((action, reason)) => {
                let mut change = cx.change(
                    self.kind(),
                    action,
                    self.cert.clone(),
                    format!(
                        "{reason}: a new key and a certificate for {} valid {} days",
                        self.names.join(", "),
                        self.validity_days
                    ),
                    Vec::new(),
                );
                change.procedure = Some(json!({
                    "issue": {"names": self.names, "days": self.validity_days}
                }));
                Check::Changes(vec![change])
            }
        }
    }

    fn execute<'a>(
        &'a self,
        _change: &'a Change,
        host: &'a dyn Transport,
        secrets: &'a Secrets,
    ) -> Option<BoxFuture<'a, Result<Vec<String>, String>>> {
        Some(Box::pin(async move {
            let ca_key = secrets.get(CA_KEY).map_err(|e| e.to_string())?;
            let ca = crate::tls::Ca::load(&self.ca_cert, ca_key.expose()).map_err(|e| e.to_string())?;
            let (ips, dns): (Vec<&String>, Vec<&String>) = self
                .names
                .iter()
                .partition(|n| n.parse::<std::net::IpAddr>().is_ok());
            let ips: Vec<std::net::IpAddr> = ips.iter().filter_map(|n| n.parse().ok()).collect();
            let dns: Vec<String> = dns.into_iter().cloned().collect();
            let issued = ca
                .issue(&dns, &ips, self.validity_days)
                .map_err(|e| e.to_string())?;
            let q = |p: &str| shell_words::quote(p).into_owned();
            let (owner, key, cert) = (q(&self.owner), q(&self.key), q(&self.cert));
            let (key_new, cert_new) = (
                q(&format!("{}.pgha-new", self.key)),
                q(&format!("{}.pgha-new", self.cert)),
            );
            let steps = [
                RemoteCommand::script(format!(
                    "set -e; umask 077; install -d -m 0755 \"$(dirname {key})\"; \
                     install -m 0600 -o {owner} -g {owner} /dev/stdin {key_new}"
                ))
                .with_stdin(issued.key_pem),
                RemoteCommand::script(format!(
                    "set -e; install -d -m 0755 \"$(dirname {cert})\"; \
                     install -m 0644 -o {owner} -g {owner} /dev/stdin {cert_new}; \
                     for f in {key} {cert}; do if [ -e \"$f\" ]; then cp -p \"$f\" \"$f.pgha-prev\"; fi; done; \
                     mv -f {key_new} {key}; mv -f {cert_new} {cert}"
                ))
                .with_stdin(issued.cert_pem.clone()),
            ];
            for command in &steps {
                let out = host.run(command).await.map_err(|e| e.to_string())?;
                if !out.success() {
                    return Err(format!("writing the certificate failed: {}", out.stderr.trim()));
                }
            }
            let info = crate::tls::inspect(&issued.cert_pem, &self.ca_cert).map_err(|e| e.to_string())?;
            Ok(vec![format!(
                "issued certificate serial {} for {}, expires in {} days",
                info.serial,
                info.dns.join(", "),
                info.days_left()
            )])
        }))
    }
}
