//! PostgreSQL's rules for the names pgha writes into SQL and the server's settings: role
//! names the server reserves, replication slot names, and the length every identifier is cut
//! to.
//!
//! pgha writes role and database names quoted (`"app"`) and only accepts lower-case ones, so
//! the name the server stores is the name the inventory spells, the same one a DBA types
//! unquoted in psql (PostgreSQL folds unquoted names to lower case).

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes); longer ones are cut
/// silently, so two long names that share their first 63 bytes are one name to the server.
pub const MAX_IDENTIFIER: usize = 63;

/// The alphabet of role and database names, for messages.
pub const IDENTIFIER_RULE: &str = "lower-case letters, digits and `_`, starting with a letter or `_`, at most 63 bytes (PostgreSQL folds unquoted names to lower case and cuts longer ones)";

/// Whether `name` keeps to the alphabet of role and database names.
pub fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IDENTIFIER
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Why `name` cannot be the role at `path` (`users[0].name`), or None when it can.
pub fn role_problem(path: &str, name: &str) -> Option<String> {
    if !valid_identifier(name) {
        return Some(format!(
            "`{name}` is not a valid name for `{path}`: use {IDENTIFIER_RULE}"
        ));
    }
    reserved_role(name).map(|why| format!("`{path}` cannot be `{name}`: {why}"))
}

/// Why `name` cannot be a role pgha makes or alters, or None when it can.
pub fn reserved_role(name: &str) -> Option<&'static str> {
    match name {
        "postgres" => Some("`postgres` is the superuser pgha connects as: pgha manages it from `postgres.superuser_password`, and would take its power away"),
        "public" => Some("`public` is PostgreSQL's pseudo-role for everyone: CREATE ROLE refuses it"),
        "none" => Some("`none` is reserved by PostgreSQL: CREATE ROLE refuses it"),
        "current_user" | "current_role" | "session_user" | "user" => Some("this is an SQL keyword for whoever is connected: GRANT and ALTER would read it as that role, not as this one"),
        _ if name.starts_with("pg_") => Some("names starting with `pg_` are reserved for PostgreSQL's built-in roles: CREATE ROLE refuses them"),
        _ => None,
    }
}

/// Why `name` is not a replication slot name (ReplicationSlotValidateName), or None.
pub fn slot_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a replication slot name cannot be empty".to_owned());
    }
    if name.len() > MAX_IDENTIFIER {
        return Some(format!(
            "`{name}` is {} bytes long: a replication slot name has at most {MAX_IDENTIFIER}",
            name.len()
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Some(format!(
            "`{name}` is not a replication slot name: only lower-case letters, digits and `_`"
        ));
    }
    None
}

/// An extension's name as CREATE EXTENSION takes it (the name of its control file):
/// lower-case letters, digits, `_` and `-` (uuid-ossp), at most 63.
pub fn extension_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IDENTIFIER
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::{reserved_role, slot_name_problem};

    #[test]
    fn reserved_roles_are_the_servers_own() {
        for name in ["postgres", "public", "none", "current_user", "pg_monitor"] {
            assert!(reserved_role(name).is_some(), "{name}");
        }
        for name in ["app", "pgadmin", "replicator"] {
            assert_eq!(reserved_role(name), None, "{name}");
        }
    }

    #[test]
    fn slot_names_follow_the_server() {
        assert_eq!(slot_name_problem("site_b"), None);
        assert_eq!(slot_name_problem(&"a".repeat(63)), None);
        for bad in ["", "site-b", "Site_b", &"a".repeat(64)] {
            assert!(slot_name_problem(bad).is_some(), "{bad:?}");
        }
    }
}
