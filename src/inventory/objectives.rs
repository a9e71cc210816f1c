//! The `objectives:` section (RTO, RPO), the flavour's settings derived from it once the
//! route is known, and the failover's expected worst case (what a drill measures against).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::components::route::route_delay;
use crate::components::Component;
use crate::diag::{Diagnostics, Pos};
use crate::flavours::objectives::{rto_note, worst_case};
use crate::flavours::Flavour;
use crate::model::objectives::{parse_duration, parse_rpo};
use crate::model::{Cluster, Objectives};
use crate::yaml::decode::{self, MapReader};
use crate::yaml::node::Node;

/// Where the objectives stand in the file, for the flavour's refusals.
#[derive(Debug, Clone, Copy)]
pub(super) struct Positions {
    rto: Pos,
    rpo: Pos,
}

/// `objectives: {rto: 30s, rpo: 0}`.
pub(super) fn read(d: &mut Diagnostics, node: &Node) -> Option<(Objectives, Positions)> {
    let mut m = MapReader::new(d, node, "objectives")?;
    let rto_node = m.take("rto");
    let rpo_node = m.take("rpo");
    let pos = m.pos();
    m.finish(d);
    let mut ok = true;
    let rto = rto_node.and_then(|n| {
        let text = decode::text(d, n, "objectives.rto")?;
        match parse_duration(&text) {
            Ok(rto) if rto.is_zero() => {
                d.error(
                    n.pos,
                    "objectives.rto",
                    "an rto of 0: no failover is instant",
                );
                None
            }
            Ok(rto) => Some(rto),
            Err(why) => {
                d.error(n.pos, "objectives.rto", why);
                None
            }
        }
    });
    ok &= rto.is_some() == rto_node.is_some();
    let rpo = rpo_node.and_then(|n| {
        let text = decode::text(d, n, "objectives.rpo")?;
        parse_rpo(&text)
            .map_err(|why| d.error(n.pos, "objectives.rpo", why))
            .ok()
    });
    ok &= rpo.is_some() == rpo_node.is_some();
    if rto_node.is_none() && rpo_node.is_none() {
        d.error_with_help(
            pos,
            "objectives",
            "`objectives` declares nothing",
            "give it `rto` (e.g. `30s`), `rpo` (`0`, or a size such as `1MB`) or both",
        );
        return None;
    }
    let at = Positions {
        rto: rto_node.map_or(pos, |n| n.pos),
        rpo: rpo_node.map_or(pos, |n| n.pos),
    };
    ok.then_some((Objectives { rto, rpo }, at))
}

/// The flavour with the settings the objectives decide and the plan's notes on them; the
/// flavour's refusals are errors at the objective, with the best it can do as help.
pub(super) fn derive(
    d: &mut Diagnostics,
    at: Positions,
    cluster: &Cluster,
    flavour: &Arc<dyn Flavour>,
    components: &[Arc<dyn Component>],
) -> Option<(Arc<dyn Flavour>, Vec<String>)> {
    let objectives = cluster.objectives.as_ref()?;
    let route = route_delay(components, cluster);
    match flavour.meet_objectives(cluster, objectives, &route) {
        Ok(derived) => {
            let flavour = derived.flavour.unwrap_or_else(|| flavour.clone());
            let mut notes = Vec::new();
            if let (Some(rto), Some(timing)) = (objectives.rto, flavour.failover_timing()) {
                notes.push(rto_note(rto, &timing, &route));
            }
            notes.extend(derived.notes);
            Some((flavour, notes))
        }
        Err(refusals) => {
            for r in refusals {
                let (pos, key) = match r.objective {
                    "rpo" => (at.rpo, "objectives.rpo"),
                    _ => (at.rto, "objectives.rto"),
                };
                d.error_with_help(pos, key, r.reason, r.best);
            }
            None
        }
    }
}

/// A failover's expected worst case, against the declared rto.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expected {
    /// `objectives.rto`, when the inventory declares one.
    pub declared_rto: Option<Duration>,
    /// From the primary's loss until a standby starts to promote (the flavour's timing).
    pub detection: Duration,
    /// The promotion's allowance (about 3 s).
    pub promotion: Duration,
    /// What the client route adds after the promotion (0 without `routing:`).
    pub route: Duration,
    /// detection + promotion + route: a measured failover longer than this is news.
    pub worst_case: Duration,
    /// The flavour's settings behind it, as the plan names them.
    pub settings: String,
    /// How the route was counted ("haproxy checks every 0.5 s, out after 2"; empty: none).
    pub route_how: String,
}

/// What a failover of this cluster should cost at worst, from the primary's loss to writes
/// accepted through the route; None when the flavour does not fail over on its own (a person
/// runs `pgha failover`).
pub fn expected_failover(
    cluster: &Cluster,
    flavour: &dyn Flavour,
    components: &[Arc<dyn Component>],
) -> Option<Expected> {
    let timing = flavour.failover_timing()?;
    let route = route_delay(components, cluster);
    Some(Expected {
        declared_rto: cluster.objectives.and_then(|o| o.rto),
        detection: timing.detection,
        promotion: timing.promotion,
        route: route.worst,
        worst_case: worst_case(&timing, &route),
        settings: timing.settings,
        route_how: route.how,
    })
}
