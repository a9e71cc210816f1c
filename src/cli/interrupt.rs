//! SIGINT and SIGTERM during apply, as Terraform handles them: before the cluster lock is
//! taken a signal ends the run at once (nothing was changed); under the lock the first one
//! stops the scheduling of new steps, lets the running ones finish, and apply then releases
//! the lock and says how to continue; a second one aborts at once and the lock stays.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::signal::unix::{signal, SignalKind};

use crate::apply::Stop;

/// What the signal handler needs to know of the apply it guards.
#[derive(Default)]
pub struct Guard {
    pub stop: Stop,
    /// Set while the lock is held and steps may run.
    applying: AtomicBool,
    /// How the lock is removed should the run be aborted while holding it.
    unlock_hint: Mutex<String>,
}

impl Guard {
    /// From now until `released`, a first signal stops gracefully.
    pub fn holding_lock(&self, unlock_hint: String) {
        if let Ok(mut h) = self.unlock_hint.lock() {
            *h = unlock_hint;
        }
        self.applying.store(true, Ordering::SeqCst);
    }

    pub fn released(&self) {
        self.applying.store(false, Ordering::SeqCst);
    }
}

/// Handle SIGINT and SIGTERM for the rest of the process's life. Call inside the runtime.
pub fn install() -> std::io::Result<Arc<Guard>> {
    let guard = Arc::new(Guard::default());
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let g = guard.clone();
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
            if !g.applying.load(Ordering::SeqCst) {
                eprintln!("\n{name}: stopped; no change was being made.");
                std::process::exit(crate::exit::INTERRUPTED);
            }
            if g.stop.request() {
                eprintln!(
                    "\n{name}: stopping once the steps running now are done; no new step starts. Send it again to abort at once (the cluster lock then stays)."
                );
                continue;
            }
            let hint = g.unlock_hint.lock().map(|h| h.clone()).unwrap_or_default();
            eprintln!("\n{name}, a second signal: aborted at once. The cluster lock stays; once no pgha runs, remove it with:\n  {hint}");
            std::process::exit(crate::exit::INTERRUPTED);
        }
    });
    Ok(guard)
}
