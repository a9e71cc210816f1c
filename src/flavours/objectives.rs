//! What the flavours share to meet declared objectives (`objectives:`): the promotion's
//! allowance, the time a derivation aims at, and the refusals of a flavour that cannot meet
//! one.

use std::time::Duration;

use crate::flavours::{FailoverTiming, Refusal, RouteDelay};
use crate::model::objectives::{ceil_secs, show_duration};
use crate::model::pg_params;
use crate::model::{Cluster, Objectives, Rpo};

/// From a standby's decision to promote until it takes writes: the end of recovery, a new
/// timeline, the checkpoint it requests. pgha's repmgr measurements put it at 2..3 s (29.3 s
/// median failover against 27 s of detection).
pub const PROMOTION: Duration = Duration::from_secs(3);

/// The worst case from the primary's loss to writes accepted through the route.
pub fn worst_case(timing: &FailoverTiming, route: &RouteDelay) -> Duration {
    timing.detection + timing.promotion + route.worst
}

/// What the rto leaves for detection once the promotion and the route are paid, in whole
/// seconds (None: not even that).
pub fn detection_budget(rto: Duration, route: &RouteDelay) -> Option<u64> {
    let rto = rto.as_secs();
    rto.checked_sub(ceil_secs(PROMOTION) + ceil_secs(route.worst))
}

/// The time a derivation aims at: a tenth of the rto kept as headroom for what the estimate
/// leaves out (a slow checkpoint, a loaded host), unless that would fall below `least`, the
/// fastest the flavour can do.
pub fn target(rto: Duration, least: u64) -> u64 {
    let rto = rto.as_secs();
    (rto - rto / 10).max(least).min(rto)
}

/// "the primary's loss … the route" summed for the plan and the refusals.
pub fn route_words(route: &RouteDelay) -> String {
    if route.how.is_empty() {
        "0 s route (none configured: clients find the new primary themselves)".to_owned()
    } else {
        format!("{} s of route ({})", ceil_secs(route.worst), route.how)
    }
}

/// A flavour that meets no objective refuses each one declared.
pub fn refuse_all(flavour: &str, objectives: &Objectives) -> Result<super::Derived, Vec<Refusal>> {
    let mut out = Vec::new();
    if objectives.rto.is_some() {
        out.push(Refusal {
            objective: "rto",
            reason: format!("the {flavour} flavour has no failover timing to derive"),
            best: "leave `objectives.rto` out".to_owned(),
        });
    }
    if objectives.rpo.is_some() {
        out.push(Refusal {
            objective: "rpo",
            reason: format!("the {flavour} flavour has no setting that bounds the loss"),
            best: "leave `objectives.rpo` out".to_owned(),
        });
    }
    Err(out)
}

/// An rto for a flavour whose failover a person runs (`pgha failover`): nothing bounds when
/// they do.
pub fn rto_needs_automatic(why: &str) -> Refusal {
    Refusal {
        objective: "rto",
        reason: format!("{why}: a person runs `pgha failover`, so no setting bounds the time from the primary's loss to writes accepted again"),
        best: "use the patroni flavour, or repmgr with `failover: automatic`, for an rto; or leave `objectives.rto` out".to_owned(),
    }
}

/// An rpo in bytes for a flavour with nothing that bounds a promoted standby's lag.
pub fn rpo_bytes_unbounded(flavour: &str, rpo: Rpo) -> Refusal {
    Refusal {
        objective: "rpo",
        reason: format!("rpo {rpo}: the {flavour} flavour promotes the standby that received the most WAL, and nothing bounds how far behind that one is (asynchronous streaming lags by whatever the primary wrote meanwhile)"),
        best: "`rpo: 0` (synchronous replication), or the patroni flavour (`maximum_lag_on_failover`)".to_owned(),
    }
}

/// `synchronous_commit` set by the inventory to a level at which a commit does not wait for a
/// standby's flush.
pub fn synchronous_commit_refusal(cluster: &Cluster) -> Option<Refusal> {
    let value = cluster.postgres.parameters.get("synchronous_commit")?;
    let level = value.trim().trim_matches('\'').to_ascii_lowercase();
    let waits = match level.as_str() {
        "local" | "remote_write" => false,
        other => pg_params::parse_bool(other) != Some(false),
    };
    (!waits).then(|| Refusal {
        objective: "rpo",
        reason: format!("rpo 0 and `postgres.parameters.synchronous_commit: {value}`: a commit is then acknowledged before a standby has flushed it, and a failover may lose it"),
        best: "set one: leave synchronous_commit at `on` (or `remote_apply`), or declare an rpo other than 0".to_owned(),
    })
}

/// rpo 0 for a flavour without synchronous replication of its own. PostgreSQL's setting
/// alone is static: set from the start, the primary's first commits at bootstrap (the
/// replication role, before any standby can be cloned) would wait for a standby forever, and
/// after a failover nothing drops the wait while no standby is left.
pub fn rpo_zero_unsupported(flavour: &str) -> Refusal {
    Refusal {
        objective: "rpo",
        reason: format!("rpo 0 needs synchronous replication that follows the cluster, and the {flavour} flavour has none: synchronous_standby_names would only be a static server parameter, so the primary's first commits at bootstrap would wait for a standby that cannot be cloned before they are done, and after a failover nothing lifts the wait while no standby streams"),
        best: "the patroni flavour (rpo 0 → synchronous_mode: Patroni names the synchronous standby and promotes only it), or an rpo other than 0".to_owned(),
    }
}

/// The plan's line for a derived failover timing.
pub fn rto_note(rto: Duration, timing: &FailoverTiming, route: &RouteDelay) -> String {
    format!(
        "objectives: rto {} → {}; {}; expected worst case ≈ {} s (detection {} s + promotion ~{} s + route {} s)",
        show_duration(rto),
        timing.settings,
        if route.how.is_empty() {
            "no route configured"
        } else {
            &route.how
        },
        ceil_secs(worst_case(timing, route)),
        ceil_secs(timing.detection),
        ceil_secs(timing.promotion),
        ceil_secs(route.worst),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_a_tenth_as_headroom_above_the_least() {
        assert_eq!(target(Duration::from_secs(30), 25), 27);
        assert_eq!(target(Duration::from_secs(25), 25), 25);
        assert_eq!(target(Duration::from_secs(60), 25), 54);
    }
}
