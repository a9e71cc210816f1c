//! Shared fragments: `{{ shared("NAME") }}` in a template stands for the output of template
//! NAME. A file every host gets differently may hold a long part that is the same everywhere
//! (Patroni's copy of the pg_hba rules of every host); as a fragment, that part is rendered once
//! for all hosts by whoever keeps the fragments (`playbook::expand`), not once per host.
//!
//! Rendering leaves a mark where a fragment goes; `Composed` puts the fragments in. Like a block
//! tag under `trim_blocks`, the call takes the line break right after it: a call on a line of
//! its own is replaced by the fragment's lines.
//!
//! A YAML file is checked to parse. Parsing every host's whole file would again cost the
//! fragment's size on every host, so a fragment made of list entries (each line `- "text"` at
//! one indentation, checked once) is stood in for by one such entry while a host's file is
//! checked, and the result is trusted only when that entry came back whole, as an item of a
//! list: then the fragment's lines are more items of the same list, which parses alike. Any
//! doubt parses the whole text, which also gives the error message.

use serde_json::Value as Json;

use crate::secret::find_mark;

const OPEN: &str = "\u{27e6}shared:";
const CLOSE: char = '\u{27e7}';
/// What stands for a fragment while a file is checked.
const STAND_IN: &str = "\u{27e6}shared\u{27e7}";

/// The mark `shared(NAME)` renders.
pub(super) fn mark(name: &str) -> String {
    format!("{OPEN}{name}{CLOSE}")
}

/// A template's output, with what putting fragments in and checking YAML need to know of it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub text: String,
    /// It calls `shared()`: fragments are to be put in.
    pub calls_shared: bool,
    /// Set when every line is a list entry `- "text"` (a double-quoted scalar on one line) at
    /// this indentation and the lines parse as that many strings.
    entries: Option<Entries>,
}

#[derive(Debug, Clone, Copy)]
struct Entries {
    indent: usize,
    lines: usize,
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
    (parsed.len() == lines && parsed.iter().all(Json::is_string))
        .then_some(Entries { indent, lines })
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
        line_start = own_line || rest.is_empty();
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

/// Whether `composed` (the pieces with their fragments in) parses as YAML, as
/// `serde_saphyr::from_str` says; its error message when not.
pub fn check_yaml<'f>(
    pieces: &[Piece<'_>],
    fragment: impl Fn(&str) -> &'f Rendered,
    composed: &str,
) -> Result<(), String> {
    if stand_ins_parse(pieces, fragment) {
        return Ok(());
    }
    serde_saphyr::from_str::<Json>(composed)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The pieces with every fragment stood in for by one list entry parse, each stand-in came back
/// as a whole item of a list, and the full text would stay within the parser's limits. False
/// when a fragment is not list entries on lines of their own, or on any doubt.
fn stand_ins_parse<'f>(pieces: &[Piece<'_>], fragment: impl Fn(&str) -> &'f Rendered) -> bool {
    let mut text = String::new();
    let mut stand_ins = 0;
    let (mut lines, mut bytes) = (0, 0);
    for p in pieces {
        match p {
            Piece::Text(t) => text.push_str(t),
            Piece::Fragment { name, own_line } => {
                let f = fragment(name);
                let (Some(entries), true) = (f.entries, *own_line) else {
                    return false;
                };
                text.push_str(&" ".repeat(entries.indent));
                text.push_str(&format!("- \"{STAND_IN}\"\n"));
                stand_ins += 1;
                lines += entries.lines;
                bytes += f.text.len();
            }
        }
    }
    if stand_ins == 0 {
        return false;
    }
    // The fragments' lines count against the parser's limits as well: check the stand-ins
    // against limits lowered by more than the fragments could use (a node and a few events
    // per line, a scalar of at most twice the line's length).
    let mut budget = serde_saphyr::Budget::default();
    let (Some(max_nodes), Some(max_events), Some(max_scalar_bytes)) = (
        budget.max_nodes.checked_sub(2 * lines),
        budget.max_events.checked_sub(4 * lines),
        budget.max_total_scalar_bytes.checked_sub(2 * bytes),
    ) else {
        return false;
    };
    budget.max_nodes = max_nodes;
    budget.max_events = max_events;
    budget.max_total_scalar_bytes = max_scalar_bytes;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let Ok(parsed) = serde_saphyr::from_str_with_options::<Json>(&text, options) else {
        return false;
    };
    let mut whole = 0;
    let mut stray = false;
    count_stand_ins(&parsed, &mut whole, &mut stray);
    !stray && whole == stand_ins
}

/// Stand-ins that are whole items of a list, and whether one shows anywhere else (in a longer
/// string, a key, a mapping's value).
fn count_stand_ins(value: &Json, whole: &mut usize, stray: &mut bool) {
    match value {
        Json::Array(items) => {
            for item in items {
                match item {
                    Json::String(s) if s == STAND_IN => *whole += 1,
                    other => count_stand_ins(other, whole, stray),
                }
            }
        }
        Json::Object(map) => {
            for (k, v) in map {
                *stray |= k.contains(STAND_IN);
                count_stand_ins(v, whole, stray);
            }
        }
        Json::String(s) => *stray |= s.contains(STAND_IN),
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

    fn check(template_output: &str, f: &Rendered) -> (String, Result<(), String>, bool) {
        let pieces = pieces(template_output);
        let composed = compose(&pieces, |_| f);
        let fast = stand_ins_parse(&pieces, |_| f);
        let checked = check_yaml(&pieces, |_| f, &composed);
        (composed, checked, fast)
    }

    #[test]
    fn a_call_on_its_own_line_is_replaced_by_the_fragment_lines() {
        let text = format!("a:\n  b:\n{}\n  c: 1\n", mark("x"));
        let (composed, checked, fast) = check(&text, &fragment(RULES));
        assert_eq!(composed, format!("a:\n  b:\n{RULES}  c: 1\n"));
        assert_eq!(checked, Ok(()));
        assert!(fast, "list entries in a list take the quick check");
        assert_eq!(
            pieces(&text)[1],
            Piece::Fragment {
                name: "x",
                own_line: true
            }
        );
    }

    #[test]
    fn a_call_within_a_line_keeps_the_text_around_it() {
        let text = format!("a: [{}]\n", mark("x"));
        let f = fragment("1, 2");
        let (composed, checked, fast) = check(&text, &f);
        assert_eq!(composed, "a: [1, 2]\n");
        assert_eq!(checked, Ok(()));
        assert!(!fast);
    }

    #[test]
    fn what_does_not_parse_whole_is_refused_with_the_parsers_message() {
        // Within a flow list the entries are no YAML.
        let text = format!("a: [\n{}\n]\n", mark("x"));
        let (composed, checked, fast) = check(&text, &fragment(RULES));
        assert!(!fast);
        let expected = serde_saphyr::from_str::<Json>(&composed)
            .unwrap_err()
            .to_string();
        assert_eq!(checked, Err(expected));
        // An entry at another indentation than the list it follows.
        let text = format!("a:\n  - \"x\"\n{}\n", mark("x"));
        let (composed, checked, _) = check(&text, &fragment("   - \"y\"\n"));
        assert!(serde_saphyr::from_str::<Json>(&composed).is_err());
        assert!(checked.is_err());
    }

    #[test]
    fn a_stand_in_swallowed_by_a_block_scalar_or_string_is_no_proof() {
        for text in [
            format!("a: |\n{}\n", mark("x")),
            format!("a: \"start\n{}\n  end\"\n", mark("x")),
            format!("a: plain\n{}\n", mark("x")),
        ] {
            let (composed, checked, fast) = check(&text, &fragment(RULES));
            assert!(!fast, "{text}");
            assert_eq!(
                checked.is_ok(),
                serde_saphyr::from_str::<Json>(&composed).is_ok(),
                "{text}"
            );
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
