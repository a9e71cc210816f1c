//! Exit codes, in one place: 0 ok / no changes, 1 error, 2 changes pending (only with
//! `--detailed-exitcode`), 3 a drill that ran to its end and failed its verdict (1 is kept for
//! a drill that could not run: a script tells "the cluster failed the drill" from "no drill"),
//! 130 stopped by a signal (as shells report an interrupted command).

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    Failure,
    ChangesPending,
    DrillFailed,
    Interrupted,
}

/// The exit code of a run stopped by SIGINT or SIGTERM.
pub const INTERRUPTED: i32 = 130;

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        match status {
            ExitStatus::Success => ExitCode::from(0),
            ExitStatus::Failure => ExitCode::from(1),
            ExitStatus::ChangesPending => ExitCode::from(2),
            ExitStatus::DrillFailed => ExitCode::from(3),
            ExitStatus::Interrupted => ExitCode::from(INTERRUPTED as u8),
        }
    }
}
