//! A YAML document as a tree of nodes that remember where they stand in the file.
//!
//! We do not deserialize straight into typed structs: serde stops at the first error, and a DBA
//! fixing an inventory wants *every* mistake at once, each with its line and a "did you mean".
//! So YAML is read into this tree (serde-saphyr gives the locations), and `decode` walks it.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

pub use crate::diag::Pos;

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their own position so "unknown key" points at the key, not its value.
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub pos: Pos,
    pub name: String,
}

impl Value {
    /// The kind as a user reads it in an error message.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// Scalars as the text a user wrote (for free-form values like server parameters).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl Node {
    /// The entry under `key`, when this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<(&Key, &Node)> {
        self.find(|k| k == key)
    }

    /// The entry whose key is `key` in any letter case (server parameter names).
    pub fn get_ignore_case(&self, key: &str) -> Option<(&Key, &Node)> {
        self.find(|k| k.eq_ignore_ascii_case(key))
    }

    fn find(&self, matches: impl Fn(&str) -> bool) -> Option<(&Key, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches(&k.name))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// The `i`-th item, when this is a list that long.
    pub fn item(&self, i: usize) -> Option<&Node> {
        match &self.value {
            Value::Seq(items) => items.get(i),
            _ => None,
        }
    }

    /// Where the node at `path` stands, or the nearest of its parents that is there (a key
    /// left to its default is reported at the section that would hold it).
    pub fn pos_near(&self, path: &str) -> Pos {
        let mut path = path;
        loop {
            if let Some(n) = self.at(path) {
                return n.pos;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return self.pos,
            }
        }
    }

    /// The node at a path as messages write it (`hosts[1].ssh.port`), when it is there.
    pub fn at(&self, path: &str) -> Option<&Node> {
        let mut node = self;
        for part in path.split('.') {
            let (key, index) = match part.split_once('[') {
                Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            if !key.is_empty() {
                node = node.get(key)?.1;
            }
            if let Some(i) = index {
                node = node.item(i)?;
            }
        }
        Some(node)
    }
}

fn pos_of<T>(s: &Spanned<T>) -> Pos {
    Pos {
        line: s.referenced.line(),
        column: s.referenced.column(),
    }
}

/// serde-saphyr fills `Spanned` only around a `Deserialize` value, so the tree is read as
/// `Spanned<Bare>` and converted.
struct Bare(Value);

impl<'de> Deserialize<'de> for Bare {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BareVisitor)
    }
}

struct BareVisitor;

impl<'de> Visitor<'de> for BareVisitor {
    type Value = Bare;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Bare, E> {
        Ok(Bare(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Bare, E> {
        Ok(Bare(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Bare, D::Error> {
        Bare::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Bare, E> {
        Ok(Bare(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Bare, E> {
        Ok(Bare(Value::Int(v)))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Bare, E> {
        i64::try_from(v)
            .map(|i| Bare(Value::Int(i)))
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_i128<E: serde::de::Error>(self, _v: i128) -> Result<Bare, E> {
        Err(E::custom("integer too large"))
    }
    fn visit_u128<E: serde::de::Error>(self, _v: u128) -> Result<Bare, E> {
        Err(E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Bare, E> {
        Ok(Bare(Value::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Bare, E> {
        Ok(Bare(Value::Str(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Bare, E> {
        Ok(Bare(Value::Str(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bare, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Bare>>()? {
            items.push(into_node(item));
        }
        Ok(Bare(Value::Seq(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bare, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Bare>>()? {
            let pos = pos_of(&key);
            let name = match key.value.0 {
                Value::Str(s) => s,
                Value::Int(i) => i.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "a mapping key must be a plain name, not {}",
                        other.kind()
                    )))
                }
            };
            let value = map.next_value::<Spanned<Bare>>()?;
            entries.push((Key { pos, name }, into_node(value)));
        }
        Ok(Bare(Value::Map(entries)))
    }
}

fn into_node(s: Spanned<Bare>) -> Node {
    let pos = pos_of(&s);
    Node {
        pos,
        value: s.value.0,
    }
}

/// A YAML syntax error with its place.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parse YAML text into a node tree. Duplicate keys are an error (serde-saphyr's default
/// policy); only YAML 1.2 booleans (`true`/`false`) are booleans, so `on`/`off`/`yes` stay the
/// strings PostgreSQL users mean by them.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.with_snippet = false;
    match serde_saphyr::from_str_with_options::<Spanned<Bare>>(text, options) {
        Ok(root) => Ok(into_node(root)),
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    column: l.column(),
                })
                .unwrap_or_default();
            let message = e.without_snippet().to_string();
            Err(SyntaxError { pos, message })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, Value};

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let root = parse("a: 1\nb:\n  c: on\n  d: [x, true]\n").expect("parses");
        let Value::Map(entries) = root.value else {
            panic!("root is a map")
        };
        assert_eq!(entries[0].0.name, "a");
        assert_eq!((entries[0].0.pos.line, entries[0].0.pos.column), (1, 1));
        assert_eq!(entries[0].1.value, Value::Int(1));
        let Value::Map(inner) = &entries[1].1.value else {
            panic!("b is a map")
        };
        assert_eq!(inner[0].1.value, Value::Str("on".into()));
        assert_eq!(inner[1].0.pos.line, 4);
    }

    #[test]
    fn finds_nodes_by_path() {
        let root =
            parse("hosts:\n  - name: a\n  - name: b\n    ssh: {port: 2222}\n").expect("parses");
        let port = root.at("hosts[1].ssh.port").expect("found");
        assert_eq!((port.pos.line, port.value.clone()), (4, Value::Int(2222)));
        assert!(root.at("hosts[2].name").is_none());
        assert!(root.get_ignore_case("HOSTS").is_some());
    }

    #[test]
    fn duplicate_keys_are_refused_with_a_line() {
        let err = parse("a: 1\na: 2\n").expect_err("duplicate");
        assert_eq!(err.pos.line, 2, "{}", err.message);
    }
}
