//! Commands as values: built as argument vectors, quoted late, secrets masked in every
//! rendering of them. The sudo wrapping lives here and nowhere else.

use serde::{Deserialize, Serialize};

use std::borrow::Cow;

use crate::secret::{Sealed, SecretError, Secrets};

/// A command to run on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteCommand {
    /// Program and arguments; an argument may carry secret marks.
    pub argv: Vec<Sealed>,
    /// Bytes for standard input (file contents, SQL). SQL never goes in argv, where `ps` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<Sealed>,
    /// Run as this OS user (e.g. `postgres`) instead of root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
}

impl RemoteCommand {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RemoteCommand {
            argv: argv.into_iter().map(|a| Sealed(a.into())).collect(),
            stdin: None,
            run_as: None,
        }
    }

    /// A POSIX shell script, for the few steps that need `set -e` sequencing on the host.
    pub fn script(script: impl Into<String>) -> Self {
        RemoteCommand::new(["sh".to_owned(), "-c".to_owned(), script.into()])
    }

    /// SQL for `psql` on standard input, as the postgres OS user over the local socket.
    pub fn sql(port: u16, database: &str, sql: impl Into<String>) -> Self {
        RemoteCommand::new([
            "psql".to_owned(),
            "-X".to_owned(),
            "-q".to_owned(),
            "-v".to_owned(),
            "ON_ERROR_STOP=1".to_owned(),
            "-At".to_owned(),
            "-p".to_owned(),
            port.to_string(),
            "-d".to_owned(),
            database.to_owned(),
        ])
        .with_stdin(sql)
        .as_user("postgres")
    }

    pub fn with_stdin(mut self, stdin: impl Into<String>) -> Self {
        self.stdin = Some(Sealed(stdin.into()));
        self
    }

    pub fn as_user(mut self, user: &str) -> Self {
        self.run_as = Some(user.to_owned());
        self
    }

    /// The argument vector that runs on the host, with privilege changes: `runuser` when we are
    /// root (always present), `sudo -n` when we are not (never prompts, fails instead).
    pub fn wrapped_argv(&self, login_is_root: bool) -> Vec<Sealed> {
        let mut prefix: Vec<&str> = Vec::new();
        match (login_is_root, self.run_as.as_deref()) {
            (true, None) => {}
            (true, Some(user)) => prefix.extend(["runuser", "-u", user, "--"]),
            (false, None) => prefix.extend(["sudo", "-n", "--"]),
            (false, Some(user)) => prefix.extend(["sudo", "-n", "-u", user, "--"]),
        }
        prefix
            .into_iter()
            .map(|s| Sealed(s.to_owned()))
            .chain(self.argv.iter().cloned())
            .collect()
    }

    /// The command line as the remote shell receives it, with real values.
    pub fn shell_line(
        &self,
        login_is_root: bool,
        secrets: &Secrets,
    ) -> Result<String, SecretError> {
        let args: Result<Vec<String>, SecretError> = self
            .wrapped_argv(login_is_root)
            .iter()
            .map(|a| a.reveal(secrets).map(Cow::into_owned))
            .collect();
        Ok(shell_words::join(args?))
    }

    /// The command line for logs and plans: secrets masked.
    pub fn display(&self, login_is_root: bool) -> String {
        let args: Vec<String> = self
            .wrapped_argv(login_is_root)
            .iter()
            .map(|a| a.masked().into_owned())
            .collect();
        shell_words::join(args)
    }
}

#[cfg(test)]
mod tests {
    use super::RemoteCommand;
    use crate::secret::{mark, Secret, Secrets};

    #[test]
    fn wraps_with_runuser_or_sudo() {
        let c = RemoteCommand::new(["pg_ctlcluster", "15", "main", "reload"]).as_user("postgres");
        assert_eq!(
            c.display(true),
            "runuser -u postgres -- pg_ctlcluster 15 main reload"
        );
        assert_eq!(
            c.display(false),
            "sudo -n -u postgres -- pg_ctlcluster 15 main reload"
        );
        let c = RemoteCommand::new(["systemctl", "start", "x"]);
        assert_eq!(c.display(true), "systemctl start x");
        assert_eq!(c.display(false), "sudo -n -- systemctl start x");
    }

    #[test]
    fn secrets_are_masked_in_display_and_revealed_on_the_wire() {
        let c = RemoteCommand::new(["echo".to_owned(), mark("replication.password", None)]);
        let mut secrets = Secrets::default();
        secrets.insert("replication.password", Secret::new("s3cret value"));
        assert_eq!(c.display(true), "echo '(sensitive)'");
        assert_eq!(
            c.shell_line(true, &secrets).expect("resolved"),
            "echo 's3cret value'"
        );
    }
}
