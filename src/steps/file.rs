//! A managed file: content (rendered from a template or given inline), owner, group, mode.
//!
//! Written atomically: the new content goes to `DEST.pgha-new`, is checked by the optional
//! `validate` command, and only then renamed over DEST; the previous version is kept as
//! `DEST.pgha-prev`, so a bad file can be rolled back.

use serde::{Deserialize, Serialize};

use crate::facts::gather::{Query, Sections};
use crate::model::Sealed;
use crate::secret::MASK;
use crate::steps::{Action, Check, Module, StepContext};
use crate::transport::RemoteCommand;

/// Arguments of `template`: like `file`, with `src` (a template name) instead of `content`.
pub const TEMPLATE_ARGS: [&str; 6] = ["src", "dest", "owner", "group", "mode", "validate"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub dest: String,
    pub content: Sealed,
    #[serde(default = "root")]
    pub owner: String,
    #[serde(default = "root")]
    pub group: String,
    /// Octal, e.g. "0640".
    pub mode: String,
    /// A command that checks the new file before it replaces the old one; `%s` is its path.
    #[serde(default)]
    pub validate: Option<String>,
}

/// Files replaced since the server last accepted its configuration: the ones a refused
/// reload puts back (others' `.pgha-prev` may be far older than what the server runs).
pub const PENDING_DIR: &str = "/var/lib/pgha/pending";

/// The marker's name for a path.
pub fn pending_key(path: &str) -> String {
    path.replace('/', "+")
}

fn root() -> String {
    "root".to_owned()
}

impl File {
    fn write_commands(&self) -> Vec<RemoteCommand> {
        let dest = shell_words::quote(&self.dest).into_owned();
        let new = shell_words::quote(&format!("{}.pgha-new", self.dest)).into_owned();
        let prev = shell_words::quote(&format!("{}.pgha-prev", self.dest)).into_owned();
        let validate = self
            .validate
            .as_ref()
            .map(|v| format!("{} || {{ rm -f {new}; exit 3; }}; ", v.replace("%s", &new)))
            .unwrap_or_default();
        // A missing parent (conf.d/) is made with the file's owner, readable: the server must
        // be able to list it.
        let script = format!(
            "set -e; parent=\"$(dirname {dest})\"; [ -d \"$parent\" ] || install -d -m 0755 -o {owner} -g {group} \"$parent\"; \
             install -m {mode} -o {owner} -g {group} /dev/stdin {new}; \
             {validate}\
             if [ -e {dest} ]; then cp -p {dest} {prev}; fi; \
             mv -f {new} {dest}; \
             mkdir -p {PENDING_DIR}; touch {PENDING_DIR}/{key}",
            key = shell_words::quote(&pending_key(&self.dest)),
            mode = shell_words::quote(&self.mode),
            owner = shell_words::quote(&self.owner),
            group = shell_words::quote(&self.group),
        );
        vec![RemoteCommand::script(script).with_stdin(self.content.0.clone())]
    }
}

impl Module for File {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn ask(&self, query: &mut Query) {
        query.files.push(self.dest.clone());
    }

    /// The file itself; its pending marker is read by no fact.
    fn invalidates(&self) -> Sections {
        Sections {
            files: true,
            ..Sections::NONE
        }
    }

    fn check(&self, cx: &StepContext) -> Check {
        let wanted = match self.content.reveal(cx.secrets) {
            Ok(text) => text,
            Err(e) => return Check::Refused(e.to_string()),
        };
        let Some(current) = cx.facts.files.get(&self.dest) else {
            let mut change = cx.change(
                self.kind(),
                Action::Create,
                &self.dest,
                "does not exist",
                self.write_commands(),
            );
            change.diff = Some(unified_diff("", &self.content.masked(), &self.dest));
            return Check::Changes(vec![change]);
        };
        if current.content != wanted {
            let before = mask_host_text(&self.content, &current.content, cx.secrets);
            let after = self.content.masked();
            // Only passwords differ: a rotation, named by the secrets' labels.
            let rotated = if before == after {
                self.content
                    .labels_missing_from(cx.secrets, &current.content)
            } else {
                Vec::new()
            };
            let reason = if rotated.is_empty() {
                "content differs".to_owned()
            } else {
                format!("password rotation: {}", rotated.join(", "))
            };
            let mut change = cx.change(
                self.kind(),
                Action::Update,
                &self.dest,
                reason,
                self.write_commands(),
            );
            change.diff = Some(if before == after {
                format!(
                    "{} (on host) -> (planned): a secret value differs {MASK}\n",
                    self.dest
                )
            } else {
                unified_diff(&before, &after, &self.dest)
            });
            return Check::Changes(vec![change]);
        }
        let mut fixes = Vec::new();
        if current.owner != self.owner || current.group != self.group {
            fixes.push(format!(
                "owner {}:{} (is {}:{})",
                self.owner, self.group, current.owner, current.group
            ));
        }
        if normalize_mode(&current.mode) != normalize_mode(&self.mode) {
            fixes.push(format!("mode {} (is {})", self.mode, current.mode));
        }
        if fixes.is_empty() {
            return Check::InSync("content, owner and mode match".to_owned());
        }
        let command = RemoteCommand::new([
            "sh".to_owned(),
            "-c".to_owned(),
            format!(
                "chown {}:{} {d} && chmod {} {d}",
                shell_words::quote(&self.owner),
                shell_words::quote(&self.group),
                shell_words::quote(&self.mode),
                d = shell_words::quote(&self.dest)
            ),
        ]);
        Check::Changes(vec![cx.change(
            self.kind(),
            Action::Update,
            &self.dest,
            fixes.join(", "),
            vec![command],
        )])
    }
}

/// The host's version of a file, fit to show. Known secret values are masked; in a file that
/// holds secrets, a line shaped like one of our secret lines has its secret part masked (the
/// host may hold an *old* password pgha does not know), and so does the value of a line whose
/// key names a credential (someone's own `password:`). Every other line is shown as it is: a
/// DBA must see `synchronous_mode: false` become `true`.
fn mask_host_text(planned: &Sealed, host_text: &str, secrets: &crate::model::Secrets) -> String {
    if !planned.has_secrets() {
        return secrets.mask(host_text);
    }
    let masked_plan = planned.masked();
    let plain_lines: std::collections::BTreeSet<&str> =
        masked_plan.lines().filter(|l| !l.contains(MASK)).collect();
    let shapes: Vec<(&str, &str)> = masked_plan
        .lines()
        .filter_map(|l| {
            let start = l.find(MASK)?;
            let end = l.rfind(MASK)? + MASK.len();
            Some((&l[..start], &l[end..]))
        })
        .collect();
    let mut out = String::new();
    for line in host_text.lines() {
        let shaped = shapes.iter().find(|(pre, post)| {
            line.len() >= pre.len() + post.len() && line.starts_with(pre) && line.ends_with(post)
        });
        match shaped {
            Some((pre, post)) => out.push_str(&format!("{pre}{MASK}{post}")),
            None if plain_lines.contains(line) => out.push_str(line),
            None => out.push_str(&mask_credential(line)),
        }
        out.push('\n');
    }
    secrets.mask(&out)
}

/// A `key: value` or `key = value` line whose key names a credential, with the value masked;
/// any other line as it is.
fn mask_credential(line: &str) -> String {
    const CREDENTIAL: [&str; 5] = ["password", "passwd", "secret", "token", "private_key"];
    let Some(at) = line.find([':', '=']) else {
        return line.to_owned();
    };
    let key = line[..at].to_ascii_lowercase();
    if CREDENTIAL.iter().any(|c| key.contains(c)) && !line[at + 1..].trim().is_empty() {
        format!("{} {MASK}", &line[..=at])
    } else {
        line.to_owned()
    }
}

fn normalize_mode(mode: &str) -> u32 {
    u32::from_str_radix(mode, 8).unwrap_or(u32::MAX)
}

/// A unified diff with three lines of context, headed by the path.
pub fn unified_diff(before: &str, after: &str, path: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (on host)"), &format!("{path} (planned)"))
        .to_string()
}
