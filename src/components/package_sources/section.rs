//! The `package_sources:` section, read and checked offline: every source's name, URIs,
//! suites and components as apt takes them, its key file (read from the inventory's folder
//! and checked to be an OpenPGP public key) and its pins.

use std::collections::BTreeMap;
use std::path::Path;

use crate::components::package_sources::source::{armored_key, AptSource};
use crate::diag::Diagnostics;
use crate::yaml::decode::{self, MapReader};
use crate::yaml::node::{Node, Value};

/// URI schemes apt's transports take (`mirror+` and `tor+` wrap one of the first three).
const SCHEMES: &[&str] = &["http://", "https://", "file:", "mirror+", "tor+"];

/// A name pgha puts in file names (`pgha-<name>.sources`): lower-case letters, digits, `-`.
pub fn name_ok(name: &str) -> bool {
    name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A Debian package name (policy 5.6.1): lower-case letters, digits, `+`, `-`, `.`; at least
/// two, starting with a letter or digit.
pub fn package_name_ok(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

/// Every source of the section; None when any has an error (reported).
pub fn read(d: &mut Diagnostics, section: &Node, base: &Path) -> Option<Vec<AptSource>> {
    let items = decode::list(d, section, "package_sources")?;
    let before = d.items.len();
    let mut sources: Vec<AptSource> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("package_sources[{i}]");
        if let Some(s) = source(d, item, &path, base) {
            if sources.iter().any(|o| o.name == s.name) {
                d.error(
                    item.pos,
                    &format!("{path}.name"),
                    format!("a package source `{}` is declared twice", s.name),
                );
            }
            sources.push(s);
        }
    }
    (d.items.len() == before).then_some(sources)
}

/// One source (`path` is where it stands, for errors).
pub fn source(d: &mut Diagnostics, node: &Node, path: &str, base: &Path) -> Option<AptSource> {
    let mut m = MapReader::new(d, node, path)?;
    let name = m.require(d, "name").and_then(|n| {
        let name = decode::text(d, n, &m.child("name"))?;
        if name_ok(&name) {
            Some(name)
        } else {
            d.error(
                n.pos,
                &m.child("name"),
                format!("`{name}` is not a package source name: lower-case letters, digits and `-`, at most 40 (it names /etc/apt/sources.list.d/pgha-NAME.sources)"),
            );
            None
        }
    });
    let uris = m.require(d, "uris").map(|n| words(d, n, &m.child("uris")));
    if let (Some(uris), Some(n)) = (&uris, node.get("uris")) {
        for u in uris {
            if !SCHEMES.iter().any(|s| u.starts_with(s)) {
                d.error(
                    n.1.pos,
                    &m.child("uris"),
                    format!("`{u}` is not a URI apt can fetch from: http://, https://, file:/ (or mirror+, tor+ of one)"),
                );
            }
        }
    }
    let suites = m
        .require(d, "suites")
        .map(|n| words(d, n, &m.child("suites")));
    let flat = suites
        .as_ref()
        .is_some_and(|s| s.iter().any(|s| s.ends_with('/')));
    let components = match (m.take("components"), flat) {
        (Some(n), true) => {
            d.error(
                n.pos,
                &m.child("components"),
                "a flat repository (a suite ending in `/`, such as `./`) has no components: leave `components` out",
            );
            None
        }
        (Some(n), false) => Some(words(d, n, &m.child("components"))),
        (None, true) => Some(Vec::new()),
        (None, false) => {
            d.error(
                m.pos(),
                &m.child("components"),
                format!("missing required key `{}` (such as [main]; only a flat repository, suite `./`, has none)", m.child("components")),
            );
            None
        }
    };
    let key = m
        .require(d, "key")
        .and_then(|n| key(d, n, &m.child("key"), base));
    let pin = match m.take("pin") {
        Some(n) => pin(d, n, &m.child("pin")),
        None => Some(BTreeMap::new()),
    };
    m.finish(d);
    Some(AptSource {
        name: name?,
        uris: uris.filter(|u| !u.is_empty())?,
        suites: suites.filter(|s| !s.is_empty())?,
        components: components?,
        key: key?,
        pin: pin?,
    })
}

/// A word or a list of words (apt's space-separated fields).
fn words(d: &mut Diagnostics, node: &Node, path: &str) -> Vec<String> {
    let list = match &node.value {
        Value::Seq(_) => decode::string_list(d, node, path),
        _ => decode::text(d, node, path).into_iter().collect(),
    };
    if list.is_empty() {
        d.error(node.pos, path, format!("`{path}` is empty"));
    }
    for w in &list {
        if w.is_empty() || w.chars().any(char::is_whitespace) {
            d.error(
                node.pos,
                path,
                format!("`{w}` in `{path}` must be one word: give several as a list"),
            );
        }
    }
    list
}

/// The key file, read now: a missing file or one that is no public key is the inventory's
/// error, not a failed apt run later.
fn key(d: &mut Diagnostics, node: &Node, path: &str, base: &Path) -> Option<String> {
    let written = decode::text(d, node, path)?;
    let file = decode::file_path(base, &written);
    match std::fs::read(&file) {
        Ok(bytes) => match armored_key(&bytes) {
            Ok(key) => Some(key),
            Err(why) => {
                d.error(node.pos, path, format!("{}: {why}", file.display()));
                None
            }
        },
        Err(e) => {
            d.error(
                node.pos,
                path,
                format!(
                    "cannot read the key file {} ({e}); a relative path is taken from the inventory's folder",
                    file.display()
                ),
            );
            None
        }
    }
}

/// `pin: {package: version}`.
fn pin(d: &mut Diagnostics, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
    let m = MapReader::new(d, node, path)?;
    let mut pins = BTreeMap::new();
    let mut ok = true;
    for (key, value) in m.entries() {
        let at = format!("{path}.{}", key.name);
        if !package_name_ok(&key.name) {
            d.error(
                key.pos,
                &at,
                format!("`{}` is not a Debian package name", key.name),
            );
            ok = false;
            continue;
        }
        match value.scalar_text() {
            Some(v) if !v.is_empty() && !v.chars().any(char::is_whitespace) => {
                pins.insert(key.name.clone(), v);
            }
            _ => {
                d.error(
                    value.pos,
                    &at,
                    format!("`{at}` must be a version (apt's pattern, such as 2.28.*)"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(pins)
}
