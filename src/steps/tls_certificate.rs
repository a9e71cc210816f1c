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
    /// A certificate issued elsewhere (`tls.certificates`): installed as it is, with its key
    /// (a secret), instead of one pgha issues.
    #[serde(default)]
    pub provided: Option<Provided>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provided {
    /// PEM, public.
    pub cert: String,
    /// The label its key resolves under.
    pub key: String,
}

impl TlsCertificate {
    /// A provided certificate: installed when the host has another; refused when it lacks a
    /// name the host is reached by here, or its key is not its own.
    fn check_provided(&self, p: &Provided, cx: &StepContext) -> Check {
        let info = match crate::tls::inspect(&p.cert, &self.ca_cert) {
            Ok(info) => info,
            Err(e) => return Check::Refused(format!("the provided certificate: {e}")),
        };
        let missing = self.missing_names(&info);
        if !missing.is_empty() {
            return Check::Refused(format!(
                "the provided certificate (serial {}) lacks {} in its names: this host is reached by them here",
                info.serial,
                missing.join(", ")
            ));
        }
        match cx.secrets.get(&p.key) {
            Ok(key) => match crate::tls::key_matches(&p.cert, key.expose()) {
                Ok(true) => {}
                Ok(false) => {
                    return Check::Refused(format!(
                        "the provided key ({}) is not the key of the provided certificate (serial {})",
                        p.key, info.serial
                    ))
                }
                Err(e) => return Check::Refused(format!("{}: {e}", p.key)),
            },
            Err(e) => return Check::Refused(e.to_string()),
        }
        let installed = cx
            .facts
            .files
            .get(&self.cert)
            .is_some_and(|f| f.content.trim() == p.cert.trim());
        if installed && cx.facts.present.contains(&self.key) {
            return Check::InSync(format!(
                "the provided certificate, expires in {} days (serial {})",
                info.days_left(),
                info.serial
            ));
        }
        let action = if cx.facts.files.contains_key(&self.cert) {
            Action::Update
        } else {
            Action::Create
        };
        let mut change = cx.change(
            self.kind(),
            action,
            self.cert.clone(),
            format!(
                "install the provided certificate (serial {}, expires in {} days) and its key",
                info.serial,
                info.days_left()
            ),
            Vec::new(),
        );
        change.procedure = Some(json!({"install": {"serial": info.serial}}));
        Check::Changes(vec![change])
    }

    /// The names and addresses the host must be reached by that `info` lacks.
    fn missing_names(&self, info: &crate::tls::CertInfo) -> Vec<String> {
        self.names
            .iter()
            .filter(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => !info.ips.contains(&ip),
                Err(_) => !info.dns.contains(n),
            })
            .cloned()
            .collect()
    }

    /// Write `key` (0600) and `cert` beside the old ones, then put both in place.
    async fn install(
        &self,
        host: &dyn Transport,
        key_pem: String,
        cert_pem: String,
    ) -> Result<(), String> {
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
            .with_stdin(key_pem),
            RemoteCommand::script(format!(
                "set -e; install -d -m 0755 \"$(dirname {cert})\"; \
                 install -m 0644 -o {owner} -g {owner} /dev/stdin {cert_new}; \
                 for f in {key} {cert}; do if [ -e \"$f\" ]; then cp -p \"$f\" \"$f.pgha-prev\"; fi; done; \
                 mv -f {key_new} {key}; mv -f {cert_new} {cert}"
            ))
            .with_stdin(cert_pem),
        ];
        for command in &steps {
            let out = host.run(command).await.map_err(|e| e.to_string())?;
            if !out.success() {
                return Err(format!("writing the certificate failed: {}", out.stderr.trim()));
            }
        }
        Ok(())
    }

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
        let missing = self.missing_names(&info);
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
        if let Some(p) = &self.provided {
            return self.check_provided(p, cx);
        }
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
            if let Some(p) = &self.provided {
                let key = secrets.get(&p.key).map_err(|e| e.to_string())?;
                self.install(host, key.expose().to_owned(), p.cert.clone())
                    .await?;
                let info =
                    crate::tls::inspect(&p.cert, &self.ca_cert).map_err(|e| e.to_string())?;
                return Ok(vec![format!(
                    "installed the provided certificate serial {}, expires in {} days",
                    info.serial,
                    info.days_left()
                )]);
            }
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
            self.install(host, issued.key_pem, issued.cert_pem.clone())
                .await?;
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
