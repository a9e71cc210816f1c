//! Diagnostics: errors about a user's file, each with file, line, column, key and a snippet.
//!
//! Rendered in the rustc/cargo style (`--> file:line:col`) rather than through miette's fancy
//! handler: the text is stable (tests assert it), plain on any terminal, and `file:line:col`
//! is what editors jump to.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where something stands in its file: 1-based line and column; 0 when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

/// One finding in a user's file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub pos: Pos,
    /// Dotted path of the key, e.g. `hosts[1].upstream`; empty for the whole file.
    pub key: String,
    pub message: String,
    pub help: Option<String>,
    /// The value under the caret is a secret: the snippet shows `(sensitive)` instead.
    pub redact: bool,
}

/// All findings about one file, collected so the user sees every mistake in one run.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub file: PathBuf,
    source: String,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: &Path, source: &str) -> Self {
        Diagnostics {
            file: file.to_path_buf(),
            source: source.to_owned(),
            items: Vec::new(),
        }
    }

    pub fn error(&mut self, pos: Pos, key: &str, message: impl Into<String>) {
        self.items.push(Diagnostic {
            pos,
            key: key.to_owned(),
            message: message.into(),
            help: None,
            redact: false,
        });
    }

    pub fn error_with_help(
        &mut self,
        pos: Pos,
        key: &str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.items.push(Diagnostic {
            pos,
            key: key.to_owned(),
            message: message.into(),
            help: Some(help.into()),
            redact: false,
        });
    }

    /// An error about a value that is a secret: the snippet never shows it.
    pub fn secret_error(
        &mut self,
        pos: Pos,
        key: &str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.error_with_help(pos, key, message, help);
        if let Some(last) = self.items.last_mut() {
            last.redact = true;
        }
    }

    /// Mark every finding from the `from`-th on as about a secret: their snippets never show
    /// the value.
    pub fn redact_since(&mut self, from: usize) {
        for item in self.items.iter_mut().skip(from) {
            item.redact = true;
        }
    }

    /// An error about a name that is not one of `candidates`: with a "did you mean" when it is
    /// close to one, else with `otherwise` as the help (if any).
    pub fn unknown<'a>(
        &mut self,
        pos: Pos,
        key: &str,
        message: String,
        word: &str,
        candidates: impl IntoIterator<Item = &'a str>,
        otherwise: Option<String>,
    ) {
        match (did_you_mean(word, candidates), otherwise) {
            (Some(s), _) => self.error_with_help(pos, key, message, format!("did you mean `{s}`?")),
            (None, Some(help)) => self.error_with_help(pos, key, message, help),
            (None, None) => self.error(pos, key, message),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Findings in file order, then rendered with a snippet of the offending line.
    pub fn render(&self) -> String {
        let mut items = self.items.clone();
        items.sort_by_key(|d| (d.pos.line, d.pos.column));
        let mut out = String::new();
        for d in &items {
            render_one(&mut out, &self.file, &self.source, d);
        }
        let n = items.len();
        let _ = writeln!(
            out,
            "{}: {} error{} found; nothing was changed on any host.",
            self.file.display(),
            n,
            if n == 1 { "" } else { "s" }
        );
        out
    }
}

fn render_one(out: &mut String, file: &Path, source: &str, d: &Diagnostic) {
    let _ = writeln!(out, "error: {}", d.message);
    let key = if d.key.is_empty() {
        String::new()
    } else {
        format!(" (key `{}`)", d.key)
    };
    if d.pos.line == 0 {
        let _ = writeln!(out, "  --> {}{}", file.display(), key);
    } else {
        let _ = writeln!(
            out,
            "  --> {}:{}:{}{}",
            file.display(),
            d.pos.line,
            d.pos.column,
            key
        );
        let line_index = usize::try_from(d.pos.line - 1).unwrap_or(usize::MAX);
        if let Some(text) = source.lines().nth(line_index).map(|l| redact(l, d)) {
            let text = text.as_str();
            let number = d.pos.line.to_string();
            let pad = " ".repeat(number.len());
            let column = usize::try_from(d.pos.column.max(1) - 1).unwrap_or(0);
            // The caret spans the token under the column: up to the next space, colon or comma.
            let rest: String = text.chars().skip(column).collect();
            let width = rest
                .find([' ', ':', ',', '}', ']'])
                .unwrap_or(rest.len())
                .max(1);
            let _ = writeln!(out, " {pad} |");
            let _ = writeln!(out, " {number} | {text}");
            let _ = writeln!(out, " {pad} | {}{}", " ".repeat(column), "^".repeat(width));
        }
    }
    if let Some(help) = &d.help {
        let _ = writeln!(out, "  = help: {help}");
    }
    out.push('\n');
}

/// The source line, with the value at the diagnostic's column replaced when it is a secret.
fn redact(line: &str, d: &Diagnostic) -> String {
    if !d.redact {
        return line.to_owned();
    }
    let column = usize::try_from(d.pos.column.max(1) - 1).unwrap_or(0);
    let head: String = line.chars().take(column).collect();
    format!("{head}{}", crate::secret::MASK)
}

/// The closest candidate to a misspelt name, if it is close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(distance, c)| *distance <= 2.max(c.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// An error with every cause under it, `outer: inner: innermost` (a library's top-level
/// message alone often hides the reason: the server's refusal, the TLS failure).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("prot", ["port", "user"]), Some("port"));
        assert_eq!(
            did_you_mean("shared_bufers", ["shared_buffers"]),
            Some("shared_buffers")
        );
        assert_eq!(did_you_mean("zzz", ["port", "user"]), None);
    }
}
