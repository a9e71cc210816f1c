//! Debian packages, installed together in one apt run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub names: Vec<String>,
    /// Exact versions for some of the names, installed as `NAME=VERSION` when missing. An
    /// installed package of another version is the rolling minor upgrade's to move
    /// (`plan::upgrade`), not this step's: it would restart every host at once.
    #[serde(default)]
    pub pins: BTreeMap<String, String>,
}

/// The script that installs `specs` (`NAME` or `NAME=VERSION`) with apt, waiting for apt's
/// locks; `options` go to apt-get install (e.g. `--allow-downgrades`).
pub fn install_script(specs: &[String], options: &str) -> String {
    // `apt-get update` first only when the lists are missing or a day old: a fresh host
    // has none, and an update on every run would cost seconds. An apt left running by an
    // interrupted apply (killing pgha does not kill it on the host) is waited for: dpkg's
    // lock by apt's own timeout, the lists and archives locks (which that timeout does not
    // cover) by trying again for up to 10 minutes; a dpkg run it interrupted is finished
    // first.
    let install = format!(
        "locked apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold {options}{}",
        shell_words::join(specs)
    );
    // A pinned version the lists do not know (released since they were read) asks for an
    // update too.
    let unknown: String = specs
        .iter()
        .filter(|s| s.contains('='))
        .map(|s| format!(" || ! apt-cache show {} >/dev/null 2>&1", shell_words::quote(s)))
        .collect();
    format!(
        "set -e; export DEBIAN_FRONTEND=noninteractive; \
         locked() {{ n=0; while :; do if out=$(\"$@\" 2>&1); then return 0; fi; case \"$out\" in *'Could not get lock'*|*'Unable to lock'*) n=$((n+1)); if [ $n -ge 300 ]; then echo \"$out\" >&2; return 1; fi; sleep 2 ;; *) echo \"$out\" >&2; return 1 ;; esac; done; }}; \
         if [ -z \"$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1)\" ]{unknown}; then locked apt-get update -qq -o DPkg::Lock::Timeout=600; fi; \
         {install} || {{ dpkg --force-confold --configure -a && {install}; }}"
    )
}

impl Module for Package {
    fn kind(&self) -> &'static str {
        "package"
    }

    fn check(&self, cx: &StepContext) -> Check {
        let missing: Vec<&str> = self
            .names
            .iter()
            .filter(|n| !cx.facts.packages.contains_key(n.as_str()))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return Check::InSync(format!("installed: {}", self.names.join(", ")));
        }
        let specs: Vec<String> = missing
            .iter()
            .map(|n| match self.pins.get(*n) {
                Some(v) => format!("{n}={v}"),
                None => (*n).to_owned(),
            })
            .collect();
        let script = install_script(&specs, "");
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Install,
            specs.join(" "),
            "not installed",
            vec![RemoteCommand::script(script)],
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::Package;
    use crate::facts::HostFacts;
    use crate::secret::Secrets;
    use crate::steps::{Check, Module, StepContext};

    #[test]
    fn the_install_script_is_valid_sh_and_waits_for_apt_locks() {
        let facts = HostFacts::default();
        let cx = StepContext {
            host: "pg1",
            step: "packages",
            facts: &facts,
            cluster_facts: &Default::default(),
            secrets: &Secrets::default(),
        };
        let Check::Changes(changes) = (Package {
            names: vec!["postgresql-15".into()],
            pins: Default::default(),
        })
        .check(&cx) else {
            panic!("a missing package is a change");
        };
        let script = changes[0].commands[0].argv[2].masked();
        assert!(script.contains("locked apt-get update") && script.contains("locked apt-get install"));
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .output()
            .expect("sh");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // The waiting function itself: a lock held twice, then free (the attempts are counted
        // in a file: each runs in a subshell, as apt does in its own process).
        let dir = tempfile::tempdir().expect("tempdir");
        let count = dir.path().join("attempts");
        let define = script
            .split("; if [ -z")
            .next()
            .and_then(|s| s.split("locked() ").nth(1))
            .expect("the function");
        let probe = format!(
            "locked() {define}; fake() {{ c=$(cat {f} 2>/dev/null || echo 0); c=$((c+1)); echo $c > {f}; if [ $c -lt 3 ]; then echo 'E: Could not get lock /var/lib/apt/lists/lock' >&2; return 100; fi; }}; locked fake && echo ok",
            f = count.display()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &probe.replace("sleep 2", "sleep 0")])
            .output()
            .expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
        let attempts = std::fs::read_to_string(&count).expect("attempts");
        assert_eq!(attempts.trim(), "3", "tried again while the lock was held");
    }
}
