//! The handler after configuration changes: reload, or restart when a changed parameter has
//! context `postmaster` (or the server already reports `pending_restart`).
//!
//! Before either, the server is asked whether the files it would read parse
//! (`pg_file_settings.error`); if not, the previous versions of the files are put back and the
//! step fails, so a typo never reaches a running server.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::pg_params::{self, Context};
use crate::facts::gather::Sections;
use crate::steps::file::{pending_key, PENDING_DIR};
use crate::steps::{Action, Check};
use crate::steps::{Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgReloadOrRestart {
    /// The systemd unit of the instance.
    pub service: String,
    pub port: u16,
    /// Parameters as pgha writes them, to see which ones change and how.
    pub parameters: BTreeMap<String, String>,
    /// Files whose `.pgha-prev` copy is restored when the server refuses the new ones.
    pub files: Vec<String>,
    /// `postgres -C` parses the configuration files with these, exactly as a start would.
    pub bin_dir: String,
    pub data_dir: String,
    pub config_file: String,
    /// As a step (not a handler): act only when the running settings differ from the wanted
    /// ones or a restart is pending. This is how plan sees settings drift that no file shows.
    #[serde(default)]
    pub only_if_settings_differ: bool,
}

impl PgReloadOrRestart {
    /// Three checks before a reload or restart, each of which puts the previous files back
    /// and stops when it fails:
    /// - `postgres -C` parses every configuration file as a start would; it is the only check
    ///   of restart-level values (`pg_file_settings` does not parse those while the server
    ///   runs: it reports only "setting could not be applied");
    /// - `pg_file_settings` for everything else the running server would refuse;
    /// - `pg_hba_file_rules` for pg_hba.conf, which a reload would otherwise skip silently.
    fn guard(&self) -> RemoteCommand {
        let restore: Vec<String> = self
            .files
            .iter()
            .map(|f| {
                let q = shell_words::quote(f);
                let prev = format!("{f}.pgha-prev");
                let p = shell_words::quote(&prev);
                let pending =
                    shell_words::quote(&format!("{PENDING_DIR}/{}", pending_key(f))).into_owned();
                format!(
                    "if [ -e {pending} ] && [ -e {p} ]; then cp -p {p} {q}; rm -f {pending}; fi"
                )
            })
            .collect();
        let psql = format!(
            "runuser -u postgres -- psql -X -At -p {} -d postgres -c",
            self.port
        );
        RemoteCommand::script(format!(
            "refuse() {{ echo \"configuration refused by the server, previous files restored: $1\" >&2; {restore}; exit 4; }}; \
             out=$(runuser -u postgres -- {bin}/postgres -D {data} -c config_file={conf} -C data_directory 2>&1 >/dev/null) || refuse \"$out\"; \
             errors=$({psql} \"SELECT sourcefile || ':' || sourceline || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL AND error <> 'setting could not be applied'\") || exit 1; \
             [ -z \"$errors\" ] || refuse \"$errors\"; \
             errors=$({psql} \"SELECT 'pg_hba.conf:' || line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL\") || exit 1; \
             [ -z \"$errors\" ] || refuse \"$errors\"",
            bin = shell_words::quote(&self.bin_dir),
            data = shell_words::quote(&self.data_dir),
            conf = shell_words::quote(&self.config_file),
            restore = if restore.is_empty() { ":".to_owned() } else { restore.join("; ") },
        ))
    }
}

impl PgReloadOrRestart {
    /// The server runs the new files: nothing is pending any more.
    fn accepted(&self) -> RemoteCommand {
        let markers: Vec<String> = self
            .files
            .iter()
            .map(|f| shell_words::quote(&format!("{PENDING_DIR}/{}", pending_key(f))).into_owned())
            .collect();
        RemoteCommand::script(format!("rm -f -- {}", markers.join(" ")))
    }
}

impl Module for PgReloadOrRestart {
    fn kind(&self) -> &'static str {
        "pg_reload_or_restart"
    }

    fn coalesce_key(&self) -> Option<&'static str> {
        Some("PostgreSQL reload or restart")
    }

    /// A reload or restart changes the server's settings, and a restart its unit.
    fn invalidates(&self) -> Sections {
        Sections::RUNNING
    }

    fn check(&self, cx: &StepContext) -> Check {
        let Some(pg) = cx.facts.postgres.as_ref().filter(|pg| pg.running) else {
            return Check::InSync(
                "server not running: it reads the files when it starts".to_owned(),
            );
        };
        let mut restart_for = Vec::new();
        let mut reload_for = Vec::new();
        for (name, value) in &self.parameters {
            let Some(param) = pg_params::lookup(name) else {
                continue;
            };
            let current = pg.settings.get(name);
            let same = current.is_some_and(|s| pg_params::same_value(param, &s.value, value));
            if same {
                continue;
            }
            // The running value in the unit the inventory writes (`128MB -> 160MB`, not
            // `16384 -> 160MB`).
            let was = current
                .map(|s| pg_params::in_unit_of(param, &s.value, value).unwrap_or(s.value.clone()))
                .unwrap_or_else(|| "unset".to_owned());
            let line = format!("{name}: {was} -> {value}");
            if param.context == Context::Postmaster {
                restart_for.push(format!("{line} (context postmaster)"));
            } else {
                reload_for.push(line);
            }
        }
        let pending: Vec<String> = pg
            .settings
            .iter()
            .filter(|(_, s)| s.pending_restart)
            .map(|(n, _)| format!("{n} is pending a restart"))
            .collect();
        restart_for.extend(pending);
        if !restart_for.is_empty() {
            return Check::Changes(vec![cx.change(
                self.kind(),
                Action::Restart,
                &self.service,
                format!("restart needed: {}", restart_for.join("; ")),
                vec![
                    self.guard(),
                    RemoteCommand::new(["systemctl", "restart", &self.service]),
                    self.accepted(),
                ],
            )]);
        }
        if reload_for.is_empty() && self.only_if_settings_differ {
            return Check::InSync("the running settings match".to_owned());
        }
        let why = if reload_for.is_empty() {
            "configuration files changed".to_owned()
        } else {
            reload_for.join("; ")
        };
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Reload,
            &self.service,
            format!("reload: {why}"),
            vec![
                self.guard(),
                RemoteCommand::new(["systemctl", "reload", &self.service]),
                self.accepted(),
            ],
        )])
    }
}
