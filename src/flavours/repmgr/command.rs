//! repmgr's command line, as every step and procedure of the flavour runs it: the binary of
//! the server's version, `-f` with the node's configuration, as postgres.

use crate::transport::RemoteCommand;

/// `repmgr -f CONFIG ARGS...` from `bin_dir`, run as postgres.
pub fn repmgr<S: AsRef<str>>(bin_dir: &str, config: &str, args: &[S]) -> RemoteCommand {
    let mut argv = vec![
        format!("{bin_dir}/repmgr"),
        "-f".to_owned(),
        config.to_owned(),
    ];
    argv.extend(args.iter().map(|a| a.as_ref().to_owned()));
    RemoteCommand::new(argv).as_user("postgres")
}

/// The connection options that point repmgr at another node's server.
pub fn source(address: &str, port: u16, user: &str, database: &str) -> Vec<String> {
    [
        "-h",
        address,
        "-p",
        &port.to_string(),
        "-U",
        user,
        "-d",
        database,
    ]
    .map(str::to_owned)
    .to_vec()
}
