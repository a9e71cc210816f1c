//! Small readers that turn nodes into typed values, recording every problem in `Diagnostics`
//! instead of stopping at the first. Shared by the inventory and the playbook loader.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::diag::Diagnostics;
use crate::secret::SecretRef;
use crate::yaml::node::{Key, Node, Pos, Value};

/// What `MapReader::take_one_or_many` found.
pub enum OneOrMany<'a> {
    Neither,
    /// Both keys were given (reported).
    Both,
    /// Each string, its node and its path.
    Items(Vec<(String, &'a Node, String)>),
}

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

    /// `finish`, and an error at the mapping when it has no key at all (`message` says what
    /// it takes). False when it was empty.
    pub fn finish_non_empty(self, d: &mut Diagnostics, message: &str) -> bool {
        let (pos, path, empty) = (self.pos, self.path.clone(), self.entries.is_empty());
        self.finish(d);
        if empty {
            d.error(pos, &path, message);
        }
        !empty
    }

    /// `one: a` or `many: [a, b]` (not both): each string with its node and path.
    pub fn take_one_or_many(
        &mut self,
        d: &mut Diagnostics,
        one: &'static str,
        many: &'static str,
    ) -> OneOrMany<'a> {
        let single = self.take(one).map(|n| (n, self.child(one)));
        let list = self.take(many).map(|n| (n, self.child(many)));
        match (single, list) {
            (Some((n, _)), Some((_, at))) => {
                d.error(n.pos, &at, format!("give `{one}` or `{many}`, not both"));
                OneOrMany::Both
            }
            (Some((n, at)), None) => OneOrMany::Items(
                text(d, n, &at)
                    .map(|s| vec![(s, n, at)])
                    .unwrap_or_default(),
            ),
            (None, Some((n, at))) => OneOrMany::Items(
                string_items(d, n, &at)
                    .into_iter()
                    .map(|(i, s, node)| (s, node, format!("{at}[{i}]")))
                    .collect(),
            ),
            (None, None) => OneOrMany::Neither,
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
    string_items(d, node, path)
        .into_iter()
        .map(|(_, s, _)| s)
        .collect()
}

/// A list of strings with the index and node of each, for errors about one item.
pub fn string_items<'a>(
    d: &mut Diagnostics,
    node: &'a Node,
    path: &str,
) -> Vec<(usize, String, &'a Node)> {
    let Some(items) = list(d, node, path) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| string(d, item, &format!("{path}[{i}]")).map(|s| (i, s, item)))
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

/// The keys of a secret reference.
const SECRET_SOURCES: [&str; 3] = ["env", "file", "command"];

/// A secret reference: `{env: VAR}`, `{file: path}` (relative to `base`) or `{command: "..."}`.
/// Whatever is wrong with it, nothing written there is echoed: neither in a message nor in
/// the snippet of the line (a password typed where its reference belongs, `{hunter2}` taken
/// for quoting, a password given as the variable's name).
pub fn secret_ref(d: &mut Diagnostics, node: &Node, path: &str, base: &Path) -> Option<SecretRef> {
    let before = d.items.len();
    let found = secret_ref_inner(d, node, path, base);
    d.redact_since(before);
    found
}

fn secret_ref_inner(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    base: &Path,
) -> Option<SecretRef> {
    let help = "write {env: VARIABLE}, {file: path} or {command: \"...\"}";
    let Value::Map(entries) = &node.value else {
        d.error_with_help(
            node.pos,
            path,
            format!("`{path}` is a literal secret ({}): secrets are given by reference, never written in the inventory", node.value.kind()),
            help,
        );
        return None;
    };
    // Keys are not named back: `{s3cr3t}` is a mapping whose key is the password.
    for (key, _) in entries {
        if !SECRET_SOURCES.contains(&key.name.as_str()) {
            let help = match crate::diag::did_you_mean(&key.name, SECRET_SOURCES) {
                Some(s) => format!("did you mean `{s}`?"),
                None => help.to_owned(),
            };
            d.error_with_help(
                key.pos,
                path,
                format!("unknown key in `{path}`: a secret reference takes env, file or command"),
                help,
            );
        }
    }
    let given: Vec<&(Key, Node)> = entries
        .iter()
        .filter(|(k, v)| SECRET_SOURCES.contains(&k.name.as_str()) && v.value != Value::Null)
        .collect();
    let [(key, n)] = given.as_slice() else {
        d.error_with_help(
            node.pos,
            path,
            format!("`{path}` must name exactly one of env, file or command"),
            help,
        );
        return None;
    };
    let at = format!("{path}.{}", key.name);
    let text = string(d, n, &at)?;
    match key.name.as_str() {
        "env" => {
            let valid = text
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                d.error_with_help(
                    n.pos,
                    &at,
                    format!("`{at}` is not a valid environment variable name (not shown: it may be the secret itself)"),
                    "a variable name has letters, digits and `_`, and does not start with a digit",
                );
                return None;
            }
            Some(SecretRef::Env(text))
        }
        "file" if text.is_empty() => {
            d.error(n.pos, &at, "the secret file path is empty");
            None
        }
        "file" => Some(SecretRef::File(file_path(base, &text))),
        _ if text.trim().is_empty() => {
            d.error(n.pos, &at, "the secret command is empty");
            None
        }
        _ => Some(SecretRef::Command(text)),
    }
}

/// An IP address or a DNS name; not an address that names no one host (`0.0.0.0` means
/// every address of the machine it is used on, a multicast address a group).
pub fn address(d: &mut Diagnostics, node: &Node, path: &str, value: &str) -> bool {
    if let Ok(ip) = value.parse::<IpAddr>() {
        let ip = ip.to_canonical();
        let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
        if ip.is_unspecified() || ip.is_multicast() || broadcast {
            d.error(
                node.pos,
                path,
                format!("`{value}` is not the address of one host: it is an unspecified, broadcast or multicast address"),
            );
            return false;
        }
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
