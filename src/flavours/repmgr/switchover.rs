//! A planned switchover under repmgr is repmgr's own: `repmgr standby switchover
//! --siblings-follow` on the target. It pauses repmgrd everywhere, shuts the primary down
//! cleanly over SSH, checks that the target received the shutdown checkpoint, promotes it,
//! rejoins the old primary as its standby and has the siblings (the witness too) follow.
//! pgha runs its dry run first and shows its findings when it refuses; `--always-promote`
//! is never added (a target behind the old primary's shutdown checkpoint would lose data).

use tokio::time::Instant;

use crate::flavours::repmgr::{command, CONFIG_FILE};
use crate::flavours::{ClusterView, Handover, ProcedureError};
use crate::transport::RemoteCommand;

pub async fn switchover(view: &ClusterView<'_>, target: &str) -> Result<Handover, ProcedureError> {
    let old = view.topology.primary.clone();
    if target == old {
        return Err(ProcedureError::Refused(format!(
            "{target} is already the primary"
        )));
    }
    let data_node = view
        .cluster
        .host(target)
        .is_some_and(|h| h.role.holds_data());
    if !data_node {
        return Err(ProcedureError::Refused(format!(
            "{target} holds no data (a witness): switch over to a standby"
        )));
    }
    if view.topology.upstream.get(target) != Some(&old) || !view.is_streaming(target) {
        return Err(ProcedureError::Refused(format!(
            "{target} is not streaming from the primary {old}: it could not catch up; run `pgha verify` first"
        )));
    }
    let t = view.transport(target)?;
    let bin_dir = view.cluster.postgres.bin_dir();
    let repmgr = |extra: &[&str]| {
        let mut args = vec!["standby", "switchover", "--siblings-follow"];
        args.extend_from_slice(extra);
        command::repmgr(&bin_dir, CONFIG_FILE, &args)
    };
    let run = |command: RemoteCommand, what: &'static str| async move {
        let out = t.run(&command).await.map_err(|e| ProcedureError::Step {
            host: target.to_owned(),
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
        Ok::<_, ProcedureError>((out.success(), findings(&out.stdout, &out.stderr)))
    };
    // Its checks: SSH to every node, the old primary's archiving, WAL positions, slots.
    let (ok, said) = run(repmgr(&["--dry-run"]), "switchover dry run").await?;
    if !ok {
        return Err(ProcedureError::Refused(format!(
            "repmgr's dry run refused the switchover to {target}; nothing was changed:\n{said}"
        )));
    }
    let started = Instant::now();
    let (ok, said) = run(repmgr(&[]), "switchover").await?;
    if !ok {
        return Err(ProcedureError::Step {
            host: target.to_owned(),
            what: "repmgr standby switchover".to_owned(),
            reason: format!("{said}\n`pgha status` shows where the cluster stands; `pgha plan` what is left to do"),
        });
    }
    Ok(Handover {
        // From the primary's shutdown (early in the command) to the promotion (late in it):
        // an upper bound.
        write_gap: started.elapsed(),
        converge: true,
    })
}

/// What repmgr said that matters: its errors, warnings, hints and details, or its last lines.
fn findings(stdout: &str, stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().chain(stdout.lines()).collect();
    let important: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            ["ERROR", "WARNING", "HINT", "DETAIL"]
                .iter()
                .any(|p| l.trim_start().starts_with(p))
        })
        .collect();
    let shown = if important.is_empty() {
        &lines[lines.len().saturating_sub(12)..]
    } else {
        &important[..]
    };
    shown
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
