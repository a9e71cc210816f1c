//! Playbooks: each flavour's ordered steps as YAML data (`playbooks/`), embedded and
//! overridable. `load` checks one, `vars` builds what a host's steps see, `expand` turns it
//! into the host's typed steps (`plan::check` compares them with facts).

pub mod expand;
pub mod load;
pub mod vars;

use std::path::{Path, PathBuf};

use crate::diag::Diagnostics;
use crate::model::Flavour;
use crate::render::PLAYBOOKS;

pub use expand::{expand, Step};

use crate::steps::registry::Kind;

/// The step kinds playbooks may name.
pub fn kinds() -> Vec<&'static [Kind]> {
    vec![crate::steps::KINDS]
}
pub use load::Playbook;

#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    #[error("cannot read playbook {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("no playbook for flavour `{0}`")]
    Missing(String),
    #[error("{}", .0.render())]
    Invalid(Diagnostics),
}

/// The flavour's playbook: `DIR/<flavour>.yml` when an override folder has one, else the
/// embedded one.
pub fn for_flavour(flavour: Flavour, overrides: Option<&Path>) -> Result<Playbook, PlaybookError> {
    let name = flavour.name();
    if let Some(dir) = overrides {
        let path = dir.join(format!("{name}.yml"));
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| PlaybookError::Read {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            return load::load_str(&path, &text).map_err(PlaybookError::Invalid);
        }
    }
    let (_, text) = PLAYBOOKS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| PlaybookError::Missing(name.to_owned()))?;
    let path = PathBuf::from(format!("<embedded>/playbooks/{name}.yml"));
    load::load_str(&path, text).map_err(PlaybookError::Invalid)
}
