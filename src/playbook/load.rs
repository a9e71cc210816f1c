//! Read a playbook (ordered steps + handlers) and check it before any host is involved:
//! unknown keys, unknown step kinds and arguments, bad `when`/`loop` expressions and
//! `notify` names that match no handler are reported with their line.

use std::path::Path;

use crate::diag::Diagnostics;
use crate::steps::file::TEMPLATE_ARGS;
use crate::steps::registry::{self, Kind};
use crate::yaml::decode::{self, MapReader};
use crate::yaml::node::{self, Node, Pos};

/// A step as written: its arguments stay raw until they are rendered for a host.
#[derive(Debug, Clone)]
pub struct StepDecl {
    pub name: String,
    pub pos: Pos,
    pub when: Option<String>,
    pub loop_over: Option<String>,
    pub notify: Vec<String>,
    /// Run on this host only after `step` has finished on the host named by `host`
    /// (`upstream`): a cascaded standby clones after its upstream made its slot.
    pub after: Option<After>,
    /// At most this many hosts run the step at once (Ansible's `throttle`): `1` restarts the
    /// etcd members one by one, each healthy before the next.
    pub throttle: Option<usize>,
    pub kind: String,
    pub args: Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub host: String,
    pub step: String,
}

#[derive(Debug, Clone)]
pub struct Playbook {
    pub steps: Vec<StepDecl>,
    pub handlers: Vec<StepDecl>,
}

const STEP_KEYS: [&str; 6] = ["name", "when", "loop", "notify", "after", "throttle"];

/// The step kind that runs the handlers notified so far, at that point (Ansible's
/// `meta: flush_handlers`): the configuration must be live before standbys connect.
pub const FLUSH_HANDLERS: &str = "flush_handlers";

/// Read a playbook whose steps may name the kinds of `kinds`.
pub fn load_str(
    path: &Path,
    source: &str,
    kinds: &[&'static [Kind]],
) -> Result<Playbook, Diagnostics> {
    let mut d = Diagnostics::new(path, source);
    let root = match node::parse(source) {
        Ok(root) => root,
        Err(e) => {
            d.error(e.pos, "", format!("invalid YAML: {}", e.message));
            return Err(d);
        }
    };
    let playbook = read(&mut d, &root, kinds);
    match playbook {
        Some(p) if d.is_empty() => Ok(p),
        _ => Err(d),
    }
}

fn read(d: &mut Diagnostics, root: &Node, kinds: &[&'static [Kind]]) -> Option<Playbook> {
    let mut top = MapReader::new(d, root, "")?;
    let steps = top
        .require(d, "steps")
        .map(|n| step_list(d, n, "steps", kinds));
    let handlers = top
        .take("handlers")
        .map(|n| step_list(d, n, "handlers", kinds));
    top.finish(d);
    let playbook = Playbook {
        steps: steps?,
        handlers: handlers.unwrap_or_default(),
    };
    for step in &playbook.steps {
        for name in &step.notify {
            if !playbook.handlers.iter().any(|h| &h.name == name) {
                let message = format!(
                    "step `{}` notifies `{name}`, which is not a handler",
                    step.name
                );
                let handlers = playbook.handlers.iter().map(|h| h.name.as_str());
                d.unknown(step.pos, "notify", message, name, handlers, None);
            }
        }
        if let Some(after) = &step.after {
            if !playbook.steps.iter().any(|s| s.name == after.step) {
                d.error(
                    step.pos,
                    "after.step",
                    format!(
                        "step `{}` waits for `{}`, which is not a step",
                        step.name, after.step
                    ),
                );
            }
        }
    }
    Some(playbook)
}

fn step_list(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    kinds: &[&'static [Kind]],
) -> Vec<StepDecl> {
    let Some(items) = decode::list(d, node, path) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| step(d, item, &format!("{path}[{i}]"), kinds))
        .collect()
}

fn step(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    kinds: &[&'static [Kind]],
) -> Option<StepDecl> {
    let mut m = MapReader::new(d, node, path)?;
    let name = m
        .require(d, "name")
        .and_then(|n| decode::string(d, n, &m.child("name")));
    let when = m
        .take("when")
        .and_then(|n| expression(d, n, &m.child("when")));
    let loop_over = m
        .take("loop")
        .and_then(|n| expression(d, n, &m.child("loop")));
    let notify = match m.take("notify") {
        Some(n) => decode::string_list(d, n, &m.child("notify")),
        None => Vec::new(),
    };
    let after = m.take("after").and_then(|n| {
        let mut a = MapReader::new(d, n, &m.child("after"))?;
        let host = a
            .require(d, "host")
            .and_then(|h| decode::choice(d, h, &a.child("host"), &["upstream", "primary"]));
        let step = a
            .require(d, "step")
            .and_then(|s| decode::string(d, s, &a.child("step")));
        a.finish(d);
        Some(After {
            host: host?.to_owned(),
            step: step?,
        })
    });
    let throttle = m.take("throttle").and_then(|n| {
        decode::integer(d, n, &m.child("throttle"), 1, 1000).and_then(|v| usize::try_from(v).ok())
    });
    // The one key that is not a step keyword names the kind.
    let kind_keys: Vec<_> = m
        .entries()
        .iter()
        .filter(|(k, _)| !STEP_KEYS.contains(&k.name.as_str()))
        .collect();
    let kind = match kind_keys.as_slice() {
        [(key, args)] => {
            if key.name == FLUSH_HANDLERS {
                Some((key.name.clone(), args.clone()))
            } else if let Some(known) = arguments(kinds, &key.name) {
                check_arguments(d, &key.name, args, &format!("{path}.{}", key.name), known);
                unguarded_command(d, &key.name, args, path);
                Some((key.name.clone(), args.clone()))
            } else {
                let message = format!("unknown step kind `{}`", key.name);
                let names = kind_names(kinds);
                let candidates = names
                    .iter()
                    .copied()
                    .chain(STEP_KEYS)
                    .chain([FLUSH_HANDLERS]);
                let otherwise = format!("step kinds: {}", names.join(", "));
                d.unknown(
                    key.pos,
                    &format!("{path}.{}", key.name),
                    message,
                    &key.name,
                    candidates,
                    Some(otherwise),
                );
                None
            }
        }
        [] => {
            d.error(
                node.pos,
                path,
                format!(
                    "step `{path}` names no step kind (one of {})",
                    kind_names(kinds).join(", ")
                ),
            );
            None
        }
        [_, (second, _), ..] => {
            d.error(
                second.pos,
                &format!("{path}.{}", second.name),
                format!("a step has one kind; `{}` is a second one", second.name),
            );
            None
        }
    };
    let (kind, args) = kind?;
    Some(StepDecl {
        name: name?,
        pos: node.pos,
        when,
        loop_over,
        notify,
        after,
        throttle,
        kind,
        args,
    })
}

fn check_arguments(
    d: &mut Diagnostics,
    kind: &str,
    args: &Node,
    path: &str,
    known: &'static [&'static str],
) {
    let crate::yaml::node::Value::Map(entries) = &args.value else {
        d.error(
            args.pos,
            path,
            format!("the arguments of `{kind}` must be a mapping"),
        );
        return;
    };
    for (key, _) in entries {
        if !known.contains(&key.name.as_str()) {
            let message = format!("unknown argument `{}` for step kind `{kind}`", key.name);
            let otherwise = format!("arguments: {}", known.join(", "));
            d.unknown(
                key.pos,
                &format!("{path}.{}", key.name),
                message,
                &key.name,
                known.iter().copied(),
                Some(otherwise),
            );
        }
    }
}

/// The kinds a playbook may name: the registered ones and `template` (which expands into a
/// `file`), in the order users read them.
fn kind_names(kinds: &[&'static [Kind]]) -> Vec<&'static str> {
    let mut names: Vec<&str> = kinds
        .iter()
        .flat_map(|r| r.iter().map(|k| k.name))
        .chain(["template"])
        .collect();
    names.sort_unstable();
    names
}

/// Argument names of a kind; `None` for an unknown kind.
fn arguments(kinds: &[&'static [Kind]], kind: &str) -> Option<&'static [&'static str]> {
    if kind == "template" {
        return Some(&TEMPLATE_ARGS);
    }
    registry::find(kinds, kind).map(|k| (k.arguments)())
}

/// A command step runs while its `creates` path is missing; without one it would run on every
/// apply and no plan would ever be clean. Only a handler, run when notified, goes without.
fn unguarded_command(d: &mut Diagnostics, kind: &str, args: &Node, path: &str) {
    let crate::yaml::node::Value::Map(entries) = &args.value else {
        return;
    };
    if kind == "command"
        && !path.starts_with("handlers")
        && !entries.iter().any(|(k, _)| k.name == "creates")
    {
        d.error(
            args.pos,
            &format!("{path}.command"),
            "a `command` step needs `creates:` (the path whose presence shows it has run); only a handler, which runs when notified, goes without",
        );
    }
}

/// A `when`/`loop` expression, compiled once here so a syntax error names its line.
fn expression(d: &mut Diagnostics, node: &Node, path: &str) -> Option<String> {
    let text = decode::string(d, node, path)?;
    let inner = strip_braces(&text).to_owned();
    let env = minijinja::Environment::new();
    if let Err(e) = env.compile_expression(&inner) {
        d.error(
            node.pos,
            path,
            format!("`{text}` is not a valid expression: {e}"),
        );
        return None;
    }
    Some(inner)
}

/// `"{{ users }}"` and `users` mean the same in `when` and `loop`.
pub fn strip_braces(text: &str) -> &str {
    let t = text.trim();
    match t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        Some(inner) if !inner.contains("{{") => inner.trim(),
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::load_str;

    #[test]
    fn a_command_step_needs_a_guard_but_a_handler_does_not() {
        let unguarded = "steps:\n  - name: x\n    command: {run: 'true'}\n";
        let kinds = crate::playbook::kinds();
        let err = load_str(Path::new("p.yml"), unguarded, &kinds).expect_err("refused");
        assert!(
            err.render().contains("needs `creates:`"),
            "{}",
            err.render()
        );
        let handler = "steps:\n  - name: x\n    command: {run: 'true', creates: /x}\n    notify: [h]\nhandlers:\n  - name: h\n    command: {run: 'true'}\n";
        load_str(Path::new("p.yml"), handler, &kinds).expect("a handler runs when notified");
    }
}
