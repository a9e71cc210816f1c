//! The cluster table (`patronictl list` / `repmgr cluster show` style), a tree when
//! replication cascades.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use crate::components::Component;
use crate::flavours::{ClusterView, Flavour};
#[cfg(test)]
use crate::model::Topology;

/// The cluster as status shows it: the same data for the table and for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub cluster: String,
    pub flavour: String,
    pub primary: String,
    /// Depth-first from the primary: each standby under its upstream.
    pub members: Vec<Member>,
    /// The flavour's and the components' lines under the table.
    pub lines: Vec<String>,
    /// Where the hosts differ from the inventory.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub member: String,
    /// The tree's drawing before the name (`├─ `), for the table.
    #[serde(skip)]
    pub branch: String,
    pub host: String,
    pub role: String,
    pub state: String,
    pub timeline: Option<u32>,
    pub lag_bytes: Option<i64>,
    pub lag_seconds: Option<f64>,
    pub upstream: Option<String>,
    /// The flavour's own columns, in order; a map in JSON.
    #[serde(serialize_with = "as_map", skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<(String, String)>,
    pub tags: String,
    /// Why the host was not reached or read, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
}

fn owned(columns: Vec<(&'static str, String)>) -> Vec<(String, String)> {
    columns
        .into_iter()
        .map(|(k, v)| (k.to_lowercase(), v))
        .collect()
}

fn as_map<S: serde::Serializer>(columns: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(columns.iter().map(|(k, v)| (k, v)))
}

pub fn status(
    view: &ClusterView<'_>,
    flavour: &dyn Flavour,
    components: &[Arc<dyn Component>],
) -> Status {
    let (cluster, topology, facts) = (view.cluster, view.topology, view.facts);
    let mut members: Vec<Member> = Vec::new();
    let mut sync_standbys: Vec<String> = Vec::new();
    // (member, indentation of its row, its branch glyph). Depth-first from the primary, so
    // each standby sits under its upstream.
    let mut visit: Vec<(String, String, &str)> =
        vec![(topology.primary.clone(), String::new(), "")];
    while let Some((name, indent, glyph)) = visit.pop() {
        let Some(host) = cluster.host(&name) else {
            continue;
        };
        let pg = facts.get(&name).and_then(|f| f.postgres.as_ref());
        let upstream = topology.upstream.get(&name).cloned().unwrap_or_default();
        let stream = facts
            .get(&upstream)
            .and_then(|f| f.postgres.as_ref())
            .and_then(|p| p.replication.iter().find(|r| r.application_name == name));
        let sync = stream.is_some_and(|r| r.sync_state == "sync");
        if sync {
            sync_standbys.push(name.clone());
        }
        // PostgreSQL's words, unless the flavour has its own (patronictl's).
        let is_primary = name == topology.primary;
        let member = flavour.member_status(host, is_primary, sync, facts.get(&name));
        let role = member.role.unwrap_or_else(|| {
            match (is_primary, sync) {
                (true, _) => "primary",
                (false, true) => "sync standby",
                (false, false) => "standby",
            }
            .to_owned()
        });
        let unreachable = view.unreachable.get(&name);
        let state = match (member.state, pg) {
            _ if unreachable.is_some() => "unreachable".to_owned(),
            (Some(s), _) => s,
            (None, None) => "no cluster".to_owned(),
            (None, Some(pg)) if !pg.running => "stopped".to_owned(),
            (None, Some(pg)) if pg.in_recovery => pg
                .wal_receiver
                .as_ref()
                .map(|w| w.status.clone())
                .unwrap_or_else(|| "not streaming".to_owned()),
            (None, Some(_)) => "running".to_owned(),
        };
        members.push(Member {
            member: name.clone(),
            branch: format!("{indent}{glyph}"),
            host: host.address.clone(),
            role,
            state,
            timeline: pg.map(|p| p.timeline).filter(|t| *t > 0),
            lag_bytes: stream.map(|r| r.lag_bytes),
            lag_seconds: stream.map(|r| r.lag_seconds),
            upstream: Some(upstream).filter(|u| !u.is_empty()),
            columns: owned(member.columns),
            tags: member.tags,
            unreachable: unreachable.cloned(),
        });
        let mut children: Vec<String> = topology
            .downstreams(cluster, &name)
            .iter()
            .map(|h| h.name.clone())
            .collect();
        children.sort();
        // A sibling below this one continues the vertical line.
        let child_indent = match glyph {
            "" => String::new(),
            "├─ " => format!("{indent}│  "),
            _ => format!("{indent}   "),
        };
        let last = children.len().saturating_sub(1);
        for (i, c) in children.into_iter().enumerate().rev() {
            let glyph = if i == last { "└─ " } else { "├─ " };
            visit.push((c, child_indent.clone(), glyph));
        }
    }
    // Hosts outside the replication tree: a server of the flavour's own (a repmgr witness)
    // and a component's host (a proxy host, in the component's words) always; a dedicated
    // DCS member only when it was not reached.
    for h in &cluster.hosts {
        let why = view.unreachable.get(&h.name);
        let f = facts.get(&h.name);
        let own_state = components.iter().find_map(|c| c.host_state(h, f));
        if members.iter().any(|m| m.member == h.name)
            || (why.is_none() && !h.role.has_postgres() && own_state.is_none())
        {
            continue;
        }
        let pg = f.and_then(|f| f.postgres.as_ref());
        let member = flavour.member_status(h, false, false, f);
        members.push(Member {
            member: h.name.clone(),
            branch: String::new(),
            host: h.address.clone(),
            role: member.role.unwrap_or_else(|| h.role.name().to_owned()),
            state: match (why, pg, own_state) {
                (Some(_), _, _) => "unreachable".to_owned(),
                (None, _, Some(own)) => own,
                (None, Some(pg), None) if pg.running => "running".to_owned(),
                (None, Some(_), None) => "stopped".to_owned(),
                (None, None, None) => "no cluster".to_owned(),
            },
            timeline: None,
            lag_bytes: None,
            lag_seconds: None,
            upstream: None,
            columns: owned(member.columns),
            tags: member.tags,
            unreachable: why.cloned(),
        });
    }
    let mut lines = flavour.status_footer(cluster, facts, &sync_standbys);
    lines.extend(
        components
            .iter()
            .flat_map(|c| c.status_lines(cluster, facts)),
    );
    Status {
        cluster: cluster.name.clone(),
        flavour: cluster.flavour.clone(),
        primary: topology.primary.clone(),
        members,
        lines,
        notes: Vec::new(),
    }
}

/// The table: a tree when replication cascades, the flavour's lines and the notes under it.
pub fn table(status: &Status) -> String {
    // The flavour's columns (in the order the flavour gives them) after the common ones;
    // TAGS only when some member has tags.
    let mut extra: Vec<String> = Vec::new();
    for m in &status.members {
        for (k, _) in &m.columns {
            if !extra.contains(k) {
                extra.push(k.clone());
            }
        }
    }
    let tags = status.members.iter().any(|m| !m.tags.is_empty());
    let rows: Vec<Vec<String>> = status
        .members
        .iter()
        .map(|m| {
            let mut row = vec![
                format!("{}{}", m.branch, m.member),
                m.host.clone(),
                m.role.clone(),
                m.state.clone(),
                m.timeline.map(|t| t.to_string()).unwrap_or_default(),
                match (m.lag_bytes, m.lag_seconds) {
                    (Some(b), Some(s)) => format!("{b} B / {s:.1} s"),
                    _ => String::new(),
                },
                m.upstream.clone().unwrap_or_default(),
            ];
            for k in &extra {
                row.push(
                    m.columns
                        .iter()
                        .find(|(c, _)| c == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default(),
                );
            }
            if tags {
                row.push(m.tags.clone());
            }
            row
        })
        .collect();
    let mut header: Vec<String> = ["MEMBER", "HOST", "ROLE", "STATE", "TL", "LAG", "UPSTREAM"]
        .map(str::to_owned)
        .to_vec();
    header.extend(extra.iter().map(|k| k.to_uppercase()));
    if tags {
        header.push("TAGS".to_owned());
    }
    let widths: Vec<usize> = (0..header.len())
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
    let _ = writeln!(out, "{}", line(&header));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r));
    }
    let _ = writeln!(
        out,
        "Cluster {} ({}): {} members.",
        status.cluster,
        status.flavour,
        rows.len()
    );
    for line in &status.lines {
        let _ = writeln!(out, "{line}");
    }
    for m in &status.members {
        if let Some(why) = &m.unreachable {
            let _ = writeln!(out, "{}: unreachable: {why}", m.member);
        }
    }
    for n in &status.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn siblings_and_cascades_draw_as_a_tree() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory.example");
        let inventory = crate::inventory::load(&path).expect("the example loads");
        let (cluster, flavour) = (&inventory.cluster, inventory.flavour.as_ref());
        let members = |t: &Topology| -> Vec<String> {
            let view = ClusterView {
                cluster,
                topology: t,
                facts: &BTreeMap::new(),
                transports: &Default::default(),
                queries: &BTreeMap::new(),
                unreachable: &BTreeMap::new(),
            };
            table(&status(&view, flavour, &inventory.components))
                .lines()
                .skip(1)
                .take(3)
                // The member column ends where the host's address begins.
                .map(|l| {
                    l.split("  10.")
                        .next()
                        .unwrap_or_default()
                        .trim_end()
                        .to_owned()
                })
                .collect()
        };
        let upstream = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(d, u)| ((*d).to_owned(), (*u).to_owned()))
                .collect()
        };
        let siblings = Topology {
            primary: "pg1".into(),
            upstream: upstream(&[("pg2", "pg1"), ("pg3", "pg1")]),
            hardware: None,
        };
        assert_eq!(members(&siblings), ["pg1", "├─ pg2", "└─ pg3"]);
        let cascade = Topology {
            primary: "pg1".into(),
            upstream: upstream(&[("pg2", "pg1"), ("pg3", "pg2")]),
            hardware: None,
        };
        assert_eq!(members(&cascade), ["pg1", "└─ pg2", "   └─ pg3"]);
    }
}
