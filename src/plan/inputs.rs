//! What a plan was made from: the inventory, the playbook, the templates and the secrets'
//! fingerprints. A saved plan is applied exactly or refused: apply recomputes these and names
//! what changed since the plan (the hosts' facts are checked apart, by their digests).

use std::collections::BTreeMap;

use hmac::Hmac;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::model::Secrets;
use crate::project::Project;
use crate::render::sha256;

/// Rounds of PBKDF2 for a secret's fingerprint: a plan file must not make guessing a weak
/// password cheap (the same cost as PostgreSQL's own SCRAM verifiers).
const ROUNDS: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// SHA-256 of the inventory file.
    pub inventory: String,
    /// SHA-256 of the playbook as loaded (its fragments included).
    pub playbook: String,
    /// SHA-256 of each template, by name.
    pub templates: BTreeMap<String, String>,
    /// A salted, slow fingerprint of each secret, by label; the salt is the plan's own.
    pub secrets: BTreeMap<String, String>,
    pub salt: String,
}

fn fingerprint(value: &str, salt: &str, label: &str) -> String {
    let mut out = [0u8; 16];
    let salted = format!("{salt}:{label}");
    let _ = pbkdf2::pbkdf2::<Hmac<Sha256>>(value.as_bytes(), salted.as_bytes(), ROUNDS, &mut out);
    out.iter().map(|b| format!("{b:02x}")).collect()
}

impl Inputs {
    /// The inputs of `project` with its resolved `secrets`; `salt` is the plan's (a new plan
    /// draws one, a check reuses the saved plan's).
    pub fn of(project: &Project, secrets: &Secrets, salt: &str) -> Inputs {
        let inventory = std::fs::read_to_string(&project.cluster.source).unwrap_or_default();
        Inputs {
            inventory: sha256(&inventory),
            // A component's host playbook counts as the playbook (left out when there is
            // none, so the pin of an inventory without one stays what it was).
            playbook: sha256(&if project.host_playbooks.is_empty() {
                format!("{:?}", project.playbook)
            } else {
                format!("{:?}{:?}", project.playbook, project.host_playbooks)
            }),
            templates: project.templates.digests().clone(),
            secrets: secrets
                .labels()
                .into_iter()
                .filter_map(|label| {
                    let value = secrets.get(&label).ok()?.expose().to_owned();
                    Some((label.clone(), fingerprint(&value, salt, &label)))
                })
                .collect(),
            salt: salt.to_owned(),
        }
    }

    /// What differs in `now`, in a user's words; empty when nothing does.
    pub fn changes_since(&self, now: &Inputs) -> Vec<String> {
        let mut out = Vec::new();
        if self.inventory != now.inventory {
            out.push("the inventory".to_owned());
        }
        if self.playbook != now.playbook {
            out.push("the playbook".to_owned());
        }
        let names = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| -> Vec<String> {
            a.keys()
                .chain(b.keys())
                .filter(|k| a.get(*k) != b.get(*k))
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        let templates = names(&self.templates, &now.templates);
        if !templates.is_empty() {
            out.push(format!("template {}", templates.join(", ")));
        }
        let secrets = names(&self.secrets, &now.secrets);
        if !secrets.is_empty() {
            out.push(format!("secret {}", secrets.join(", ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn a_fingerprint_depends_on_the_value_the_label_and_the_salt_and_hides_the_value() {
        let a = fingerprint("s3cret", "salt", "replication.password");
        assert_eq!(a, fingerprint("s3cret", "salt", "replication.password"));
        assert_ne!(a, fingerprint("s3cret!", "salt", "replication.password"));
        assert_ne!(a, fingerprint("s3cret", "other", "replication.password"));
        assert_ne!(a, fingerprint("s3cret", "salt", "users[app].password"));
        assert!(!a.contains("s3cret") && a.len() == 32);
    }
}
