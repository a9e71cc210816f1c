//! The cluster table (`patronictl list` / `repmgr cluster show` style), a tree when
//! replication cascades.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::facts::HostFacts;
use crate::model::{Cluster, Topology};

pub fn table(
    cluster: &Cluster,
    topology: &Topology,
    facts: &BTreeMap<String, HostFacts>,
) -> String {
    let mut rows: Vec<[String; 7]> = Vec::new();
    let mut visit: Vec<(String, String)> = vec![(topology.primary.clone(), String::new())];
    // Depth-first from the primary, so each standby sits under its upstream.
    while let Some((name, prefix)) = visit.pop() {
        let Some(host) = cluster.host(&name) else {
            continue;
        };
        let pg = facts.get(&name).and_then(|f| f.postgres.as_ref());
        let role = if name == topology.primary {
            "primary"
        } else {
            "standby"
        };
        let state = match pg {
            None => "no cluster".to_owned(),
            Some(pg) if !pg.running => "stopped".to_owned(),
            Some(pg) if pg.in_recovery => pg
                .wal_receiver
                .as_ref()
                .map(|w| w.status.clone())
                .unwrap_or_else(|| "not streaming".to_owned()),
            Some(_) => "running".to_owned(),
        };
        let timeline = pg
            .filter(|p| p.timeline > 0)
            .map(|p| p.timeline.to_string())
            .unwrap_or_default();
        let upstream = topology.upstream.get(&name).cloned().unwrap_or_default();
        let lag = facts
            .get(&upstream)
            .and_then(|f| f.postgres.as_ref())
            .and_then(|p| p.replication.iter().find(|r| r.application_name == name))
            .map(|r| format!("{} B / {:.1} s", r.lag_bytes, r.lag_seconds))
            .unwrap_or_default();
        rows.push([
            format!("{prefix}{name}"),
            host.address.clone(),
            role.to_owned(),
            state,
            timeline,
            lag,
            upstream,
        ]);
        let mut children: Vec<String> = topology
            .downstreams(cluster, &name)
            .iter()
            .map(|h| h.name.clone())
            .collect();
        children.sort();
        children.reverse();
        let child_prefix = if prefix.is_empty() {
            "└─ ".to_owned()
        } else {
            format!("   {prefix}")
        };
        for c in children {
            visit.push((c, child_prefix.clone()));
        }
    }
    let header = ["MEMBER", "HOST", "ROLE", "STATE", "TL", "LAG", "UPSTREAM"];
    let widths: Vec<usize> = (0..7)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count()))))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let _ = writeln!(out, "{}", line(&header.map(str::to_owned)));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r));
    }
    let _ = writeln!(
        out,
        "Cluster {} ({}): {} members.",
        cluster.name,
        cluster.flavour.name(),
        rows.len()
    );
    out
}
