//! A standby's data directory: cloned from its upstream with `pg_basebackup`, or rewound with
//! `pg_rewind` when it holds this cluster on a timeline the primary left (a former primary).
//!
//! Runs only when the host is not already a replica of this cluster. It never replaces a data
//! directory holding data unless the host has `allow_wipe`: another cluster's data, or this
//! cluster's after a rewind failed (PostgreSQL's word: the directory is then not
//! recoverable). A directory only initdb has touched (Debian makes one when the package is
//! installed) is replaced freely; a former primary is rewound, and the plan names what the
//! rewind discards.

use serde::{Deserialize, Serialize};

use crate::facts::{self, HostFacts, PgFacts};
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

/// Present while a clone runs; left behind when one was interrupted.
pub const CLONE_MARKER: &str = "/var/lib/pgha/clone-in-progress";
/// Present while a rewind runs; left behind when one failed or was interrupted.
pub const REWIND_MARKER: &str = "/var/lib/pgha/rewind-in-progress";
/// Written by a failover on a former primary it could reach: stopped and kept from starting.
pub const FENCE_MARKER: &str = "/var/lib/pgha/fenced";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgClone {
    /// Host name of the upstream (for its facts) and the address to connect to.
    pub upstream: String,
    pub upstream_address: String,
    pub port: u16,
    /// The primary's host name: a standby must hold the primary's system identifier.
    pub primary: String,
    pub user: String,
    #[serde(default)]
    pub slot: Option<String>,
    pub data_dir: String,
    /// The systemd unit of the instance (`postgresql@15-main`).
    pub service: String,
    #[serde(default)]
    pub allow_wipe: bool,
    /// Where pg_rewind is (`/usr/lib/postgresql/15/bin`).
    #[serde(default)]
    pub bin_dir: String,
    /// postgresql.conf: on Debian it is not in the data directory, and pg_rewind's own crash
    /// recovery of a server that did not shut down cleanly needs it.
    #[serde(default)]
    pub config_file: String,
    /// What the connections to the upstream add to check it (`sslmode=verify-full
    /// sslrootcert=...`), when the cluster has TLS.
    #[serde(default)]
    pub ssl: String,
}

impl PgClone {
    fn clone_commands(&self) -> Vec<RemoteCommand> {
        let data = shell_words::quote(&self.data_dir).into_owned();
        let mut basebackup = vec![
            "pg_basebackup".to_owned(),
            "-h".to_owned(),
            self.upstream_address.clone(),
            "-p".to_owned(),
            self.port.to_string(),
            "-U".to_owned(),
            self.user.clone(),
            "-D".to_owned(),
            self.data_dir.clone(),
            "-X".to_owned(),
            "stream".to_owned(),
            "--checkpoint=fast".to_owned(),
            // Never prompt: the password comes from ~postgres/.pgpass.
            "-w".to_owned(),
        ];
        if let Some(slot) = &self.slot {
            basebackup.extend(["-S".to_owned(), slot.clone()]);
        }
        if !self.ssl.is_empty() {
            basebackup.extend(["-d".to_owned(), self.ssl.clone()]);
        }
        vec![
            RemoteCommand::new(["systemctl", "stop", &self.service]),
            // The marker says "this directory is pgha's unfinished clone": a run that was
            // killed mid-copy is replaced by the next one, never mistaken for data. A copy
            // still running from that killed run is stopped first (killing pgha does not stop
            // it on the host).
            RemoteCommand::script(format!(
                "set -e; mkdir -p /var/lib/pgha; touch {CLONE_MARKER}; rm -f {REWIND_MARKER}; \
                 pkill -x pg_basebackup && sleep 1 || true; \
                 install -d -m 0700 -o postgres -g postgres {data}; find {data} -mindepth 1 -delete"
            )),
            RemoteCommand::new(basebackup).as_user("postgres"),
            self.standby_signal(),
            self.done(CLONE_MARKER),
        ]
    }

    /// Starts as a standby (the configuration is pgha's `pgha-standby.conf`).
    fn standby_signal(&self) -> RemoteCommand {
        RemoteCommand::new([
            "touch".to_owned(),
            format!("{}/standby.signal", self.data_dir),
        ])
        .as_user("postgres")
    }

    /// The work `marker` stood for is complete; a failover's fence is lifted: the server may
    /// start again, as the standby it now is.
    fn done(&self, marker: &str) -> RemoteCommand {
        RemoteCommand::script(format!(
            "rm -f {marker} {FENCE_MARKER}; systemctl unmask {} >/dev/null 2>&1 || true",
            shell_words::quote(&self.service)
        ))
    }

    fn rewind_commands(&self) -> Vec<RemoteCommand> {
        let mut source = format!(
            "host={} port={} user={} dbname=postgres passfile=/var/lib/postgresql/.pgpass",
            self.upstream_address, self.port, self.user
        );
        if !self.ssl.is_empty() {
            source = format!("{source} {}", self.ssl);
        }
        let mut rewind = vec![
            format!("{}/pg_rewind", self.bin_dir),
            format!("--target-pgdata={}", self.data_dir),
            format!("--source-server={source}"),
        ];
        if !self.config_file.is_empty() {
            rewind.push(format!("--config-file={}", self.config_file));
        }
        vec![
            RemoteCommand::new(["systemctl", "stop", &self.service]),
            RemoteCommand::script(format!(
                "set -e; mkdir -p /var/lib/pgha; touch {REWIND_MARKER}"
            )),
            RemoteCommand::new(rewind).as_user("postgres"),
            self.standby_signal(),
            self.done(REWIND_MARKER),
        ]
    }

    fn clone(&self, _cx: &StepContext, reason: impl Into<String>) -> Decision {
        Decision::Clone {
            target: format!("{} from {}", self.data_dir, self.upstream),
            reason: reason.into(),
        }
    }

    /// This cluster's data on a timeline the primary left, or a second primary: rewind it
    /// onto the primary's timeline, saying what that discards.
    fn rewind(&self, cx: &StepContext, here: &PgFacts, primary: &PgFacts) -> Decision {
        let was = if here.running && !here.in_recovery {
            format!(
                "runs as a second primary on timeline {} (the primary {} is on timeline {})",
                here.timeline, self.primary, primary.timeline
            )
        } else if !here.running
            && (here.state == "in production" || (!here.in_recovery && !here.standby_signal))
        {
            format!(
                "was a primary on timeline {} (the primary {} is now on timeline {}){}",
                here.timeline,
                self.primary,
                primary.timeline,
                match here.state.as_str() {
                    "in production" => ", and crashed",
                    _ => "",
                }
            )
        } else {
            format!(
                "replayed past where timeline {} forked (the primary {} is on timeline {})",
                here.timeline, self.primary, primary.timeline
            )
        };
        Decision::Rewind {
            target: format!("{} onto {}'s timeline {}", self.data_dir, self.upstream, primary.timeline),
            reason: format!("{} {was}: stopped, rewound with pg_rewind and started as a standby; {}", cx.host, discarded(here, primary)),
        }
    }
}

/// What a rewind throws away: the WAL the host wrote after its timeline forked.
/// Copies the upstream's timeline history files that the stopped standby's `pg_wal` lacks.
/// After a pg_rewind that found nothing to rewind (the standby had *replayed* no further than
/// the fork), its `pg_wal` may still hold WAL it *received* past the fork from the old
/// primary: started without the new timeline's history, it replays that first and can never
/// follow. With the history in place, recovery switches timelines at the fork. `conninfo`
/// names a role that may read the server's files (pg_rewind's).
pub fn fetch_timeline_histories(bin_dir: &str, data_dir: &str, conninfo: &str) -> RemoteCommand {
    let query = "SELECT name, translate(encode(pg_read_binary_file('pg_wal/' || name), 'base64'), E'\\n', '') \
                 FROM pg_ls_dir('pg_wal') AS name WHERE name ~ '^[0-9A-F]{8}[.]history$'";
    RemoteCommand::script(format!(
        "set -e; cd /; wal={data}/pg_wal; \
         runuser -u postgres -- {bin}/psql -XAtq -F ' ' -d {conninfo} -c {query} | \
         while read -r name content; do \
           [ -e \"$wal/$name\" ] && continue; \
           printf '%s' \"$content\" | base64 -d > \"$wal/$name.tmp\"; \
           chown postgres:postgres \"$wal/$name.tmp\"; mv \"$wal/$name.tmp\" \"$wal/$name\"; \
         done",
        data = shell_words::quote(data_dir),
        bin = bin_dir,
        conninfo = shell_words::quote(conninfo),
        query = shell_words::quote(query),
    ))
}

fn discarded(here: &PgFacts, primary: &PgFacts) -> String {
    let fork = facts::fork_point(&primary.history, here.timeline);
    match (fork, facts::lsn(&here.lsn)) {
        (Some(fork), Some(end)) if end > fork => format!(
            "it discards what it wrote after the fork at {}: at least {} bytes of WAL up to {} (transactions committed there only are lost)",
            show_lsn(fork),
            end - fork,
            here.lsn
        ),
        (Some(fork), _) => format!(
            "the fork is at {}; its last known position {} is not past it, so nothing it wrote after the fork is known (pg_rewind still compares every block)",
            show_lsn(fork),
            if here.lsn.is_empty() { "(none)" } else { &here.lsn }
        ),
        (None, _) => "it discards whatever it wrote after the fork (the primary's timeline history was not read)".to_owned(),
    }
}

fn show_lsn(n: u64) -> String {
    format!("{:X}/{:X}", n >> 32, n & 0xffff_ffff)
}

/// Whether this host's data has left the primary's history: it is on an older timeline and
/// went past the point where that timeline forked, or it runs or would start as a primary.
fn diverged(here: &PgFacts, primary: &PgFacts) -> bool {
    if !here.is_replica() {
        return true;
    }
    // A primary that crashed (standby.signal added since, by hand or by a failed rejoin):
    // its last checkpoint says nothing of the WAL it wrote after it, which may pass the fork.
    let crashed_primary = !here.running && here.state == "in production";
    if crashed_primary && here.timeline < primary.timeline {
        return true;
    }
    if here.timeline == 0 || here.timeline >= primary.timeline {
        return false;
    }
    // A replica that has not received from its upstream since the fork may be past it.
    let streaming = here.wal_receiver.as_ref().is_some_and(|w| w.status == "streaming");
    // What it received counts too: it replays that as soon as it starts.
    let at = facts::lsn(&here.lsn).max(facts::lsn(&here.received_lsn));
    match (facts::fork_point(&primary.history, here.timeline), at) {
        (Some(fork), Some(at)) => !streaming && at > fork,
        _ => false,
    }
}

fn pg_of(f: Option<&HostFacts>) -> Option<&PgFacts> {
    f.and_then(|f| f.postgres.as_ref())
}

/// What a standby's data directory needs, whatever tool then does it (pg_basebackup and
/// pg_rewind here; a flavour's own, such as repmgr's clone and rejoin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    InSync(String),
    Refused(String),
    Clone { target: String, reason: String },
    Rewind { target: String, reason: String },
}

impl Module for PgClone {
    fn kind(&self) -> &'static str {
        "pg_clone"
    }

    fn check(&self, cx: &StepContext) -> Check {
        self.decide(cx).into_check(
            cx,
            self.kind(),
            || self.clone_commands(),
            |reason| (reason, self.rewind_commands()),
        )
    }
}

impl Decision {
    /// The step's check: a clone or a rewind becomes one change with the tool's commands;
    /// `rewind` gets the reason and returns the one shown with its commands.
    pub fn into_check(
        self,
        cx: &StepContext,
        kind: &str,
        clone: impl FnOnce() -> Vec<RemoteCommand>,
        rewind: impl FnOnce(String) -> (String, Vec<RemoteCommand>),
    ) -> Check {
        match self {
            Decision::InSync(why) => Check::InSync(why),
            Decision::Refused(why) => Check::Refused(why),
            Decision::Clone { target, reason } => {
                Check::Changes(vec![cx.change(kind, Action::Clone, target, reason, clone())])
            }
            Decision::Rewind { target, reason } => {
                let (reason, commands) = rewind(reason);
                Check::Changes(vec![cx.change(kind, Action::Rewind, target, reason, commands)])
            }
        }
    }
}

impl PgClone {
    /// Clone, rewind, leave alone, or refuse: the safety rules every tool shares.
    pub fn decide(&self, cx: &StepContext) -> Decision {
        let primary = pg_of(cx.cluster_facts.get(&self.primary))
            .filter(|pg| !pg.system_identifier.is_empty());
        let interrupted = cx.facts.present.iter().any(|p| p == CLONE_MARKER);
        let rewind_failed = cx.facts.present.iter().any(|p| p == REWIND_MARKER);
        let here = cx.facts.postgres.as_ref().filter(|_| !interrupted);
        if interrupted {
            return self.clone(cx, "an interrupted clone is replaced");
        }
        let Some(pg) = here.filter(|pg| pg.initialized) else {
            return self.clone(cx, "no data directory yet");
        };
        // initdb's empty cluster holds nothing to lose, whatever its identifier (hosts built
        // from one image even share it).
        if pg.pristine {
            return self.clone(cx, "only initdb's empty cluster is here");
        }
        let Some(primary) = primary else {
            // The primary was not read (down, or outside what was contacted): its data
            // cannot be compared, so nothing is replaced on a guess.
            return if pg.is_replica() && !rewind_failed {
                Decision::InSync(format!(
                    "a replica (system identifier {}); {} was not read to compare",
                    pg.system_identifier, self.primary
                ))
            } else {
                Decision::Refused(format!(
                    "{} holds data and {} was not read: pgha cannot tell whether it is this cluster's, and replaces nothing on a guess",
                    cx.host, self.primary
                ))
            };
        };
        if pg.system_identifier != primary.system_identifier {
            return if self.allow_wipe {
                self.clone(
                    cx,
                    format!(
                        "holds a different cluster (system identifier {}, the primary's is {}) and allow_wipe is set: its data directory is deleted",
                        pg.system_identifier, primary.system_identifier
                    ),
                )
            } else {
                Decision::Refused(format!(
                    "{} holds a different cluster with data (system identifier {}) in {}; pgha will not wipe it. Set `allow_wipe: true` on this host to replace it",
                    cx.host, pg.system_identifier, self.data_dir
                ))
            };
        }
        if rewind_failed {
            // PostgreSQL's word: after a failed pg_rewind the target is likely not
            // recoverable; only a new copy is safe.
            return if self.allow_wipe {
                self.clone(
                    cx,
                    format!("a pg_rewind of {} failed or was interrupted, which leaves it unusable; allow_wipe is set: it is deleted and cloned again", self.data_dir),
                )
            } else {
                Decision::Refused(format!(
                    "a pg_rewind of {} on {} failed or was interrupted, which leaves it unusable. Set `allow_wipe: true` on {} to delete it and clone it again from {}",
                    self.data_dir, cx.host, cx.host, self.upstream
                ))
            };
        }
        if diverged(pg, primary) {
            // Only an older timeline orders the two histories: the newer one is the
            // primary's. On the same (or an unknown) timeline pgha cannot tell which holds
            // the writes that count.
            if !pg.is_replica() && (pg.timeline == 0 || pg.timeline >= primary.timeline) {
                return Decision::Refused(format!(
                    "{} holds this cluster but is not a standby, and its timeline {} is not older than the primary {}'s ({}): a second primary. Decide which one is real before anything is rewound",
                    cx.host, pg.timeline, self.primary, primary.timeline
                ));
            }
            return self.rewind(cx, pg, primary);
        }
        Decision::InSync(format!(
            "already a replica of this cluster (system identifier {})",
            pg.system_identifier
        ))
    }
}
