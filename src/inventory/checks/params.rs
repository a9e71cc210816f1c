//! `postgres.parameters`, one entry at a time: names the server knows (in any letter case,
//! once), values it takes, and values that would break what pgha builds.

use std::collections::BTreeMap;

use crate::diag::Diagnostics;
use crate::model::pg_params::{self, Context};
use crate::yaml::node::{Key, Node};

/// Parameters pgha derives from other keys; setting them twice would leave two truths.
const MANAGED_ELSEWHERE: [(&str, &str); 9] = [
    ("port", "postgres.port"),
    ("listen_addresses", "postgres.listen_addresses"),
    ("max_wal_senders", "replication.max_wal_senders"),
    ("max_replication_slots", "replication.max_replication_slots"),
    (
        "max_slot_wal_keep_size",
        "replication.max_slot_wal_keep_size",
    ),
    ("archive_mode", "replication.archive.mode"),
    ("archive_command", "replication.archive.command"),
    // pgha writes them per standby (pgha-standby.conf); one value for every host would make
    // each standby stream from the same place, or the primary try to.
    ("primary_conninfo", "hosts[].upstream"),
    ("primary_slot_name", "replication.slots"),
];

/// Parameters whose location Debian's cluster layout fixes.
const DEBIAN_OWNED: [&str; 5] = [
    "data_directory",
    "hba_file",
    "ident_file",
    "config_file",
    "external_pid_file",
];

/// Booleans that must stay on, and why.
const MUST_BE_ON: [(&str, &str); 2] = [
    (
        "hot_standby",
        "a standby with hot_standby off takes no connection, and pgha (and Patroni) read every standby's state over SQL",
    ),
    (
        "full_page_writes",
        "without it a crash can leave torn pages, and pg_rewind and base backups taken from a standby (a cascaded clone) refuse to run",
    ),
];

/// A parameter name seen before in another letter case: the server reads names ignoring case,
/// so the later value would silently replace the earlier one.
pub fn once(
    d: &mut Diagnostics,
    seen: &mut BTreeMap<String, String>,
    key: &Key,
    path: &str,
) -> bool {
    let lower = key.name.to_ascii_lowercase();
    match seen.get(&lower) {
        Some(first) => {
            d.error(
                key.pos,
                path,
                format!("`{}` is set twice (also as `{first}`): parameter names are case-insensitive, so one value would silently win", key.name),
            );
            false
        }
        None => {
            seen.insert(lower, key.name.clone());
            true
        }
    }
}

/// The flavour's name and the parameters it sets itself, each with the key that decides it.
pub type FlavourManaged<'a> = (&'a str, &'a [(&'a str, &'a str)]);

/// One entry of `postgres.parameters`.
pub fn parameter(
    d: &mut Diagnostics,
    key: &Key,
    value: &Node,
    path: &str,
    text: &str,
    (flavour, flavour_managed): FlavourManaged,
) -> bool {
    let name = key.name.to_ascii_lowercase();
    let by_pgha = MANAGED_ELSEWHERE
        .iter()
        .map(|(p, i)| (p, i, "pgha".to_owned()));
    let by_flavour = flavour_managed
        .iter()
        .map(|(p, i)| (p, i, format!("the {flavour} flavour")));
    if let Some((_, instead, by)) = by_pgha.chain(by_flavour).find(|(p, _, _)| **p == name) {
        d.error_with_help(
            key.pos,
            path,
            format!("`{name}` is set by {by} from `{instead}`"),
            format!("set `{instead}` instead"),
        );
        return false;
    }
    if DEBIAN_OWNED.contains(&name.as_str()) {
        d.error(
            key.pos,
            path,
            format!(
                "`{name}` is fixed by the Debian cluster layout (postgres.data_dir / conf_dir)"
            ),
        );
        return false;
    }
    if pg_params::is_custom(&name) {
        if !pg_params::valid_custom_name(&name) {
            d.error(
                key.pos,
                path,
                format!("`{}` is not a parameter name PostgreSQL takes: an extension's parameter is two or more identifiers joined by dots, as in pg_stat_statements.max", key.name),
            );
            return false;
        }
        return true;
    }
    let Some(param) = pg_params::lookup(&name) else {
        let message = format!("`{}` is not a PostgreSQL 15 server parameter", key.name);
        d.unknown(key.pos, path, message, &name, pg_params::names(), None);
        return false;
    };
    if param.context == Context::Internal {
        d.error(
            key.pos,
            path,
            format!(
                "`{}` is read-only: it is fixed when PostgreSQL is built or initdb runs",
                param.name
            ),
        );
        return false;
    }
    if let Err(why) = pg_params::check_value(param, text) {
        d.error(value.pos, path, why);
        return false;
    }
    // Streaming replication needs WAL for it; `minimal` would break every standby.
    if name == "wal_level" && text.eq_ignore_ascii_case("minimal") {
        d.error(
            value.pos,
            path,
            "`wal_level = minimal` cannot feed standbys: use replica or logical",
        );
        return false;
    }
    if let Some((_, why)) = MUST_BE_ON.iter().find(|(p, _)| *p == name) {
        if pg_params::parse_bool(text) == Some(false) {
            d.error(value.pos, path, format!("`{name}` must stay on: {why}"));
            return false;
        }
    }
    true
}
