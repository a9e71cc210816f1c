//! A failover's shared half, for the flavours whose failover pgha runs: which standby to
//! promote (the one that received the most WAL, or the DBA's pick checked against the
//! others), decided from facts alone, and the fencing of the old primary where its host still
//! answers. Each flavour promotes its own way.

use crate::facts::{self, PgFacts};
use crate::flavours::{run_ok, ClusterView, Failover, ProcedureError};
use crate::steps::pg_clone::FENCE_MARKER;
use crate::transport::RemoteCommand;

fn pg<'a>(view: &'a ClusterView<'_>, host: &str) -> Option<&'a PgFacts> {
    view.facts.get(host).and_then(|f| f.postgres.as_ref())
}

/// How far a standby got: what it received, or at least what it replayed.
fn received(pg: &PgFacts) -> u64 {
    facts::lsn(&pg.received_lsn)
        .max(facts::lsn(&pg.lsn))
        .unwrap_or(0)
}

fn show(n: u64) -> String {
    format!("{:X}/{:X}", n >> 32, n & 0xffff_ffff)
}

/// Decide the failover, from facts alone.
pub fn choose(view: &ClusterView<'_>, to: Option<&str>) -> Result<Failover, ProcedureError> {
    let refused = |why: String| Err(ProcedureError::Refused(why));
    let old = view.topology.primary.clone();
    if let Some(p) = pg(view, &old).filter(|p| p.running && !p.in_recovery) {
        let _ = p;
        return refused(format!(
            "{old} answers as the primary: a failover would throw away what it has. Use `pgha switchover --to NODE`, which loses no commit"
        ));
    }
    let mut notes = Vec::new();
    let mut candidates: Vec<(String, u64)> = Vec::new();
    for h in view.cluster.hosts.iter().filter(|h| h.role.holds_data()) {
        if h.name == old {
            continue;
        }
        if let Some(why) = view.unreachable.get(&h.name) {
            notes.push(format!(
                "{} was not reached ({why}): it may have received more WAL than the standby promoted, and rejoins later with a rewind",
                h.name
            ));
            continue;
        }
        match pg(view, &h.name) {
            Some(p) if p.running && p.in_recovery => candidates.push((h.name.clone(), received(p))),
            _ => notes.push(format!(
                "{} is not a running standby: not a candidate",
                h.name
            )),
        }
    }
    // Most WAL first; among equals a direct standby of the old primary, then by name.
    let direct = |h: &str| view.topology.upstream.get(h) == Some(&old);
    candidates.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(direct(&b.0).cmp(&direct(&a.0)))
            .then(a.0.cmp(&b.0))
    });
    let Some((best, best_at)) = candidates.first().cloned() else {
        return refused(format!(
            "no running standby to promote in place of {old}: start one (or bring {old} back) first"
        ));
    };
    let target = match to {
        None => best,
        Some(to) if to == old => {
            return refused(format!("{to} is the primary that is gone"));
        }
        Some(to) => match candidates.iter().find(|(h, _)| h == to) {
            None => {
                return refused(format!(
                    "{to} is not a running standby that was reached: candidates are {}",
                    candidates
                        .iter()
                        .map(|(h, at)| format!("{h} (received up to {})", show(*at)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
            Some((_, at)) if *at < best_at => {
                return refused(format!(
                    "{to} has received WAL up to {}, {best} up to {} ({} bytes more): promoting {to} would lose what only {best} has. Fail over to {best}",
                    show(*at),
                    show(best_at),
                    best_at - at
                ));
            }
            Some(_) => to.to_owned(),
        },
    };
    let at = candidates
        .iter()
        .find(|(h, _)| *h == target)
        .map_or(0, |(_, at)| *at);
    for (h, other) in candidates.iter().filter(|(h, _)| *h != target) {
        notes.push(format!(
            "{h} has received up to {} and follows {target} after the failover",
            show(*other)
        ));
    }
    Ok(Failover {
        fence: view.transports.contains_key(&old),
        old,
        target,
        received: show(at),
        notes,
    })
}

/// Fence the old primary where it answers: stopped, its unit masked so that neither boot nor
/// pg_ctlcluster starts it as a primary again, a marker saying why.
pub async fn fence(view: &ClusterView<'_>, choice: &Failover) -> Result<(), ProcedureError> {
    let pg = &view.cluster.postgres;
    let service = format!("postgresql@{}-{}", pg.version, pg.debian_cluster);
    if choice.fence {
        let old = view.transport(&choice.old)?;
        run_ok(
            old,
            &RemoteCommand::script(format!(
                "set -e; systemctl stop {s}; systemctl mask {s} >/dev/null 2>&1; mkdir -p /var/lib/pgha; \
                 echo 'fenced by pgha failover: {target} was promoted in its place; pgha plan rejoins it' > {FENCE_MARKER}",
                s = shell_words::quote(&service),
                target = choice.target
            )),
            "fence the old primary",
        )
        .await?;
    }
    Ok(())
}
