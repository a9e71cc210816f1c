//! The plan for people: per host, in order, each change with its reason and diff; a summary.
//! Reads the same `Plan` that `--json` prints.

use std::fmt::Write as _;

use console::style;

use crate::plan::build::Plan;
use crate::plan::check::Status;
use crate::plan::upgrade::Upgrade;

/// The rolling minor upgrade, in the order apply does it (before the steps).
fn upgrade(u: &Upgrade) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} to {} (before the steps, one host at a time)",
        style("rolling minor upgrade").bold(),
        u.version
    );
    if let Some(why) = &u.refusal {
        let _ = writeln!(out, "  {} {why}", style("! refused").red().bold());
    }
    let mut n = 0;
    for h in &u.hosts {
        if h.primary {
            n += 1;
            match &u.switchover_to {
                Some(to) => {
                    let _ = writeln!(
                        out,
                        "  {n}. {} switch over from {} to {to}: the primary role moves to an upgraded standby",
                        style("~").yellow(),
                        h.host
                    );
                }
                None if h.restart => {
                    let _ = writeln!(
                        out,
                        "  {n}. {} no streaming standby to hand over to: {} restarts as primary (writes stop meanwhile)",
                        style("!").yellow(),
                        h.host
                    );
                }
                None => {}
            }
        }
        n += 1;
        let running = h.running.as_deref().unwrap_or("not running");
        let what = match (h.install.is_empty(), h.restart) {
            (false, true) => format!(
                "install {}, restart, wait until it streams",
                h.install.join(" ")
            ),
            (false, false) => format!("install {}", h.install.join(" ")),
            (true, _) => {
                "restart (its server still runs the old binary), wait until it streams".to_owned()
            }
        };
        let _ = writeln!(
            out,
            "  {n}. {} {}{}: package {} → {}, server runs {running}: {what}",
            style("~").yellow(),
            style(&h.host).bold(),
            if h.primary { " (primary now)" } else { "" },
            h.installed,
            u.version,
        );
    }
    out
}

pub fn human(plan: &Plan, verbose: u8) -> String {
    let mut out = String::new();
    for note in &plan.notes {
        let _ = writeln!(out, "{} {note}", style("note:").cyan().bold());
    }
    for warning in &plan.warnings {
        let _ = writeln!(out, "{} {warning}", style("warning:").yellow().bold());
    }
    if let Some(u) = &plan.upgrade {
        out.push_str(&upgrade(u));
    }
    for (host, outcomes) in &plan.hosts {
        let role = if plan.leaving.contains_key(host) {
            "leaving the cluster: decommission".to_owned()
        } else if *host == plan.topology.primary {
            "primary".to_owned()
        } else if let Some(up) = plan.topology.upstream.get(host) {
            format!("standby of {up}")
        } else {
            plan.member_roles
                .get(host)
                .map(|r| format!("{r} host"))
                .unwrap_or_else(|| "member".to_owned())
        };
        let _ = writeln!(out, "\n{} ({role})", style(host).bold());
        let mut shown = 0;
        for o in outcomes {
            match &o.status {
                Status::Changes { changes } => {
                    for c in changes {
                        shown += 1;
                        let sign = match c.action.symbol() {
                            "+" => style("+").green().to_string(),
                            "-" => style("-").red().bold().to_string(),
                            "~" => style("~").yellow().to_string(),
                            s => style(s).cyan().to_string(),
                        };
                        let action = c.action.name();
                        let _ = writeln!(
                            out,
                            "  {sign} {action} {} ({}) — {}",
                            c.target, o.step, c.reason
                        );
                        if let Some(diff) = &c.diff {
                            for line in diff.lines() {
                                let line = match line.chars().next() {
                                    Some('+') if !line.starts_with("+++") => {
                                        style(line).green().to_string()
                                    }
                                    Some('-') if !line.starts_with("---") => {
                                        style(line).red().to_string()
                                    }
                                    _ => line.to_owned(),
                                };
                                let _ = writeln!(out, "      {line}");
                            }
                        }
                        if verbose >= 2 {
                            for cmd in &c.commands {
                                let _ = writeln!(out, "      $ {}", cmd.display(true));
                            }
                        }
                    }
                }
                Status::Refused { reason } => {
                    shown += 1;
                    let _ = writeln!(
                        out,
                        "  {} {} — {reason}",
                        style("! refused").red().bold(),
                        o.step
                    );
                }
                Status::InSync { reason } if verbose >= 1 => {
                    let _ = writeln!(out, "  {} {} — {reason}", style("=").dim(), o.step);
                }
                _ => {}
            }
        }
        if shown == 0 && verbose == 0 {
            let _ = writeln!(out, "  (in sync)");
        }
    }
    for (host, reason) in &plan.unreachable {
        let _ = writeln!(
            out,
            "\n{} ({})\n  {} {reason}",
            style(host).bold(),
            style("unreachable").red().bold(),
            style("!").red().bold()
        );
    }
    out.push('\n');
    let refusals = plan.refusals().len();
    let count = plan.change_count();
    if !plan.unreachable.is_empty() {
        let names: Vec<&str> = plan.unreachable.keys().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "{} {} not reached: this plan covers only the other hosts and apply will not run it. Bring {} back, or leave {} out with -l.",
            style("error:").red().bold(),
            names.join(", "),
            if names.len() == 1 { "it" } else { "them" },
            if names.len() == 1 { "it" } else { "them" },
        );
    }
    if count == 0 && refusals == 0 && plan.unreachable.is_empty() {
        out.push_str("No changes. The cluster matches the inventory.\n");
    } else {
        let per_host: Vec<String> = plan
            .hosts
            .iter()
            .map(|(h, o)| {
                let n: usize = o
                    .iter()
                    .map(|o| match &o.status {
                        Status::Changes { changes } => changes.len(),
                        _ => 0,
                    })
                    .sum();
                format!("{h}: {n}")
            })
            .collect();
        let upgrade = plan.upgrade.as_ref().map_or(0, |u| u.change_count());
        let _ = writeln!(
            out,
            "Plan: {count} change{} ({}{}).",
            if count == 1 { "" } else { "s" },
            if upgrade > 0 {
                format!("minor upgrade: {upgrade}, ")
            } else {
                String::new()
            },
            per_host.join(", ")
        );
        if refusals > 0 {
            let _ = writeln!(
                out,
                "{} {refusals} step{} refused: apply will not run until that is resolved.",
                style("error:").red().bold(),
                if refusals == 1 { "" } else { "s" }
            );
        }
    }
    out
}
