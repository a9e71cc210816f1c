//! Expanding a playbook for each host: evaluate `when`, unroll `loop`, render the arguments,
//! and type them. The result is the host's ordered list of typed steps.
//!
//! The cost of a host is its own: what does not change from host to host (compiled
//! expressions, the shared variables, a template that reads none of a host's own variables,
//! a `shared()` fragment) is made once for all hosts by the `Expander`.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use minijinja::value::{merge_maps, Serde};
use serde_json::Value as Json;

use crate::components::Component;
use crate::flavours::Flavour;
use crate::model::{pg_hba, Cluster, Host, Topology};
use crate::playbook::load::{strip_braces, After, Playbook, StepDecl, FLUSH_HANDLERS};
use crate::playbook::vars::Vars;
use crate::render::shared::{self, Doc, Item, Rendered};
use crate::render::{describe, Expression, Template, Templates};
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
    /// Resolved: wait until each `(host, step)` has finished (on hosts that have the step).
    pub after: Vec<(String, String)>,
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

/// A compiled expression or string template, or why it does not compile (`describe`d; said
/// when a host first needs it, as rendering it there would have).
type Compiled<T> = Result<T, String>;

/// A step's arguments with every string compiled once for all hosts.
enum Arg<'a> {
    Plain(Json),
    /// A string that is one whole `{{ expr }}`: it keeps the expression's type.
    Whole {
        text: &'a str,
        expression: Compiled<Expression<'a, 'a>>,
    },
    Text {
        text: &'a str,
        template: Compiled<Template<'a, 'a>>,
    },
    Seq(Vec<Arg<'a>>),
    Map(Vec<(&'a str, Arg<'a>)>),
}

/// One entry of the playbook's sequence, compiled.
struct Prepared<'a> {
    key: String,
    decl: &'a StepDecl,
    handler: bool,
    when: Option<Compiled<Expression<'a, 'a>>>,
    loop_over: Option<Compiled<Expression<'a, 'a>>>,
    args: Arg<'a>,
}

/// A template's output that is the same on every host: rendered on the first host that needs
/// it, kept for the others.
struct SharedOutput {
    output: Rendered,
    /// What the checks of a file said of it, once a destination asked (YAML: it parses and
    /// Patroni's pg_hba items are lines PostgreSQL takes; pg_hba.conf: every line is).
    checked: OnceCell<Result<(), Refusal>>,
    /// As a fragment of pg_hba items: the first PostgreSQL would refuse, by its index.
    items_checked: OnceCell<FirstRefused>,
}

/// Why a rendered file is refused, said with its template and destination by `refusal`.
#[derive(Debug, Clone)]
enum Refusal {
    /// The YAML parser's message.
    Yaml(String),
    /// Where (`line 3`, `postgresql.pg_hba[4]`) and why PostgreSQL would refuse a pg_hba line.
    Hba(String, pg_hba::Problem),
}

fn refusal(src: &str, dest: &str, r: Refusal) -> String {
    match r {
        Refusal::Yaml(e) => {
            format!("template {src} renders {dest} as YAML that does not parse: {e}")
        }
        Refusal::Hba(line, p) => format!(
            "template {src} renders {dest} with {line}, which PostgreSQL would refuse: {}",
            p.message
        ),
    }
}

/// The checks of a file's content by its destination: a YAML file must parse, and Patroni
/// writes pg_hba.conf from `postgresql.pg_hba`, one line per item; every line of a pg_hba.conf
/// must be one PostgreSQL takes. `fragment_items` checks the items of a fragment (by name)
/// that stands in a list: the first refused, by its index there.
fn check_content(
    dest: &str,
    doc: Option<Result<Doc<'_>, String>>,
    content: &str,
    fragment_items: &dyn Fn(&str, &[String]) -> FirstRefused,
) -> Result<(), Refusal> {
    if let Some(doc) = doc {
        let doc = doc.map_err(Refusal::Yaml)?;
        let mut i = 0;
        for item in doc.list(&["postgresql", "pg_hba"]) {
            match item {
                Item::One(rule) => {
                    if let Err(p) = pg_hba::check_line(rule.as_str().unwrap_or_default()) {
                        return Err(Refusal::Hba(format!("postgresql.pg_hba[{i}]"), p));
                    }
                    i += 1;
                }
                Item::Fragment { name, items } => {
                    if let Some((j, p)) = fragment_items(name, items) {
                        return Err(Refusal::Hba(format!("postgresql.pg_hba[{}]", i + j), p));
                    }
                    i += items.len();
                }
            }
        }
    }
    if dest.ends_with("pg_hba.conf") {
        if let Some((line, p)) = pg_hba::check_file(content).into_iter().next() {
            return Err(Refusal::Hba(format!("line {line}"), p));
        }
    }
    Ok(())
}

/// The first item PostgreSQL would refuse as a pg_hba line: its index and why.
type FirstRefused = Option<(usize, pg_hba::Problem)>;

/// The first item PostgreSQL would refuse as a pg_hba line, by its index.
fn first_refused(items: &[String]) -> FirstRefused {
    items
        .iter()
        .enumerate()
        .find_map(|(i, line)| pg_hba::check_line(line).err().map(|p| (i, p)))
}

/// What is kept of a template by name: its output when it is the same on every host (or the
/// failure, as its message); None when it is rendered for each host.
type Kept = Option<Result<Rc<SharedOutput>, String>>;

/// A template's output for one host.
enum Output {
    Shared(Rc<SharedOutput>),
    Own(Rendered),
}

impl Output {
    fn rendered(&self) -> &Rendered {
        match self {
            Output::Shared(s) => &s.output,
            Output::Own(f) => f,
        }
    }
}

/// A playbook made ready for every host of one topology: its expressions and argument
/// templates compiled once, the variables every host shares built once, and templates that
/// read no per-host variable rendered once.
pub struct Expander<'a> {
    templates: &'a Templates,
    cluster: &'a Cluster,
    topology: &'a Topology,
    vars: Vars<'a>,
    kinds: Vec<&'static [Kind]>,
    sequence: Vec<Prepared<'a>>,
    /// By template name, filled as hosts need them.
    kept: RefCell<HashMap<String, Kept>>,
}

impl<'a> Expander<'a> {
    pub fn new(
        playbook: &'a Playbook,
        templates: &'a Templates,
        cluster: &'a Cluster,
        flavour: &'a dyn Flavour,
        components: &'a [Arc<dyn Component>],
        topology: &'a Topology,
    ) -> Self {
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
        let sequence = sequence
            .into_iter()
            .map(|(key, decl, handler)| Prepared {
                key,
                decl,
                handler,
                when: decl.when.as_deref().map(|e| expression(templates, e)),
                loop_over: decl.loop_over.as_deref().map(|e| expression(templates, e)),
                args: compile_node(&decl.args, templates),
            })
            .collect();
        Expander {
            templates,
            cluster,
            topology,
            vars: Vars::new(cluster, flavour, components, topology),
            kinds: crate::playbook::kinds_for(flavour.name(), components),
            sequence,
            kept: RefCell::new(HashMap::new()),
        }
    }

    /// The ordered steps (then handlers) of `host`.
    pub fn expand(&self, host: &Host) -> Result<Vec<Step>, ExpandError> {
        let vars = self.vars.context(host);
        let mut out = Vec::new();
        for prepared in &self.sequence {
            let decl = prepared.decl;
            let fail = |reason: String| ExpandError {
                host: host.name.clone(),
                step: decl.name.clone(),
                reason,
            };
            let items: Vec<Option<Json>> = match (&decl.loop_over, &prepared.loop_over) {
                (Some(expr), Some(compiled)) => {
                    let value =
                        eval(compiled, &vars).map_err(|e| fail(format!("loop `{expr}`: {e}")))?;
                    let json = serde_json::to_value(&value).map_err(|e| fail(e.to_string()))?;
                    match json {
                        Json::Array(items) => items.into_iter().map(Some).collect(),
                        Json::Null => Vec::new(),
                        other => {
                            return Err(fail(format!("loop `{expr}` gave {other}, not a list")))
                        }
                    }
                }
                _ => vec![None],
            };
            for item in items {
                let context = match item {
                    Some(item) => {
                        merge_maps([vars.clone(), minijinja::context! { item => Serde(&item) }])
                    }
                    None => vars.clone(),
                };
                if let (Some(expr), Some(compiled)) = (&decl.when, &prepared.when) {
                    let value = eval(compiled, &context)
                        .map_err(|e| fail(format!("when `{expr}`: {e}")))?;
                    if !value.is_true() {
                        continue;
                    }
                }
                let module = self.typed(prepared, &context).map_err(fail)?;
                let after = decl
                    .after
                    .as_ref()
                    .map(|a| resolve_after(a, self.topology, self.cluster, host))
                    .unwrap_or_default();
                out.push(Step {
                    key: prepared.key.clone(),
                    name: decl.name.clone(),
                    kind: decl.kind.clone(),
                    module,
                    notify: decl.notify.clone(),
                    after,
                    handler: prepared.handler,
                    throttle: decl.throttle,
                });
            }
        }
        Ok(out)
    }

    /// Render the arguments and read them into the kind's typed struct.
    fn typed(
        &self,
        prepared: &Prepared<'a>,
        context: &minijinja::Value,
    ) -> Result<Arc<dyn Module>, String> {
        let decl = prepared.decl;
        let mut args = render_arg(&prepared.args, context)?;
        let kind = if decl.kind == "template" {
            args = self.template_to_file(args, context)?;
            "file"
        } else {
            decl.kind.as_str()
        };
        let found = registry::find(&self.kinds, kind)
            .ok_or_else(|| format!("unknown step kind `{kind}`"))?;
        (found.build)(args).map_err(|e| format!("arguments of `{kind}`: {e}"))
    }

    fn template_to_file(&self, args: Json, context: &minijinja::Value) -> Result<Json, String> {
        let Json::Object(mut map) = args else {
            return Err("the arguments of `template` must be a mapping".to_owned());
        };
        let Some(Json::String(src)) = map.remove("src") else {
            return Err("`template` needs `src`, the template's name".to_owned());
        };
        // A file the service would refuse is refused here, before any host sees it (see
        // `check_content`); what the service itself thinks of it is the step's `validate`
        // command's job, on the host.
        let dest = map.get("dest").and_then(Json::as_str).unwrap_or_default();
        let yaml = dest.ends_with(".yml") || dest.ends_with(".yaml");
        let output = self.output(&src, context)?;
        let text = &output.rendered().text;
        let content = if !output.rendered().calls_shared {
            let check = || {
                let doc = yaml.then(|| shared::parse_whole(text));
                check_content(dest, doc, text, &|_, items| first_refused(items))
            };
            match &output {
                // The same content, the same destination kind: checked once.
                Output::Shared(s) if yaml || dest.ends_with("pg_hba.conf") => {
                    s.checked.get_or_init(check).clone()
                }
                _ => check(),
            }
            .map_err(|r| refusal(&src, dest, r))?;
            text.clone()
        } else {
            // `shared(NAME)` calls: each fragment rendered (once, when it is the same on
            // every host), then put in.
            let pieces = shared::pieces(text);
            let mut fragments = HashMap::new();
            for name in shared::fragment_names(&pieces) {
                if fragments.contains_key(name) {
                    continue;
                }
                let fragment = self.output(name, context)?;
                if fragment.rendered().calls_shared {
                    return Err(format!(
                        "template {name}, shared by {src}, calls shared() itself: a shared template cannot"
                    ));
                }
                fragments.insert(name, fragment);
            }
            let get = |name: &str| fragments[name].rendered();
            let composed = shared::compose(&pieces, get);
            // A fragment the same on every host has its items checked once.
            let fragment_items = |name: &str, items: &[String]| match fragments.get(name) {
                Some(Output::Shared(s)) => {
                    s.items_checked.get_or_init(|| first_refused(items)).clone()
                }
                _ => first_refused(items),
            };
            let doc = yaml.then(|| shared::parse_yaml(&pieces, get, &composed));
            check_content(dest, doc, &composed, &fragment_items)
                .map_err(|r| refusal(&src, dest, r))?;
            composed
        };
        map.insert(
            "content".to_owned(),
            // A `Sealed` text, as it serializes.
            Json::String(content),
        );
        Ok(Json::Object(map))
    }

    /// Template `name` rendered for a host: kept from the first host when it reads none of a
    /// host's own variables.
    fn output(&self, name: &str, context: &minijinja::Value) -> Result<Output, String> {
        let render = || {
            self.templates
                .render(name, context)
                .map_err(|e| e.to_string())
        };
        let mut all = self.kept.borrow_mut();
        let kept = all.entry(name.to_owned()).or_insert_with(|| {
            let reads = self.templates.reads(name)?;
            // `debug()` shows the whole context, the host's own variables too.
            let same_everywhere = !reads
                .iter()
                .any(|v| self.vars.is_per_host(v) || v == "debug");
            same_everywhere.then(|| {
                render().map(|text| {
                    Rc::new(SharedOutput {
                        output: Rendered::new(text),
                        checked: OnceCell::new(),
                        items_checked: OnceCell::new(),
                    })
                })
            })
        });
        match kept {
            Some(kept) => kept.clone().map(Output::Shared),
            None => {
                drop(all);
                render().map(|text| Output::Own(Rendered::new(text)))
            }
        }
    }
}

fn expression<'a>(templates: &'a Templates, text: &'a str) -> Compiled<Expression<'a, 'a>> {
    templates.compile_expression(text).map_err(|e| describe(&e))
}

/// Evaluate for one host; an error as `describe` says it.
fn eval(
    compiled: &Compiled<Expression<'_, '_>>,
    context: &minijinja::Value,
) -> Result<minijinja::Value, String> {
    match compiled {
        Ok(expression) => expression.eval(context).map_err(|e| describe(&e)),
        Err(e) => Err(e.clone()),
    }
}

fn resolve_after(
    after: &After,
    topology: &Topology,
    cluster: &Cluster,
    host: &Host,
) -> Vec<(String, String)> {
    let targets: Vec<String> = match after.host.as_str() {
        "upstream" => topology
            .upstream
            .get(&host.name)
            .cloned()
            .into_iter()
            .collect(),
        // Every other host: a step that needs what each peer made (its SSH key).
        "peers" => cluster.hosts.iter().map(|h| h.name.clone()).collect(),
        _ => vec![topology.primary.clone()],
    };
    targets
        .into_iter()
        .filter(|t| *t != host.name)
        .map(|t| (t, after.step.clone()))
        .collect()
}

/// YAML arguments with every string compiled. A string that is one whole `{{ expr }}` keeps
/// the expression's type (a list, a number, null), as in Ansible.
fn compile_node<'a>(node: &'a Node, templates: &'a Templates) -> Arg<'a> {
    match &node.value {
        Yaml::Null => Arg::Plain(Json::Null),
        Yaml::Bool(b) => Arg::Plain(Json::Bool(*b)),
        Yaml::Int(i) => Arg::Plain(Json::from(*i)),
        Yaml::Float(f) => Arg::Plain(Json::from(*f)),
        Yaml::Str(text) => {
            if !text.contains("{{") && !text.contains("{%") {
                return Arg::Plain(Json::String(text.clone()));
            }
            let inner = strip_braces(text);
            if inner != text.trim() {
                Arg::Whole {
                    text,
                    expression: expression(templates, inner),
                }
            } else {
                Arg::Text {
                    text,
                    template: templates.compile_str(text).map_err(|e| describe(&e)),
                }
            }
        }
        Yaml::Seq(items) => Arg::Seq(items.iter().map(|i| compile_node(i, templates)).collect()),
        Yaml::Map(entries) => Arg::Map(
            entries
                .iter()
                .map(|(k, v)| (k.name.as_str(), compile_node(v, templates)))
                .collect(),
        ),
    }
}

/// The arguments as JSON for one host.
fn render_arg(arg: &Arg<'_>, context: &minijinja::Value) -> Result<Json, String> {
    Ok(match arg {
        Arg::Plain(json) => json.clone(),
        Arg::Whole { text, expression } => {
            let value = eval(expression, context).map_err(|e| format!("`{text}`: {e}"))?;
            serde_json::to_value(&value).map_err(|e| e.to_string())?
        }
        Arg::Text { text, template } => {
            let rendered = match template {
                Ok(t) => t.render(context).map_err(|e| describe(&e)),
                Err(e) => Err(e.clone()),
            };
            Json::String(rendered.map_err(|e| format!("`{text}`: {e}"))?)
        }
        Arg::Seq(items) => Json::Array(
            items
                .iter()
                .map(|i| render_arg(i, context))
                .collect::<Result<_, _>>()?,
        ),
        Arg::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| Ok(((*k).to_owned(), render_arg(v, context)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}
