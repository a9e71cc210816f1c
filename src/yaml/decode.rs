//! Small readers that turn nodes into typed values, recording every problem in `Diagnostics`
//! instead of stopping at the first. Shared by the inventory and the playbook loader.

use crate::diag::Diagnostics;
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
