//! Running external programs. Every failure becomes a [`SandboxError`] that names the command
//! line and carries its stderr, because "docker failed" alone tells nobody what to fix.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Output, Stdio};

use super::SandboxError;

/// Longest stderr kept in an error: enough for the cause, not a whole build log.
const MAX_ERR: usize = 3000;

/// The command line as a user could retype it.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    let s = parts.join(" ");
    if s.len() > 400 {
        let mut cut = 400;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// "exit 1" or "killed by signal 9".
pub(crate) fn status_text(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".to_string(),
    }
}

/// The last `max` bytes of a text, cut at a line start when possible.
pub(crate) fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    let cut = &s[start..];
    match cut.find('\n') {
        Some(nl) if nl + 1 < cut.len() => format!("...{}", &cut[nl + 1..]),
        _ => format!("...{cut}"),
    }
}

/// Run to completion with stdout/stderr captured and `input` (if any) on stdin.
pub(crate) fn output(cmd: &mut Command, input: Option<&[u8]>) -> Result<Output, SandboxError> {
    let command = describe(cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
        command: command.clone(),
        source,
    })?;
    // Feed stdin from a thread so a child that writes a lot before reading cannot deadlock us.
    let feeder = match (input, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            Some(std::thread::spawn(move || {
                // A child that exits early closes its end; its exit status reports the problem.
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let out = child
        .wait_with_output()
        .map_err(|source| SandboxError::Spawn { command, source })?;
    if let Some(f) = feeder {
        let _ = f.join();
    }
    Ok(out)
}

/// Turn a failed [`Output`] into [`SandboxError::Command`].
pub(crate) fn check(command: String, out: &Output) -> Result<(), SandboxError> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = if stderr.trim().is_empty() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        stderr.into_owned()
    };
    Err(SandboxError::Command {
        command,
        status: status_text(out.status),
        stderr: tail(&text, MAX_ERR),
    })
}

/// Run, require success, return stdout (trimmed).
pub(crate) fn run(cmd: &mut Command) -> Result<String, SandboxError> {
    run_input_opt(cmd, None)
}

/// Like [`run`] with `input` on stdin.
pub(crate) fn run_input(cmd: &mut Command, input: &[u8]) -> Result<String, SandboxError> {
    run_input_opt(cmd, Some(input))
}

fn run_input_opt(cmd: &mut Command, input: Option<&[u8]>) -> Result<String, SandboxError> {
    let command = describe(cmd);
    let out = output(cmd, input)?;
    check(command, &out)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether the command runs and exits 0 (output discarded).
pub(crate) fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A `docker` command. Always the client found in PATH: it talks to the local engine.
pub(crate) fn docker() -> Command {
    Command::new("docker")
}

/// Find a program in PATH and in the sbin folders, which a non-login root shell may lack.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Effective uid 0, read from /proc so we need no libc.
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether a live process with this pid runs `comm` (guards against pid reuse). A zombie
/// does not count: where PID 1 does not reap orphans, a killed dockerd stays one for a while.
pub(crate) fn process_is(pid: u32, comm: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| stat_is_live(&s, comm))
}

/// `/proc/PID/stat` is "pid (comm) state ...": comm may hold spaces and parentheses.
fn stat_is_live(stat: &str, comm: &str) -> bool {
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let name = stat.get(open + 1..close).unwrap_or_default();
    let state = stat
        .get(close + 1..)
        .unwrap_or_default()
        .trim_start()
        .chars()
        .next();
    name == comm && !matches!(state, Some('Z' | 'X' | 'x') | None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_and_reports() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo oops >&2; exit 3"]);
        assert_eq!(describe(&c), "sh -c 'echo oops >&2; exit 3'");
        let err = run(&mut c).expect_err("must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("exit 3") && msg.contains("oops") && msg.contains("sh -c"),
            "{msg}"
        );
        assert_eq!(
            run_input(Command::new("cat").arg("-"), b" hi \n").expect("cat"),
            "hi"
        );
        assert!(matches!(
            run(&mut Command::new("pgha-test-no-such-program")),
            Err(SandboxError::Spawn { .. })
        ));
    }

    #[test]
    fn zombies_are_not_running() {
        assert!(stat_is_live("11469 (dockerd) S 1 11469 ...", "dockerd"));
        assert!(!stat_is_live("11469 (dockerd) Z 1 11469 ...", "dockerd"));
        assert!(!stat_is_live("11469 (containerd) S 1", "dockerd"));
        assert!(stat_is_live("7 (a (b)) R 1", "a (b)"));
        assert!(!stat_is_live("garbage", "dockerd"));
        let me = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
        assert!(process_is(std::process::id(), me.trim()));
    }

    #[test]
    fn tails_long_text() {
        let long = (0..1000).map(|i| format!("line {i}\n")).collect::<String>();
        let t = tail(&long, 30);
        assert!(t.starts_with("...line") && t.ends_with("line 999"), "{t}");
        assert_eq!(tail("short\n", 30), "short");
    }
}
