//! Templates: embedded in the binary, overridable from a folder, rendered with
//! minijinja in strict mode (an undefined variable is an error, never an empty string).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};
pub use minijinja::{Expression, Template};

use crate::secret::mark;

pub mod shared;

/// `(name, text)` of files under the repository's `templates/`, embedded at build time.
#[macro_export]
macro_rules! embedded_templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/", $name)))),*]
    };
}

/// The templates every flavour uses, by name (a flavour brings its own besides).
pub const TEMPLATES: &[(&str, &str)] = embedded_templates![
    "postgresql/createcluster.conf.j2",
    "postgresql/pg_hba.conf.j2",
    "postgresql/pgha.conf.j2",
    "postgresql/pgpass.j2",
    "postgresql/postgresql.conf.j2",
    "postgresql/standby.conf.j2",
];

pub const MANAGED_HEADER: &str =
    "Managed by pgha: local edits are shown by `pgha plan` and overwritten by `pgha apply`.";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template folder {dir}: {reason}")]
    Overrides { dir: PathBuf, reason: String },
    #[error("template {name}: {reason}")]
    Template { name: String, reason: String },
}

/// The template set: embedded ones, each replaced by a file of the same name under the
/// override folder when there is one.
pub struct Templates {
    env: Environment<'static>,
    /// SHA-256 of each template's source as loaded (a saved plan pins them).
    digests: std::collections::BTreeMap<String, String>,
}

impl Templates {
    /// The common templates and `more` (a flavour's), each overridable from `overrides`.
    pub fn new(
        overrides: Option<&Path>,
        more: &[(&'static str, &'static str)],
    ) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Configuration files, not HTML: minijinja would otherwise JSON-escape every value in a
        // .yml template. Templates quote with `tojson` where YAML needs it.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .build()
            .map_err(|e| RenderError::Template {
                name: "(syntax)".to_owned(),
                reason: describe(&e),
            })?;
        env.set_syntax(syntax);
        env.add_filter("pg_value", pg_value);
        env.add_filter("pgpass", pgpass);
        env.add_filter("yaml_secret", yaml_secret);
        env.add_global("managed_header", MANAGED_HEADER);
        env.add_function("shared", |name: String| shared::mark(&name));
        let mut digests = std::collections::BTreeMap::new();
        for &(name, text) in TEMPLATES.iter().chain(more) {
            let source = match overrides {
                Some(dir) => read_override(dir, name)?.unwrap_or_else(|| text.to_owned()),
                None => text.to_owned(),
            };
            digests.insert(name.to_owned(), sha256(&source));
            env.add_template_owned(name.to_owned(), source)
                .map_err(|e| RenderError::Template {
                    name: name.to_owned(),
                    reason: describe(&e),
                })?;
        }
        // A template the user added (not overriding one of ours) is available too.
        if let Some(dir) = overrides {
            for name in extra_templates(dir)? {
                if env.get_template(&name).is_err() {
                    let source = read_override(dir, &name)?.unwrap_or_default();
                    digests.insert(name.clone(), sha256(&source));
                    env.add_template_owned(name.clone(), source).map_err(|e| {
                        RenderError::Template {
                            name,
                            reason: describe(&e),
                        }
                    })?;
                }
            }
        }
        Ok(Templates { env, digests })
    }

    /// SHA-256 of each template's source, by name.
    pub fn digests(&self) -> &std::collections::BTreeMap<String, String> {
        &self.digests
    }

    pub fn render(&self, name: &str, context: &Value) -> Result<String, RenderError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| RenderError::Template {
                name: name.to_owned(),
                reason: describe(&e),
            })?;
        template.render(context).map_err(|e| RenderError::Template {
            name: name.to_owned(),
            reason: describe(&e),
        })
    }

    /// Compile a string argument of a step (`"{{ pg.conf_dir }}/pg_hba.conf"`), to render it
    /// for each host.
    pub fn compile_str<'s>(&self, text: &'s str) -> Result<Template<'_, 's>, Error> {
        self.env.template_from_str(text)
    }

    /// Compile an expression (`when`, `loop`, a whole-argument `{{ x }}`), to evaluate it for
    /// each host.
    pub fn compile_expression<'s>(&self, expression: &'s str) -> Result<Expression<'_, 's>, Error> {
        self.env.compile_expression(expression)
    }

    /// The top-level variables a template reads, or None when that cannot be told: it
    /// includes, imports or extends another template (or says those words anywhere), or it
    /// does not exist.
    pub fn reads(&self, name: &str) -> Option<HashSet<String>> {
        let template = self.env.get_template(name).ok()?;
        let source = template.source();
        if ["include", "import", "extends"]
            .iter()
            .any(|w| source.contains(w))
        {
            return None;
        }
        Some(template.undeclared_variables(false))
    }
}

fn read_override(dir: &Path, name: &str) -> Result<Option<String>, RenderError> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|e| RenderError::Overrides {
            dir: dir.to_path_buf(),
            reason: format!("{}: {e}", path.display()),
        })
}

fn extra_templates(dir: &Path) -> Result<Vec<String>, RenderError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let entries = std::fs::read_dir(&at).map_err(|e| RenderError::Overrides {
            dir: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "j2") {
                if let Ok(rel) = path.strip_prefix(dir) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// minijinja's error with its line and the chain of causes.
pub fn describe(e: &Error) -> String {
    let mut text = e.to_string();
    if let Some(line) = e.line() {
        if !text.contains("line") {
            text.push_str(&format!(" (line {line})"));
        }
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// A value for postgresql.conf: always single-quoted, which the server accepts for every type
/// and which keeps lists (`'pg_stat_statements,repmgr'`) and units intact.
fn pg_value(value: Value) -> String {
    let text = value.to_string();
    format!("'{}'", text.replace('\'', "''"))
}

/// A secret as a YAML scalar (a JSON string), the quoting applied to the real value later.
fn yaml_secret(value: Value) -> Result<String, Error> {
    let Some(text) = value.as_str() else {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "yaml_secret takes a secret",
        ));
    };
    match secret_label(text) {
        Some(label) => Ok(mark(label, Some("json"))),
        None => Ok(serde_json::to_string(text).unwrap_or_default()),
    }
}

fn secret_label(text: &str) -> Option<&str> {
    text.strip_prefix('\u{27e6}')
        .and_then(|t| t.strip_prefix("secret:"))
        .and_then(|t| t.strip_suffix('\u{27e7}'))
}

/// A field for `.pgpass`: `:` and `\` escaped. On a secret mark, the escaping is deferred to
/// the moment the real value replaces the mark.
fn pgpass(value: Value) -> Result<String, Error> {
    let Some(text) = value.as_str() else {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "pgpass takes a string",
        ));
    };
    if let Some(label) = secret_label(text) {
        return Ok(mark(label, Some("pgpass")));
    }
    Ok(text.replace('\\', "\\\\").replace(':', "\\:"))
}

/// Hex SHA-256 of a text.
pub fn sha256(text: &str) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(text.as_bytes()))
}
