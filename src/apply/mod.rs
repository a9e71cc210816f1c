//! Apply: take the lock, then run every host's steps (hosts in parallel), re-checking each step
//! against fresh facts right before it runs, so nothing acts on stale facts and an interrupted
//! apply simply continues on the next run.
//!
//! Order across hosts: a step with `after` waits for that step on another host (a cascaded
//! standby clones after its upstream made its slot); the primary's handlers wait for the
//! standbys' (restart standbys first, the primary last).

pub mod departing;
pub mod handover;
pub mod lock;
pub mod upgrade;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};

use crate::facts::HostFacts;
use crate::model::Topology;
use crate::plan::{Change, Check};
use crate::playbook::Step;
use crate::session::{Session, SessionError};
use crate::steps::StepContext;
use crate::transport::RemoteCommand;

/// What apply tells the outside world; the view decides how to show it.
#[derive(Debug, Clone)]
pub enum Event {
    StepStarted {
        host: String,
        step: String,
        index: usize,
        total: usize,
    },
    Changed {
        host: String,
        change: Change,
    },
    InSync {
        host: String,
        step: String,
    },
    Failed {
        host: String,
        step: String,
        reason: String,
    },
    /// What a step's command reported of itself: its stdout lines that start with `pgha: `
    /// (a rolling restart names each member it restarted).
    Said {
        host: String,
        step: String,
        text: String,
    },
    Waiting {
        host: String,
        step: String,
        on: String,
    },
}

pub trait Observer: Sync {
    fn event(&self, event: Event);
}

/// Per host: what happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recap {
    pub ok: usize,
    pub changed: usize,
    pub failed: Option<String>,
    /// Steps not started because a stop was requested.
    pub not_started: usize,
}

/// A request to start no new step (an interrupt): the steps running finish, each host stops
/// before its next one, and the apply returns as it would after its last step.
#[derive(Debug, Default)]
pub struct Stop(AtomicBool);

impl Stop {
    /// Ask apply to stop; true the first time.
    pub fn request(&self) -> bool {
        !self.0.swap(true, Ordering::SeqCst)
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Session(#[from] SessionError),
}

struct Shared {
    /// Every host's facts as one shared snapshot: a step's check takes the snapshot (an `Arc`
    /// clone), a re-read replaces one host's entry (copying the map only while an older
    /// snapshot is still being read).
    facts: Mutex<Arc<BTreeMap<String, HostFacts>>>,
    done: Mutex<BTreeSet<(String, String)>>,
    finished: Mutex<BTreeSet<String>>,
    failed: Mutex<BTreeSet<String>>,
    progress: Notify,
    /// Per throttled step: the permits hosts take before running it.
    throttles: Mutex<BTreeMap<String, Arc<Semaphore>>>,
}

impl Shared {
    fn throttle(&self, key: &str, permits: usize) -> Option<Arc<Semaphore>> {
        let mut t = self.throttles.lock().ok()?;
        Some(
            t.entry(key.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(permits)))
                .clone(),
        )
    }

    fn mark_done(&self, host: &str, key: &str) {
        if let Ok(mut d) = self.done.lock() {
            d.insert((host.to_owned(), key.to_owned()));
        }
        self.progress.notify_waiters();
    }

    fn finish(&self, host: &str) {
        if let Ok(mut f) = self.finished.lock() {
            f.insert(host.to_owned());
        }
        self.progress.notify_waiters();
    }

    fn passed(&self, host: &str, key: &str, steps_of: &BTreeMap<String, Vec<Step>>) -> bool {
        let has_step = steps_of
            .get(host)
            .is_some_and(|s| s.iter().any(|st| st.key == key));
        let done = self
            .done
            .lock()
            .map(|d| d.contains(&(host.to_owned(), key.to_owned())))
            .unwrap_or(true);
        let finished = self
            .finished
            .lock()
            .map(|f| f.contains(host))
            .unwrap_or(true);
        !has_step || done || finished
    }

    /// Wait until every `(host, step key)` has passed, or a stop is requested.
    async fn wait(
        &self,
        needs: &[(String, String)],
        steps_of: &BTreeMap<String, Vec<Step>>,
        stop: &Stop,
    ) {
        loop {
            let notified = self.progress.notified();
            if stop.requested() || needs.iter().all(|(h, k)| self.passed(h, k, steps_of)) {
                return;
            }
            // Bounded wait: a missed notification costs at most this long.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(500), notified).await;
        }
    }
}

/// Run every host's steps until done or `stop` is requested. Returns each host's recap.
pub async fn run(
    session: &mut Session,
    topology: &Topology,
    observer: &dyn Observer,
    stop: &Stop,
) -> Result<BTreeMap<String, Recap>, ApplyError> {
    let steps_of = session
        .project
        .expand(topology)
        .map_err(SessionError::from)?;
    let hosts: Vec<String> = steps_of
        .keys()
        .filter(|h| session.limit.as_ref().is_none_or(|l| l.contains(h)))
        .cloned()
        .collect();
    let shared = Shared {
        facts: Mutex::new(Arc::new(std::mem::take(&mut session.facts))),
        done: Mutex::new(BTreeSet::new()),
        finished: Mutex::new(BTreeSet::new()),
        failed: Mutex::new(BTreeSet::new()),
        progress: Notify::new(),
        throttles: Mutex::new(BTreeMap::new()),
    };
    // Hosts outside --limit count as finished: nobody waits for them.
    for h in steps_of.keys().filter(|h| !hosts.contains(h)) {
        shared.finish(h);
    }
    let session_ref: &Session = session;
    let tasks = hosts.iter().map(|host| {
        run_host(
            session_ref,
            topology,
            host,
            &steps_of,
            &shared,
            observer,
            stop,
        )
    });
    let recaps: BTreeMap<String, Recap> =
        futures::future::join_all(tasks).await.into_iter().collect();
    let facts = shared.facts.into_inner().unwrap_or_default();
    session.facts = Arc::try_unwrap(facts).unwrap_or_else(|shared| (*shared).clone());
    Ok(recaps)
}

async fn run_host(
    session: &Session,
    topology: &Topology,
    host: &str,
    steps_of: &BTreeMap<String, Vec<Step>>,
    shared: &Shared,
    observer: &dyn Observer,
    stop: &Stop,
) -> (String, Recap) {
    let mut recap = Recap::default();
    let Some(transport) = session.transports.get(host) else {
        recap.failed = Some("no connection".into());
        shared.finish(host);
        return (host.to_owned(), recap);
    };
    let steps = &steps_of[host];
    let mut notified: BTreeSet<String> = BTreeSet::new();
    let is_primary = topology.primary == host;
    for (index, step) in steps.iter().enumerate() {
        if stop.requested() {
            recap.not_started = steps.len() - index;
            break;
        }
        let mut needs = Vec::new();
        for (other, name) in &step.after {
            if let Some(s) = steps_of
                .get(other)
                .and_then(|s| s.iter().find(|s| &s.name == name))
            {
                needs.push((other.clone(), s.key.clone()));
            }
        }
        if step.handler && !notified.contains(&step.name) {
            shared.mark_done(host, &step.key);
            continue;
        }
        if step.handler && is_primary {
            for other in steps_of.keys().filter(|h| *h != host) {
                needs.push((other.clone(), step.key.clone()));
            }
        }
        if !needs.is_empty() && !needs.iter().all(|(h, k)| shared.passed(h, k, steps_of)) {
            // Said only when the wait is felt: most dependencies are met within moments.
            let quick = std::time::Duration::from_secs(2);
            if tokio::time::timeout(quick, shared.wait(&needs, steps_of, stop))
                .await
                .is_err()
            {
                let on: Vec<String> = needs.iter().map(|(h, _)| h.clone()).collect();
                observer.event(Event::Waiting {
                    host: host.to_owned(),
                    step: step.name.clone(),
                    on: on.join(", "),
                });
                shared.wait(&needs, steps_of, stop).await;
            }
            if stop.requested() {
                recap.not_started = steps.len() - index;
                break;
            }
        }
        let failed_before: Vec<String> = {
            let failed = shared.failed.lock().map(|f| f.clone()).unwrap_or_default();
            needs
                .iter()
                .filter(|(h, _)| failed.contains(h))
                .map(|(h, _)| h.clone())
                .collect()
        };
        if !failed_before.is_empty() && !step.handler {
            let reason = format!(
                "not run: it needs {}, which failed",
                failed_before.join(", ")
            );
            observer.event(Event::Failed {
                host: host.to_owned(),
                step: step.name.clone(),
                reason: reason.clone(),
            });
            recap.failed = Some(format!("{}: {reason}", step.name));
            break;
        }
        if step.handler && !notified.remove(&step.name) {
            shared.mark_done(host, &step.key);
            continue;
        }
        // Held until this step is done here: the next host's turn starts after it.
        let _turn = match step.throttle.and_then(|n| shared.throttle(&step.key, n)) {
            Some(semaphore) => semaphore.acquire_owned().await.ok(),
            None => None,
        };
        observer.event(Event::StepStarted {
            host: host.to_owned(),
            step: step.name.clone(),
            index: index + 1,
            total: steps.len(),
        });
        let facts = shared
            .facts
            .lock()
            .map(|f| Arc::clone(&f))
            .unwrap_or_default();
        let Some(host_facts) = facts.get(host) else {
            break;
        };
        let cx = StepContext {
            host,
            step: &step.name,
            facts: host_facts,
            cluster_facts: &facts,
            secrets: &session.secrets,
        };
        let result = match step.module.check(&cx) {
            Check::InSync(_) => {
                observer.event(Event::InSync {
                    host: host.to_owned(),
                    step: step.name.clone(),
                });
                recap.ok += 1;
                Ok(())
            }
            Check::Refused(reason) => Err(reason),
            Check::Changes(changes) => {
                let mut outcome = Ok(());
                'changes: for change in changes {
                    // A procedure replaces the change's commands.
                    let ran_procedure =
                        match step
                            .module
                            .execute(&change, transport.as_ref(), &session.secrets)
                        {
                            None => false,
                            Some(procedure) => match procedure.await {
                                Ok(said) => {
                                    for text in said {
                                        observer.event(Event::Said {
                                            host: host.to_owned(),
                                            step: step.name.clone(),
                                            text,
                                        });
                                    }
                                    true
                                }
                                Err(reason) => {
                                    outcome = Err(reason);
                                    break 'changes;
                                }
                            },
                        };
                    let commands: &[RemoteCommand] =
                        if ran_procedure { &[] } else { &change.commands };
                    for command in commands {
                        match transport.run(command).await {
                            Ok(out) if out.success() => {
                                for text in
                                    out.stdout.lines().filter_map(|l| l.strip_prefix("pgha: "))
                                {
                                    observer.event(Event::Said {
                                        host: host.to_owned(),
                                        step: step.name.clone(),
                                        text: text.to_owned(),
                                    });
                                }
                            }
                            Ok(out) => {
                                let detail = if out.stderr.trim().is_empty() {
                                    out.stdout.trim().to_owned()
                                } else {
                                    out.stderr.trim().to_owned()
                                };
                                tracing::debug!(host, command = %command.display(transport.login_is_root()), "failed");
                                let program =
                                    command.argv.first().map(|a| a.masked()).unwrap_or_default();
                                outcome = Err(format!(
                                    "{program} exited {}: {}",
                                    out.status,
                                    tail(&detail)
                                ));
                                break 'changes;
                            }
                            Err(e) => {
                                outcome = Err(e.to_string());
                                break 'changes;
                            }
                        }
                    }
                    recap.changed += 1;
                    observer.event(Event::Changed {
                        host: host.to_owned(),
                        change,
                    });
                }
                if outcome.is_ok() {
                    notified.extend(step.notify.iter().cloned());
                }
                // Whatever happened, the host changed: read again what the step may have
                // touched before the next step.
                drop(facts);
                let sections = step.module.invalidates();
                let query = session.queries[host].only(sections);
                match crate::facts::collect::gather_one(transport.as_ref(), &query).await {
                    Ok(fresh) => {
                        if let Ok(mut all) = shared.facts.lock() {
                            if let Some(f) = Arc::make_mut(&mut all).get_mut(host) {
                                f.refresh(fresh, sections);
                            }
                        }
                    }
                    Err(e) => outcome = outcome.and(Err(e.to_string())),
                }
                outcome
            }
        };
        if let Err(reason) = result {
            observer.event(Event::Failed {
                host: host.to_owned(),
                step: step.name.clone(),
                reason: reason.clone(),
            });
            recap.failed = Some(format!("{}: {reason}", step.name));
            if let Ok(mut f) = shared.failed.lock() {
                f.insert(host.to_owned());
            }
            break;
        }
        shared.mark_done(host, &step.key);
    }
    shared.finish(host);
    (host.to_owned(), recap)
}

/// The last lines of a long error output.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(6);
    lines[start..].join(" | ")
}
