//! A standby's data under repmgr: cloned with `repmgr standby clone` (its dry run first, so
//! that its findings are what a failure shows), or a former primary rejoined with
//! `repmgr node rejoin --force-rewind` before it ever starts. The decision (clone, rewind,
//! leave alone, refuse) is the same as for every flavour: `pg_clone`'s, never a silent wipe.

use serde::{Deserialize, Serialize};

use crate::flavours::repmgr::command;
use crate::steps::pg_clone::{
    fetch_timeline_histories, Decision, PgClone, CLONE_MARKER, FENCE_MARKER, REWIND_MARKER,
};
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepmgrClone {
    pub upstream: String,
    /// The upstream's repmgr node id (what `standby follow` is told to follow).
    pub upstream_node_id: i64,
    pub upstream_address: String,
    pub port: u16,
    pub primary: String,
    /// repmgr's role and database, for its connection to the upstream.
    pub user: String,
    pub database: String,
    pub config_file: String,
    /// postgresql.conf (Debian keeps it out of the data directory).
    pub postgresql_conf: String,
    pub bin_dir: String,
    pub data_dir: String,
    pub service: String,
    #[serde(default)]
    pub allow_wipe: bool,
    /// What a connection adds to check the server when the cluster has TLS (empty: none):
    /// the standby's primary_conninfo must carry it.
    #[serde(default)]
    pub tls_conninfo: String,
    /// repmgr gives each standby a replication slot on its upstream (`use_replication_slots`).
    #[serde(default)]
    pub slots: bool,
}

impl RepmgrClone {
    fn as_pg_clone(&self) -> PgClone {
        PgClone {
            upstream: self.upstream.clone(),
            upstream_address: self.upstream_address.clone(),
            port: self.port,
            primary: self.primary.clone(),
            user: self.user.clone(),
            slot: None,
            data_dir: self.data_dir.clone(),
            service: self.service.clone(),
            allow_wipe: self.allow_wipe,
            bin_dir: self.bin_dir.clone(),
            config_file: String::new(),
            ssl: String::new(),
        }
    }

    fn repmgr(&self, args: &[&str]) -> RemoteCommand {
        command::repmgr(&self.bin_dir, &self.config_file, args)
    }

    fn finished(&self, marker: &str) -> RemoteCommand {
        RemoteCommand::script(format!(
            "rm -f {marker} {FENCE_MARKER}; systemctl unmask {} >/dev/null 2>&1 || true",
            shell_words::quote(&self.service)
        ))
    }

    fn clone_commands(&self) -> Vec<RemoteCommand> {
        let source = command::source(&self.upstream_address, self.port, &self.user, &self.database);
        let with = |extra: &[&str]| {
            let mut a = source.clone();
            a.extend(["standby", "clone"].into_iter().chain(extra.iter().copied()).map(str::to_owned));
            command::repmgr(&self.bin_dir, &self.config_file, &a)
        };
        vec![
            RemoteCommand::new(["systemctl", "stop", &self.service]),
            RemoteCommand::script(format!(
                "set -e; mkdir -p /var/lib/pgha; touch {CLONE_MARKER}; rm -f {REWIND_MARKER}"
            )),
            // Its checks (upstream reachable, WAL senders, slots, settings) say what is wrong.
            with(&["--dry-run"]),
            // Debian's package made a data directory: repmgr replaces it only with -F.
            with(&["-F", "--fast-checkpoint"]),
            self.finished(CLONE_MARKER),
        ]
    }

    /// repmgr's connection to the upstream (its password from ~postgres/.pgpass).
    fn upstream_conninfo(&self) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.upstream_address, self.port, self.user, self.database
        )
    }

    /// A CHECKPOINT on the upstream before pg_rewind compares timelines: pg_rewind reads the
    /// source's timeline from its control file, which a promotion updates only at the next
    /// checkpoint. Seconds after repmgrd promoted a standby, pg_rewind would otherwise find
    /// both on the same timeline, rewind nothing, and leave a node that can never follow.
    fn checkpoint_upstream(&self) -> RemoteCommand {
        RemoteCommand::script(format!(
            "cd / && runuser -u postgres -- {}/psql -XAtq -d {} -c CHECKPOINT",
            self.bin_dir,
            shell_words::quote(&self.upstream_conninfo()),
        ))
    }

    fn rejoin_commands(&self, crashed: bool) -> Vec<RemoteCommand> {
        let target = self.upstream_conninfo();
        let mut commands = vec![
            RemoteCommand::new(["systemctl", "stop", &self.service]),
            RemoteCommand::script(format!(
                "set -e; mkdir -p /var/lib/pgha; touch {REWIND_MARKER}"
            )),
        ];
        if crashed {
            // A primary that crashed must finish crash recovery before pg_rewind; pg_rewind
            // would run it in single-user mode without Debian's configuration (outside the
            // data directory) and fail. Single-user mode takes no connection: the server is
            // never up as a primary for clients.
            commands.push(RemoteCommand::script(format!(
                "cd / && runuser -u postgres -- {}/postgres --single -D {} -c config_file={} template1 </dev/null",
                self.bin_dir,
                shell_words::quote(&self.data_dir),
                shell_words::quote(&self.postgresql_conf),
            )));
        }
        commands.extend([
            RemoteCommand::script(format!(
                "systemctl unmask {} >/dev/null 2>&1 || true",
                shell_words::quote(&self.service)
            )),
            self.checkpoint_upstream(),
            // Rewinds, makes it a standby of the new primary and starts it: never started
            // as a primary first.
            self.repmgr(&[
                "node",
                "rejoin",
                "-d",
                &target,
                "--force-rewind",
                "--config-files=postgresql.auto.conf",
                "--verbose",
            ]),
            self.finished(REWIND_MARKER),
        ]);
        commands
    }
}

impl RepmgrClone {
    /// A standby on another host than its upstream, which may have replayed WAL the new
    /// timeline does not have: pg_rewind by pgha (repmgr's own rejoin judges from the last
    /// restartpoint, which may lie before the fork while the replayed WAL went past it; such a
    /// node never attaches), its own settings kept, then started and made to follow.
    /// pg_rewind changes nothing when the standby did not go past the fork.
    fn repoint_commands(&self) -> Vec<RemoteCommand> {
        let source = self.upstream_conninfo();
        let data = shell_words::quote(&self.data_dir).into_owned();
        vec![
            RemoteCommand::new(["systemctl", "stop", &self.service]),
            RemoteCommand::script(format!(
                "set -e; mkdir -p /var/lib/pgha; touch {REWIND_MARKER}; cp -p {data}/postgresql.auto.conf /var/lib/pgha/postgresql.auto.conf.kept"
            )),
            self.checkpoint_upstream(),
            RemoteCommand::script(format!(
                "cd / && runuser -u postgres -- {}/pg_rewind --target-pgdata={data} --config-file={} --source-server={}",
                self.bin_dir,
                shell_words::quote(&self.postgresql_conf),
                shell_words::quote(&source),
            )),
            fetch_timeline_histories(&self.bin_dir, &self.data_dir, &source),
            // pg_rewind succeeded: the data is sound whatever follows, so the marker goes (it
            // would make the next apply refuse the node as a failed rewind). Started pointed
            // at the new upstream, without the slot it had on the old one: pg_rewind's
            // minimum recovery point may lie past the WAL it copied, reached only by
            // streaming, and the old host (a rejoined standby now) has no slot for it.
            // `standby follow` then writes repmgr's own connection and slot.
            RemoteCommand::script(format!(
                "set -e; rm -f {REWIND_MARKER}; cp -p /var/lib/pgha/postgresql.auto.conf.kept {data}/postgresql.auto.conf; \
                 sed -i -e '/^primary_slot_name/d' \
                 -e \"/^primary_conninfo/s/host=\\(''\\)\\?[^ ']*\\(''\\)\\?/host={}/\" {data}/postgresql.auto.conf; \
                 runuser -u postgres -- touch {data}/standby.signal; systemctl start {}",
                self.upstream_address,
                shell_words::quote(&self.service)
            )),
            self.follow(),
            self.finished(REWIND_MARKER),
        ]
    }

    /// A running standby without primary_conninfo (an interrupted rejoin).
    fn follows_nobody(&self, cx: &StepContext) -> bool {
        self.conninfo(cx).is_some_and(str::is_empty)
    }

    /// A running standby that streams without a slot while repmgr gives each one (a re-point
    /// whose `standby follow` failed): its upstream may recycle WAL it still needs.
    fn slotless(&self, cx: &StepContext) -> bool {
        self.slots
            && self.conninfo(cx).is_some_and(|c| !c.is_empty())
            && self
                .standby_setting(cx, "primary_slot_name")
                .is_none_or(str::is_empty)
    }

    /// `repmgr standby follow` of its upstream, as a planned change.
    fn follow_again(&self, cx: &StepContext, reason: String) -> Check {
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Update,
            format!("follow {} (node {})", self.upstream, self.upstream_node_id),
            reason,
            vec![self.follow()],
        )])
    }

    fn follow(&self) -> RemoteCommand {
        self.repmgr(&[
            "standby",
            "follow",
            &format!("--upstream-node-id={}", self.upstream_node_id),
        ])
    }

    /// A running standby whose primary_conninfo names another host than its upstream (a
    /// sibling whose repmgrd gave up waiting for the new primary, still on the old one).
    fn follows_elsewhere(&self, cx: &StepContext) -> Option<String> {
        let host = self
            .conninfo(cx)?
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("host="))
            .map(|h| h.trim_matches('\''))?;
        (host != self.upstream_address).then(|| {
            format!(
                "it follows {host}, not its upstream {} ({})",
                self.upstream, self.upstream_address
            )
        })
    }

    /// A running standby whose primary_conninfo does (not) check the server while the cluster
    /// has (no) TLS: one an earlier pgha made, or from before the cluster moved to TLS.
    fn tls_differs(&self, cx: &StepContext) -> bool {
        self.conninfo(cx).is_some_and(|c| {
            // Checks the server exactly when the cluster has no TLS: the wrong way round.
            // (repmgr quotes the values it writes: sslmode='verify-full'.)
            !c.is_empty()
                && c.replace('\'', "").contains("sslmode=verify-full")
                    == self.tls_conninfo.is_empty()
        })
    }

    /// `current` with the TLS settings added, or taken out when the cluster has none.
    fn conninfo_with_tls(&self, current: &str) -> String {
        let kept: Vec<&str> = current
            .split_whitespace()
            .filter(|kv| !kv.starts_with("sslmode=") && !kv.starts_with("sslrootcert="))
            .collect();
        let mut out = kept.join(" ");
        if !self.tls_conninfo.is_empty() {
            out.push(' ');
            out.push_str(&self.tls_conninfo);
        }
        out
    }

    fn conninfo<'a>(&self, cx: &'a StepContext) -> Option<&'a str> {
        self.standby_setting(cx, "primary_conninfo")
    }

    /// A setting of this host's server while it runs as a standby.
    fn standby_setting<'a>(&self, cx: &'a StepContext, name: &str) -> Option<&'a str> {
        let pg = cx.facts.postgres.as_ref().filter(|pg| pg.running && pg.in_recovery)?;
        Some(pg.settings.get(name)?.value.as_str())
    }
}

impl Module for RepmgrClone {
    fn kind(&self) -> &'static str {
        "repmgr_clone"
    }

    fn check(&self, cx: &StepContext) -> Check {
        match self.as_pg_clone().decide(cx) {
            // repmgr writes primary_conninfo (postgresql.auto.conf): a standby without one
            // (an interrupted rejoin) follows nobody until repmgr points it somewhere.
            // Nothing to follow: repmgr points it at its upstream.
            Decision::InSync(_) if self.follows_nobody(cx) => self.follow_again(
                cx,
                "a standby with no primary_conninfo: it follows nobody".to_owned(),
            ),
            // Following another host, it may have received WAL the new timeline does not have
            // (an old primary that went on alone): stopped and rejoined, rewound only if it
            // went past the fork. `standby follow` would refuse exactly then.
            Decision::InSync(_) if self.follows_elsewhere(cx).is_some() => {
                Check::Changes(vec![cx.change(
                    self.kind(),
                    Action::Rewind,
                    format!("rejoin {} (node {})", self.upstream, self.upstream_node_id),
                    format!(
                        "{}: stopped, rewound with pg_rewind if it went past the fork, made to follow",
                        self.follows_elsewhere(cx).unwrap_or_default()
                    ),
                    self.repoint_commands(),
                )])
            }
            Decision::InSync(_) if self.slotless(cx) => self.follow_again(
                cx,
                format!(
                    "it streams without a replication slot: {} may recycle WAL it still needs; repmgr follows again and makes its slot",
                    self.upstream
                ),
            ),
            // The same upstream, the same slot: only the TLS settings of the connection change
            // (`repmgr standby follow` refuses an upstream whose slot it is using). Written
            // where repmgr writes it; the walreceiver reconnects on the reload.
            Decision::InSync(_) if self.tls_differs(cx) => {
                let wanted = self.conninfo_with_tls(self.conninfo(cx).unwrap_or_default());
                Check::Changes(vec![cx.change(
                    self.kind(),
                    Action::Update,
                    "primary_conninfo".to_owned(),
                    if self.tls_conninfo.is_empty() {
                        "it asks for TLS the cluster no longer has: reconnects without it"
                    } else {
                        "it does not check the server against the cluster CA: reconnects with sslmode=verify-full"
                    },
                    vec![RemoteCommand::sql(
                        self.port,
                        "postgres",
                        format!(
                            "ALTER SYSTEM SET primary_conninfo = {};\nSELECT pg_reload_conf();\n",
                            crate::steps::sql::literal(&wanted)
                        ),
                    )],
                )])
            }
            decision => decision.into_check(
                cx,
                self.kind(),
                || self.clone_commands(),
                |reason| {
                    let pg = cx.facts.postgres.as_ref();
                    let crashed =
                        pg.is_some_and(|pg| pg.state == "in production" && !pg.running);
                    // A standby that went past the fork (it followed an old primary that went
                    // on alone): see `repoint_commands`.
                    let standby = pg.is_some_and(|pg| {
                        (pg.running && pg.in_recovery) || pg.state == "shut down in recovery"
                    });
                    if standby {
                        (
                            format!("rewind (pg_rewind) and follow {}: {reason}", self.upstream),
                            self.repoint_commands(),
                        )
                    } else {
                        (
                            format!(
                                "rejoin (repmgr node rejoin --force-rewind) before start: {reason}"
                            ),
                            self.rejoin_commands(crashed),
                        )
                    }
                },
            ),
        }
    }
}
