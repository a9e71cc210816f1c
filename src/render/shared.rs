//! Shared fragments: `{{ shared("NAME") }}` in a template stands for the output of template
//! NAME. A file every host gets differently may hold a long part that is the same everywhere
//! (Patroni's copy of the pg_hba rules of every host); as a fragment, that part is rendered once
//! for all hosts by whoever keeps the fragments (`playbook::expand`), not once per host.
//!
//! Rendering leaves a mark where a fragment goes; `compose` puts the fragments in. Like a block
//! tag under `trim_blocks`, the call takes the line break right after it: a call on a line of
//! its own is replaced by the fragment's lines.
//!
//! A YAML file is checked to parse. Parsing every host's whole file would again cost the
//! fragment's size on every host, so a fragment made of list entries (each line `- "text"` at
//! one indentation, parsed once) is stood in for by one such entry while a host's file is
//! parsed, and the result is trusted only when that entry came back whole, as an item of a
//! list: then the fragment's lines are more items of the same list, which parses alike. Any
//! doubt parses the whole text, which also gives the parser's own error message.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::secret::find_mark;

const OPEN: &str = "\u{27e6}shared:";
const CLOSE: char = '\u{27e7}';

/// The mark `shared(NAME)` renders; also what stands for the fragment while YAML is parsed.
pub(super) fn mark(name: &str) -> String {
    format!("{OPEN}{name}{CLOSE}")
}

/// A template's output, with what putting fragments in and parsing YAML need to know of it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub text: String,
    /// It calls `shared()`: fragments are to be put in.
    pub calls_shared: bool,
    /// Set when every line is a list entry `- "text"` (a double-quoted scalar on one line) at
    /// one indentation, and the lines parse as that many strings.
    entries: Option<Entries>,
}

#[derive(Debug, Clone)]
struct Entries {
    indent: usize,
    /// The strings, one per line.
    items: Vec<String>,
}

impl Rendered {
    pub fn new(text: String) -> Self {
        let entries = list_entries(&text);
        Rendered {
            calls_shared: find_mark(&text, OPEN).is_some(),
            text,
            entries,
        }
    }
}

fn list_entries(text: &str) -> Option<Entries> {
    if text.is_empty() || !text.ends_with('\n') {
        return None;
    }
    let first = text.lines().next()?;
    let indent = first.len() - first.trim_start_matches(' ').len();
    let mut dedented = String::with_capacity(text.len());
    let mut lines = 0;
    for line in text.lines() {
        let entry = line.get(indent..)?;
        if !line[..indent].bytes().all(|b| b == b' ')
            || !entry.starts_with("- \"")
            || !entry.ends_with('"')
            || entry.len() < 4
        {
            return None;
        }
        dedented.push_str(entry);
        dedented.push('\n');
        lines += 1;
    }
    let parsed: Vec<Json> = serde_saphyr::from_str(&dedented).ok()?;
    let items: Vec<String> = parsed
        .into_iter()
        .map(|v| match v {
            Json::String(s) => Some(s),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (items.len() == lines).then_some(Entries { indent, items })
}

/// One part of a rendered text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'t> {
    Text(&'t str),
    Fragment {
        name: &'t str,
        /// The call stood on a line of its own.
        own_line: bool,
    },
}

/// A rendered text cut at its fragment marks (the line break after a mark dropped).
pub fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut line_start = true;
    while let Some(start) = find_mark(rest, OPEN) {
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find(CLOSE) else { break };
        let before = &rest[..start];
        if !before.is_empty() {
            out.push(Piece::Text(before));
        }
        let at_line_start = if before.is_empty() {
            line_start
        } else {
            before.ends_with('\n')
        };
        let name = &after[..end];
        rest = &after[end + CLOSE.len_utf8()..];
        let own_line = at_line_start && (rest.is_empty() || rest.starts_with('\n'));
        if let Some(r) = rest.strip_prefix('\n') {
            rest = r;
        }
        out.push(Piece::Fragment { name, own_line });
        line_start = own_line;
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

/// The names of the fragments a rendered text asks for.
pub fn fragment_names<'p, 't>(pieces: &'p [Piece<'t>]) -> impl Iterator<Item = &'t str> + 'p {
    pieces.iter().filter_map(|p| match p {
        Piece::Fragment { name, .. } => Some(*name),
        Piece::Text(_) => None,
    })
}

/// The text with its fragments in. `fragment` gives each by name.
pub fn compose<'f>(pieces: &[Piece<'_>], fragment: impl Fn(&str) -> &'f Rendered) -> String {
    let len = pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.len(),
            Piece::Fragment { name, .. } => fragment(name).text.len(),
        })
        .sum();
    let mut out = String::with_capacity(len);
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Fragment { name, .. } => out.push_str(&fragment(name).text),
        }
    }
    out
}

/// A composed text's YAML document, as `serde_saphyr::from_str` reads it. Where a fragment of
/// list entries was stood in for, its items are not in the parsed value: `list` puts them back.
#[derive(Debug)]
pub struct Doc<'f> {
    value: Json,
    /// Each stand-in and the items of the fragment it stands for.
    stand_ins: BTreeMap<String, &'f [String]>,
}

/// An item of a list in a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'d> {
    One(&'d Json),
    /// A fragment's items, in its place: `name` is the fragment's.
    Fragment {
        name: &'d str,
        items: &'d [String],
    },
}

impl Doc<'_> {
    /// The items of the list at `path` (mapping keys from the top); none when there is no list.
    pub fn list(&self, path: &[&str]) -> Vec<Item<'_>> {
        let mut at = &self.value;
        for key in path {
            at = &at[*key];
        }
        let Some(items) = at.as_array() else {
            return Vec::new();
        };
        items
            .iter()
            .map(|item| {
                let stood_in = item.as_str().and_then(|s| self.stand_ins.get_key_value(s));
                match stood_in {
                    Some((mark, items)) => Item::Fragment {
                        name: &mark[OPEN.len()..mark.len() - CLOSE.len_utf8()],
                        items,
                    },
                    None => Item::One(item),
                }
            })
            .collect()
    }
}

/// Parse a text without fragments as YAML: the document, or the parser's error message.
pub fn parse_whole(text: &str) -> Result<Doc<'static>, String> {
    serde_saphyr::from_str::<Json>(text)
        .map(|value| Doc {
            value,
            stand_ins: BTreeMap::new(),
        })
        .map_err(|e| e.to_string())
}

/// Parse `composed` (the pieces with their fragments in) as YAML, as `serde_saphyr::from_str`
/// does: the document, or the parser's error message.
pub fn parse_yaml<'f>(
    pieces: &[Piece<'_>],
    fragment: impl Fn(&str) -> &'f Rendered,
    composed: &str,
) -> Result<Doc<'f>, String> {
    match parse_stood_in(pieces, fragment) {
        Some(doc) => Ok(doc),
        None => parse_whole(composed),
    }
}

/// The pieces parsed with every fragment stood in for by one list entry (its mark), when each
/// stand-in came back as a whole item of a list and the full text would stay within the
/// parser's limits. None when a fragment is not list entries on lines of their own, or on any
/// doubt.
fn parse_stood_in<'f>(
    pieces: &[Piece<'_>],
    fragment: impl Fn(&str) -> &'f Rendered,
) -> Option<Doc<'f>> {
    let mut text = String::new();
    let mut stand_ins: BTreeMap<String, &'f [String]> = BTreeMap::new();
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    let (mut lines, mut bytes) = (0, 0);
    for p in pieces {
        match p {
            Piece::Text(t) => text.push_str(t),
            Piece::Fragment { name, own_line } => {
                let f = fragment(name);
                let (Some(entries), true) = (&f.entries, *own_line) else {
                    return None;
                };
                let stand_in = mark(name);
                text.push_str(&" ".repeat(entries.indent));
                text.push_str("- ");
                text.push_str(&serde_json::to_string(&stand_in).ok()?);
                text.push('\n');
                *expected.entry(stand_in.clone()).or_default() += 1;
                stand_ins.insert(stand_in, &entries.items);
                lines += entries.items.len();
                bytes += f.text.len();
            }
        }
    }
    if stand_ins.is_empty() {
        return None;
    }
    // The fragments' lines count against the parser's limits as well: parse with limits
    // lowered by more than the fragments could use (a node and a few events per line, a
    // scalar of at most twice the line's length).
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.checked_sub(2 * lines)?;
    budget.max_events = budget.max_events.checked_sub(4 * lines)?;
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.checked_sub(2 * bytes)?;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let value = serde_saphyr::from_str_with_options::<Json>(&text, options).ok()?;
    let mut whole = BTreeMap::new();
    let mut stray = false;
    count_stand_ins(&value, &stand_ins, &mut whole, &mut stray);
    (!stray && whole == expected).then_some(Doc { value, stand_ins })
}

/// How often each stand-in came back as a whole item of a list, and whether a mark shows
/// anywhere else (in a longer string, a key, a mapping's value).
fn count_stand_ins(
    value: &Json,
    stand_ins: &BTreeMap<String, &[String]>,
    whole: &mut BTreeMap<String, usize>,
    stray: &mut bool,
) {
    match value {
        Json::Array(items) => {
            for item in items {
                match item {
                    Json::String(s) if stand_ins.contains_key(s) => {
                        *whole.entry(s.clone()).or_default() += 1;
                    }
                    other => count_stand_ins(other, stand_ins, whole, stray),
                }
            }
        }
        Json::Object(map) => {
            for (k, v) in map {
                *stray |= k.contains(OPEN);
                match v {
                    Json::String(s) => *stray |= s.contains(OPEN),
                    other => count_stand_ins(other, stand_ins, whole, stray),
                }
            }
        }
        Json::String(s) => *stray |= s.contains(OPEN),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(text: &str) -> Rendered {
        Rendered::new(text.to_owned())
    }

    const RULES: &str =
        "    - \"host all all 10.0.0.1/32 md5\"\n    - \"host all all 10.0.0.2/32 md5\"\n";

    /// The composed text, what parse_yaml says of it, and whether it took the stand-ins.
    fn parse(template_output: &str, f: &Rendered) -> (String, Result<Json, String>, bool) {
        let pieces = pieces(template_output);
        let composed = compose(&pieces, |_| f);
        let fast = parse_stood_in(&pieces, |_| f).is_some();
        let parsed = parse_yaml(&pieces, |_| f, &composed).map(|doc| {
            // The document as the whole text reads: every list with its fragments' items.
            fn expand(doc: &Doc<'_>, path: &mut Vec<String>, v: &Json) -> Json {
                match v {
                    Json::Array(_) => {
                        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
                        Json::Array(
                            doc.list(&keys)
                                .into_iter()
                                .flat_map(|i| match i {
                                    Item::One(j) => vec![j.clone()],
                                    Item::Fragment { items, .. } => {
                                        items.iter().cloned().map(Json::String).collect()
                                    }
                                })
                                .collect(),
                        )
                    }
                    Json::Object(m) => Json::Object(
                        m.iter()
                            .map(|(k, v)| {
                                path.push(k.clone());
                                let e = expand(doc, path, v);
                                path.pop();
                                (k.clone(), e)
                            })
                            .collect(),
                    ),
                    other => other.clone(),
                }
            }
            expand(&doc, &mut Vec::new(), &doc.value)
        });
        (composed, parsed, fast)
    }

    fn whole(text: &str) -> Result<Json, String> {
        serde_saphyr::from_str::<Json>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_call_on_its_own_line_is_replaced_by_the_fragment_lines() {
        let text = format!("a:\n  b:\n{}\n  c: 1\n", mark("x"));
        let (composed, parsed, fast) = parse(&text, &fragment(RULES));
        assert_eq!(composed, format!("a:\n  b:\n{RULES}  c: 1\n"));
        assert!(fast, "list entries in a list take the stand-in");
        assert_eq!(parsed, whole(&composed));
        assert_eq!(
            pieces(&text)[1],
            Piece::Fragment {
                name: "x",
                own_line: true
            }
        );
    }

    #[test]
    fn the_same_fragment_twice_and_items_around_it() {
        let text = format!(
            "a:\n  - \"first\"\n{m}\n  - \"last\"\nb:\n{m}\n",
            m = mark("x")
        );
        let f = fragment("  - \"r1\"\n  - \"r2\"\n");
        let (composed, parsed, fast) = parse(&text, &f);
        assert!(fast);
        assert_eq!(parsed, whole(&composed));
        let pieces = pieces(&text);
        let doc = parse_yaml(&pieces, |_| &f, &composed).expect("parses");
        let items = doc.list(&["a"]);
        assert_eq!(items.len(), 3);
        assert!(matches!(items[1], Item::Fragment { name: "x", items } if items.len() == 2));
    }

    #[test]
    fn a_call_within_a_line_keeps_the_text_around_it() {
        let text = format!("a: [{}]\n", mark("x"));
        let f = fragment("1, 2");
        let (composed, parsed, fast) = parse(&text, &f);
        assert_eq!(composed, "a: [1, 2]\n");
        assert!(!fast);
        assert_eq!(parsed, whole(&composed));
    }

    #[test]
    fn what_does_not_parse_whole_is_refused_with_the_parsers_message() {
        // Within a flow list the entries are no YAML.
        let text = format!("a: [\n{}\n]\n", mark("x"));
        let (composed, parsed, fast) = parse(&text, &fragment(RULES));
        assert!(!fast);
        assert_eq!(parsed, whole(&composed));
        assert!(parsed.is_err());
        // An entry at another indentation than the list it follows.
        let text = format!("a:\n  - \"x\"\n{}\n", mark("x"));
        let (composed, parsed, _) = parse(&text, &fragment("   - \"y\"\n"));
        assert!(parsed.is_err());
        assert_eq!(parsed, whole(&composed));
    }

    #[test]
    fn a_stand_in_swallowed_by_a_block_scalar_or_string_is_no_proof() {
        for text in [
            format!("a: |\n{}\n", mark("x")),
            format!("a: \"start\n{}\n  end\"\n", mark("x")),
            format!("a: plain\n{}\n", mark("x")),
            format!("a:\n  ? \n{}\n", mark("x")),
        ] {
            let (composed, parsed, fast) = parse(&text, &fragment(RULES));
            assert!(!fast, "{text}");
            assert_eq!(parsed, whole(&composed), "{text}");
        }
    }

    #[test]
    fn only_one_line_double_quoted_entries_are_list_entries() {
        assert!(fragment(RULES).entries.is_some());
        for text in [
            "    - plain\n",
            "    - \"a\"\n  - \"b\"\n",
            "    - \"a\" \n",
            "    - \"a\"",
            "    - \"a\n    b\"\n",
            "    - \"a\": \"b\"\n",
            "\t- \"a\"\n",
            "",
        ] {
            assert!(fragment(text).entries.is_none(), "{text:?}");
        }
    }
}
