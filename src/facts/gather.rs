//! The one command that gathers a host's facts, and the pure parser of its output.
//!
//! One round trip: a POSIX shell script prints sections headed `@@pgha KIND ARG`; file
//! contents travel base64-encoded, PostgreSQL's state as one JSON object from one query.

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::facts::{FileFact, HostFacts, PgFacts, ServiceFact};
use crate::transport::RemoteCommand;

/// What to ask a host about.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub files: Vec<String>,
    pub present: Vec<String>,
    pub services: Vec<String>,
    pub port: u16,
    pub version: u32,
    pub data_dir: String,
    /// A flavour's questions, asked beside the rest.
    pub probes: Vec<Probe>,
    /// Leave out the installed packages (a re-read after a change that cannot touch them).
    pub skip_packages: bool,
    /// Leave out PostgreSQL's state.
    pub skip_postgres: bool,
}

/// The parts of a host's facts a change may make stale: after a step changed something,
/// apply reads again only what the step says it may have touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sections {
    pub packages: bool,
    pub files: bool,
    pub present: bool,
    pub services: bool,
    pub postgres: bool,
    pub probes: bool,
}

impl Sections {
    pub const ALL: Sections = Sections {
        packages: true,
        files: true,
        present: true,
        services: true,
        postgres: true,
        probes: true,
    };
    pub const NONE: Sections = Sections {
        packages: false,
        files: false,
        present: false,
        services: false,
        postgres: false,
        probes: false,
    };
    pub const POSTGRES: Sections = Sections {
        postgres: true,
        ..Sections::NONE
    };
    /// What runs: the units, the server, the flavour's services its probes ask.
    pub const RUNNING: Sections = Sections {
        services: true,
        postgres: true,
        probes: true,
        ..Sections::NONE
    };

    pub fn and(self, other: Sections) -> Sections {
        Sections {
            packages: self.packages || other.packages,
            files: self.files || other.files,
            present: self.present || other.present,
            services: self.services || other.services,
            postgres: self.postgres || other.postgres,
            probes: self.probes || other.probes,
        }
    }
}

impl HostFacts {
    /// Take the `sections` of `fresh` (a re-read of just those) over these facts.
    pub fn refresh(&mut self, fresh: HostFacts, sections: Sections) {
        if sections.packages {
            self.packages = fresh.packages;
            self.hardware = fresh.hardware;
        }
        if sections.files {
            self.files = fresh.files;
        }
        if sections.present {
            self.present = fresh.present;
        }
        if sections.services {
            self.services = fresh.services;
        }
        if sections.postgres {
            self.postgres = fresh.postgres;
        }
        if sections.probes {
            self.probes = fresh.probes;
        }
    }
}

/// A flavour's question to a host: a shell fragment run in the same round trip, beside the
/// rest (it may wait on the network). What it prints is kept as lines under its name; the
/// flavour that asked parses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub name: &'static str,
    pub script: String,
}

/// The state of the local PostgreSQL in one JSON object. Values of `pg_settings.setting` are
/// in the parameter's base unit, which `pg_params::same_value` understands.
const PG_STATE_SQL: &str = r#"SELECT json_build_object(
 'in_recovery', pg_is_in_recovery(),
 'system_identifier', (SELECT system_identifier::text FROM pg_control_system()),
 'timeline', CASE WHEN pg_is_in_recovery() THEN (SELECT greatest(c.timeline_id, coalesce((SELECT received_tli FROM pg_stat_wal_receiver), 0), r.min_recovery_end_timeline) FROM pg_control_checkpoint() c, pg_control_recovery() r) ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
 'received_lsn', CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text ELSE '' END,
 'history', CASE WHEN pg_is_in_recovery() THEN '' ELSE coalesce(pg_read_file('pg_wal/' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) || '.history', 0, 1048576, true), '') END,
 'settings', (SELECT coalesce(json_object_agg(name, json_build_object('value', setting, 'context', context, 'pending_restart', pending_restart)), '{}') FROM pg_settings),
 'file_errors', (SELECT coalesce(json_agg(coalesce(sourcefile, '?') || ':' || coalesce(sourceline, 0) || ': ' || error), '[]') FROM pg_file_settings WHERE error IS NOT NULL),
 'roles', (SELECT coalesce(json_object_agg(rolname, json_build_object('login', rolcanlogin, 'superuser', rolsuper, 'createdb', rolcreatedb, 'createrole', rolcreaterole, 'replication', rolreplication, 'connection_limit', rolconnlimit, 'password_verifier', rolpassword, 'rewind', rolsuper OR (has_function_privilege(oid, 'pg_catalog.pg_ls_dir(text, boolean, boolean)', 'EXECUTE') AND has_function_privilege(oid, 'pg_catalog.pg_stat_file(text, boolean)', 'EXECUTE') AND has_function_privilege(oid, 'pg_catalog.pg_read_binary_file(text)', 'EXECUTE') AND has_function_privilege(oid, 'pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)', 'EXECUTE')))), '{}') FROM pg_authid WHERE rolname !~ '^pg_'),
 'databases', (SELECT coalesce(json_object_agg(datname, json_build_object('owner', pg_get_userbyid(datdba))), '{}') FROM pg_database WHERE datallowconn),
 'slots', (SELECT coalesce(json_object_agg(slot_name, json_build_object('active', active, 'physical', slot_type = 'physical', 'streamer', coalesce((SELECT r.application_name || ' ' || coalesce(host(r.client_addr), '') FROM pg_stat_replication r WHERE r.pid = s.active_pid), ''))), '{}') FROM pg_replication_slots s),
 'replication', (SELECT coalesce(json_agg(json_build_object('application_name', application_name, 'client_addr', coalesce(host(client_addr), ''), 'state', coalesce(state, ''), 'sync_state', coalesce(sync_state, ''), 'lag_bytes', coalesce(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, replay_lsn), 0)::bigint, 'lag_seconds', coalesce(extract(epoch FROM replay_lag), 0))), '[]') FROM pg_stat_replication),
 'lsn', (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text,
 'wal_receiver', (SELECT json_build_object('status', status, 'sender_host', coalesce(sender_host, ''), 'slot_name', coalesce(slot_name, '')) FROM pg_stat_wal_receiver LIMIT 1),
 'pristine', NOT EXISTS (SELECT 1 FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1'))
     AND NOT EXISTS (SELECT 1 FROM pg_authid WHERE oid >= 16384)
     AND NOT EXISTS (SELECT 1 FROM pg_class WHERE oid >= 16384)
)"#;

impl Query {
    /// The same questions, limited to `sections`.
    pub fn only(&self, sections: Sections) -> Query {
        let pick = |on: bool, list: &Vec<String>| if on { list.clone() } else { Vec::new() };
        Query {
            files: pick(sections.files, &self.files),
            present: pick(sections.present, &self.present),
            services: pick(sections.services, &self.services),
            port: self.port,
            version: self.version,
            data_dir: self.data_dir.clone(),
            probes: if sections.probes {
                self.probes.clone()
            } else {
                Vec::new()
            },
            skip_packages: self.skip_packages || !sections.packages,
            skip_postgres: self.skip_postgres || !sections.postgres,
        }
    }

    /// The gathering script. Runs as root (files owned by postgres are read too).
    pub fn command(&self) -> RemoteCommand {
        let q = |s: &str| shell_words::quote(s).into_owned();
        let mut s = String::from("export LC_ALL=C; ");
        // A flavour's probes may wait on the network: they run beside the rest and
        // their sections are printed at the end.
        let mut probes = String::new();
        for p in &self.probes {
            probes.push_str(&format!(
                "echo '@@pgha probe {}'; {{\n{}\n}}; ",
                p.name.replace('\'', ""),
                p.script
            ));
        }
        if !probes.is_empty() {
            s.push_str(&format!(
                "probes=$(mktemp); ( {probes}) >\"$probes\" 2>/dev/null & probes_pid=$!; "
            ));
        }
        if !self.skip_packages {
            s.push_str("echo '@@pgha packages'; dpkg-query -W -f='${db:Status-Abbrev}\\t${Package}\\t${Version}\\n' 2>/dev/null | awk -F'\\t' '$1 ~ /^ii/ {print $2 \"\\t\" $3}'; ");
            // The machine's memory, its cgroup's limit (v2, then v1) when it has one, and the
            // CPUs this process may run on.
            s.push_str("echo '@@pgha hardware'; awk '/^MemTotal:/ {print \"memory_kb \" $2}' /proc/meminfo; \
                 for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do if [ -r \"$f\" ]; then echo \"limit $(cat \"$f\")\"; break; fi; done; \
                 echo \"cpus $(nproc)\"; ");
        }
        for f in &self.files {
            s.push_str(&format!(
                "if [ -f {p} ]; then echo '@@pgha file {f}'; stat -c '%U %G %a' {p}; base64 -w0 {p}; echo; fi; ",
                p = q(f),
                f = f.replace('\'', "")
            ));
        }
        for p in &self.present {
            s.push_str(&format!(
                "if [ -e {} ]; then echo '@@pgha present {}'; fi; ",
                q(p),
                p.replace('\'', "")
            ));
        }
        if !self.services.is_empty() {
            // A unit in transition (a host just booted, a restart under way) is read once it
            // settles, for up to 10 s: a plan must not offer to start what is already starting.
            s.push_str(
                "pgha_active() { i=0; while s=$(systemctl is-active \"$1\" 2>/dev/null); \
                   case \"$s\" in activating|deactivating|reloading|refreshing) [ $i -lt 40 ];; *) false;; esac; \
                 do i=$((i+1)); sleep 0.25; done; echo \"$s\"; }; ",
            );
        }
        for svc in &self.services {
            s.push_str(&format!(
                "echo '@@pgha service {n}'; pgha_active {u}; systemctl is-enabled {u} 2>/dev/null; ",
                n = svc.replace('\'', ""),
                u = q(svc)
            ));
        }
        if !self.skip_postgres {
            let data = q(&self.data_dir);
            // Two psql runs in all, with the real binary: Debian's `psql` is a Perl wrapper that
            // costs ~30 ms a call. The first returns the state and the databases, the second
            // visits every database for its extensions in one session.
            let psql = format!(
                "runuser -u postgres -- /usr/lib/postgresql/{}/bin/psql -X -At -p {} -d postgres",
                self.version, self.port
            );
            s.push_str(&format!(
                "if [ -f {data}/PG_VERSION ]; then echo '@@pgha pg_initialized'; \
                   if [ -f {data}/standby.signal ]; then echo '@@pgha standby_signal'; fi; \
                   if out=$({psql} -c {sql} -c \"SELECT string_agg(quote_ident(datname), ' ') FROM pg_database WHERE datallowconn AND datname <> 'template1'\" 2>/dev/null); then \
                     echo '@@pgha pg_state'; printf '%s\\n' \"$out\" | head -n 1; \
                     echo '@@pgha extensions'; \
                     for db in $(printf '%s\\n' \"$out\" | sed -n 2p); do printf '\\\\c %s\\nSELECT current_database() || chr(9) || coalesce(json_agg(extname), %s) FROM pg_extension;\\n' \"$db\" \"'[]'\"; done | {psql} -q 2>/dev/null; \
                   else echo '@@pgha pg_control'; /usr/lib/postgresql/{v}/bin/pg_controldata {data} 2>/dev/null | grep -E '^(Database system identifier|Latest checkpoint.s TimeLineID|Latest checkpoint location|Database cluster state)'; fi; \
                 fi; ",
                sql = q(PG_STATE_SQL),
                v = self.version,
            ));
        }
        if !probes.is_empty() {
            s.push_str("wait $probes_pid; cat \"$probes\"; rm -f \"$probes\"; ");
        }
        s.push_str("echo '@@pgha end'");
        RemoteCommand::script(s)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the facts of {host}: {reason}")]
pub struct ParseError {
    pub host: String,
    pub reason: String,
}

/// Parse the script's output. Pure: tested with fixture output.
pub fn parse(host: &str, output: &str) -> Result<HostFacts, ParseError> {
    let fail = |reason: String| ParseError {
        host: host.to_owned(),
        reason,
    };
    let mut facts = HostFacts::default();
    let mut sections: Vec<(String, String, Vec<&str>)> = Vec::new();
    for line in output.lines() {
        if let Some(head) = line.strip_prefix("@@pgha ") {
            let (kind, arg) = head.split_once(' ').unwrap_or((head, ""));
            sections.push((kind.to_owned(), arg.to_owned(), Vec::new()));
        } else if let Some(last) = sections.last_mut() {
            last.2.push(line);
        }
    }
    if sections.last().map(|s| s.0.as_str()) != Some("end") {
        return Err(fail("the output ended early".into()));
    }
    let mut pg: Option<PgFacts> = None;
    let mut extensions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut standby_signal = false;
    for (kind, arg, lines) in sections {
        match kind.as_str() {
            "packages" => {
                for l in lines {
                    if let Some((name, version)) = l.split_once('\t') {
                        facts.packages.insert(name.to_owned(), version.to_owned());
                    }
                }
            }
            "file" => {
                let meta: Vec<&str> = lines
                    .first()
                    .map(|l| l.split(' ').collect())
                    .unwrap_or_default();
                let [owner, group, mode] = meta.as_slice() else {
                    return Err(fail(format!("file {arg}: no owner/mode line")));
                };
                let body = lines.get(1).copied().unwrap_or("");
                let bytes = STANDARD
                    .decode(body.trim())
                    .map_err(|e| fail(format!("file {arg}: {e}")))?;
                facts.files.insert(
                    arg,
                    FileFact {
                        content: String::from_utf8_lossy(&bytes).into_owned(),
                        owner: (*owner).to_owned(),
                        group: (*group).to_owned(),
                        mode: format!("{:0>4}", mode),
                    },
                );
            }
            "present" => facts.present.push(arg),
            "service" => {
                let active = lines.first().map(|l| l.trim()) == Some("active");
                let masked = matches!(
                    lines.get(1).map(|l| l.trim()),
                    Some("masked" | "masked-runtime")
                );
                let enabled = matches!(
                    lines.get(1).map(|l| l.trim()),
                    Some(
                        "enabled"
                            | "enabled-runtime"
                            | "static"
                            | "generated"
                            | "alias"
                            | "indirect"
                    )
                );
                facts.services.insert(
                    arg,
                    ServiceFact {
                        active,
                        enabled,
                        masked,
                    },
                );
            }
            "hardware" => facts.hardware = hardware(&lines),
            "pg_initialized" => {
                pg = Some(PgFacts {
                    initialized: true,
                    ..PgFacts::default()
                });
            }
            "standby_signal" => standby_signal = true,
            "probe" => {
                facts
                    .probes
                    .insert(arg, lines.iter().map(|l| (*l).to_owned()).collect());
            }
            "pg_state" => {
                let json = lines.join("\n");
                let mut state: PgFacts = serde_json::from_str(&json)
                    .map_err(|e| fail(format!("PostgreSQL state: {e}")))?;
                state.initialized = true;
                state.running = true;
                pg = Some(state);
            }
            "pg_control" => {
                let p = pg.get_or_insert_with(PgFacts::default);
                p.initialized = true;
                for l in lines {
                    if let Some((key, value)) = l.split_once(':') {
                        let value = value.trim();
                        match key.trim() {
                            "Database system identifier" => p.system_identifier = value.to_owned(),
                            "Latest checkpoint's TimeLineID" => {
                                p.timeline = value.parse().unwrap_or(0)
                            }
                            "Latest checkpoint location" => p.lsn = value.to_owned(),
                            "Database cluster state" => {
                                p.in_recovery = value.contains("recovery");
                                p.state = value.to_owned();
                            }
                            _ => {}
                        }
                    }
                }
            }
            "extensions" => {
                for line in lines {
                    let Some((db, json)) = line.split_once('\t') else {
                        continue;
                    };
                    let list: Vec<String> = serde_json::from_str(json)
                        .map_err(|e| fail(format!("extensions of {db}: {e}")))?;
                    extensions.insert(db.to_owned(), list);
                }
            }
            _ => {}
        }
    }
    if let Some(p) = pg.as_mut() {
        p.standby_signal = standby_signal;
        for (db, list) in extensions {
            p.databases.entry(db).or_default().extensions = list;
        }
    }
    facts.postgres = pg;
    Ok(facts)
}

/// Memory (the smaller of the machine's and its cgroup's limit; `max` or a number past any
/// real machine is no limit) and CPUs; None when either is missing.
fn hardware(lines: &[&str]) -> Option<crate::model::Hardware> {
    let value = |key: &str| {
        lines
            .iter()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
    };
    let machine = value("memory_kb")?.checked_mul(1024)?;
    let memory = value("limit").map_or(machine, |limit| limit.min(machine));
    let cpus = u32::try_from(value("cpus")?).ok()?;
    Some(crate::model::Hardware { memory, cpus })
}

/// What stands in a secret's place in scrubbed output.
pub const WITHHELD: &str = "(sensitive: withheld)";

/// The script's output fit to show or keep (as a fixture), still read by [`parse`]: the
/// content of every file in `secret_files` and every role's password verifier become
/// [`WITHHELD`] (a file's content base64-encoded, as the script sends it). A PostgreSQL state
/// that is not JSON is withheld whole.
/// [`scrub`] for facts already parsed: the same withheld, for the JSON view.
pub fn scrub_facts(facts: &mut HostFacts, secret_files: &BTreeSet<String>) {
    for (path, file) in facts.files.iter_mut() {
        if secret_files.contains(path) {
            file.content = WITHHELD.to_owned();
        }
    }
    for role in facts
        .postgres
        .iter_mut()
        .flat_map(|pg| pg.roles.values_mut())
    {
        if role.password_verifier.is_some() {
            role.password_verifier = Some(WITHHELD.to_owned());
        }
    }
}

pub fn scrub(output: &str, secret_files: &BTreeSet<String>) -> String {
    let mut out = String::with_capacity(output.len());
    let (mut kind, mut arg, mut index) = ("", "", 0);
    for line in output.lines() {
        if let Some(head) = line.strip_prefix("@@pgha ") {
            (kind, arg) = head.split_once(' ').unwrap_or((head, ""));
            index = 0;
            out.push_str(line);
        } else {
            index += 1;
            match kind {
                // Line 1 is owner, group and mode; line 2 the content.
                "file" if index >= 2 && secret_files.contains(arg) => {
                    if index > 2 {
                        continue;
                    }
                    out.push_str(&STANDARD.encode(WITHHELD));
                }
                "pg_state" => match serde_json::from_str::<serde_json::Value>(line) {
                    Ok(mut state) => {
                        let roles = state.get_mut("roles").and_then(|r| r.as_object_mut());
                        for role in roles.into_iter().flat_map(|r| r.values_mut()) {
                            if let Some(v) =
                                role.get_mut("password_verifier").filter(|v| !v.is_null())
                            {
                                *v = WITHHELD.into();
                            }
                        }
                        out.push_str(&state.to_string());
                    }
                    Err(_) => out.push_str(WITHHELD),
                },
                _ => out.push_str(line),
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_a_running_primary() {
        let text = include_str!("../../tests/fixtures/facts/streaming_primary.txt");
        let f = parse("pg1", text).expect("parses");
        assert_eq!(
            f.packages.get("postgresql-15").map(String::as_str),
            Some("15.20-0+deb12u1")
        );
        let hba = &f.files["/etc/postgresql/15/main/pg_hba.conf"];
        assert!(
            hba.content
                .contains("\nlocal     all           postgres                         peer\n"),
            "{}",
            hba.content
        );
        assert_eq!(
            (hba.owner.as_str(), hba.mode.as_str()),
            ("postgres", "0640")
        );
        let pgpass = &f.files["/var/lib/postgresql/.pgpass"];
        assert_eq!(
            (pgpass.content.as_str(), pgpass.mode.as_str()),
            (super::WITHHELD, "0600")
        );
        assert!(f.present.is_empty(), "no guard path exists");
        let svc = &f.services["postgresql@15-main"];
        assert!(
            svc.active && svc.enabled,
            "enabled-runtime counts as enabled"
        );
        let pg = f.postgres.expect("postgres");
        assert!(pg.running && pg.initialized && !pg.in_recovery && !pg.pristine);
        assert_eq!(pg.system_identifier, "7714471226806648434");
        assert_eq!(pg.settings["shared_buffers"].context, "postmaster");
        assert_eq!(
            pg.roles["replicator"].password_verifier.as_deref(),
            Some(super::WITHHELD)
        );
        assert_eq!(
            pg.databases["appdb"].extensions,
            ["plpgsql", "pg_stat_statements"]
        );
        assert_eq!(pg.databases["appdb"].owner, "app");
        assert!(pg.slots["pgha_pg2"].active);
        assert_eq!(pg.replication[0].state, "streaming");
        assert!(pg.wal_receiver.is_none());
    }

    #[test]
    fn hardware_is_the_smaller_of_the_machines_memory_and_its_cgroups_limit() {
        let out = |limit: &str| {
            format!("@@pgha hardware\nmemory_kb 8039448\n{limit}cpus 4\n@@pgha end\n")
        };
        let f = parse("pg1", &out("limit max\n")).expect("parses");
        assert_eq!(
            f.hardware,
            Some(crate::model::Hardware {
                memory: 8039448 * 1024,
                cpus: 4
            })
        );
        let f = parse("pg1", &out("limit 2147483648\n")).expect("parses");
        assert_eq!(f.hardware.map(|h| h.memory), Some(2147483648));
        // cgroup v1 without a limit says a number no machine has.
        let f = parse("pg1", &out("limit 9223372036854771712\n")).expect("parses");
        assert_eq!(f.hardware.map(|h| h.memory), Some(8039448 * 1024));
        assert_eq!(parse("pg1", "@@pgha end\n").expect("parses").hardware, None);
    }

    #[test]
    fn parses_a_stopped_standby_from_pg_controldata() {
        let f = parse(
            "pg2",
            include_str!("../../tests/fixtures/facts/stopped_standby.txt"),
        )
        .expect("parses");
        assert!(!f.services["postgresql@15-main"].active);
        let pg = f.postgres.expect("postgres");
        assert!(pg.initialized && !pg.running && pg.in_recovery && !pg.pristine);
        assert!(pg.standby_signal && pg.is_replica());
        assert_eq!(
            (pg.system_identifier.as_str(), pg.timeline),
            ("7714471226806648434", 1)
        );
        assert!(
            pg.settings.is_empty() && pg.roles.is_empty(),
            "only pg_controldata"
        );
    }

    #[test]
    fn a_re_read_asks_only_the_sections_a_step_touched_and_keeps_the_rest() {
        use super::{Query, Sections};
        use crate::facts::{HostFacts, PgFacts};
        let q = Query {
            files: vec!["/etc/x".into()],
            services: vec!["postgresql@15-main".into()],
            port: 5432,
            version: 15,
            data_dir: "/var/lib/postgresql/15/main".into(),
            ..Query::default()
        };
        let only_files = q
            .only(Sections {
                files: true,
                ..Sections::NONE
            })
            .command()
            .display(true);
        assert!(only_files.contains("@@pgha file /etc/x"));
        for absent in ["dpkg-query", "@@pgha service", "PG_VERSION"] {
            assert!(!only_files.contains(absent), "{absent} asked: {only_files}");
        }
        let everything = q.command().display(true);
        assert!(everything.contains("dpkg-query") && everything.contains("PG_VERSION"));
        let mut facts = HostFacts {
            postgres: Some(PgFacts {
                running: true,
                ..PgFacts::default()
            }),
            ..HostFacts::default()
        };
        facts.packages.insert("postgresql-15".into(), "15".into());
        let fresh = parse(
            "pg1",
            "@@pgha file /etc/x\nroot root 644\naGk=\n@@pgha end\n",
        )
        .expect("parses");
        facts.refresh(
            fresh,
            Sections {
                files: true,
                ..Sections::NONE
            },
        );
        assert_eq!(facts.files["/etc/x"].content, "hi");
        assert!(facts.postgres.is_some() && facts.packages.contains_key("postgresql-15"));
    }

    #[test]
    fn scrubbed_output_withholds_every_secret_and_still_parses() {
        use super::{scrub, WITHHELD};
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        use std::collections::BTreeSet;
        let pgpass = STANDARD.encode("10.0.0.1:5432:replication:replicator:s3cret-pass\n");
        let text = format!(
            "@@pgha file /var/lib/postgresql/.pgpass\npostgres postgres 600\n{pgpass}\n\
             @@pgha file /etc/x\nroot root 644\naGk=\n@@pgha pg_initialized\n@@pgha pg_state\n\
             {{\"in_recovery\" : false, \"roles\" : {{ \"postgres\" : {{\"login\" : true, \"password_verifier\" : null}}, \
             \"replicator\" : {{\"login\" : true, \"password_verifier\" : \"SCRAM-SHA-256$4096:c2FsdA==$a:b\"}} }}}}\n@@pgha end\n"
        );
        let secret_files = BTreeSet::from(["/var/lib/postgresql/.pgpass".to_owned()]);
        let scrubbed = scrub(&text, &secret_files);
        assert!(
            !scrubbed.contains(&pgpass) && !scrubbed.contains("SCRAM-SHA-256"),
            "{scrubbed}"
        );
        assert_eq!(scrub(&scrubbed, &secret_files), scrubbed, "idempotent");
        let f = parse("pg1", &scrubbed).expect("still parses");
        let file = &f.files["/var/lib/postgresql/.pgpass"];
        assert_eq!(
            (
                file.content.as_str(),
                file.owner.as_str(),
                file.mode.as_str()
            ),
            (WITHHELD, "postgres", "0600")
        );
        assert_eq!(f.files["/etc/x"].content, "hi", "other files are kept");
        let pg = f.postgres.expect("postgres");
        assert!(pg.running && pg.roles["replicator"].login);
        assert_eq!(
            pg.roles["replicator"].password_verifier.as_deref(),
            Some(WITHHELD)
        );
        assert_eq!(pg.roles["postgres"].password_verifier, None, "none to hide");
        let broken = scrub(
            "@@pgha pg_state\n{\"password_verifier\" : \"SCRAM-SHA-256$x\n@@pgha end\n",
            &secret_files,
        );
        assert!(!broken.contains("SCRAM"), "{broken}");
    }

    #[test]
    fn a_truncated_output_is_an_error() {
        let err = parse("pg3", "@@pgha packages\npostgresql-15\t1\n").expect_err("truncated");
        assert!(
            err.to_string().contains("pg3") && err.to_string().contains("ended early"),
            "{err}"
        );
    }

    #[test]
    fn a_bare_host_has_no_postgres() {
        let f = parse(
            "pg1",
            "@@pgha packages\n@@pgha service postgresql@15-main\ninactive\nnot-found\n@@pgha end\n",
        )
        .expect("parses");
        assert!(f.postgres.is_none() && f.packages.is_empty());
    }
}
