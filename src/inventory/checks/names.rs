//! Names: of the cluster, of hosts, of roles and databases. They end up in file names, unit
//! names, slot names, application names and SQL, so each kind keeps to a safe alphabet.

use crate::diag::Diagnostics;
use crate::model::pg_names::{self, MAX_IDENTIFIER};
use crate::yaml::node::Node;

#[derive(Debug, Clone, Copy)]
pub enum NameKind {
    Cluster,
    /// A DNS label (RFC 1123): the host's name is also its standbys' application_name and,
    /// with `-` written `_`, its replication slot's name; a `_` of its own would let `pg-1`
    /// and `pg_1` share one slot.
    Host,
    /// A role or a database: lower case, so the name pgha writes quoted is the one the server
    /// stores and a DBA types unquoted; at most 63 bytes, past which the server cuts names
    /// silently (two long names would be one).
    Role,
}

fn valid(value: &str, kind: NameKind) -> (bool, &'static str) {
    let short = !value.is_empty() && value.len() <= MAX_IDENTIFIER;
    let lower_digit = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    match kind {
        NameKind::Cluster => (
            short
                && value.starts_with(lower_digit)
                && value.chars().all(|c| lower_digit(c) || c == '-' || c == '_'),
            "lower-case letters, digits, `-` and `_`, starting with a letter or digit, at most 63",
        ),
        NameKind::Host => (
            short
                && value.starts_with(lower_digit)
                && value.ends_with(lower_digit)
                && value.chars().all(|c| lower_digit(c) || c == '-'),
            "a DNS label: lower-case letters, digits and `-`, starting and ending with a letter or digit, at most 63",
        ),
        NameKind::Role => (pg_names::valid_identifier(value), pg_names::IDENTIFIER_RULE),
    }
}

/// Whether `value` is a valid name of its kind; reports when it is not.
pub fn name(d: &mut Diagnostics, node: &Node, path: &str, value: &str, kind: NameKind) -> bool {
    let (ok, rule) = valid(value, kind);
    if !ok {
        d.error(
            node.pos,
            path,
            format!("`{value}` is not a valid name for `{path}`: use {rule}"),
        );
    }
    ok
}

/// A role pgha makes and alters (an application user, the replication user): a valid name
/// that PostgreSQL does not keep for itself.
pub fn role(d: &mut Diagnostics, node: &Node, path: &str, value: &str) -> bool {
    match pg_names::role_problem(path, value) {
        Some(why) => {
            d.error(node.pos, path, why);
            false
        }
        None => true,
    }
}
