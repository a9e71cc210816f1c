//! A loaded project: the checked inventory with its playbook and templates, the input every
//! command starts from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::components::Component;
use crate::flavours::Flavour;
use crate::inventory::{self, Inventory, LoadError};
use crate::model::{Cluster, Host, Secrets, Topology};
use crate::playbook::{self, expand::ExpandError, Expander, Playbook, PlaybookError, Step};
use crate::render::{RenderError, Templates};
use crate::secret::SecretError;

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Inventory(#[from] LoadError),
    #[error("cannot make the cluster CA: {0}")]
    Ca(String),
    #[error(transparent)]
    Playbook(#[from] PlaybookError),
    #[error(transparent)]
    Templates(#[from] RenderError),
    #[error(transparent)]
    Expand(#[from] ExpandError),
    #[error("secrets could not be resolved (nothing was changed on any host):\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Secrets(Vec<SecretError>),
}

pub struct Project {
    pub cluster: Cluster,
    /// The HA flavour with its own settings.
    pub flavour: Arc<dyn Flavour>,
    /// The components the inventory has.
    pub components: Vec<Arc<dyn Component>>,
    pub playbook: Playbook,
    /// Components' playbooks for the hosts of their own roles (a proxy host), by role name:
    /// such a host runs its component's instead of the flavour's.
    pub host_playbooks: BTreeMap<&'static str, Playbook>,
    pub templates: Templates,
    /// Where the cluster CA should be and is not yet (no `tls:` in the inventory).
    pub missing_ca: Option<PathBuf>,
    /// What the declared objectives set (`objectives:`), for the plan.
    pub objective_notes: Vec<String>,
}

impl Project {
    /// A failover's expected worst case (detection + promotion + route) against the declared
    /// rto: what a drill compares its measurement with. None when the flavour does not fail
    /// over on its own.
    pub fn expected_failover(&self) -> Option<inventory::objectives::Expected> {
        inventory::objectives::expected_failover(
            &self.cluster,
            self.flavour.as_ref(),
            &self.components,
        )
    }

    pub fn load(
        inventory: &Path,
        playbooks: Option<&Path>,
        templates: Option<&Path>,
    ) -> Result<Self, ProjectError> {
        let Inventory {
            cluster,
            flavour,
            components,
            missing_ca,
            objective_notes,
        } = inventory::load(inventory)?;
        let playbook = playbook::for_flavour(flavour.as_ref(), &components, playbooks)?;
        let mut host_playbooks = BTreeMap::new();
        for h in &cluster.hosts {
            let crate::model::Role::Member(m) = h.role else {
                continue;
            };
            if host_playbooks.contains_key(m.name) {
                continue;
            }
            if let Some((name, text)) = components.iter().find_map(|c| c.host_playbook(h.role)) {
                let p = playbook::for_component_host(
                    name,
                    text,
                    flavour.as_ref(),
                    &components,
                    playbooks,
                )?;
                host_playbooks.insert(m.name, p);
            }
        }
        let mut own: Vec<(&'static str, &'static str)> = flavour.templates().to_vec();
        for c in &components {
            own.extend_from_slice(c.templates());
        }
        let templates = Templates::new(templates, &own)?;
        Ok(Project {
            cluster,
            flavour,
            components,
            playbook,
            host_playbooks,
            templates,
            missing_ca,
            objective_notes,
        })
    }

    /// What a command that makes no CA says when the default one is missing (what it checks
    /// or renders is then the cluster without TLS).
    pub fn note_missing_ca(&self) {
        if let Some(dir) = &self.missing_ca {
            eprintln!(
                "note: no cluster CA in {} yet: the first `pgha plan` or `pgha apply` makes it (TLS is on by default; `tls: off` in the inventory turns it off). Until then a stand-in CA signs what is checked or rendered",
                dir.display()
            );
        }
    }

    /// The project with its cluster CA: made first where the inventory's default one is
    /// missing (TLS is on unless the inventory says `tls: off`). Only commands that may
    /// change the cluster make it.
    pub fn with_ca(
        self,
        inventory: &Path,
        playbooks: Option<&Path>,
        templates: Option<&Path>,
    ) -> Result<Self, ProjectError> {
        let Some(dir) = &self.missing_ca else {
            return Ok(self);
        };
        crate::tls::init_dir(dir, &self.cluster.name, crate::tls::CA_DAYS)
            .map_err(|e| ProjectError::Ca(e.to_string()))?;
        eprintln!(
            "made the cluster CA in {} (its key 0600: keep it as safe as a password). TLS is on by default; `tls: off` in the inventory turns it off",
            dir.display()
        );
        Project::load(inventory, playbooks, templates)
    }

    /// Every host's steps for a given topology.
    pub fn expand(&self, topology: &Topology) -> Result<BTreeMap<String, Vec<Step>>, ProjectError> {
        let mut out = BTreeMap::new();
        self.expand_each(topology, |host, steps| {
            out.insert(host.name.clone(), steps);
            Ok::<_, ProjectError>(())
        })?;
        Ok(out)
    }

    /// Each host's steps for a given topology, handed to `f` one host at a time in the
    /// inventory's order (what every host shares is built once): a caller that needs one host
    /// at a time holds one host's steps at a time. Stops at the first error.
    pub fn expand_each<E: From<ProjectError>>(
        &self,
        topology: &Topology,
        mut f: impl FnMut(&Host, Vec<Step>) -> Result<(), E>,
    ) -> Result<(), E> {
        // What the components add to PostgreSQL's settings (preloaded libraries, extensions,
        // tuning from the hardware read) is part of the cluster every flavour writes.
        let shaped = crate::components::shaped(&self.cluster, &self.components, topology.hardware);
        let cluster = shaped.as_ref().unwrap_or(&self.cluster);
        let expander = |playbook| {
            Expander::new(
                playbook,
                &self.templates,
                cluster,
                self.flavour.as_ref(),
                &self.components,
                topology,
            )
        };
        let flavours = expander(&self.playbook);
        // A component's host playbook is compiled once too, when a host first needs it.
        let mut own: BTreeMap<&str, Expander<'_>> = BTreeMap::new();
        for host in &self.cluster.hosts {
            let role = host.role.name();
            let steps = match self.host_playbooks.get(role) {
                Some(p) => own.entry(role).or_insert_with(|| expander(p)).expand(host),
                None => flavours.expand(host),
            };
            f(host, steps.map_err(ProjectError::from)?)?;
        }
        Ok(())
    }

    /// Every host's steps for the topology the inventory declares.
    pub fn expand_declared(&self) -> Result<BTreeMap<String, Vec<Step>>, ProjectError> {
        self.expand(&Topology::declared(&self.cluster))
    }

    /// Resolve every secret the inventory references; all failures at once.
    pub fn resolve_secrets(&self) -> Result<Secrets, ProjectError> {
        let mut secrets = Secrets::default();
        let mut errors = Vec::new();
        let mut plugged = self.flavour.secrets();
        for c in &self.components {
            plugged.extend(c.secrets());
        }
        let all = self
            .cluster
            .secrets()
            .into_iter()
            .map(|(label, reference)| (label, reference, None))
            .chain(
                plugged
                    .iter()
                    .map(|s| (s.label.clone(), s.reference, s.rule)),
            );
        for (label, reference, rule) in all {
            // A CA still to be made has no key yet; what makes it comes before its use.
            if self.missing_ca.is_some() && label == crate::steps::tls_certificate::CA_KEY {
                continue;
            }
            match reference.resolve(&label) {
                Ok(s) => match rule.map(|fit| fit(s.expose())) {
                    Some(Err(reason)) => errors.push(crate::secret::SecretError::Unfit {
                        label: label.clone(),
                        source_ref: reference.to_string(),
                        reason,
                    }),
                    _ => secrets.insert(&label, s),
                },
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(secrets)
        } else {
            Err(ProjectError::Secrets(errors))
        }
    }
}
