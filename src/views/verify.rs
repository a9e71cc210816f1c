//! The verify table.

use std::fmt::Write as _;

use console::style;

use crate::verify::CheckResult;

pub fn table(results: &[CheckResult]) -> String {
    let mut out = String::new();
    let wh = results
        .iter()
        .map(|r| r.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let wc = results
        .iter()
        .map(|r| r.check.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(out, "{:<wh$}  {:<wc$}  RESULT  DETAIL", "HOST", "CHECK");
    for r in results {
        let mark = if r.ok {
            style("ok    ").green()
        } else {
            style("FAILED").red().bold()
        };
        let _ = writeln!(
            out,
            "{:<wh$}  {:<wc$}  {mark}  {}",
            r.host, r.check, r.detail
        );
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    let _ = writeln!(
        out,
        "{} checks run, {} passed, {failed} failed.",
        results.len(),
        results.len() - failed
    );
    out
}

/// The checks and their tally as JSON.
pub fn json(results: &[CheckResult]) -> String {
    let failed = results.iter().filter(|r| !r.ok).count();
    let value = serde_json::json!({
        "checks": results,
        "run": results.len(),
        "passed": results.len() - failed,
        "failed": failed,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}
