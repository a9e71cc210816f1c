//! Application roles and databases: each declared once, none of PostgreSQL's own, owners
//! that pgha makes.

use std::collections::BTreeMap;

use crate::diag::Diagnostics;
use crate::yaml::node::Node;

/// Names of one kind seen so far: a second declaration is an error at its name.
pub struct Declared {
    what: &'static str,
    first: BTreeMap<String, String>,
}

impl Declared {
    /// `what` as messages say it: "user", "database".
    pub fn new(what: &'static str) -> Self {
        Declared {
            what,
            first: BTreeMap::new(),
        }
    }

    /// The names seen, each once.
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.first.keys().cloned()
    }

    /// Whether `name` (at `node`, key `path`) is new; reports when it is not.
    pub fn once(&mut self, d: &mut Diagnostics, node: &Node, path: &str, name: &str) -> bool {
        if let Some(first) = self.first.get(name) {
            d.error(
                node.pos,
                path,
                format!(
                    "{} `{name}` is declared twice (first at {first}): one name, one set of settings",
                    self.what
                ),
            );
            return false;
        }
        self.first.insert(name.to_owned(), path.to_owned());
        true
    }
}

/// A database pgha may create and give an owner: not one of initdb's templates, and the
/// maintenance database `postgres` only as it is (owned by postgres, for its extensions).
pub fn database(d: &mut Diagnostics, node: &Node, path: &str, name: &str, owner: &str) -> bool {
    let why = match name {
        "template0" | "template1" => format!("`{name}` is a template database made by initdb: every new database copies it, and pgha would change its owner and extensions"),
        "postgres" if owner != "postgres" => format!("the maintenance database `postgres` belongs to the superuser: pgha would give it to `{owner}`"),
        _ => return true,
    };
    d.error(node.pos, path, why);
    false
}

/// A database's owner: a role pgha makes, or postgres.
pub fn owner(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    owner: &str,
    roles: &[String],
    replication_user: Option<&str>,
) -> bool {
    if roles.iter().any(|r| r == owner) {
        return true;
    }
    if replication_user == Some(owner) {
        d.error_with_help(
            node.pos,
            path,
            format!("owner `{owner}` is the replication user, which only streams WAL"),
            "give the database to an application role declared under `users:`",
        );
    } else {
        d.error_with_help(
            node.pos,
            path,
            format!("owner `{owner}` is not a role of this inventory"),
            format!(
                "declare it under `users:` or use one of: {}",
                roles.join(", ")
            ),
        );
    }
    false
}

/// An extension's name as CREATE EXTENSION takes it: the name of its control file.
pub fn extension(d: &mut Diagnostics, node: &Node, path: &str, name: &str) -> bool {
    let ok = crate::model::pg_names::extension_name_ok(name);
    if !ok {
        d.error(
            node.pos,
            path,
            format!("`{name}` is not an extension name: lower-case letters, digits, `_` and `-` (as in uuid-ossp), at most 63"),
        );
    }
    ok
}
