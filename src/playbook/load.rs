//! Read a playbook (ordered steps + handlers) and check it before any host is involved:
//! unknown keys, unknown step kinds and arguments, bad `when`/`loop` expressions and
//! `notify` names that match no handler are reported with their line.

use std::path::{Path, PathBuf};

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
    /// (`upstream`, `primary`, or every other host: `peers`): a cascaded standby clones after
    /// its upstream made its slot.
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

/// Finds a fragment by the name an `include:` gives: its file (for messages) and its text, or
/// why there is none.
pub type FragmentSource<'a> = &'a dyn Fn(&str) -> Result<(PathBuf, String), String>;

/// What a playbook may use: the step kinds it may name, and the fragments it may include.
pub struct LoadCx<'a> {
    pub kinds: &'a [&'static [Kind]],
    pub fragment: FragmentSource<'a>,
}

/// Fragments include fragments; a loop of them stops here.
const MAX_INCLUDE_DEPTH: usize = 8;

/// Read a playbook.
pub fn load_str(path: &Path, source: &str, cx: &LoadCx<'_>) -> Result<Playbook, Diagnostics> {
    load_at(path, source, cx, 0)
}

fn load_at(
    path: &Path,
    source: &str,
    cx: &LoadCx<'_>,
    depth: usize,
) -> Result<Playbook, Diagnostics> {
    let mut d = Diagnostics::new(path, source);
    let root = match node::parse(source) {
        Ok(root) => root,
        Err(e) => {
            d.error(e.pos, "", format!("invalid YAML: {}", e.message));
            return Err(d);
        }
    };
    let playbook = read(&mut d, &root, cx, depth);
    match playbook {
        Some(p) if d.is_empty() => Ok(p),
        _ => Err(d),
    }
}

fn read(d: &mut Diagnostics, root: &Node, cx: &LoadCx<'_>, depth: usize) -> Option<Playbook> {
    let mut top = MapReader::new(d, root, "")?;
    let mut included_handlers = Vec::new();
    let steps = top
        .require(d, "steps")
        .map(|n| step_list(d, n, "steps", cx, depth, &mut included_handlers));
    let handlers = top
        .take("handlers")
        .map(|n| step_list(d, n, "handlers", cx, depth, &mut included_handlers));
    top.finish(d);
    let mut handlers = handlers.unwrap_or_default();
    // A handler a fragment brings is added once, even when two includes bring it.
    for h in included_handlers {
        if !handlers.iter().any(|x| x.name == h.name) {
            handlers.push(h);
        }
    }
    let playbook = Playbook {
        steps: steps?,
        handlers,
    };
    // A fragment's steps may notify or wait for what the including playbook has: checked
    // there, once everything is in.
    if depth > 0 {
        return Some(playbook);
    }
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
    cx: &LoadCx<'_>,
    depth: usize,
    included_handlers: &mut Vec<StepDecl>,
) -> Vec<StepDecl> {
    let Some(items) = decode::list(d, node, path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let is_include = matches!(&item.value, crate::yaml::node::Value::Map(entries)
            if entries.iter().any(|(k, _)| k.name == INCLUDE));
        if is_include {
            if let Some(fragment) = include(d, item, &path, cx, depth) {
                out.extend(fragment.steps);
                included_handlers.extend(fragment.handlers);
            }
        } else if let Some(s) = step(d, item, &path, cx.kinds) {
            out.push(s);
        }
    }
    out
}

/// `- include: NAME` (with an optional `when:` that every included step must also meet):
/// the fragment's steps stand here, its handlers join the playbook's.
const INCLUDE: &str = "include";

fn include(
    d: &mut Diagnostics,
    node: &Node,
    path: &str,
    cx: &LoadCx<'_>,
    depth: usize,
) -> Option<Playbook> {
    let mut m = MapReader::new(d, node, path)?;
    let name = m
        .require(d, INCLUDE)
        .and_then(|n| decode::string(d, n, &m.child(INCLUDE)));
    let when = m
        .take("when")
        .and_then(|n| expression(d, n, &m.child("when")));
    m.finish(d);
    let name = name?;
    if depth >= MAX_INCLUDE_DEPTH {
        d.error(
            node.pos,
            path,
            format!("`{name}` is included {MAX_INCLUDE_DEPTH} levels deep: do the fragments include each other?"),
        );
        return None;
    }
    let (file, text) = match (cx.fragment)(&name) {
        Ok(found) => found,
        Err(reason) => {
            d.error(node.pos, &format!("{path}.include"), reason);
            return None;
        }
    };
    let mut fragment = match load_at(&file, &text, cx, depth + 1) {
        Ok(p) => p,
        Err(inner) => {
            d.error(
                node.pos,
                &format!("{path}.include"),
                format!("fragment `{name}` is invalid:\n{}", inner.render()),
            );
            return None;
        }
    };
    if let Some(outer) = when {
        for s in fragment
            .steps
            .iter_mut()
            .chain(fragment.handlers.iter_mut())
        {
            s.when = Some(match s.when.take() {
                Some(inner) => format!("({outer}) and ({inner})"),
                None => outer.clone(),
            });
        }
    }
    Some(fragment)
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
        let host = a.require(d, "host").and_then(|h| {
            decode::choice(d, h, &a.child("host"), &["upstream", "primary", "peers"])
        });
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

    use super::{load_str, LoadCx};

    #[test]
    fn a_command_step_needs_a_guard_but_a_handler_does_not() {
        let unguarded = "steps:\n  - name: x\n    command: {run: 'true'}\n";
        let kinds = crate::playbook::kinds();
        let none = |name: &str| Err(format!("no fragment {name}"));
        let cx = LoadCx {
            kinds: &kinds,
            fragment: &none,
        };
        let err = load_str(Path::new("p.yml"), unguarded, &cx).expect_err("refused");
        assert!(
            err.render().contains("needs `creates:`"),
            "{}",
            err.render()
        );
        let handler = "steps:\n  - name: x\n    command: {run: 'true', creates: /x}\n    notify: [h]\nhandlers:\n  - name: h\n    command: {run: 'true'}\n";
        load_str(Path::new("p.yml"), handler, &cx).expect("a handler runs when notified");
    }
}

#[cfg(test)]
mod include_tests {
    use std::path::{Path, PathBuf};

    use super::{load_str, LoadCx, Playbook};

    fn load(main: &str, fragments: &[(&str, &str)]) -> Result<Playbook, String> {
        let kinds = crate::playbook::kinds();
        let fragment = |name: &str| {
            fragments
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(n, t)| (PathBuf::from(n), (*t).to_owned()))
                .ok_or_else(|| format!("no fragment `{name}`"))
        };
        let cx = LoadCx {
            kinds: &kinds,
            fragment: &fragment,
        };
        load_str(Path::new("main.yml"), main, &cx).map_err(|d| d.render())
    }

    const FRAGMENT: &str = "steps:\n  - name: b\n    when: \"host.role == 'primary'\"\n    command: {run: 'true', creates: /b}\n    notify: [h]\nhandlers:\n  - name: h\n    command: {run: 'true'}\n";

    #[test]
    fn an_include_puts_the_fragment_in_its_place_with_both_conditions() {
        let main = "steps:\n  - name: a\n    command: {run: 'true', creates: /a}\n  - include: f.yml\n    when: \"not x\"\n  - name: c\n    command: {run: 'true', creates: /c}\n";
        let p = load(main, &[("f.yml", FRAGMENT)]).expect("loads");
        let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            p.steps[1].when.as_deref(),
            Some("(not x) and (host.role == 'primary')")
        );
        assert_eq!(p.handlers.len(), 1, "the fragment's handler joins");
        assert_eq!(p.handlers[0].when.as_deref(), Some("not x"));
    }

    #[test]
    fn two_includes_bring_one_handler_and_unknown_fragments_are_named() {
        let twice = "steps:\n  - include: f.yml\n  - include: f.yml\n";
        let p = load(twice, &[("f.yml", FRAGMENT)]).expect("loads");
        assert_eq!((p.steps.len(), p.handlers.len()), (2, 1));
        let err = load("steps:\n  - include: nope.yml\n", &[]).expect_err("unknown");
        assert!(
            err.contains("no fragment `nope.yml`") && err.contains("main.yml:2"),
            "{err}"
        );
        let bad = "steps:\n  - name: x\n    nonsense: {}\n";
        let err = load("steps:\n  - include: bad.yml\n", &[("bad.yml", bad)]).expect_err("bad");
        assert!(
            err.contains("fragment `bad.yml` is invalid")
                && err.contains("unknown step kind `nonsense`"),
            "{err}"
        );
    }

    #[test]
    fn fragments_that_include_each_other_stop() {
        let a = "steps:\n  - include: b.yml\n";
        let b = "steps:\n  - include: a.yml\n";
        let err = load(
            "steps:\n  - include: a.yml\n",
            &[("a.yml", a), ("b.yml", b)],
        )
        .expect_err("a loop");
        assert!(err.contains("levels deep"), "{err}");
    }
}
