//! The hosts leaving the cluster (`decommission:`), before any step on the hosts that stay:
//! their services stop first, so what the staying hosts then forget (a slot, a stream, a
//! record, an etcd member) cannot come back from them. Each leaving host's changes run in
//! the plan's order, hosts in parallel; a failure stops that host only.

use std::collections::BTreeMap;

use crate::apply::{Event, Observer, Recap, Stop};
use crate::plan::check::{Status, StepOutcome};
use crate::session::Session;

pub async fn run(
    session: &Session,
    observer: &dyn Observer,
    stop: &Stop,
) -> BTreeMap<String, Recap> {
    let work: Vec<(String, Vec<StepOutcome>)> = session
        .leaving
        .iter()
        .filter_map(|(h, r)| r.as_ref().ok().map(|o| (h.clone(), o.clone())))
        .collect();
    let runs = work.into_iter().map(|(host, outcomes)| async move {
        let mut recap = Recap::default();
        let Some(t) = session.leaving_transports.get(&host) else {
            return (host, recap);
        };
        for o in &outcomes {
            let Status::Changes { changes } = &o.status else {
                recap.ok += 1;
                continue;
            };
            for change in changes {
                if stop.requested() {
                    recap.not_started += 1;
                    continue;
                }
                if recap.failed.is_some() {
                    recap.not_started += 1;
                    continue;
                }
                observer.event(Event::StepStarted {
                    host: host.clone(),
                    step: o.step.clone(),
                    index: recap.changed,
                    total: changes.len(),
                });
                let mut failure = None;
                for command in &change.commands {
                    match t.run(command).await {
                        Ok(out) if out.success() => {}
                        Ok(out) => {
                            failure = Some(format!("{}: {}", change.target, out.stderr.trim()));
                            break;
                        }
                        Err(e) => {
                            failure = Some(format!("{}: {e}", change.target));
                            break;
                        }
                    }
                }
                match failure {
                    None => {
                        recap.changed += 1;
                        observer.event(Event::Changed {
                            host: host.clone(),
                            change: change.clone(),
                        });
                    }
                    Some(reason) => {
                        observer.event(Event::Failed {
                            host: host.clone(),
                            step: o.step.clone(),
                            reason: reason.clone(),
                        });
                        recap.failed = Some(reason);
                    }
                }
            }
        }
        (host, recap)
    });
    futures::future::join_all(runs).await.into_iter().collect()
}
