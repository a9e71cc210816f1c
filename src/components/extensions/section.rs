//! The `extensions:` section, read and checked offline. Each entry is an extension created in
//! the databases it names, with the packages that carry it, the library it preloads and its
//! own parameters (dotted names with its prefix: `cron.database_name`); or a preset
//! (`preset: timescaledb`) that knows all of that and adds a package source and tuning.

use std::collections::BTreeMap;
use std::path::Path;

use crate::components::extensions::timescaledb;
use crate::components::package_sources::section::{name_ok, package_name_ok};
use crate::components::package_sources::source::armored_key;
use crate::components::package_sources::AptSource;
use crate::diag::Diagnostics;
use crate::model::pg_names::extension_name_ok;
use crate::model::pg_params;
use crate::yaml::decode::{self, MapReader, OneOrMany};
use crate::yaml::node::{Node, Value};

/// Extensions whose parameters carry a prefix other than their name.
const PREFIXES: &[(&str, &str)] = &[("pg_cron", "cron")];

/// The presets, by name.
pub const PRESETS: &[&str] = &["timescaledb"];

#[derive(Debug, Clone, PartialEq)]
pub struct Extension {
    /// The name CREATE EXTENSION takes.
    pub name: String,
    /// Where it is created (on the primary; the standbys receive it by replication).
    pub databases: Vec<String>,
    pub packages: Vec<String>,
    /// The library it needs in `shared_preload_libraries`.
    pub preload: Option<String>,
    /// Its own parameters, in the order written.
    pub parameters: Vec<(String, String)>,
    /// What a preset adds: its package source and whether it tunes the server.
    pub source: Option<AptSource>,
    pub tune: bool,
    /// `prefix:` when its parameters use one of their own.
    pub prefix: Option<String>,
}

impl Extension {
    /// The prefixes its parameters may have: its name, its library's, a known alias, the
    /// declared one.
    pub fn prefixes(&self, declared: Option<&str>) -> Vec<String> {
        let mut p = vec![self.name.clone()];
        p.extend(self.preload.clone());
        p.extend(
            PREFIXES
                .iter()
                .filter(|(n, _)| *n == self.name)
                .map(|(_, p)| (*p).to_owned()),
        );
        p.extend(declared.map(str::to_owned));
        p.dedup();
        p
    }
}

/// What the section reader needs besides the section.
pub struct Context<'a> {
    pub base: &'a Path,
    pub pg_version: u32,
    /// The declared databases (None: `databases:` has errors of its own).
    pub databases: Option<&'a [String]>,
    /// `postgres.parameters` (names lower-cased).
    pub parameters: &'a BTreeMap<String, String>,
}

/// Every entry; None when any has an error (reported).
pub fn read(d: &mut Diagnostics, section: &Node, cx: &Context<'_>) -> Option<Vec<Extension>> {
    let items = decode::list(d, section, "extensions")?;
    let before = d.items.len();
    let mut out: Vec<Extension> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("extensions[{i}]");
        if let Some(e) = entry(d, item, &path, cx) {
            if out.iter().any(|o| o.name == e.name) {
                d.error(
                    item.pos,
                    &path,
                    format!(
                        "extension `{}` is declared twice: give it once with every database in `databases`",
                        e.name
                    ),
                );
            }
            pg_cron_database(d, item, &path, &e, cx);
            out.push(e);
        }
    }
    (d.items.len() == before).then_some(out)
}

/// pg_cron runs its jobs from one database, `cron.database_name` (`postgres` unless set), and
/// CREATE EXTENSION pg_cron fails in any other: the database named must be that one.
fn pg_cron_database(d: &mut Diagnostics, node: &Node, path: &str, e: &Extension, cx: &Context<'_>) {
    if e.name != "pg_cron" {
        return;
    }
    let home = e
        .parameters
        .iter()
        .find(|(k, _)| k == "cron.database_name")
        .map(|(_, v)| v.as_str())
        .or(cx.parameters.get("cron.database_name").map(String::as_str))
        .unwrap_or("postgres");
    if e.databases.iter().any(|db| db != home) || e.databases.is_empty() {
        let at = node
            .get("databases")
            .or_else(|| node.get("database"))
            .map_or(node.pos, |(_, n)| n.pos);
        d.error_with_help(
            at,
            &format!("{path}.databases"),
            format!(
                "pg_cron is created only in the database cron.database_name names (`{home}`), not in {}",
                e.databases.join(", ")
            ),
            "name that one database and set `parameters: {cron.database_name: DB}` to it",
        );
    }
}

fn entry(d: &mut Diagnostics, node: &Node, path: &str, cx: &Context<'_>) -> Option<Extension> {
    let mut m = MapReader::new(d, node, path)?;
    let preset = m
        .take("preset")
        .and_then(|n| decode::choice(d, n, &m.child("preset"), PRESETS));
    let is_preset = node.get("preset").is_some();
    let databases = databases(d, &mut m, cx);
    let mut ext = if is_preset {
        preset.and_then(|p| read_preset(d, &mut m, p, cx))
    } else {
        read_plain(d, &mut m)
    };
    let prefix = m.take("prefix").and_then(|n| {
        let p = decode::text(d, n, &m.child("prefix"))?;
        if pg_names_identifier(&p) {
            Some(p)
        } else {
            d.error(
                n.pos,
                &m.child("prefix"),
                format!("`{p}` is not a parameter prefix: letters, digits and `_`"),
            );
            None
        }
    });
    let parameters = m.take("parameters").map(|n| (n, m.child("parameters")));
    if let (Some(e), Some((n, at))) = (ext.as_mut(), parameters) {
        let prefixes = e.prefixes(prefix.as_deref());
        e.parameters = read_parameters(d, n, &at, &e.name, &prefixes)?;
    }
    m.finish(d);
    let mut ext = ext?;
    ext.databases = databases?;
    ext.prefix = prefix;
    Some(ext)
}

fn pg_names_identifier(p: &str) -> bool {
    p.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `database: app` or `databases: [app, reports]`, each declared under `databases:`.
fn databases(d: &mut Diagnostics, m: &mut MapReader<'_>, cx: &Context<'_>) -> Option<Vec<String>> {
    let items = match m.take_one_or_many(d, "database", "databases") {
        OneOrMany::Both => return None,
        OneOrMany::Items(items) => items,
        OneOrMany::Neither => {
            d.error(
                m.pos(),
                &m.child("databases"),
                format!("missing required key `{}`: the databases to create the extension in (`database: app` for one)", m.child("databases")),
            );
            return None;
        }
    };
    let mut ok = true;
    if let Some(declared) = cx.databases {
        for (name, node, at) in &items {
            if !declared.contains(name) {
                let message = format!("`{name}` is not a database of the inventory: the extension is created in a database `databases:` declares");
                d.unknown(
                    node.pos,
                    at,
                    message,
                    name,
                    declared.iter().map(String::as_str),
                    None,
                );
                ok = false;
            }
        }
    }
    ok.then(|| items.into_iter().map(|(s, _, _)| s).collect())
}

/// `name`, `packages` (or `package`), `preload`.
fn read_plain(d: &mut Diagnostics, m: &mut MapReader<'_>) -> Option<Extension> {
    let name = m.require(d, "name").and_then(|n| {
        let at = m.child("name");
        let name = decode::text(d, n, &at)?;
        if extension_name_ok(&name) {
            Some(name)
        } else {
            d.error(n.pos, &at, format!("`{name}` is not an extension name: lower-case letters, digits, `_` and `-` (as in uuid-ossp), at most 63"));
            None
        }
    });
    let packages = packages(d, m)?;
    let preload = match m.take("preload") {
        None => Some(None),
        Some(n) => match &n.value {
            Value::Bool(true) => Some(name.clone()),
            Value::Bool(false) => Some(None),
            _ => {
                let at = m.child("preload");
                let lib = decode::text(d, n, &at)?;
                if pg_names_identifier(&lib) {
                    Some(Some(lib))
                } else {
                    d.error(n.pos, &at, format!("`{at}` is `true` (the library is named as the extension) or a library's name, not `{lib}`"));
                    None
                }
            }
        },
    };
    Some(Extension {
        name: name?,
        databases: Vec::new(),
        packages,
        preload: preload?,
        parameters: Vec::new(),
        source: None,
        tune: false,
        prefix: None,
    })
}

/// `packages: [a, b]` or `package: a`.
fn packages(d: &mut Diagnostics, m: &mut MapReader<'_>) -> Option<Vec<String>> {
    let items = match m.take_one_or_many(d, "package", "packages") {
        OneOrMany::Both => return None,
        OneOrMany::Items(items) => items,
        // Contrib extensions come with the server's own package.
        OneOrMany::Neither => Vec::new(),
    };
    let mut ok = true;
    for (name, node, at) in &items {
        if !package_name_ok(name) {
            d.error(
                node.pos,
                at,
                format!("`{name}` is not a Debian package name"),
            );
            ok = false;
        }
    }
    ok.then(|| items.into_iter().map(|(s, _, _)| s).collect())
}

/// A preset's keys: its repository's `key` (required), `suite`, `version`, `tune`.
fn read_preset(
    d: &mut Diagnostics,
    m: &mut MapReader<'_>,
    preset: &str,
    cx: &Context<'_>,
) -> Option<Extension> {
    debug_assert_eq!(preset, "timescaledb");
    let key = m.require(d, "key").and_then(|n| {
        let at = m.child("key");
        let written = decode::text(d, n, &at)?;
        let file = decode::file_path(cx.base, &written);
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) => {
                d.error(n.pos, &at, format!("cannot read TimescaleDB's repository key {} ({e}); a relative path is taken from the inventory's folder", file.display()));
                return None;
            }
        };
        match armored_key(&bytes) {
            Ok(k) => Some(k),
            Err(why) => {
                d.error(n.pos, &at, format!("{}: {why}", file.display()));
                None
            }
        }
    });
    let suite = match m.take("suite") {
        Some(n) => decode::text(d, n, &m.child("suite")).filter(|s| {
            let ok = name_ok(s);
            if !ok {
                d.error(
                    n.pos,
                    &m.child("suite"),
                    format!("`{s}` is not a Debian suite name (bookworm)"),
                );
            }
            ok
        }),
        None => Some("bookworm".to_owned()),
    };
    let version = match m.take("version") {
        Some(n) => decode::text(d, n, &m.child("version")).map(Some),
        None => Some(timescaledb::pinned_version(cx.pg_version).map(str::to_owned)),
    };
    let tune = match m.take("tune") {
        Some(n) => decode::boolean(d, n, &m.child("tune")),
        None => Some(true),
    };
    Some(Extension {
        name: "timescaledb".to_owned(),
        databases: Vec::new(),
        packages: timescaledb::packages(cx.pg_version),
        preload: Some("timescaledb".to_owned()),
        parameters: Vec::new(),
        source: Some(timescaledb::source(
            cx.pg_version,
            &suite?,
            key?,
            version?.as_deref(),
        )),
        tune: tune?,
        prefix: None,
    })
}

/// An extension's parameters: dotted names whose prefix is one of `prefixes`, values as text.
fn read_parameters(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    extension: &str,
    prefixes: &[String],
) -> Option<Vec<(String, String)>> {
    let m = MapReader::new(d, node, path)?;
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen = BTreeMap::new();
    for (key, value) in m.entries() {
        let at = format!("{path}.{}", key.name);
        let name = key.name.to_ascii_lowercase();
        let prefix = name.split('.').next().unwrap_or_default();
        let problem = if !pg_params::is_custom(&name) {
            Some(format!("`{}` is not a parameter of {extension}: an extension's parameters are dotted (`{}.name`); server parameters belong in postgres.parameters", key.name, prefixes[0]))
        } else if !pg_params::valid_custom_name(&name) {
            Some(format!("`{}` is not a parameter name PostgreSQL takes: two or more identifiers joined by dots", key.name))
        } else if !prefixes.iter().any(|p| p == prefix) {
            Some(format!(
                "`{}` is not a parameter of {extension}: its parameters start with {} (give `prefix:` when the extension uses another)",
                key.name,
                prefixes.iter().map(|p| format!("`{p}.`")).collect::<Vec<_>>().join(" or ")
            ))
        } else if seen.insert(name.clone(), ()).is_some() {
            Some(format!("`{}` is given twice", key.name))
        } else {
            None
        };
        if let Some(problem) = problem {
            d.error(key.pos, &at, problem);
            ok = false;
            continue;
        }
        match value.scalar_text() {
            Some(v) => out.push((name, v)),
            None => {
                d.error(
                    value.pos,
                    &at,
                    format!(
                        "`{at}` must be a single value, found {}",
                        value.value.kind()
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}
