//! The `backups:` section: where and when base backups are taken, how many are kept, and
//! when they are proven restorable. Read and checked offline (the schedule's syntax again by
//! `systemd-analyze calendar` on the hosts, before a timer is written).

use std::time::Duration;

use crate::components::SectionInput;
use crate::diag::{Diagnostics, Pos};
use crate::model::Role;
use crate::yaml::decode::{self, MapReader};
use crate::yaml::node::Node;

/// Where backups go by default: outside PostgreSQL's folders, a mount point of its own is
/// the DBA's business.
pub const DIRECTORY: &str = "/var/backups/pgha";
/// The field guide's schedule: once a night.
const SCHEDULE: &str = "*-*-* 01:00:00";
/// A restore test after the night's backup.
const TEST_SCHEDULE: &str = "*-*-* 03:00:00";
/// Good backups kept when the inventory says nothing.
const KEEP: u32 = 7;

/// Which host takes the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Whichever host is primary when the timer fires.
    Primary,
    /// A streaming replica (the first in the inventory's order that streams), the primary
    /// when none does.
    Replica,
    /// This host, while it streams from the primary.
    Host(String),
}

impl Source {
    pub fn as_str(&self) -> &str {
        match self {
            Source::Primary => "primary",
            Source::Replica => "replica",
            Source::Host(h) => h,
        }
    }
}

/// How much of a restored copy pg_amcheck reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amcheck {
    /// Everything when the backup is small (1 GiB), a sample of tables otherwise.
    Auto,
    All,
    Sample,
    Off,
}

impl Amcheck {
    pub fn as_str(self) -> &'static str {
        match self {
            Amcheck::Auto => "auto",
            Amcheck::All => "all",
            Amcheck::Sample => "sample",
            Amcheck::Off => "off",
        }
    }
}

/// How backups are taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// pg_basebackup into a folder on the host that takes it, checked by pg_verifybackup.
    Basebackup,
    /// pgBackRest into a repository, WAL archived into it by `archive_command`.
    Pgbackrest(Pgbackrest),
}

impl Method {
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Basebackup => "basebackup",
            Method::Pgbackrest(_) => "pgbackrest",
        }
    }
}

/// pgBackRest's settings, derived from the section and the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pgbackrest {
    /// The stanza: the cluster's name.
    pub stanza: String,
    pub repository: Repository,
    /// `repo1-retention-full` (and its type).
    pub retention: RepoRetention,
}

/// Where the pgBackRest repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repository {
    /// A folder on a host of the inventory (a `role: backup` host or a data host): that host
    /// runs the backups, reaching the data hosts over SSH as postgres.
    Host { host: String, path: String },
    /// A POSIX folder every data host mounts (NFS): the data hosts run the backups.
    Path(String),
}

/// pgBackRest keeps full backups by count or by age in days, not both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoRetention {
    Count(u32),
    Days(u32),
}

/// Where a repository host keeps it when the inventory does not say (Debian's package makes
/// it, owned by postgres).
pub const REPOSITORY_PATH: &str = "/var/lib/pgbackrest";

#[derive(Debug, Clone)]
pub struct Section {
    pub method: Method,
    pub from: Source,
    /// systemd's OnCalendar= expression.
    pub schedule: String,
    pub test_schedule: String,
    /// Good backups kept (the newest is always kept).
    pub keep: Option<u32>,
    /// Good backups older than this go (the newest is always kept).
    pub max_age: Option<Duration>,
    pub directory: String,
    /// gzip the data after its verification.
    pub compress: bool,
    /// pg_basebackup's `--max-rate` (`32M`, `512k`).
    pub max_rate: Option<String>,
    pub amcheck: Amcheck,
}

/// What the section is checked against besides itself.
pub struct Context<'a> {
    /// PostgreSQL's folders, which the backup directory may not be in.
    pub pg_dirs: [&'a str; 2],
    /// The cluster's name: pgBackRest's stanza.
    pub cluster_name: &'a str,
    /// `replication.archive.mode` as the inventory gives it: pgBackRest needs the archive
    /// command to itself.
    pub archive_mode: &'a str,
}

pub fn read(input: &mut SectionInput<'_>, cx: &Context<'_>) -> Option<Section> {
    let d = &mut *input.d;
    let mut m = MapReader::new(d, input.section, "backups")?;
    let method_node = m.take("method");
    let pgbackrest = method_node.is_some_and(|n| {
        decode::choice(d, n, "backups.method", &["basebackup", "pgbackrest"]) == Some("pgbackrest")
    });
    let repository_node = m.take("repository");
    let from_node = m.take("from");
    let from_node_pos = from_node.map(|n| n.pos);
    let from = match from_node {
        None => Source::Primary,
        Some(n) => source(d, n, input.hosts).unwrap_or(Source::Primary),
    };
    let schedule = m
        .take("schedule")
        .and_then(|n| calendar(d, n, "backups.schedule"))
        .unwrap_or_else(|| SCHEDULE.to_owned());
    let retention_node = m.take("retention");
    let retention_pos = retention_node.map(|n| n.pos);
    let (keep, max_age) = match retention_node {
        Some(n) => retention(d, n),
        None => (Some(KEEP), None),
    };
    let directory = m
        .take("directory")
        .and_then(|n| directory(d, n, cx))
        .unwrap_or_else(|| DIRECTORY.to_owned());
    let compress = m
        .take("compress")
        .and_then(|n| decode::boolean(d, n, "backups.compress"))
        .unwrap_or(false);
    let max_rate_node = m.take("max_rate");
    let max_rate_pos = max_rate_node.map(|n| n.pos);
    let max_rate = max_rate_node.and_then(|n| max_rate(d, n));
    let (test_schedule, amcheck) = match m.take("restore_test") {
        Some(n) => restore_test(d, n),
        None => (TEST_SCHEDULE.to_owned(), Amcheck::Auto),
    };
    let pos = m.pos();
    m.finish(d);
    let method = match (pgbackrest, repository_node) {
        (false, None) => Method::Basebackup,
        (false, Some(n)) => {
            d.error(
                n.pos,
                "backups.repository",
                "`backups.repository` is where pgBackRest keeps its backups: it needs `method: pgbackrest`",
            );
            Method::Basebackup
        }
        (true, None) => {
            d.error_with_help(
                method_node.map_or(pos, |n| n.pos),
                "backups.repository",
                "`method: pgbackrest` needs `backups.repository`",
                "a host of the inventory that holds it (`repository: {host: backup1}`, optionally with `path:`), or a folder every data host mounts (`repository: {path: /mnt/pgbackrest}`)",
            );
            return None;
        }
        (true, Some(n)) => {
            let pick = Pick {
                method: method_node.map_or(pos, |n| n.pos),
                from: from_node_pos,
                retention: retention_pos,
                max_rate: max_rate_pos,
            };
            Method::Pgbackrest(pgbackrest_settings(
                d,
                n,
                input.hosts,
                cx,
                &directory,
                &from,
                keep,
                max_age,
                max_rate.is_some(),
                &pick,
            )?)
        }
    };
    Some(Section {
        method,
        from,
        schedule,
        test_schedule,
        keep,
        max_age,
        directory,
        compress,
        max_rate,
        amcheck,
    })
}

/// Where the keys that pgBackRest limits are, for its errors.
struct Pick {
    method: Pos,
    from: Option<Pos>,
    retention: Option<Pos>,
    max_rate: Option<Pos>,
}

/// pgBackRest's settings from `backups.repository` and what the rest of the section says.
#[allow(clippy::too_many_arguments)]
fn pgbackrest_settings(
    d: &mut Diagnostics,
    n: &Node,
    hosts: &[crate::model::Host],
    cx: &Context<'_>,
    directory: &str,
    from: &Source,
    keep: Option<u32>,
    max_age: Option<Duration>,
    max_rate: bool,
    pick: &Pick,
) -> Option<Pgbackrest> {
    let repository = repository(d, n, hosts, cx, directory);
    if cx.archive_mode != "off" {
        d.error_with_help(
            pick.method,
            "backups.method",
            format!("`method: pgbackrest` archives the WAL itself (`archive_command = 'pgbackrest ... archive-push %p'`), and `replication.archive.mode` is `{}` with a command of its own", cx.archive_mode),
            "remove `replication.archive` (or set its mode to `off`): pgha writes the archive settings pgBackRest needs",
        );
    }
    if max_rate {
        d.error(
            pick.max_rate.unwrap_or(pick.method),
            "backups.max_rate",
            "pgBackRest 2.45 has no bandwidth limit: `backups.max_rate` is pg_basebackup's, remove it with `method: pgbackrest`",
        );
    }
    let from_ok = match (&repository, from) {
        (_, Source::Primary) => true,
        (Some(Repository::Host { .. }), Source::Replica) => true,
        (Some(Repository::Host { .. }), Source::Host(h)) => {
            d.error_with_help(
                pick.from.unwrap_or(pick.method),
                "backups.from",
                format!("pgBackRest picks the standby it copies from itself: `from: {h}` cannot be kept"),
                "say `from: replica` (pgBackRest's backup-standby: the files from a standby, the backup started and stopped on the primary) or `from: primary`",
            );
            false
        }
        (Some(Repository::Path(_)), _) => {
            d.error_with_help(
                pick.from.unwrap_or(pick.method),
                "backups.from",
                format!("with a repository on a shared path the primary takes pgBackRest's backups: `from: {}` needs the repository on a host", from.as_str()),
                "say `from: primary`, or put the repository on a host (`repository: {host: NAME}`), which copies from a standby with `from: replica`",
            );
            false
        }
        (None, _) => true,
    };
    let retention = match (keep, max_age) {
        (Some(_), Some(_)) if pick.retention.is_some() => {
            d.error_with_help(
                pick.retention.unwrap_or(pick.method),
                "backups.retention",
                "pgBackRest keeps full backups by count or by age, not both (`repo1-retention-full-type`)",
                "give `retention: {count: N}` or `retention: {age: Nd}`",
            );
            None
        }
        (_, Some(age)) => {
            let hours = age.as_secs() / 3600;
            if hours % 24 != 0 {
                d.error(
                    pick.retention.unwrap_or(pick.method),
                    "backups.retention.age",
                    format!("pgBackRest keeps backups by age in whole days: `{hours}h` is not one, give e.g. `{}d`", hours.div_ceil(24)),
                );
                None
            } else {
                u32::try_from(hours / 24).ok().map(RepoRetention::Days)
            }
        }
        (Some(k), None) => Some(RepoRetention::Count(k)),
        (None, None) => Some(RepoRetention::Count(KEEP)),
    };
    Some(Pgbackrest {
        stanza: cx.cluster_name.to_owned(),
        repository: repository?,
        retention: if from_ok { retention? } else { return None },
    })
}

/// `backups.repository`: `{host: NAME, path: /folder}` or `{path: /shared/folder}`.
fn repository(
    d: &mut Diagnostics,
    n: &Node,
    hosts: &[crate::model::Host],
    cx: &Context<'_>,
    directory: &str,
) -> Option<Repository> {
    let mut m = MapReader::new(d, n, "backups.repository")?;
    let host_node = m.take("host");
    let path_node = m.take("path");
    let pos = m.pos();
    m.finish(d);
    let path = match path_node {
        Some(p) => Some(repository_path(d, p, cx, directory)?),
        None => None,
    };
    let Some(hn) = host_node else {
        return match path {
            Some(p) => Some(Repository::Path(p)),
            None => {
                d.error(
                    pos,
                    "backups.repository",
                    "`backups.repository` is empty: give it `host` (a host of the inventory that holds it) or `path` (a folder every data host mounts)",
                );
                None
            }
        };
    };
    let name = decode::string(d, hn, "backups.repository.host")?;
    match hosts.iter().find(|h| h.name == name) {
        Some(h) if h.role.holds_data() || h.role.name() == super::BACKUP_ROLE.name => {}
        Some(h) => {
            d.error(
                hn.pos,
                "backups.repository.host",
                format!(
                    "`{name}` is {}: the repository goes on a `role: backup` host or a data host",
                    h.role.description()
                ),
            );
            return None;
        }
        None => {
            d.unknown(
                hn.pos,
                "backups.repository.host",
                format!("`{name}` is not a host of the inventory"),
                &name,
                hosts.iter().map(|h| h.name.as_str()),
                Some("add a host with `role: backup` for it, or name a data host".to_owned()),
            );
            return None;
        }
    }
    // Every `role: backup` host is this one: one repository per cluster.
    let others: Vec<&str> = hosts
        .iter()
        .filter(|h| h.role.name() == super::BACKUP_ROLE.name && h.name != name)
        .map(|h| h.name.as_str())
        .collect();
    if !others.is_empty() {
        d.error(
            hn.pos,
            "backups.repository.host",
            format!("the repository is on `{name}`, and {} has `role: backup` too: a cluster has one repository host", others.join(", ")),
        );
        return None;
    }
    Some(Repository::Host {
        host: name,
        path: path.unwrap_or_else(|| REPOSITORY_PATH.to_owned()),
    })
}

fn repository_path(
    d: &mut Diagnostics,
    n: &Node,
    cx: &Context<'_>,
    directory: &str,
) -> Option<String> {
    let text = decode::string(d, n, "backups.repository.path")?;
    let t = absolute_path(d, n, "backups.repository.path", &text)?;
    for other in cx.pg_dirs.iter().copied().chain([directory]) {
        let other = other.trim_end_matches('/');
        if overlap(t, other) {
            d.error(
                n.pos,
                "backups.repository.path",
                format!("`{text}` overlaps {other}: the repository needs a folder of its own, outside PostgreSQL's and pgha's backup folder"),
            );
            return None;
        }
    }
    if [
        "", "/etc", "/usr", "/var", "/var/lib", "/tmp", "/root", "/home", "/mnt",
    ]
    .contains(&t)
    {
        d.error(
            n.pos,
            "backups.repository.path",
            format!("`{text}` is a system folder: the repository needs a folder of its own, e.g. `{REPOSITORY_PATH}`"),
        );
        return None;
    }
    Some(t.to_owned())
}

fn source(d: &mut Diagnostics, n: &Node, hosts: &[crate::model::Host]) -> Option<Source> {
    let text = decode::string(d, n, "backups.from")?;
    match text.as_str() {
        "primary" => return Some(Source::Primary),
        "replica" => return Some(Source::Replica),
        _ => {}
    }
    match hosts.iter().find(|h| h.name == text) {
        Some(h) if h.role == Role::Standby => Some(Source::Host(text)),
        Some(h) if h.role == Role::Primary => {
            d.error(
                n.pos,
                "backups.from",
                format!("`{text}` is the primary in the inventory: say `from: primary` (the job follows the primary after a failover), or name a standby"),
            );
            None
        }
        Some(_) => {
            d.error(
                n.pos,
                "backups.from",
                format!("`{text}` holds no data: backups are taken from `primary`, `replica` or a standby's name"),
            );
            None
        }
        None => {
            let names: Vec<&str> = ["primary", "replica"]
                .into_iter()
                .chain(
                    hosts
                        .iter()
                        .filter(|h| h.role == Role::Standby)
                        .map(|h| h.name.as_str()),
                )
                .collect();
            d.unknown(
                n.pos,
                "backups.from",
                format!("`{text}` is not `primary`, `replica` or a standby of the inventory"),
                &text,
                names.iter().copied(),
                None,
            );
            None
        }
    }
}

/// An OnCalendar= expression, checked for what would break the unit file; systemd judges
/// the rest on the host (`systemd-analyze calendar`) before the timer is written.
fn calendar(d: &mut Diagnostics, n: &Node, path: &str) -> Option<String> {
    let text = decode::string(d, n, path)?;
    let t = text.trim();
    let fine = |c: char| c.is_ascii_alphanumeric() || " *:,./~-+".contains(c);
    if t.is_empty() || !t.chars().all(fine) {
        d.error(
            n.pos,
            path,
            format!("`{text}` is not a systemd calendar expression (OnCalendar=), e.g. `daily`, `*-*-* 01:00:00` or `Mon..Fri 02:30`"),
        );
        return None;
    }
    Some(t.to_owned())
}

fn retention(d: &mut Diagnostics, n: &Node) -> (Option<u32>, Option<Duration>) {
    let Some(mut m) = MapReader::new(d, n, "backups.retention") else {
        return (Some(KEEP), None);
    };
    let keep = m
        .take("count")
        .and_then(|n| decode::integer(d, n, "backups.retention.count", 1, 10_000))
        .and_then(|c| u32::try_from(c).ok());
    let age = m.take("age").and_then(|n| {
        let text = n.scalar_text().unwrap_or_default();
        match age(&text) {
            Ok(a) => Some(a),
            Err(e) => {
                d.error(n.pos, "backups.retention.age", e);
                None
            }
        }
    });
    m.finish_non_empty(
        d,
        "`backups.retention` is empty: give it `count` (good backups kept), `age` (e.g. `10d`) or both",
    );
    (keep, age)
}

/// `10d`, `36h`, `2w`: how long a good backup is kept.
pub fn age(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("`{t}` is not an age: a whole number with a unit h, d or w, e.g. `10d`");
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let hours = match unit.trim() {
        "h" => n,
        "d" => n.checked_mul(24).ok_or_else(bad)?,
        "w" => n.checked_mul(24 * 7).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if hours == 0 {
        return Err(format!("`{t}` keeps nothing: the newest good backup is kept anyway, give an age of at least `1h`"));
    }
    Ok(Duration::from_secs(hours * 3600))
}

/// `text` without trailing slashes, when it is an absolute path of plain characters (it goes
/// into unit files, shell commands and pgBackRest's configuration unquoted); else reported.
fn absolute_path<'t>(d: &mut Diagnostics, n: &Node, key: &str, text: &'t str) -> Option<&'t str> {
    let t = text.trim_end_matches('/');
    let plain = t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if !t.starts_with('/') || !plain || t.split('/').any(|p| p == "..") {
        d.error(
            n.pos,
            key,
            format!("`{text}` is not an absolute path of letters, digits, `/`, `.`, `_` and `-`"),
        );
        return None;
    }
    Some(t)
}

/// One folder is the other or lies inside it (either way round).
fn overlap(a: &str, b: &str) -> bool {
    let inside = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}/"));
    inside(a, b) || inside(b, a)
}

fn directory(d: &mut Diagnostics, n: &Node, cx: &Context<'_>) -> Option<String> {
    let text = decode::string(d, n, "backups.directory")?;
    let t = absolute_path(d, n, "backups.directory", &text)?;
    let system = [
        "",
        "/etc",
        "/usr",
        "/var",
        "/var/lib",
        "/var/lib/postgresql",
        "/tmp",
        "/root",
        "/home",
    ];
    if system.contains(&t) {
        d.error(
            n.pos,
            "backups.directory",
            format!("`{text}` is a system folder: backups need a folder of their own (pgha sets its owner and mode 0700), e.g. `{DIRECTORY}`"),
        );
        return None;
    }
    for pg in cx.pg_dirs {
        let pg = pg.trim_end_matches('/');
        if overlap(t, pg) {
            d.error(
                n.pos,
                "backups.directory",
                format!("`{text}` overlaps PostgreSQL's folder {pg}: a backup there would be in the next backup, and a restore would overwrite it"),
            );
            return None;
        }
    }
    Some(t.to_owned())
}

/// pg_basebackup's `--max-rate`: kB/s, or with `k` or `M`; 32 kB/s to 1 GB/s.
fn max_rate(d: &mut Diagnostics, n: &Node) -> Option<String> {
    let text = n.scalar_text().unwrap_or_default();
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let kb = digits.parse::<u64>().ok().and_then(|v| match unit {
        "" | "k" => Some(v),
        "M" => v.checked_mul(1024),
        _ => None,
    });
    match kb {
        Some(kb) if (32..=1_048_576).contains(&kb) => Some(t.to_owned()),
        _ => {
            d.error(
                n.pos,
                "backups.max_rate",
                format!("`{t}` is not a transfer rate pg_basebackup takes: kB/s from 32 to 1048576, or with a unit `k` or `M`, e.g. `50M`"),
            );
            None
        }
    }
}

fn restore_test(d: &mut Diagnostics, n: &Node) -> (String, Amcheck) {
    let Some(mut m) = MapReader::new(d, n, "backups.restore_test") else {
        return (TEST_SCHEDULE.to_owned(), Amcheck::Auto);
    };
    let schedule = m
        .take("schedule")
        .and_then(|n| calendar(d, n, "backups.restore_test.schedule"))
        .unwrap_or_else(|| TEST_SCHEDULE.to_owned());
    let amcheck = m
        .take("amcheck")
        .and_then(|n| {
            decode::choice(
                d,
                n,
                "backups.restore_test.amcheck",
                &["auto", "all", "sample", "off"],
            )
        })
        .map(|c| match c {
            "all" => Amcheck::All,
            "sample" => Amcheck::Sample,
            "off" => Amcheck::Off,
            _ => Amcheck::Auto,
        })
        .unwrap_or(Amcheck::Auto);
    m.finish(d);
    (schedule, amcheck)
}

#[cfg(test)]
mod tests {
    use super::age;
    use std::time::Duration;

    #[test]
    fn ages_in_hours_days_weeks() {
        assert_eq!(age("10d"), Ok(Duration::from_secs(10 * 86_400)));
        assert_eq!(age("36h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(age("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert!(age("10").is_err());
        assert!(age("10m").is_err());
        assert!(age("0d").is_err());
    }
}
