//! Small readers that turn nodes into typed values, recording every problem in `Diagnostics`
//! instead of stopping at the first. Shared by the inventory and the playbook loader.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::diag::Diagnostics;
use crate::secret::SecretRef;
use crate::yaml::node::{Key, Node, Pos, Value};

/// A mapping being read key by key. `finish` reports the keys nobody asked for, with a
/// "did you mean" among the keys that were asked for.
pub struct MapReader<'a> {
    path: String,
    pos: Pos,
    entries: &'a [(Key, Node)],
    taken: Vec<bool>,
    known: Vec<&'static str>,
}

impl<'a> MapReader<'a> {
    /// Read `node` as a mapping; reports and returns `None` when it is something else.
    pub fn new(d: &mut Diagnostics, node: &'a Node, path: &str) -> Option<Self> {
        match &node.value {
            Value::Map(entries) => Some(MapReader {
                path: path.to_owned(),
                pos: node.pos,
                entries,
                taken: vec![false; entries.len()],
                known: Vec::new(),
            }),
            other => {
                d.error(
                    node.pos,
                    path,
                    format!(
                        "`{}` must be a mapping, found {}",
                        display(path),
                        other.kind()
                    ),
                );
                None
            }
        }
    }

    pub fn pos(&self) -> Pos {
        self.pos
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The dotted path of a child key.
    pub fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Take an optional key.
    pub fn take(&mut self, key: &'static str) -> Option<&'a Node> {
        self.known.push(key);
        let index = self.entries.iter().position(|(k, _)| k.name == key)?;
        self.taken[index] = true;
        let node = &self.entries[index].1;
        // `key:` with nothing after it means "not given".
        (node.value != Value::Null).then_some(node)
    }

    /// Take a key that must be there.
    pub fn require(&mut self, d: &mut Diagnostics, key: &'static str) -> Option<&'a Node> {
        let node = self.take(key);
        if node.is_none() {
            d.error(
                self.pos,
                &self.child(key),
                format!("missing required key `{}`", self.child(key)),
            );
        }
        node
    }

    /// Report every key that was not taken.
    pub fn finish(self, d: &mut Diagnostics) {
        for ((key, _), taken) in self.entries.iter().zip(&self.taken) {
            if *taken {
                continue;
            }
            let path = self.child(&key.name);
            let message = if self.path.is_empty() {
                format!("unknown key `{}`", key.name)
            } else {
                format!("unknown key `{}` in `{}`", key.name, display(&self.path))
            };
            let otherwise = format!("known keys here: {}", self.known.join(", "));
            d.unknown(
                key.pos,
                &path,
                message,
                &key.name,
                self.known.iter().copied(),
                Some(otherwise),
            );
        }
    }

    /// The raw entries, for free-form mappings (server parameters).
    pub fn entries(&self) -> &'a [(Key, Node)] {
        self.entries
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() {
        "(top level)"
    } else {
        path
    }
}

fn wrong_kind(d: &mut Diagnostics, node: &Node, path: &str, expected: &str) {
    d.error(
        node.pos,
        path,
        format!("`{path}` must be {expected}, found {}", node.value.kind()),
    );
}

pub fn string(d: &mut Diagnostics, node: &Node, path: &str) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        _ => {
            wrong_kind(d, node, path, "a string");
            None
        }
    }
}

/// A string or a bare number/boolean written as text (e.g. `version: 15` or `mode: "off"`).
pub fn text(d: &mut Diagnostics, node: &Node, path: &str) -> Option<String> {
    match node.scalar_text() {
        Some(s) => Some(s),
        None => {
            wrong_kind(d, node, path, "a plain value");
            None
        }
    }
}

pub fn boolean(d: &mut Diagnostics, node: &Node, path: &str) -> Option<bool> {
    match &node.value {
        Value::Bool(b) => Some(*b),
        _ => {
            wrong_kind(d, node, path, "true or false");
            None
        }
    }
}

pub fn integer(d: &mut Diagnostics, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
    match &node.value {
        Value::Int(i) if (min..=max).contains(i) => Some(*i),
        Value::Int(i) => {
            d.error(
                node.pos,
                path,
                format!("`{path}` is {i}, outside {min} .. {max}"),
            );
            None
        }
        _ => {
            wrong_kind(d, node, path, "an integer");
            None
        }
    }
}

pub fn port(d: &mut Diagnostics, node: &Node, path: &str) -> Option<u16> {
    integer(d, node, path, 1, 65535).and_then(|p| u16::try_from(p).ok())
}

pub fn list<'a>(d: &mut Diagnostics, node: &'a Node, path: &str) -> Option<&'a [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        _ => {
            wrong_kind(d, node, path, "a list");
            None
        }
    }
}

/// A list of strings, e.g. package or extension names.
pub fn string_list(d: &mut Diagnostics, node: &Node, path: &str) -> Vec<String> {
    let Some(items) = list(d, node, path) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| string(d, item, &format!("{path}[{i}]")))
        .collect()
}

/// One of a closed set of words, with a suggestion when it is a typo.
pub fn choice<'c>(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    choices: &[&'c str],
) -> Option<&'c str> {
    let value = text(d, node, path)?;
    if let Some(c) = choices.iter().find(|c| **c == value) {
        return Some(c);
    }
    let message = format!(
        "`{value}` is not a valid `{path}`: one of {}",
        choices.join(", ")
    );
    d.unknown(
        node.pos,
        path,
        message,
        &value,
        choices.iter().copied(),
        None,
    );
    None
}

/// A secret reference: `{env: VAR}`, `{file: path}` (relative to `base`) or `{command: "..."}`.
/// A literal is refused without being echoed.
pub fn secret_ref(d: &mut Diagnostics, node: &Node, path: &str, base: &Path) -> Option<SecretRef> {
    if let Value::Str(_) = node.value {
        d.secret_error(
            node.pos,
            path,
            format!("`{path}` is a literal secret: secrets are given by reference, never written in the inventory"),
            "write {env: VARIABLE}, {file: path} or {command: \"...\"}",
        );
        return None;
    }
    let mut m = MapReader::new(d, node, path)?;
    let env = m.take("env");
    let file = m.take("file");
    let command = m.take("command");
    m.finish(d);
    let given = [env.is_some(), file.is_some(), command.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if given != 1 {
        d.error_with_help(
            node.pos,
            path,
            format!("`{path}` must name exactly one of env, file or command"),
            "write {env: VARIABLE}, {file: path} or {command: \"...\"}",
        );
        return None;
    }
    if let Some(n) = env {
        let var = string(d, n, &format!("{path}.env"))?;
        let valid = var
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            d.error(
                n.pos,
                &format!("{path}.env"),
                format!("`{var}` is not a valid environment variable name"),
            );
            return None;
        }
        return Some(SecretRef::Env(var));
    }
    if let Some(n) = file {
        let f = string(d, n, &format!("{path}.file"))?;
        if f.is_empty() {
            d.error(
                n.pos,
                &format!("{path}.file"),
                "the secret file path is empty",
            );
            return None;
        }
        return Some(SecretRef::File(file_path(base, &f)));
    }
    let n = command?;
    let c = string(d, n, &format!("{path}.command"))?;
    if c.trim().is_empty() {
        d.error(
            n.pos,
            &format!("{path}.command"),
            "the secret command is empty",
        );
        return None;
    }
    Some(SecretRef::Command(c))
}

/// An IP address or a DNS name.
pub fn address(d: &mut Diagnostics, node: &Node, path: &str, value: &str) -> bool {
    if value.parse::<IpAddr>().is_ok() {
        return true;
    }
    let looks_numeric = value.chars().all(|c| c.is_ascii_digit() || c == '.');
    let dns_ok = !looks_numeric
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !dns_ok {
        d.error(
            node.pos,
            path,
            format!("`{value}` is not an IP address or a host name"),
        );
    }
    dns_ok
}

/// A path as the user wrote it: `~/` is the home folder, a relative path is taken from `base`
/// (the inventory's folder).
pub fn file_path(base: &Path, s: &str) -> PathBuf {
    if let Some(rest) = s.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let p = PathBuf::from(s);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}
