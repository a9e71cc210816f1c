//! Apply's progress: a bar per host on a terminal, plain lines otherwise (CI logs, pipes).
//! Changes and failures are printed as lines in both, so the log of an apply reads the same.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::apply::{Event, Observer};

/// A bar per host of `hosts` (the session's connections), or plain lines.
pub fn observer<'a>(hosts: impl IntoIterator<Item = &'a String>) -> Box<dyn Observer> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars::new(hosts))
    } else {
        Box::new(Lines {
            started: std::time::Instant::now(),
        })
    }
}

fn line(event: &Event) -> Option<String> {
    match event {
        Event::Changed { host, change } => Some(format!(
            "{host}: {}: {} {} — {}",
            change.step,
            change.action.name(),
            change.target,
            change.reason
        )),
        Event::Failed { host, step, reason } => Some(format!("{host}: {step}: FAILED: {reason}")),
        Event::Waiting { host, step, on } => Some(format!("{host}: {step}: waiting for {on}")),
        Event::Said { host, step, text } => Some(format!("{host}: {step}: {text}")),
        Event::StepStarted { .. } | Event::InSync { .. } => None,
    }
}

/// Plain lines, each with the seconds since apply began: a log says where the time went.
pub struct Lines {
    started: std::time::Instant,
}

impl Observer for Lines {
    fn event(&self, event: Event) {
        if let Some(l) = line(&event) {
            eprintln!("[{:6.1}s] {l}", self.started.elapsed().as_secs_f64());
        }
    }
}

pub struct Bars {
    multi: MultiProgress,
    bars: BTreeMap<String, ProgressBar>,
}

impl Bars {
    fn new<'a>(hosts: impl IntoIterator<Item = &'a String>) -> Self {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:>8} [{bar:24}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bars = hosts
            .into_iter()
            .map(|h| {
                let bar = multi.add(
                    ProgressBar::new(0)
                        .with_style(style.clone())
                        .with_prefix(h.clone()),
                );
                (h.clone(), bar)
            })
            .collect();
        Bars { multi, bars }
    }
}

impl Observer for Bars {
    fn event(&self, event: Event) {
        if let Event::StepStarted {
            host,
            step,
            index,
            total,
        } = &event
        {
            if let Some(bar) = self.bars.get(host) {
                bar.set_length(*total as u64);
                bar.set_position(*index as u64);
                bar.set_message(step.clone());
            }
        }
        if let Some(l) = line(&event) {
            let _ = self.multi.println(l);
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
    }
}
