//! Expanding a playbook for one host: evaluate `when`, unroll `loop`, render the arguments,
//! and type them. The result is the host's ordered list of typed steps.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::components::Component;
use crate::flavours::Flavour;
use crate::model::{pg_hba, Cluster, Host, Sealed, Topology};
use crate::playbook::load::{strip_braces, After, Playbook, StepDecl, FLUSH_HANDLERS};
use crate::playbook::vars::host_vars_json;
use crate::render::{describe, Templates};
use crate::steps::registry::{self, Kind};
use crate::steps::Module;
use crate::yaml::node::{Node, Value as Yaml};

/// One step for one host, ready to be checked.
#[derive(Debug, Clone)]
pub struct Step {
    /// Unique within the playbook: `<index>:<name>`, the same on every host, so one host can
    /// wait for another's step.
    pub key: String,
    pub name: String,
    /// The kind's name as the playbook wrote it (`template` is built as a `file`).
    pub kind: String,
    pub module: Arc<dyn Module>,
    pub notify: Vec<String>,
    /// Resolved: wait until `step` has finished on this host.
    pub after: Option<(String, String)>,
    /// Handlers run only when notified, after the steps.
    pub handler: bool,
    /// At most this many hosts run this step at once.
    pub throttle: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("{host}: step `{step}`: {reason}")]
pub struct ExpandError {
    pub host: String,
    pub step: String,
    pub reason: String,
}

/// The ordered steps (then handlers) of `host`.
pub fn expand(
    playbook: &Playbook,
    templates: &Templates,
    cluster: &Cluster,
    flavour: &dyn Flavour,
    components: &[Arc<dyn Component>],
    topology: &Topology,
    host: &Host,
) -> Result<Vec<Step>, ExpandError> {
    let vars = host_vars_json(cluster, flavour, components, topology, host);
    let kinds = crate::playbook::kinds_for(flavour.name(), components);
    let mut out = Vec::new();
    // Handlers run where a `flush_handlers` step stands, and once more at the end.
    let mut sequence: Vec<(String, &StepDecl, bool)> = Vec::new();
    for (i, decl) in playbook.steps.iter().enumerate() {
        if decl.kind == FLUSH_HANDLERS {
            for h in &playbook.handlers {
                sequence.push((format!("{i}:{}", h.name), h, true));
            }
        } else {
            sequence.push((format!("{i}:{}", decl.name), decl, false));
        }
    }
    for h in &playbook.handlers {
        sequence.push((format!("end:{}", h.name), h, true));
    }
    for (key, decl, handler) in sequence {
        let fail = |reason: String| ExpandError {
            host: host.name.clone(),
            step: decl.name.clone(),
            reason,
        };
        let items: Vec<Option<Json>> = match &decl.loop_over {
            None => vec![None],
            Some(expr) => {
                let value = templates
                    .eval(
                        expr,
                        &minijinja::Value::from(minijinja::value::Serde(&vars)),
                    )
                    .map_err(|e| fail(format!("loop `{expr}`: {}", describe(&e))))?;
                let json = serde_json::to_value(&value).map_err(|e| fail(e.to_string()))?;
                match json {
                    Json::Array(items) => items.into_iter().map(Some).collect(),
                    Json::Null => Vec::new(),
                    other => return Err(fail(format!("loop `{expr}` gave {other}, not a list"))),
                }
            }
        };
        for item in items {
            let context = with_item(&vars, item);
            let context = minijinja::Value::from(minijinja::value::Serde(&context));
            if let Some(expr) = &decl.when {
                let value = templates
                    .eval(expr, &context)
                    .map_err(|e| fail(format!("when `{expr}`: {}", describe(&e))))?;
                if !value.is_true() {
                    continue;
                }
            }
            let module = typed(decl, templates, &context, &kinds).map_err(fail)?;
            let after = decl
                .after
                .as_ref()
                .and_then(|a| resolve_after(a, topology, host));
            out.push(Step {
                key: key.clone(),
                name: decl.name.clone(),
                kind: decl.kind.clone(),
                module,
                notify: decl.notify.clone(),
                after,
                handler,
                throttle: decl.throttle,
            });
        }
    }
    Ok(out)
}

fn with_item(vars: &Json, item: Option<Json>) -> Json {
    let mut context = vars.clone();
    if let (Json::Object(map), Some(item)) = (&mut context, item) {
        map.insert("item".to_owned(), item);
    }
    context
}

fn resolve_after(after: &After, topology: &Topology, host: &Host) -> Option<(String, String)> {
    let target = match after.host.as_str() {
        "upstream" => topology.upstream.get(&host.name).cloned(),
        _ => Some(topology.primary.clone()),
    }?;
    (target != host.name).then(|| (target, after.step.clone()))
}

/// Render the arguments and read them into the kind's typed struct.
fn typed(
    decl: &StepDecl,
    templates: &Templates,
    context: &minijinja::Value,
    kinds: &[&'static [Kind]],
) -> Result<Arc<dyn Module>, String> {
    let mut args = render_node(&decl.args, templates, context)?;
    let kind = if decl.kind == "template" {
        args = template_to_file(args, templates, context)?;
        "file"
    } else {
        decl.kind.as_str()
    };
    let found = registry::find(kinds, kind).ok_or_else(|| format!("unknown step kind `{kind}`"))?;
    (found.build)(args).map_err(|e| format!("arguments of `{kind}`: {e}"))
}

fn template_to_file(
    args: Json,
    templates: &Templates,
    context: &minijinja::Value,
) -> Result<Json, String> {
    let Json::Object(mut map) = args else {
        return Err("the arguments of `template` must be a mapping".to_owned());
    };
    let Some(Json::String(src)) = map.remove("src") else {
        return Err("`template` needs `src`, the template's name".to_owned());
    };
    let content = templates.render(&src, context).map_err(|e| e.to_string())?;
    // A YAML file that does not parse is refused here, before any host sees it; what the
    // service itself thinks of it is the step's `validate` command's job, on the host.
    let dest = map.get("dest").and_then(Json::as_str).unwrap_or_default();
    let refused = |line: String, p: pg_hba::Problem| {
        format!(
            "template {src} renders {dest} with {line}, which PostgreSQL would refuse: {}",
            p.message
        )
    };
    if dest.ends_with(".yml") || dest.ends_with(".yaml") {
        let yaml = serde_saphyr::from_str::<Json>(&content).map_err(|e| {
            format!("template {src} renders {dest} as YAML that does not parse: {e}")
        })?;
        // Patroni writes pg_hba.conf from `postgresql.pg_hba`, one line per item.
        let rules = yaml["postgresql"]["pg_hba"]
            .as_array()
            .into_iter()
            .flatten();
        for (i, rule) in rules.enumerate() {
            if let Err(p) = pg_hba::check_line(rule.as_str().unwrap_or_default()) {
                return Err(refused(format!("postgresql.pg_hba[{i}]"), p));
            }
        }
    }
    if dest.ends_with("pg_hba.conf") {
        if let Some((line, p)) = pg_hba::check_file(&content).into_iter().next() {
            return Err(refused(format!("line {line}"), p));
        }
    }
    map.insert(
        "content".to_owned(),
        serde_json::to_value(Sealed(content)).map_err(|e| e.to_string())?,
    );
    Ok(Json::Object(map))
}

/// YAML arguments to JSON with every string rendered. A string that is one whole `{{ expr }}`
/// keeps the expression's type (a list, a number, null), as in Ansible.
fn render_node(
    node: &Node,
    templates: &Templates,
    context: &minijinja::Value,
) -> Result<Json, String> {
    Ok(match &node.value {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Int(i) => Json::from(*i),
        Yaml::Float(f) => Json::from(*f),
        Yaml::Str(s) => render_string(s, templates, context)?,
        Yaml::Seq(items) => Json::Array(
            items
                .iter()
                .map(|i| render_node(i, templates, context))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| Ok((k.name.clone(), render_node(v, templates, context)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

fn render_string(
    text: &str,
    templates: &Templates,
    context: &minijinja::Value,
) -> Result<Json, String> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(Json::String(text.to_owned()));
    }
    let inner = strip_braces(text);
    if inner != text.trim() {
        let value = templates
            .eval(inner, context)
            .map_err(|e| format!("`{text}`: {}", describe(&e)))?;
        return serde_json::to_value(&value).map_err(|e| e.to_string());
    }
    templates
        .render_str(text, context)
        .map(Json::String)
        .map_err(|e| format!("`{text}`: {}", describe(&e)))
}
