//! Playbooks: each flavour's ordered steps as YAML data (`playbooks/`), embedded and
//! overridable. `load` checks one, `vars` builds what a host's steps see, `expand` turns it
//! into the host's typed steps (`plan::check` compares them with facts).

pub mod expand;
pub mod load;
pub mod vars;

use std::path::{Path, PathBuf};

use crate::diag::Diagnostics;

pub use expand::{Expander, Step};

use std::sync::Arc;

use crate::components::{self, Component, COMPONENTS};
use crate::flavours::{self, Flavour};
use crate::steps::registry::Kind;

/// The step kinds a flavour's playbook may name: the core ones, the flavour's own and the
/// active components'.
pub fn kinds_for(flavour: &str, components: &[Arc<dyn Component>]) -> Vec<&'static [Kind]> {
    let mut out = vec![crate::steps::KINDS];
    out.extend(flavours::entry(flavour).map(|e| e.kinds));
    for c in components {
        out.extend(
            COMPONENTS
                .iter()
                .filter(|e| e.name == c.name())
                .map(|e| e.kinds),
        );
    }
    out
}

/// Every registered step kind, the flavours' and components' included.
pub fn kinds() -> Vec<&'static [Kind]> {
    let mut out = vec![crate::steps::KINDS];
    out.extend(flavours::FLAVOURS.iter().map(|e| e.kinds));
    out.extend(COMPONENTS.iter().map(|e| e.kinds));
    out
}
pub use load::Playbook;

#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    #[error("cannot read playbook {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{}", .0.render())]
    Invalid(Diagnostics),
}

/// The flavour's playbook: `DIR/<flavour>.yml` when an override folder has one, else the
/// embedded one.
pub fn for_flavour(
    flavour: &dyn Flavour,
    components: &[Arc<dyn Component>],
    overrides: Option<&Path>,
) -> Result<Playbook, PlaybookError> {
    let name = flavour.name();
    let kinds = kinds_for(name, components);
    let fragment = |include: &str| fragment(include, components, overrides);
    let cx = load::LoadCx {
        kinds: &kinds,
        fragment: &fragment,
    };
    if let Some(dir) = overrides {
        let path = dir.join(format!("{name}.yml"));
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| PlaybookError::Read {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            return load::load_str(&path, &text, &cx).map_err(PlaybookError::Invalid);
        }
    }
    let path = PathBuf::from(format!("<embedded>/playbooks/{name}.yml"));
    load::load_str(&path, flavour.playbook(), &cx).map_err(PlaybookError::Invalid)
}

/// A component's playbook for the hosts of its own role (`Component::host_playbook`):
/// `DIR/NAME` when an override folder has it, else the embedded one.
pub fn for_component_host(
    name: &str,
    text: &str,
    flavour: &dyn Flavour,
    components: &[Arc<dyn Component>],
    overrides: Option<&Path>,
) -> Result<Playbook, PlaybookError> {
    let kinds = kinds_for(flavour.name(), components);
    let fragment = |include: &str| fragment(include, components, overrides);
    let cx = load::LoadCx {
        kinds: &kinds,
        fragment: &fragment,
    };
    if let Some(path) = overrides.map(|dir| dir.join(name)).filter(|p| p.exists()) {
        let text = std::fs::read_to_string(&path).map_err(|e| PlaybookError::Read {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        return load::load_str(&path, &text, &cx).map_err(PlaybookError::Invalid);
    }
    let path = PathBuf::from(format!("<embedded>/playbooks/{name}"));
    load::load_str(&path, text, &cx).map_err(PlaybookError::Invalid)
}

/// Fragments every flavour's playbook may include, by name.
const FRAGMENTS: &[(&str, &str)] = &[
    (
        "common/roles-and-databases.yml",
        include_str!("../../playbooks/common/roles-and-databases.yml"),
    ),
    (
        "common/tls.yml",
        include_str!("../../playbooks/common/tls.yml"),
    ),
    (
        crate::components::PACKAGE_SOURCES_FRAGMENT,
        include_str!("../../playbooks/common/package-sources.yml"),
    ),
];

/// An included fragment: `DIR/NAME` when an override folder has it, else the embedded one;
/// `components/HOOK` stands for the active components' fragments for that hook.
fn fragment(
    name: &str,
    active: &[Arc<dyn Component>],
    overrides: Option<&Path>,
) -> Result<(PathBuf, String), String> {
    if name.split('/').any(|part| part == ".." || part.is_empty()) {
        return Err(format!(
            "`{name}` is not a fragment name (a relative path without `..`)"
        ));
    }
    if let Some(hook) = name.strip_prefix("components/") {
        return Ok((
            PathBuf::from(format!("<components>/{hook}")),
            components::hook_text(active, hook),
        ));
    }
    if let Some(dir) = overrides {
        let path = dir.join(name);
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            return Ok((path, text));
        }
    }
    if let Some(text) = components::fragment(active, name) {
        return Ok((
            PathBuf::from(format!("<embedded>/playbooks/{name}")),
            text.to_owned(),
        ));
    }
    FRAGMENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| {
            (
                PathBuf::from(format!("<embedded>/playbooks/{n}")),
                (*text).to_owned(),
            )
        })
        .ok_or_else(|| {
            let known: Vec<&str> = FRAGMENTS.iter().map(|(n, _)| *n).collect();
            format!(
                "no playbook fragment `{name}` (there are: {})",
                known.join(", ")
            )
        })
}
