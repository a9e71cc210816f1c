//! A drill's report: a table of its figures and its verdict, or the same data as JSON.

use std::fmt::Write as _;

use console::style;

use crate::drill::report::Report;

fn seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_owned(), |s| format!("{s:.2} s"))
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub fn table(r: &Report) -> String {
    let w = &r.writes;
    let rows: Vec<(&str, String)> = vec![
        ("cluster", format!("{} ({})", r.cluster, r.flavour)),
        ("route", format!("{} ({})", r.route, r.route_hosts)),
        (
            "crash",
            format!("{} of {}, {} s", r.crash, r.old_primary, r.duration_s),
        ),
        (
            "new primary",
            format!(
                "{} (by {})",
                r.new_primary.as_deref().unwrap_or("none"),
                r.failover_by
            ),
        ),
        (
            "replication",
            (if r.synchronous {
                "synchronous"
            } else {
                "asynchronous"
            })
            .to_owned(),
        ),
        (
            "writes acknowledged",
            format!(
                "{} ({} before the crash, {} after)",
                w.acknowledged, w.before_crash, w.after_crash
            ),
        ),
        ("longest write gap", seconds(w.longest_gap_s)),
        ("time to route", seconds(w.time_to_route_s)),
        (
            "writes lost",
            match w.lost {
                None => "not read back".to_owned(),
                Some(0) => "0".to_owned(),
                Some(n) => format!(
                    "{n} (ids {}{})",
                    w.lost_ids
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    if n > w.lost_ids.len() { ", ..." } else { "" }
                ),
            },
        ),
        ("rejoined as replica", yes(r.rejoined_as_replica).to_owned()),
        ("apply after", r.apply_after.clone()),
        ("verify after", r.verify_after.clone()),
    ];
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<20} {v}");
    }
    if r.rto_s.is_some() || r.rpo_zero.is_some() {
        let _ = writeln!(
            out,
            "{:<20} RTO {}, RPO {}",
            "objectives",
            r.rto_s
                .map_or("none".to_owned(), |rto| format!("{rto:.0} s")),
            if r.rpo_zero == Some(true) {
                "0"
            } else {
                "not zero"
            }
        );
    }
    if let (Some(worst), Some(from)) = (r.expected_worst_case_s, &r.expected_from) {
        let _ = writeln!(out, "{:<20} {worst:.0} s at worst ({from})", "expected");
    }
    for f in &r.verify_failures {
        let _ = writeln!(out, "verify: {f}");
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    if r.passed {
        let _ = writeln!(out, "{}", style("Drill passed.").green());
    } else {
        let _ = writeln!(out, "{}", style("Drill FAILED:").red().bold());
        for b in &r.broken {
            let _ = writeln!(out, "  - {b}");
        }
    }
    out
}

pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}
