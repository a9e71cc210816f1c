//! `pgha validate`: the example passes; every kind of bad input fails with exit 1, a message
//! and the file:line:column of the offending key.

use std::path::{Path, PathBuf};

use crate::support::{root, Ran, Test};

const BASE: &str = "\
cluster:
  name: demo
  flavour: streaming
postgres:
  version: 15
  port: 5432
  parameters:
    shared_buffers: 256MB
    max_connections: 100
  hba:
    - {type: hostssl, database: app, user: app, address: 10.0.0.0/24, method: scram-sha-256}
replication:
  user: replicator
  password: {env: PGHA_REPLICATION_PASSWORD}
users:
  - name: app
    password: {env: PGHA_APP_PASSWORD}
databases:
  - name: app
    owner: app
ssh:
  user: root
  host_key_policy: strict
hosts:
  - name: pg1
    address: 10.0.0.11
    role: primary
  - name: pg2
    address: 10.0.0.12
    role: standby
  - name: pg3
    address: 10.0.0.13
    role: standby
";

/// `pgha validate -i PATH --templates DIR`.
fn validate_with_templates(path: &Path, templates: &Path) -> Test {
    Test::new()
        .args(["validate", "-i"])
        .arg_path(path)
        .args(["--templates"])
        .arg_path(templates)
}

fn write_inventory(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("inventory.yml");
    std::fs::write(&path, text).expect("write inventory");
    (dir, path)
}

/// Replace `from` (which must occur once) in the base inventory.
fn variant(from: &str, to: &str) -> String {
    assert_eq!(
        BASE.matches(from).count(),
        1,
        "{from:?} must occur once in BASE"
    );
    BASE.replacen(from, to, 1)
}

/// Validate `text`, expect exit 1 and an error with `message` at `line:column`.
#[track_caller]
fn rejects(text: &str, location: &str, message: &str) -> String {
    rejected(text, location, message).stderr
}

/// `rejects`, for a value that may be a secret: `secret` shows nowhere in the output.
#[track_caller]
fn rejects_unechoed(text: &str, location: &str, message: &str, secret: &str) {
    let ran = rejected(text, location, message);
    assert!(
        !ran.stdout.contains(secret) && !ran.stderr.contains(secret),
        "{secret:?} is shown:\n{}{}",
        ran.stdout,
        ran.stderr
    );
}

/// Validate `text` and check it passes.
#[track_caller]
fn accepts(text: &str) {
    let (_dir, path) = write_inventory(text);
    Test::new().args(["validate", "-i"]).arg_path(&path).run();
}

/// `rejects`, with both outputs of the run.
#[track_caller]
fn rejected(text: &str, location: &str, message: &str) -> Ran {
    let (_dir, path) = write_inventory(text);
    let ran = Test::new()
        .args(["validate", "-i"])
        .arg_path(&path)
        .status(1)
        .stderr_has(message)
        .stderr_has(&format!("{}:{location}", path.display()))
        .stderr_has("nothing was changed on any host")
        .run();
    // The location line must belong to this message: the error is printed right before it.
    let at = ran.stderr.find(message).expect("message");
    let rest = &ran.stderr[at..];
    let first_location = rest.find("  --> ").map(|i| &rest[i..]).unwrap_or("");
    assert!(
        first_location.starts_with(&format!("  --> {}:{location}", path.display())),
        "the first location after {message:?} is not {location}:\n{}",
        ran.stderr
    );
    ran
}

// ---- the examples, and secrets when asked ------------------------------------------------------

#[test]
fn the_base_inventory_is_valid() {
    let (_dir, path) = write_inventory(BASE);
    Test::new()
        .args(["validate", "-i"])
        .arg_path(&path)
        .stdout_has("valid: cluster `demo`, flavour streaming, 3 hosts")
        .run();
}

#[test]
fn inventory_example_is_valid_without_secrets() {
    Test::new()
        .args(["validate", "-i"])
        .arg_path(&root().join("inventory.example"))
        .stdout_has("valid: cluster `demo`")
        .run();
}

#[test]
fn validate_secrets_names_every_missing_secret() {
    let (_dir, path) = write_inventory(BASE);
    Test::new()
        .args(["validate", "--secrets", "-i"])
        .arg_path(&path)
        .env("PGHA_REPLICATION_PASSWORD", "")
        .status(1)
        .stderr_has("replication.password")
        .stderr_has("users[app].password: environment variable PGHA_APP_PASSWORD is not set")
        .run();
}

#[test]
fn validate_secrets_passes_when_all_resolve() {
    let (dir, path) = write_inventory(&variant("{env: PGHA_APP_PASSWORD}", "{file: app.pw}"));
    std::fs::write(dir.path().join("app.pw"), "app-password-1\n").expect("write");
    Test::new()
        .args(["validate", "--secrets", "-i"])
        .arg_path(&path)
        .env("PGHA_REPLICATION_PASSWORD", "repl-password-1")
        .stdout_has("every secret resolved")
        .run();
}

#[test]
fn missing_inventory_file() {
    Test::new()
        .args(["validate", "-i", "/nonexistent/inventory.yml"])
        .status(1)
        .stderr_has("cannot read inventory /nonexistent/inventory.yml")
        .run();
}

// ---- YAML and the schema -----------------------------------------------------------------------

#[test]
fn yaml_syntax_error() {
    rejects(
        &variant("  name: demo", "  name: [demo"),
        "3:",
        "invalid YAML",
    );
}

#[test]
fn duplicate_key() {
    rejects(
        &variant("  port: 5432\n", "  port: 5432\n  port: 5433\n"),
        "7:3",
        "invalid YAML",
    );
}

#[test]
fn unknown_top_level_key_with_suggestion() {
    let err = rejects(&variant("ssh:\n", "shh:\n"), "21:1", "unknown key `shh`");
    assert!(err.contains("did you mean `ssh`?"), "{err}");
}

#[test]
fn unknown_nested_key_with_suggestion() {
    let err = rejects(
        &variant("  port: 5432", "  prot: 5432"),
        "6:3",
        "unknown key `prot` in `postgres`",
    );
    assert!(err.contains("did you mean `port`?"), "{err}");
}

#[test]
fn wrong_type() {
    rejects(
        &variant("  port: 5432", "  port: abc"),
        "6:9",
        "`postgres.port` must be an integer, found a string",
    );
}

#[test]
fn port_out_of_range() {
    rejects(
        &variant("  port: 5432", "  port: 70000"),
        "6:9",
        "`postgres.port` is 70000, outside 1 .. 65535",
    );
}

#[test]
fn missing_required_key() {
    rejects(
        &variant("  user: replicator\n", ""),
        "13:3",
        "missing required key `replication.user`",
    );
}

#[test]
fn flavour_typo() {
    let err = rejects(
        &variant("flavour: streaming", "flavour: streamin"),
        "3:12",
        "`streamin` is not a valid `cluster.flavour`",
    );
    assert!(err.contains("did you mean `streaming`?"), "{err}");
}

#[test]
fn unsupported_version() {
    rejects(
        &variant("version: 15", "version: 14"),
        "5:12",
        "PostgreSQL 14 is not supported",
    );
    // A newer major is an upgrade: a procedure, pointed to.
    rejects(
        &variant("version: 15", "version: 16"),
        "5:12",
        "Moving a cluster to a new major version is a procedure, not a setting: see docs/major-upgrade.md",
    );
}

#[test]
fn the_package_version_is_exact_and_of_the_same_major() {
    let pinned = |v: &str| {
        variant(
            "version: 15\n",
            &format!("version: 15\n  package_version: \"{v}\"\n"),
        )
    };
    accepts(&pinned("15.20-0+deb12u1"));
    rejects(
        &pinned("15.20*"),
        "6:20",
        "`15.20*` is a pattern: give the exact Debian version",
    );
    rejects(
        &pinned("16.4-1"),
        "6:20",
        "`16.4-1` is not a minor version of PostgreSQL 15 (postgres.version)",
    );
}

#[test]
fn invalid_cluster_name() {
    rejects(
        &variant("name: demo", "name: Demo!"),
        "2:9",
        "`Demo!` is not a valid name for `cluster.name`",
    );
}

#[test]
fn invalid_host_key_policy() {
    rejects(
        &variant("host_key_policy: strict", "host_key_policy: yolo"),
        "23:20",
        "`yolo` is not a valid `ssh.host_key_policy`",
    );
}

#[test]
fn an_empty_ssh_user_is_refused() {
    rejects(
        &variant("  user: root", "  user: \"\""),
        "22:9",
        "`ssh.user` must name a login",
    );
}

#[test]
fn a_yaml_1_1_boolean_is_a_string() {
    // Only true/false are booleans: `yes` would be the string "yes".
    rejects(
        &with_replication("slots: yes"),
        "15:10",
        "`replication.slots` must be true or false, found a string",
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let text = variant("  port: 5432", "  prot: 5432")
        .replacen("10.0.0.13", "10.0.0.999", 1)
        .replacen("256MB", "256XB", 1);
    let err = rejects(&text, "6:3", "unknown key `prot`");
    assert!(err.contains("is not an IP address"), "{err}");
    assert!(err.contains("is not a unit of `shared_buffers`"), "{err}");
    assert!(err.contains("3 errors found"), "{err}");
}

// ---- server parameters -------------------------------------------------------------------------

/// BASE with `line` (`name: value`) added to `postgres.parameters`, as line 10.
fn with_parameter(line: &str) -> String {
    variant(
        "    max_connections: 100\n",
        &format!("    max_connections: 100\n    {line}\n"),
    )
}

/// BASE with `postgres.listen_addresses` set, as line 7 (its value at column 21).
fn with_listen_addresses(value: &str) -> String {
    listen_addresses_in(BASE, value)
}

/// `text` (BASE or a variant of it) with `postgres.listen_addresses` set, as line 7.
fn listen_addresses_in(text: &str, value: &str) -> String {
    assert_eq!(text.matches("  port: 5432\n").count(), 1);
    text.replacen(
        "  port: 5432\n",
        &format!("  port: 5432\n  listen_addresses: {value}\n"),
        1,
    )
}

#[test]
fn unknown_server_parameter_with_suggestion() {
    let err = rejects(
        &variant("    shared_buffers:", "    shared_bufers:"),
        "8:5",
        "`shared_bufers` is not a PostgreSQL 15 server parameter",
    );
    assert!(err.contains("did you mean `shared_buffers`?"), "{err}");
}

#[test]
fn parameter_value_of_the_wrong_kind() {
    rejects(
        &variant("max_connections: 100", "max_connections: lots"),
        "9:22",
        "`max_connections` takes an integer, not `lots`",
    );
}

#[test]
fn parameter_out_of_range() {
    rejects(
        &variant("max_connections: 100", "max_connections: 0"),
        "9:22",
        "`0` is out of range for `max_connections`",
    );
}

#[test]
fn memory_unit_unknown() {
    rejects(
        &variant("256MB", "256XB"),
        "8:21",
        "`XB` is not a unit of `shared_buffers`",
    );
}

#[test]
fn memory_unit_in_lower_case() {
    // Units are case-sensitive to the server: `mb` is no unit at all.
    rejects(
        &variant("256MB", "256mb"),
        "8:21",
        "`mb` is not a unit of `shared_buffers`: valid units are B, kB, MB, GB, TB (case-sensitive)",
    );
}

#[test]
fn checkpoint_timeout_below_its_minimum() {
    rejects(
        &with_parameter("checkpoint_timeout: 10s"),
        "10:25",
        "`10s` is out of range for `checkpoint_timeout`",
    );
}

#[test]
fn enum_parameter_value() {
    rejects(
        &with_parameter("wal_level: archive"),
        "10:16",
        "`archive` is not a value of `wal_level`",
    );
}

#[test]
fn boolean_parameter_value() {
    rejects(
        &with_parameter("hot_standby: maybe"),
        "10:18",
        "`hot_standby` is a boolean",
    );
}

#[test]
fn a_parameter_given_as_a_list() {
    rejects(
        &with_parameter("shared_preload_libraries: [pg_stat_statements]"),
        "10:31",
        "`postgres.parameters.shared_preload_libraries` must be a plain value, found a list",
    );
}

#[test]
fn read_only_parameter() {
    rejects(
        &with_parameter("block_size: 16384"),
        "10:5",
        "`block_size` is read-only",
    );
}

#[test]
fn parameter_managed_by_another_key() {
    let err = rejects(
        &with_parameter("max_wal_senders: 5"),
        "10:5",
        "`max_wal_senders` is set by pgha from `replication.max_wal_senders`",
    );
    assert!(
        err.contains("set `replication.max_wal_senders` instead"),
        "{err}"
    );
}

#[test]
fn primary_conninfo_is_pgha_s_per_standby() {
    rejects(
        &with_parameter("primary_conninfo: \"host=10.0.0.11\""),
        "10:5",
        "`primary_conninfo` is set by pgha from `hosts[].upstream`",
    );
}

#[test]
fn a_parameter_set_twice_in_another_letter_case() {
    // GUC names are case-insensitive: one of the two values would silently win.
    rejects(
        &with_parameter("Shared_Buffers: 1GB"),
        "10:5",
        "`Shared_Buffers` is set twice (also as `shared_buffers`)",
    );
}

#[test]
fn a_custom_parameter_name_the_server_refuses() {
    rejects(
        &with_parameter("my-ext.max: 1"),
        "10:5",
        "`my-ext.max` is not a parameter name PostgreSQL takes",
    );
}

#[test]
fn wal_level_minimal_breaks_standbys() {
    rejects(
        &with_parameter("wal_level: minimal"),
        "10:16",
        "`wal_level = minimal` cannot feed standbys",
    );
}

#[test]
fn hot_standby_off() {
    rejects(
        &with_parameter("hot_standby: \"off\""),
        "10:18",
        "`hot_standby` must stay on",
    );
}

#[test]
fn full_page_writes_off() {
    rejects(
        &with_parameter("full_page_writes: false"),
        "10:23",
        "`full_page_writes` must stay on",
    );
}

#[test]
fn max_connections_no_larger_than_the_superuser_reserve() {
    // The postmaster exits: superuser_reserved_connections (3) must be less than it.
    rejects(
        &variant("max_connections: 100", "max_connections: 3"),
        "9:22",
        "superuser_reserved_connections (3) must be less than max_connections (3)",
    );
}

#[test]
fn more_server_processes_than_the_server_counts() {
    rejects(
        &variant("max_connections: 100", "max_connections: 262143"),
        "9:22",
        "more than the 262143 server processes PostgreSQL counts",
    );
}

#[test]
fn synchronous_standby_names_naming_no_host() {
    // Each standby connects with its host's name as application_name: a typo here makes
    // every commit wait for a standby that never comes.
    let err = rejects(
        &with_parameter("synchronous_standby_names: \"FIRST 1 (pg9)\""),
        "10:32",
        "`pg9` in synchronous_standby_names is not a data host of this inventory",
    );
    assert!(err.contains("did you mean"), "{err}");
}

#[test]
fn synchronous_standby_names_with_an_unquoted_dash() {
    rejects(
        &with_parameter("synchronous_standby_names: \"FIRST 1 (pg-2)\""),
        "10:32",
        "`-` cannot stand there unquoted",
    );
}

#[test]
fn synchronous_standby_names_waiting_for_more_standbys_than_exist() {
    rejects(
        &with_parameter("synchronous_standby_names: \"ANY 3 (pg2, pg3)\""),
        "10:32",
        "every commit would wait forever",
    );
    accepts(&with_parameter(
        "synchronous_standby_names: \"ANY 1 (PG2, pg3)\"",
    ));
}

#[test]
fn listen_addresses_localhost_only() {
    let err = rejects(
        &with_listen_addresses("localhost"),
        "7:21",
        "listen_addresses `localhost` leaves out the address of `pg1` (10.0.0.11)",
    );
    assert!(err.contains("list every host's address"), "{err}");
    rejects(
        &with_listen_addresses("\"\""),
        "7:21",
        "leaves out the address of `pg1`",
    );
}

#[test]
fn listen_addresses_missing_one_host() {
    rejects(
        &with_listen_addresses("\"10.0.0.11, 10.0.0.12\""),
        "7:21",
        "leaves out the address of `pg3` (10.0.0.13)",
    );
    accepts(&with_listen_addresses(
        "\"10.0.0.11, 10.0.0.12, 10.0.0.13, localhost\"",
    ));
    accepts(&with_listen_addresses("0.0.0.0"));
}

#[test]
fn listen_addresses_by_ip_with_hosts_known_by_name_is_accepted() {
    // Offline, a DNS name cannot be compared with an IP address: only a loopback-only list
    // surely leaves such a host out.
    let named = variant("10.0.0.11", "db1.example.com")
        .replacen("10.0.0.12", "db2.example.com", 1)
        .replacen("10.0.0.13", "db3.example.com", 1);
    accepts(&listen_addresses_in(
        &named,
        "\"10.0.0.11, 10.0.0.12, 10.0.0.13\"",
    ));
    rejects(
        &listen_addresses_in(&named, "\"localhost, ::1\""),
        "7:21",
        "leaves out the address of `pg1` (db1.example.com)",
    );
}

// ---- pg_hba: what PostgreSQL 15 refuses in a rule, and rules that cannot apply -----------------

/// BASE with its one pg_hba rule (line 11) replaced by `rules`, one flow mapping a line.
fn with_hba(rules: &[&str]) -> String {
    let lines: String = rules.iter().map(|r| format!("    - {r}\n")).collect();
    variant(
        "    - {type: hostssl, database: app, user: app, address: 10.0.0.0/24, method: scram-sha-256}\n",
        &lines,
    )
}

/// BASE with the method of its pg_hba rule (line 11, column 76) replaced.
fn with_hba_method(method: &str) -> String {
    variant("method: scram-sha-256}", &format!("method: {method}}}"))
}

#[test]
fn invalid_hba_cidr() {
    rejects(
        &variant("10.0.0.0/24", "10.0.0.0/33"),
        "11:58",
        "`10.0.0.0/33` is not a CIDR address",
    );
}

#[test]
fn hba_ipv6_mask_longer_than_128_bits() {
    rejects(
        &variant("10.0.0.0/24", "\"fd00::/129\""),
        "11:58",
        "`fd00::/129` is not a CIDR address: an IPv6 mask is /0 to /128",
    );
}

#[test]
fn an_hba_address_without_a_mask_is_refused_with_the_fix() {
    let out = rejects(
        &variant("10.0.0.0/24", "10.0.0.5"),
        "11:58",
        "`10.0.0.5` has no mask: pg_hba.conf needs a CIDR",
    );
    assert!(out.contains("write 10.0.0.5/32 for this one host"), "{out}");
}

#[test]
fn hba_address_with_host_bits_set() {
    // The server masks them away: one address written with /24 lets in its whole network.
    let err = rejects(
        &variant("10.0.0.0/24", "10.0.0.12/24"),
        "11:58",
        "`10.0.0.12/24` has host bits set: PostgreSQL ignores them and lets in all of 10.0.0.0/24",
    );
    assert!(
        err.contains("write 10.0.0.0/24 for the network, or 10.0.0.12/32 for this one host"),
        "{err}"
    );
}

#[test]
fn hba_host_name_instead_of_a_cidr() {
    rejects(
        &variant("10.0.0.0/24", "db.example.com"),
        "11:58",
        "`db.example.com` is not a CIDR address (like 10.0.0.0/24) nor all/samehost/samenet",
    );
}

#[test]
fn hba_network_rule_without_an_address() {
    rejects(
        &variant(" address: 10.0.0.0/24,", ""),
        "11:7",
        "a `hostssl` rule needs an address",
    );
}

#[test]
fn hba_local_rule_with_an_address() {
    rejects(
        &variant("type: hostssl,", "type: local,"),
        "11:56",
        "a `local` rule takes no address",
    );
}

#[test]
fn network_trust_needs_opt_in() {
    let err = rejects(
        &variant("method: scram-sha-256}", "method: trust}"),
        "11:79",
        "`trust` from the network (10.0.0.0/24)",
    );
    assert!(err.contains("allow_network_trust: true"), "{err}");
}

#[test]
fn network_trust_with_opt_in_is_accepted() {
    accepts(
        &variant("method: scram-sha-256}", "method: trust}").replacen(
            "  hba:\n",
            "  allow_network_trust: true\n  hba:\n",
            1,
        ),
    );
}

#[test]
fn peer_over_the_network() {
    rejects(
        &variant("method: scram-sha-256}", "method: peer}"),
        "11:79",
        "`peer` works only for `local` rules",
    );
}

#[test]
fn unknown_hba_method_with_suggestion() {
    let err = rejects(
        &variant("method: scram-sha-256}", "method: scram-sha256}"),
        "11:79",
        "`scram-sha256` is not a valid `postgres.hba[0].method`",
    );
    assert!(err.contains("did you mean `scram-sha-256`?"), "{err}");
}

#[test]
fn hba_cert_needs_a_hostssl_rule() {
    rejects(
        &with_hba_method("cert").replacen("type: hostssl,", "type: host,", 1),
        "11:76",
        "`cert` works only for `hostssl` rules (a client certificate needs SSL), not `host`",
    );
    accepts(&with_hba_method("cert"));
}

#[test]
fn hba_ldap_and_radius_need_options_pgha_cannot_write() {
    let err = rejects(
        &with_hba_method("ldap"),
        "11:79",
        "`ldap` needs the option ldapbasedn, ldapprefix or ldapsuffix",
    );
    assert!(err.contains("carry no options yet"), "{err}");
    rejects(
        &with_hba_method("radius"),
        "11:79",
        "`radius` needs the option radiusservers",
    );
}

#[test]
fn hba_sspi_exists_only_on_windows() {
    rejects(
        &with_hba_method("sspi"),
        "11:79",
        "`sspi` exists only in PostgreSQL for Windows",
    );
}

#[test]
fn hba_gss_on_a_local_rule() {
    rejects(
        &with_hba(&["{type: local, database: app, user: app, method: gss}"]),
        "11:55",
        "`gss` does not work on `local` rules",
    );
}

#[test]
fn an_hba_field_with_a_line_break_cannot_smuggle_in_a_rule() {
    rejects(
        &variant(
            "user: app, address",
            "user: \"app\\nhost all all 0.0.0.0/0 trust\", address",
        ),
        "11:44",
        "`postgres.hba[0].user` holds whitespace or a line break",
    );
    rejects(
        &variant("database: app,", "database: \"app db\","),
        "11:33",
        "`postgres.hba[0].database` holds whitespace or a line break",
    );
    rejects(
        &variant("database: app,", "database: \"\","),
        "11:33",
        "`postgres.hba[0].database` is empty",
    );
}

#[test]
fn hba_empty_user() {
    rejects(
        &variant("user: app, address", "user: \"\", address"),
        "11:44",
        "`postgres.hba[0].user` is empty",
    );
}

#[test]
fn hba_trailing_comma_would_swallow_the_next_field() {
    // `app,` then the user field: PostgreSQL reads `app,app` as the database list.
    rejects(
        &variant("database: app,", "database: \"app,\","),
        "11:33",
        "`postgres.hba[0].database` has an empty item in its comma list",
    );
}

#[test]
fn hba_comment_sign_in_a_field() {
    rejects(
        &variant("user: app, address", "user: \"app#1\", address"),
        "11:44",
        "`postgres.hba[0].user` holds `#`",
    );
}

#[test]
fn hba_keyword_in_upper_case_is_a_name() {
    // pg_hba.conf compares keywords case-sensitively: `ALL` is a database named ALL.
    rejects(
        &variant("database: app,", "database: ALL,"),
        "11:33",
        "`ALL` is not the keyword `all`",
    );
    rejects(
        &variant("10.0.0.0/24", "SameNet"),
        "11:58",
        "`SameNet` is not the keyword `samenet`",
    );
}

#[test]
fn hba_database_keyword_in_the_user_field() {
    rejects(
        &variant("user: app, address", "user: sameuser, address"),
        "11:44",
        "`sameuser` is a keyword of the database field",
    );
}

#[test]
fn hba_group_marker_in_the_database_field() {
    rejects(
        &variant("database: app,", "database: +admins,"),
        "11:33",
        "`+admins`: `+` marks a group only in the user field",
    );
}

#[test]
fn hba_included_file_pgha_does_not_write() {
    rejects(
        &variant("user: app, address", "user: \"@admins\", address"),
        "11:44",
        "`@admins` includes a file of names, which pgha does not write",
    );
}

#[test]
fn hba_rule_hidden_by_an_earlier_one_with_the_same_net_written_otherwise() {
    // The first matching rule wins, so the second is dead: the DBA meant something else.
    rejects(
        &with_hba(&[
            "{type: host, database: all, user: all, address: \"fd00::/64\", method: reject}",
            "{type: hostssl, database: app, user: app, address: \"fd00:0:0::/64\", method: scram-sha-256}",
        ]),
        "12:7",
        "`postgres.hba[1]` never applies: `postgres.hba[0]` comes first",
    );
}

#[test]
fn hba_hostssl_rule_hidden_by_a_wider_host_rule() {
    // `host` matches connections with TLS too (taken here with the opt-in, line 11).
    rejects(
        &with_hba(&[
            "{type: host, database: all, user: all, address: 10.0.0.0/16, method: scram-sha-256}",
            "{type: hostssl, database: app, user: app, address: 10.0.2.0/24, method: cert}",
        ])
        .replacen("  hba:\n", "  allow_host_without_tls: true\n  hba:\n", 1),
        "13:7",
        "`postgres.hba[1]` never applies",
    );
}

/// With TLS (the default) a `host` rule for a network address needs the opt-in; for the
/// loopback, or to reject, it does not.
#[test]
fn hba_host_rule_from_the_network_needs_the_opt_in() {
    let err = rejects(
        &variant("type: hostssl,", "type: host,"),
        "11:14",
        "a `host` rule lets 10.0.0.0/24 connect without TLS",
    );
    assert!(err.contains("allow_host_without_tls"), "{err}");
    accepts(&variant("type: hostssl,", "type: host,").replacen(
        "  hba:\n",
        "  allow_host_without_tls: true\n  hba:\n",
        1,
    ));
    accepts(&with_hba(&[
        "{type: host, database: app, user: app, address: 127.0.0.1/32, method: scram-sha-256}",
        "{type: host, database: all, user: all, address: 10.9.0.0/16, method: reject}",
    ]));
    // Without TLS there is nothing to opt out of.
    accepts(&format!(
        "{}tls: off\n",
        variant("type: hostssl,", "type: host,")
    ));
}

#[test]
fn hba_narrow_rule_before_a_wide_one_is_accepted() {
    accepts(&with_hba(&[
        "{type: host, database: app, user: app, address: 10.0.2.0/24, method: reject}",
        "{type: hostssl, database: all, user: all, address: 10.0.0.0/16, method: scram-sha-256}",
        // `all` does not match replication connections: this one is reachable.
        "{type: hostssl, database: replication, user: all, address: 10.0.0.0/16, method: scram-sha-256}",
    ]));
}

#[test]
fn hba_hostssl_rule_with_ssl_off() {
    // The server records an error for the file, and a reload with errors is refused.
    rejects(
        &with_parameter("ssl: \"off\""),
        "12:14",
        "a `hostssl` rule cannot match: `ssl` is off",
    );
}

// ---- replication settings ----------------------------------------------------------------------

/// BASE with `line` added to `replication:`, as line 15.
fn with_replication(line: &str) -> String {
    variant(
        "  password: {env: PGHA_REPLICATION_PASSWORD}\n",
        &format!("  password: {{env: PGHA_REPLICATION_PASSWORD}}\n  {line}\n"),
    )
}

#[test]
fn the_replication_user_cannot_be_the_superuser() {
    rejects(
        &variant("  user: replicator", "  user: postgres"),
        "13:9",
        "the replication user is `postgres`, the superuser",
    );
}

#[test]
fn the_replication_user_with_a_reserved_name() {
    rejects(
        &variant("  user: replicator", "  user: pg_replicator"),
        "13:9",
        "`replication.user` cannot be `pg_replicator`",
    );
}

#[test]
fn fewer_wal_senders_than_standbys() {
    // After a switchover any data host may be the primary and feed all the others.
    rejects(
        &with_replication("max_wal_senders: 1"),
        "15:20",
        "max_wal_senders 1 is fewer than the 2 standbys",
    );
}

#[test]
fn fewer_replication_slots_than_standbys() {
    rejects(
        &with_replication("max_replication_slots: 1"),
        "15:26",
        "max_replication_slots 1 is fewer than the 2 replication slots a primary of this cluster keeps",
    );
    accepts(&with_replication("max_replication_slots: 1").replacen(
        "  max_replication",
        "  slots: false\n  max_replication",
        1,
    ));
}

#[test]
fn archiving_on_without_a_command() {
    rejects(
        &with_replication("archive: {mode: \"on\"}"),
        "15:12",
        "archive mode `on` needs `replication.archive.command`",
    );
}

// ---- roles and databases -----------------------------------------------------------------------

/// BASE with a user added after `app`: its `name` is line 18, column 11.
fn with_user(item: &str) -> String {
    variant(
        "    password: {env: PGHA_APP_PASSWORD}\n",
        &format!("    password: {{env: PGHA_APP_PASSWORD}}\n{item}"),
    )
}

/// BASE with a database added after `app`: its `name` is line 21, column 11.
fn with_database(item: &str) -> String {
    variant("    owner: app\n", &format!("    owner: app\n{item}"))
}

#[test]
fn a_user_declared_twice_with_other_attributes() {
    rejects(
        &with_user("  - name: app\n    login: false\n"),
        "18:11",
        "user `app` is declared twice (first at users[0].name)",
    );
}

#[test]
fn a_database_declared_twice() {
    rejects(
        &with_database("  - name: app\n    owner: postgres\n"),
        "21:11",
        "database `app` is declared twice (first at databases[0].name)",
    );
}

#[test]
fn users_named_like_the_servers_own_roles() {
    // pgha would ALTER the superuser to NOSUPERUSER.
    rejects(
        &with_user("  - name: postgres\n"),
        "18:11",
        "`users[1].name` cannot be `postgres`",
    );
    rejects(
        &with_user("  - name: pg_monitor\n"),
        "18:11",
        "names starting with `pg_` are reserved for PostgreSQL's built-in roles",
    );
    rejects(
        &with_user("  - name: public\n"),
        "18:11",
        "`public` is PostgreSQL's pseudo-role for everyone",
    );
    rejects(
        &with_user("  - name: none\n"),
        "18:11",
        "`none` is reserved by PostgreSQL",
    );
}

#[test]
fn a_user_named_like_an_sql_keyword_for_the_current_role() {
    // `GRANT ... TO current_user` would grant to whoever runs it, not to this role.
    rejects(
        &with_user("  - name: current_user\n"),
        "18:11",
        "`users[1].name` cannot be `current_user`: this is an SQL keyword",
    );
}

#[test]
fn a_user_that_is_the_replication_user() {
    rejects(
        &with_user("  - name: replicator\n"),
        "18:11",
        "user `replicator` is also the replication user",
    );
}

#[test]
fn a_role_name_longer_than_the_server_keeps() {
    // PostgreSQL cuts names to 63 bytes without a word: two long names would be one role.
    rejects(
        &with_user(&format!("  - name: {}\n", "a".repeat(64))),
        "18:11",
        "at most 63 bytes",
    );
}

#[test]
fn a_role_name_in_upper_case() {
    rejects(
        &with_user("  - name: Reports\n"),
        "18:11",
        "PostgreSQL folds unquoted names to lower case",
    );
}

#[test]
fn database_owner_not_declared() {
    rejects(
        &variant("    owner: app", "    owner: bob"),
        "20:12",
        "owner `bob` is not a role of this inventory",
    );
}

#[test]
fn a_template_database() {
    rejects(
        &with_database("  - name: template1\n"),
        "21:11",
        "`template1` is a template database made by initdb",
    );
}

#[test]
fn the_maintenance_database_given_to_an_application_role() {
    rejects(
        &with_database("  - name: postgres\n    owner: app\n"),
        "21:11",
        "the maintenance database `postgres` belongs to the superuser: pgha would give it to `app`",
    );
    // For its extensions, as it is: accepted.
    accepts(&with_database(
        "  - name: postgres\n    extensions: [pg_stat_statements]\n",
    ));
}

#[test]
fn a_database_owned_by_the_replication_user() {
    rejects(
        &with_database("  - name: reports\n    owner: replicator\n"),
        "22:12",
        "owner `replicator` is the replication user",
    );
}

#[test]
fn a_user_refused_for_its_password_is_still_a_known_owner() {
    let err = rejects(
        &variant("{env: PGHA_APP_PASSWORD}", "{env: \"\"}"),
        "17:21",
        "is not a valid environment variable name",
    );
    assert!(!err.contains("is not a role of this inventory"), "{err}");
}

#[test]
fn an_extension_listed_twice() {
    rejects(
        &with_database("  - name: reports\n    extensions: [pg_trgm, pg_trgm]\n"),
        "22:27",
        "extension `pg_trgm` is declared twice",
    );
}

#[test]
fn an_extension_name_with_a_space() {
    rejects(
        &with_database("  - name: reports\n    extensions: [\"pg trgm\"]\n"),
        "22:18",
        "`pg trgm` is not an extension name",
    );
}

// ---- hosts, addresses, ports and the topology --------------------------------------------------

/// BASE with `lines` after the last host's keys (pg3's, or a host of their own), from line 34.
fn with_last_host(lines: &str) -> String {
    format!("{BASE}{lines}")
}

/// BASE with pg3's address (line 32, column 14) replaced.
fn with_pg3_address(address: &str) -> String {
    variant("10.0.0.13", address)
}

/// BASE with pg3's name (line 31, column 11) replaced.
fn with_pg3_name(name: &str) -> String {
    variant("  - name: pg3", &format!("  - name: {name}"))
}

#[test]
fn no_primary() {
    rejects(
        &variant("    role: primary", "    role: standby"),
        "25:3",
        "no host has `role: primary`",
    );
}

#[test]
fn two_primaries() {
    rejects(
        &variant(
            "    address: 10.0.0.12\n    role: standby",
            "    address: 10.0.0.12\n    role: primary",
        ),
        "30:11",
        "`pg2` is a second primary",
    );
}

#[test]
fn duplicate_host_name() {
    rejects(
        &variant("  - name: pg3", "  - name: pg2"),
        "31:11",
        "host name `pg2` is used twice",
    );
}

#[test]
fn duplicate_address() {
    rejects(
        &variant("10.0.0.13", "10.0.0.12"),
        "32:14",
        "address `10.0.0.12` is used twice",
    );
}

#[test]
fn one_ipv6_address_written_two_ways() {
    rejects(
        &variant("10.0.0.12", "fd00::12").replacen("10.0.0.13", "fd00:0:0::12", 1),
        "32:14",
        "address `fd00:0:0::12` is used twice (first at hosts[1])",
    );
}

#[test]
fn an_ipv4_address_written_as_ipv4_mapped_ipv6() {
    rejects(
        &with_pg3_address("\"::ffff:10.0.0.12\""),
        "32:14",
        "address `::ffff:10.0.0.12` is used twice (first at hosts[1])",
    );
}

#[test]
fn invalid_address() {
    rejects(
        &variant("10.0.0.13", "10.0.0.999"),
        "32:14",
        "`10.0.0.999` is not an IP address or a host name",
    );
}

#[test]
fn an_address_that_is_no_one_host() {
    rejects(
        &with_pg3_address("0.0.0.0"),
        "32:14",
        "`0.0.0.0` is not the address of one host",
    );
}

#[test]
fn host_names_that_are_not_dns_labels() {
    // `pg_3` would share the slot `pg_3` with a host `pg-3`.
    for name in ["pg_3", "PG3", "pg3-"] {
        rejects(
            &with_pg3_name(name),
            "31:11",
            &format!("`{name}` is not a valid name for `hosts[2].name`: use a DNS label"),
        );
    }
}

#[test]
fn a_host_name_too_long_for_its_slot() {
    let name = "a".repeat(60);
    rejects(
        &with_pg3_name(&name),
        "31:11",
        &format!("gives the replication slot name `pgha_{name}`, which PostgreSQL refuses"),
    );
}

#[test]
fn long_host_names_are_fine_without_slots() {
    accepts(&with_pg3_name(&"a".repeat(60)).replacen(
        "  user: replicator\n",
        "  user: replicator\n  slots: false\n",
        1,
    ));
}

#[test]
fn an_etcd_host_in_a_streaming_cluster() {
    rejects(
        &with_last_host("  - name: etcd1\n    address: 10.0.0.21\n    role: etcd\n"),
        "36:11",
        "role `etcd` belongs to flavour patroni, and this cluster's flavour is streaming",
    );
}

#[test]
fn a_misspelt_host_key() {
    let err = rejects(
        &variant("    address: 10.0.0.13", "    adress: 10.0.0.13"),
        "32:5",
        "unknown key `adress` in `hosts[2]`",
    );
    assert!(err.contains("did you mean `address`?"), "{err}");
}

#[test]
fn allow_wipe_written_yes() {
    rejects(
        &with_last_host("    allow_wipe: yes\n"),
        "34:17",
        "`hosts[2].allow_wipe` must be true or false, found a string",
    );
}

#[test]
fn a_host_ssh_port_out_of_range() {
    rejects(
        &with_last_host("    ssh: {port: 70000}\n"),
        "34:17",
        "`hosts[2].ssh.port` is 70000, outside 1 .. 65535",
    );
}

#[test]
fn a_privileged_postgresql_port() {
    rejects(
        &variant("  port: 5432", "  port: 80"),
        "6:9",
        "port 80 is below 1024: only root may listen there",
    );
}

#[test]
fn sshd_and_postgresql_on_one_port() {
    rejects(
        &with_last_host("    ssh: {port: 5432}\n"),
        "34:17",
        "`pg3` would have sshd and PostgreSQL both on port 5432",
    );
}

#[test]
fn two_servers_on_one_machine_behind_other_ssh_ports() {
    rejects(
        &format!("{}    ssh: {{port: 2222}}\n", with_pg3_address("10.0.0.12")),
        "32:14",
        "`pg2` and `pg3` are one machine (10.0.0.12): both PostgreSQL servers would listen on port 5432",
    );
}

#[test]
fn upstream_names_no_host() {
    rejects(
        &with_last_host("    upstream: pgx\n"),
        "34:15",
        "upstream `pgx` is not a host of this inventory",
    );
}

#[test]
fn an_upstream_with_a_typo() {
    let err = rejects(
        &with_last_host("    upstream: pg22\n"),
        "34:15",
        "upstream `pg22` is not a host of this inventory",
    );
    assert!(err.contains("did you mean `pg2`?"), "{err}");
}

#[test]
fn upstream_is_itself() {
    rejects(
        &with_last_host("    upstream: pg3\n"),
        "34:15",
        "`pg3` cannot stream from itself",
    );
}

#[test]
fn primary_with_upstream() {
    rejects(
        &variant(
            "    role: primary\n",
            "    role: primary\n    upstream: pg2\n",
        ),
        "28:15",
        "the primary `pg1` cannot have an upstream",
    );
}

#[test]
fn upstream_cycle() {
    let text = variant(
        "    address: 10.0.0.12\n    role: standby\n",
        "    address: 10.0.0.12\n    role: standby\n    upstream: pg3\n",
    );
    let text = format!("{text}    upstream: pg2\n");
    rejects(&text, "31:15", "runs in a cycle");
}

#[test]
fn an_upstream_cycle_of_three() {
    let text = variant(
        "    address: 10.0.0.12\n    role: standby\n",
        "    address: 10.0.0.12\n    role: standby\n    upstream: pg4\n",
    );
    let text = format!(
        "{text}    upstream: pg2\n  - name: pg4\n    address: 10.0.0.14\n    role: standby\n    upstream: pg3\n"
    );
    rejects(&text, "31:15", "runs in a cycle (pg2 -> pg3 -> pg4)");
}

// ---- secrets -----------------------------------------------------------------------------------
// Whatever is wrong, what was written there may be the password: it shows nowhere.

/// BASE with the app user's password (line 17, column 15) written as `value`.
fn with_app_password(value: &str) -> String {
    variant("{env: PGHA_APP_PASSWORD}", value)
}

#[test]
fn literal_secret_is_refused() {
    rejects_unechoed(
        &variant(
            "  password: {env: PGHA_REPLICATION_PASSWORD}",
            "  password: hunter2hunter2",
        ),
        "14:13",
        "`replication.password` is a literal secret",
        "hunter2hunter2",
    );
}

#[test]
fn unknown_secret_source() {
    let err = rejects(
        &variant("{env: PGHA_REPLICATION_PASSWORD}", "{vault: secret/repl}"),
        "14:14",
        "unknown key in `replication.password`: a secret reference takes env, file or command",
    );
    assert!(
        err.contains("must name exactly one of env, file or command"),
        "{err}"
    );
}

#[test]
fn a_misspelt_secret_source() {
    let err = rejects(
        &with_app_password("{evn: PGHA_APP_PASSWORD}"),
        "17:16",
        "unknown key in `users[0].password`",
    );
    assert!(err.contains("did you mean `env`?"), "{err}");
}

#[test]
fn invalid_environment_variable_name() {
    rejects_unechoed(
        &variant("{env: PGHA_APP_PASSWORD}", "{env: 1-BAD}"),
        "17:21",
        "`users[0].password.env` is not a valid environment variable name",
        "1-BAD",
    );
}

#[test]
fn a_password_written_as_a_number() {
    rejects_unechoed(
        &variant(
            "  password: {env: PGHA_REPLICATION_PASSWORD}",
            "  password: 84736251",
        ),
        "14:13",
        "`replication.password` is a literal secret (an integer)",
        "84736251",
    );
}

#[test]
fn a_password_written_as_a_variable_name() {
    rejects_unechoed(
        &with_app_password("{env: \"s3cr3t!P4ss\"}"),
        "17:21",
        "`users[0].password.env` is not a valid environment variable name (not shown: it may be the secret itself)",
        "s3cr3t!P4ss",
    );
}

#[test]
fn a_password_in_braces_taken_for_quoting() {
    // `{s3cr3tP4ss}` is a mapping whose key is the password.
    rejects_unechoed(
        &with_app_password("{s3cr3tP4ss}"),
        "17:16",
        "unknown key in `users[0].password`: a secret reference takes env, file or command",
        "s3cr3tP4ss",
    );
}

#[test]
fn a_password_in_a_list() {
    rejects_unechoed(
        &with_app_password("[hunter2hunter2]"),
        "17:15",
        "`users[0].password` is a literal secret (a list)",
        "hunter2hunter2",
    );
}

#[test]
fn a_password_as_a_plain_string_under_patroni() {
    rejects_unechoed(
        &patroni_variant(
            &PATRONI.replace("{env: PGHA_REWIND_PASSWORD}", "\"correct horse battery\""),
        ),
        "18:15",
        "`patroni.rewind.password` is a literal secret (a string)",
        "correct horse battery",
    );
}

// ---- playbooks and templates -------------------------------------------------------------------

fn playbook_override(dir: &Path, text: &str) -> PathBuf {
    let playbooks = dir.join("playbooks");
    std::fs::create_dir_all(&playbooks).expect("mkdir");
    std::fs::write(playbooks.join("streaming.yml"), text).expect("write playbook");
    playbooks
}

#[track_caller]
fn rejects_playbook(text: &str, location: &str, message: &str) -> String {
    let (dir, path) = write_inventory(BASE);
    let playbooks = playbook_override(dir.path(), text);
    let ran = Test::new()
        .args(["validate", "-i"])
        .arg_path(&path)
        .args(["--playbooks"])
        .arg_path(&playbooks)
        .status(1)
        .stderr_has(message)
        .stderr_has(&format!(
            "{}:{location}",
            playbooks.join("streaming.yml").display()
        ))
        .run();
    ran.stderr
}

#[test]
fn playbook_unknown_step_kind() {
    let err = rejects_playbook(
        "steps:\n  - name: packages\n    pakage: {names: [postgresql-15]}\n",
        "3:5",
        "unknown step kind `pakage`",
    );
    assert!(err.contains("did you mean `package`?"), "{err}");
}

#[test]
fn playbook_unknown_argument() {
    let err = rejects_playbook(
        "steps:\n  - name: packages\n    package: {nmes: [postgresql-15]}\n",
        "3:15",
        "unknown argument `nmes` for step kind `package`",
    );
    assert!(err.contains("did you mean `names`?"), "{err}");
}

#[test]
fn playbook_notify_without_handler() {
    rejects_playbook(
        "steps:\n  - name: packages\n    package: {names: [postgresql-15]}\n    notify: [restart]\n",
        "2:5",
        "step `packages` notifies `restart`, which is not a handler",
    );
}

#[test]
fn playbook_bad_when_expression() {
    rejects_playbook("steps:\n  - name: packages\n    when: \"host.role ==\"\n    package: {names: [postgresql-15]}\n", "3:11", "is not a valid expression");
}

#[test]
fn playbook_throttle_out_of_range() {
    rejects_playbook(
        "steps:\n  - name: packages\n    throttle: 0\n    package: {names: [postgresql-15]}\n",
        "3:15",
        "`steps[0].throttle` is 0, outside 1 .. 1000",
    );
}

#[test]
fn template_with_undefined_variable_is_refused() {
    let (dir, path) = write_inventory(BASE);
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(templates.join("postgresql")).expect("mkdir");
    std::fs::write(
        templates.join("postgresql/pg_hba.conf.j2"),
        "# {{ managed_header }}\n{{ no_such_variable }}\n",
    )
    .expect("write");
    validate_with_templates(&path, &templates)
        .status(1)
        .stderr_has("template postgresql/pg_hba.conf.j2")
        .stderr_has("undefined")
        .run();
}

#[test]
fn a_template_that_renders_a_pg_hba_line_the_server_refuses() {
    let (dir, path) = write_inventory(BASE);
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(templates.join("postgresql")).expect("mkdir");
    std::fs::write(
        templates.join("postgresql/pg_hba.conf.j2"),
        "# {{ managed_header }}\nlocal all postgres peer\nhost all all 10.0.0.0/8 peer\n",
    )
    .expect("write");
    validate_with_templates(&path, &templates)
        .status(1)
        .stderr_has("renders /etc/postgresql/15/main/pg_hba.conf with line 3, which PostgreSQL would refuse: `peer` works only for `local` rules")
        .run();
}

#[test]
fn patroni_yml_that_does_not_parse_is_refused_offline() {
    let (dir, path) = write_inventory(&patroni_variant(PATRONI));
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(templates.join("patroni")).expect("mkdir");
    let real = std::fs::read_to_string(root().join("templates/patroni/patroni.yml.j2"))
        .expect("the real template");
    // A stray tab-indented line: YAML forbids tabs for indentation.
    std::fs::write(
        templates.join("patroni/patroni.yml.j2"),
        real.replace("restapi:\n", "restapi:\n\tlisten: nowhere\n"),
    )
    .expect("write");
    validate_with_templates(&path, &templates)
        .status(1)
        .stderr_has("template patroni/patroni.yml.j2 renders /etc/patroni/15-main.yml as YAML that does not parse")
        .run();
}

/// Patroni's pg_hba items come from a fragment rendered once for all hosts
/// (`patroni/pg_hba.yml.j2`); an item PostgreSQL would refuse is named by its place in
/// `postgresql.pg_hba` whether it comes from the fragment or from the file around it.
#[test]
fn patroni_pg_hba_item_postgresql_would_refuse_is_named_by_its_index() {
    let (dir, path) = write_inventory(&patroni_variant(PATRONI));
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(templates.join("patroni")).expect("mkdir");
    let fragment = std::fs::read_to_string(root().join("templates/patroni/pg_hba.yml.j2"))
        .expect("the real fragment");
    // 15 rules: 5 local and loopback ones, 3 for each of the 3 hosts, the inventory's own.
    let bad = "    - \"host all all 10.0.0.1 md5\"\n";
    std::fs::write(
        templates.join("patroni/pg_hba.yml.j2"),
        format!("{fragment}{bad}"),
    )
    .expect("write");
    validate_with_templates(&path, &templates)
        .status(1)
        .stderr_has("template patroni/patroni.yml.j2 renders /etc/patroni/15-main.yml with postgresql.pg_hba[15], which PostgreSQL would refuse")
        .run();

    // The same line in the file itself, after the fragment's items.
    std::fs::remove_file(templates.join("patroni/pg_hba.yml.j2")).expect("rm");
    let real = std::fs::read_to_string(root().join("templates/patroni/patroni.yml.j2"))
        .expect("the real template");
    let call = "{{ shared(\"patroni/pg_hba.yml.j2\") }}\n";
    let last = real.rfind(call).expect("the call in postgresql.pg_hba");
    let mut edited = real.clone();
    edited.insert_str(last + call.len(), bad);
    std::fs::write(templates.join("patroni/patroni.yml.j2"), edited).expect("write");
    validate_with_templates(&path, &templates)
        .status(1)
        .stderr_has("renders /etc/patroni/15-main.yml with postgresql.pg_hba[15], which PostgreSQL would refuse")
        .run();
}

// ---- the Patroni flavour -----------------------------------------------------------------------

const PATRONI: &str = "\
patroni:
  ttl: 20
  loop_wait: 10
  retry_timeout: 5
  rewind:
    password: {env: PGHA_REWIND_PASSWORD}
  restapi_auth:
    password: {env: PGHA_RESTAPI_PASSWORD}
  etcd:
    members: [pg1, pg2, pg3]
";

fn patroni_variant(section: &str) -> String {
    variant("  flavour: streaming", "  flavour: patroni")
        .replacen("replication:\n", &format!("{section}replication:\n"), 1)
        .replacen(
            "  port: 5432\n",
            "  port: 5432\n  superuser_password: {env: PGHA_SUPERUSER_PASSWORD}\n",
            1,
        )
}

/// The Patroni inventory with `lines` added to the `patroni:` section, from line 23.
fn with_patroni(lines: &str) -> String {
    patroni_variant(&format!("{PATRONI}{lines}"))
}

/// The Patroni inventory with `line` added to `postgres.parameters`, as line 11.
fn patroni_with_parameter(line: &str) -> String {
    patroni_variant(PATRONI).replacen(
        "    max_connections: 100\n",
        &format!("    max_connections: 100\n    {line}\n"),
        1,
    )
}

/// The Patroni inventory with etcd on pg1, pg2 and a dedicated host etcd1 (lines 45 to 47,
/// then `etcd1_lines`), and `pg3_lines` added to pg3 (from line 45, before etcd1).
fn with_etcd_host(pg3_lines: &str, etcd1_lines: &str) -> String {
    let text = patroni_variant(&PATRONI.replace("[pg1, pg2, pg3]", "[pg1, pg2, etcd1]"));
    format!(
        "{text}{pg3_lines}  - name: etcd1\n    address: 10.0.0.21\n    role: etcd\n{etcd1_lines}"
    )
}

/// The Patroni inventory with `patroni.rewind.user` set, as line 18 (value at column 11).
fn with_rewind_user(user: &str) -> String {
    patroni_variant(&PATRONI.replace("  rewind:\n", &format!("  rewind:\n    user: {user}\n")))
}

/// The Patroni inventory with `line` added to `patroni.etcd`, as line 23.
fn with_etcd_setting(line: &str) -> String {
    patroni_variant(&format!("{PATRONI}    {line}\n"))
}

#[test]
fn inventory_patroni_example_is_valid() {
    Test::new()
        .args(["validate", "-i"])
        .arg_path(&root().join("inventory.patroni.example"))
        .stdout_has("flavour patroni, 3 hosts")
        .run();
    let (_dir, path) = write_inventory(&patroni_variant(PATRONI));
    Test::new()
        .args(["validate", "-i"])
        .arg_path(&path)
        .stdout_has("flavour patroni")
        .run();
}

#[test]
fn patroni_section_without_patroni_flavour() {
    let text = variant("replication:\n", &format!("{PATRONI}replication:\n"));
    rejects(
        &text,
        "13:3",
        "a `patroni:` section needs `cluster.flavour: patroni`",
    );
}

#[test]
fn patroni_timing_rules_are_enforced() {
    let text = patroni_variant(&PATRONI.replace("retry_timeout: 5", "retry_timeout: 6"));
    let err = rejects(
        &text,
        "14:8",
        "loop_wait + 2 * retry_timeout = 22 exceeds ttl 20",
    );
    assert!(
        err.contains("raise ttl or lower loop_wait / retry_timeout"),
        "{err}"
    );
    rejects(
        &patroni_variant(
            &PATRONI
                .replace("ttl: 20", "ttl: 15")
                .replace("loop_wait: 10", "loop_wait: 3"),
        ),
        "14:8",
        "ttl 15 is below 20, Patroni's minimum",
    );
}

#[test]
fn synchronous_mode_strict_without_synchronous_mode() {
    rejects(
        &with_patroni("  synchronous_mode_strict: true\n"),
        "23:28",
        "synchronous_mode_strict needs synchronous_mode: true",
    );
}

#[test]
fn more_synchronous_standbys_than_there_are() {
    rejects(
        &with_patroni("  synchronous_mode: true\n  synchronous_node_count: 3\n"),
        "24:27",
        "3 synchronous standbys need at least 4 PostgreSQL hosts; there are 3",
    );
}

#[test]
fn synchronous_standby_names_is_patroni_s() {
    rejects(
        &patroni_with_parameter("synchronous_standby_names: \"pg2\""),
        "11:5",
        "`synchronous_standby_names` is set by the patroni flavour from `patroni.synchronous_mode`",
    );
}

#[test]
fn patroni_data_dir_is_the_debian_cluster_s() {
    rejects(
        &with_patroni("  data_dir: /var/lib/postgresql/15/main\n"),
        "23:13",
        "Patroni's data directory must not be the Debian cluster's",
    );
}

#[test]
fn patroni_rest_api_on_postgresql_s_port() {
    rejects(
        &with_patroni("  restapi_port: 5432\n"),
        "23:17",
        "Patroni's REST API (patroni.restapi_port) and PostgreSQL would both listen on port 5432 on `pg1`",
    );
}

#[test]
fn patroni_rest_api_on_a_privileged_port() {
    rejects(
        &with_patroni("  restapi_port: 80\n"),
        "23:17",
        "Patroni's REST API on port 80: only root may listen below 1024",
    );
}

#[test]
fn etcd_client_and_peer_ports_the_same() {
    // Reported at the key the inventory sets (the peer port is left to its default).
    rejects(
        &with_etcd_setting("client_port: 2380"),
        "23:18",
        "etcd's peer port (patroni.etcd.peer_port) and etcd's client port would both listen on port 2380 on `pg1`",
    );
}

#[test]
fn etcd_on_postgresql_s_port() {
    rejects(
        &with_etcd_setting("client_port: 5432"),
        "23:18",
        "etcd's client port (patroni.etcd.client_port) and PostgreSQL would both listen on port 5432",
    );
}

/// An even count is a step on the way (3 to 1, a member that left): allowed, with a warning.
#[test]
fn an_even_number_of_etcd_members_is_a_warning() {
    let (_dir, path) = write_inventory(&patroni_variant(
        &PATRONI.replace("[pg1, pg2, pg3]", "[pg1, pg2]"),
    ));
    Test::new()
        .args(["validate", "-i"])
        .arg_path(&path)
        .stdout_has("warning: 2 etcd members (patroni.etcd.members): a quorum needs 2, so they tolerate no failure")
        .run();
    rejects(
        &patroni_variant(&PATRONI.replace("[pg1, pg2, pg3]", "[]")),
        "22:14",
        "no etcd member: Patroni needs its DCS",
    );
}

/// The last standby may not leave while synchronous mode is on: no one would acknowledge.
#[test]
fn synchronous_mode_needs_a_standby() {
    let alone = with_patroni("  synchronous_mode: true\n")
        .replace("[pg1, pg2, pg3]", "[pg1]")
        .replace(
            "  - name: pg2\n    address: 10.0.0.12\n    role: standby\n  - name: pg3\n    address: 10.0.0.13\n    role: standby\n",
            "",
        );
    rejected(
        &alone,
        "14:3",
        "synchronous mode with 1 PostgreSQL host: no standby is left to acknowledge commits",
    );
}

#[test]
fn an_etcd_member_listed_twice_is_refused() {
    rejects(
        &patroni_variant(&PATRONI.replace("[pg1, pg2, pg3]", "[pg1, pg1, pg2]")),
        "22:20",
        "etcd member `pg1` is listed twice",
    );
}

#[test]
fn an_etcd_member_that_is_no_host() {
    let err = rejects(
        &patroni_variant(&PATRONI.replace("[pg1, pg2, pg3]", "[pg1, pg2, pg4]")),
        "22:25",
        "etcd member `pg4` is not a host of this inventory",
    );
    assert!(err.contains("did you mean"), "{err}");
}

#[test]
fn an_etcd_host_that_is_no_member() {
    rejects(
        &format!(
            "{}  - name: etcd1\n    address: 10.0.0.21\n    role: etcd\n",
            patroni_variant(PATRONI)
        ),
        "47:11",
        "host `etcd1` has `role: etcd` but is not in patroni.etcd.members",
    );
}

#[test]
fn a_standby_streaming_from_an_etcd_host() {
    rejects(
        &with_etcd_host("    upstream: etcd1\n", ""),
        "45:15",
        "upstream `etcd1` is an etcd host, which holds no data to stream",
    );
}

#[test]
fn an_etcd_host_with_an_upstream() {
    rejects(
        &with_etcd_host("", "    upstream: pg1\n"),
        "48:15",
        "`etcd1` is an etcd host, which does not replicate: it has no upstream",
    );
}

#[test]
fn permanent_slot_names_are_checked() {
    rejects(
        &patroni_variant(&format!("{PATRONI}  permanent_slots: [site-b]\n")),
        "23:21",
        "`site-b` is not a replication slot name",
    );
    rejects(
        &patroni_variant(&format!("{PATRONI}  permanent_slots: [pg2]\n")),
        "23:21",
        "`pg2` is the slot Patroni makes for member `pg2`",
    );
}

#[test]
fn a_permanent_slot_listed_twice() {
    rejects(
        &with_patroni("  permanent_slots: [site_b, site_b]\n"),
        "23:29",
        "slot `site_b` is listed twice",
    );
}

#[test]
fn permanent_slots_count_against_max_replication_slots() {
    let text = with_patroni("  permanent_slots: [site_b]\n").replacen(
        "  password: {env: PGHA_REPLICATION_PASSWORD}\n",
        "  password: {env: PGHA_REPLICATION_PASSWORD}\n  max_replication_slots: 2\n",
        1,
    );
    rejects(
        &text,
        "27:26",
        "max_replication_slots 2 is fewer than the 3 replication slots",
    );
}

#[test]
fn a_standby_cluster_slot_name_the_server_refuses() {
    rejects(
        &with_patroni("  standby_cluster:\n    host: 10.1.0.11\n    primary_slot_name: site-b\n"),
        "25:24",
        "`site-b` is not a replication slot name",
    );
}

#[test]
fn a_standby_cluster_of_itself() {
    rejects(
        &with_patroni("  standby_cluster:\n    host: 10.0.0.12\n"),
        "24:11",
        "the standby cluster's source `10.0.0.12` is `pg2`, a member of this cluster",
    );
}

#[test]
fn the_rewind_user_shared_with_another_role() {
    rejects(
        &with_rewind_user("replicator"),
        "18:11",
        "the rewind user `replicator` is also the replication user",
    );
    rejects(
        &with_rewind_user("app"),
        "18:11",
        "the rewind user `app` is also declared under `users:`",
    );
    rejects(
        &with_rewind_user("postgres"),
        "18:11",
        "`patroni.rewind.user` cannot be `postgres`",
    );
}

#[test]
fn patroni_ssl_without_certificate_files() {
    // Patroni's own data directory holds no server.crt: the server would not start.
    rejects(
        &patroni_with_parameter("ssl: \"on\""),
        "11:10",
        "`ssl` is on without `ssl_cert_file`",
    );
}

#[test]
fn patroni_hostssl_rule_without_ssl() {
    rejects(
        &format!("{}tls: off\n", patroni_variant(PATRONI)),
        "12:14",
        "a `hostssl` rule cannot match: Patroni's servers run without SSL",
    );
}

// ---- tls ------------------------------------------------------------------------------------

/// BASE with a `tls:` section (its lines after BASE's).
fn with_tls(base: &str, section: &str) -> (String, usize) {
    (format!("{base}tls:\n{section}"), base.lines().count() + 2)
}

#[test]
fn tls_needs_a_readable_ca_certificate() {
    let (text, line) = with_tls(
        BASE,
        "  ca_cert: tls/ca.crt\n  ca_key: {file: tls/ca.key}\n",
    );
    let err = rejects(
        &text,
        &format!("{line}:12"),
        "cannot read the CA certificate",
    );
    assert!(err.contains("pgha tls init"), "{err}");
}

#[test]
fn tls_with_a_ca_made_by_tls_init_is_valid_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    Test::new()
        .args(["tls", "init", "--dir"])
        .arg_path(&dir.path().join("tls"))
        .stdout_has("ca_key: {file:")
        .run();
    // A second init never replaces the CA the hosts' certificates hang on.
    Test::new()
        .args(["tls", "init", "--dir"])
        .arg_path(&dir.path().join("tls"))
        .status(1)
        .stderr_has("exists")
        .run();
    let (text, line) = with_tls(
        BASE,
        "  ca_cert: tls/ca.crt\n  ca_key: {file: tls/ca.key}\n",
    );
    let path = dir.path().join("inventory.yml");
    std::fs::write(&path, &text).expect("write");
    Test::new().args(["validate", "-i"]).arg_path(&path).run();
    // A renewal window as long as the validity would renew on every apply.
    std::fs::write(
        &path,
        format!("{text}  validity_days: 30\n  renew_before_days: 30\n"),
    )
    .expect("write");
    Test::new()
        .args(["validate", "-i"])
        .arg_path(&path)
        .status(1)
        .stderr_has("would renew it on every apply")
        .run();
    // A host certificate is no CA.
    std::fs::write(dir.path().join("tls/host.crt"), "not a certificate").expect("write");
    std::fs::write(&path, text.replace("tls/ca.crt", "tls/host.crt")).expect("write");
    Test::new()
        .args(["validate", "-i"])
        .arg_path(&path)
        .status(1)
        .stderr_has(&format!("inventory.yml:{line}:12"))
        .stderr_has("the CA certificate")
        .run();
    // Patroni's cluster takes it too: etcd and the REST API on TLS, the REST API with its
    // password.
    let (text, _) = with_tls(
        &with_patroni(""),
        "  ca_cert: tls/ca.crt\n  ca_key: {file: tls/ca.key}\n",
    );
    std::fs::write(&path, text).expect("write");
    Test::new()
        .args(["validate", "-i"])
        .arg_path(&path)
        .stdout_has("valid")
        .run();
}

/// `tls:` needs the CA's key (pgha issues) or `certificates` (issued elsewhere); with
/// `certificates` and no key, every host needs its pair there.
#[test]
fn tls_without_a_way_to_get_each_host_a_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    Test::new()
        .args(["tls", "init", "--dir"])
        .arg_path(&dir.path().join("tls"))
        .run();
    let path = dir.path().join("inventory.yml");
    let (text, line) = with_tls(BASE, "  ca_cert: tls/ca.crt\n");
    std::fs::write(&path, &text).expect("write");
    Test::new()
        .args(["validate", "-i"])
        .arg_path(&path)
        .status(1)
        .stderr_has(&format!("inventory.yml:{line}:3"))
        .stderr_has("needs the CA's key (`ca_key`")
        .run();
    std::fs::create_dir(dir.path().join("certs")).expect("mkdir");
    let (text, _) = with_tls(BASE, "  ca_cert: tls/ca.crt\n  certificates: certs\n");
    std::fs::write(&path, &text).expect("write");
    Test::new()
        .args(["validate", "-i"])
        .arg_path(&path)
        .status(1)
        .stderr_has("no certificate for pg1")
        .stderr_has("and no `tls.ca_key` to issue one")
        .run();
    // A file there that is no certificate of the CA is named.
    std::fs::write(dir.path().join("certs/pg2.crt"), "not a certificate").expect("write");
    let (text, _) = with_tls(
        BASE,
        "  ca_cert: tls/ca.crt\n  ca_key: {file: tls/ca.key}\n  certificates: certs\n",
    );
    std::fs::write(&path, &text).expect("write");
    Test::new()
        .args(["validate", "-i"])
        .arg_path(&path)
        .status(1)
        .stderr_has("certs/pg2.crt")
        .run();
}

/// Without `tls:` the CA is the one in `tls/` beside the inventory, however the inventory is
/// named on the command line (a path relative to where pgha runs).
#[test]
fn the_default_ca_is_found_beside_an_inventory_named_by_a_relative_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site");
    std::fs::create_dir(&site).expect("mkdir");
    std::fs::write(site.join("inventory.yml"), BASE).expect("write");
    Test::new()
        .args(["tls", "init", "--dir"])
        .arg_path(&site.join("tls"))
        .run();
    let ran = Test::new()
        .current_dir(dir.path())
        .args(["render", "-i", "site/inventory.yml", "--out", "out"])
        .run();
    assert!(!ran.stderr.contains("no cluster CA"), "{}", ran.stderr);
    let rendered =
        std::fs::read_to_string(dir.path().join("out/pg1/etc/postgresql/15/main/tls/ca.crt"))
            .expect("the CA file is rendered");
    let made = std::fs::read_to_string(site.join("tls/ca.crt")).expect("the CA");
    assert_eq!(rendered, made);
}

/// A Patroni cluster with `tls: off` expands every step and handler (none of them may need
/// what only TLS defines).
#[test]
fn patroni_without_tls_is_valid() {
    accepts(&format!(
        "{}tls: off\n",
        patroni_variant(PATRONI).replacen("type: hostssl,", "type: host,", 1)
    ));
}

/// `tls.names`: what every certificate names besides the host (a VIP, the cluster's DNS
/// name); each an IP address or a DNS name.
#[test]
fn tls_names_are_addresses_or_dns_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    Test::new()
        .args(["tls", "init", "--dir"])
        .arg_path(&dir.path().join("tls"))
        .run();
    let path = dir.path().join("inventory.yml");
    let (text, line) = with_tls(
        BASE,
        "  ca_cert: tls/ca.crt\n  ca_key: {file: tls/ca.key}\n  names: [10.0.0.100, db.example.internal, \"two words\"]\n",
    );
    std::fs::write(&path, &text).expect("write");
    Test::new()
        .args(["validate", "-i"])
        .arg_path(&path)
        .status(1)
        .stderr_has(&format!("inventory.yml:{}:", line + 2))
        .stderr_has("`two words` is neither an IP address nor a DNS name")
        .run();
    std::fs::write(&path, text.replace(", \"two words\"", "")).expect("write");
    Test::new().args(["validate", "-i"]).arg_path(&path).run();
}

// ---- client routing --------------------------------------------------------------------------

const ROUTING: &str = "routing:
  vip:
    address: 10.0.0.100/24
    mode: keepalived
  keepalived:
    virtual_router_id: 51
    password: {env: PGHA_VRRP_PASSWORD}
  haproxy:
    primary_port: 5000
";

/// `line:column` of the value after `key: ` on the line of ROUTING that holds `key`, once
/// appended to BASE.
fn routing_at(key: &str) -> String {
    let (i, line) = ROUTING
        .lines()
        .enumerate()
        .find(|(_, l)| l.trim_start().starts_with(key))
        .expect("key in ROUTING");
    let column = line.find(key).expect("key") + key.len() + 1;
    format!("{}:{}", BASE.lines().count() + i + 1, column + 1)
}

#[test]
fn routing_is_valid_and_its_mistakes_are_located() {
    accepts(&format!("{BASE}{ROUTING}"));
    let stderr = rejects(
        &format!("{BASE}{}", ROUTING.replace("10.0.0.100/24", "10.0.9.100/24")),
        &routing_at("address:"),
        "10.0.9.100 is outside 10.0.9.0/24, the subnet of hosts pg1, pg2, pg3 (10.0.0.11, 10.0.0.12, 10.0.0.13)",
    );
    // One mistake, one error: the keepalived section is not blamed for the VIP's.
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    rejects(
        &format!("{BASE}{}", ROUTING.replace("mode: keepalived", "mode: callback")),
        &routing_at("mode:"),
        "`callback` moves the VIP from the flavour's role-change callback, and this flavour has none",
    );
    rejects(
        &format!(
            "{BASE}{}",
            ROUTING.replace("virtual_router_id: 51", "virtual_router_id: 300")
        ),
        &routing_at("virtual_router_id:"),
        "routing.keepalived.virtual_router_id",
    );
    rejects(
        &format!(
            "{BASE}{}",
            ROUTING.replace("primary_port: 5000", "primary_port: 5432")
        ),
        &routing_at("primary_port:"),
        "port 5432 is both postgres.port and routing.haproxy.primary_port",
    );
}

#[test]
fn a_vrrp_password_keepalived_would_cut_is_refused_unechoed() {
    let (_dir, path) = write_inventory(&format!("{BASE}{ROUTING}"));
    let ran = Test::new()
        .args(["validate", "--secrets", "-i"])
        .arg_path(&path)
        .env("PGHA_REPLICATION_PASSWORD", "repl-password-1")
        .env("PGHA_APP_PASSWORD", "app-password-1")
        .env("PGHA_VRRP_PASSWORD", "too-long-vrrp")
        .status(1)
        .stderr_has("routing.keepalived.password: the secret from env PGHA_VRRP_PASSWORD does not fit: VRRP PASS authentication takes at most 8 characters")
        .run();
    assert!(!ran.stderr.contains("too-long-vrrp") && !ran.stdout.contains("too-long-vrrp"));
    Test::new()
        .args(["validate", "--secrets", "-i"])
        .arg_path(&path)
        .env("PGHA_REPLICATION_PASSWORD", "repl-password-1")
        .env("PGHA_APP_PASSWORD", "app-password-1")
        .env("PGHA_VRRP_PASSWORD", "Vr9pAss1")
        .stdout_has("every secret resolved")
        .run();
}

// ---- objectives (RTO, RPO) ---------------------------------------------------------------------

/// `text` with an `objectives:` section at its end.
fn with_objectives(text: &str, lines: &str) -> String {
    format!("{text}objectives:\n{lines}")
}

/// Where the value after `prefix` stands: the line that starts with it, the column after it.
fn value_at(text: &str, prefix: &str) -> String {
    let (i, _) = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with(prefix))
        .last()
        .unwrap_or_else(|| panic!("no line starts with {prefix:?}"));
    format!("{}:{}", i + 1, prefix.len() + 1)
}

/// The Patroni inventory that leaves its timing to its defaults (or to the objectives).
fn patroni_untimed(lines: &str) -> String {
    patroni_variant(&format!(
        "{}{lines}",
        PATRONI.replace("  ttl: 20\n  loop_wait: 10\n  retry_timeout: 5\n", "")
    ))
}

const REPMGR: &str = "\
repmgr:
  password: {env: PGHA_REPMGR_PASSWORD}
";

/// The repmgr inventory with `lines` added to its section.
fn repmgr_variant(lines: &str) -> String {
    variant("  flavour: streaming", "  flavour: repmgr").replacen(
        "replication:\n",
        &format!("{REPMGR}{lines}replication:\n"),
        1,
    )
}

#[test]
fn objectives_patroni_can_meet_are_accepted() {
    accepts(&with_objectives(
        &patroni_untimed(""),
        "  rto: 30s\n  rpo: 0\n",
    ));
    accepts(&with_objectives(
        &patroni_untimed(""),
        "  rto: 2min\n  rpo: 1MB\n",
    ));
    accepts(&with_objectives(&repmgr_variant(""), "  rto: 30\n"));
}

#[test]
fn an_objective_that_is_not_a_duration_or_a_size() {
    let text = with_objectives(&patroni_untimed(""), "  rto: 30 sec\n");
    rejects(
        &text,
        &value_at(&text, "  rto: "),
        "`30 sec` is not a duration",
    );
    let text = with_objectives(&patroni_untimed(""), "  rpo: 1mb\n");
    rejects(&text, &value_at(&text, "  rpo: "), "`1mb` is not a size");
    let text = with_objectives(&patroni_untimed(""), "  rto: 0s\n");
    rejects(&text, &value_at(&text, "  rto: "), "an rto of 0");
}

#[test]
fn an_rto_below_what_patroni_can_do_is_refused_with_the_best() {
    let text = with_objectives(&patroni_untimed(""), "  rto: 20s\n");
    let err = rejects(
        &text,
        &value_at(&text, "  rto: "),
        "Patroni cannot fail over in under 24 s here: ttl ≥ 20",
    );
    assert!(err.contains("objectives.rto"), "{err}");
    assert!(err.contains("the best is rto: 24s"), "{err}");
}

#[test]
fn an_rto_with_explicit_patroni_timing_names_both_keys() {
    // PATRONI sets ttl, loop_wait and retry_timeout: each is reported at its own line.
    let text = with_objectives(&patroni_variant(PATRONI), "  rto: 30s\n");
    let err = rejects(
        &text,
        &value_at(&text, "  ttl: "),
        "`patroni.ttl` and `objectives.rto` both decide Patroni's failover timing",
    );
    assert!(err.contains("set one"), "{err}");
    assert!(
        err.contains("`patroni.retry_timeout` and `objectives.rto`"),
        "{err}"
    );
}

#[test]
fn rpo_zero_with_synchronous_mode_off_is_a_conflict() {
    let text = with_objectives(
        &patroni_untimed("  synchronous_mode: false\n"),
        "  rpo: 0\n",
    );
    rejects(
        &text,
        &value_at(&text, "  synchronous_mode: "),
        "`patroni.synchronous_mode: false` and `objectives.rpo: 0`",
    );
    let text = with_objectives(
        &patroni_untimed("  maximum_lag_on_failover: 1048576\n"),
        "  rpo: 1MB\n",
    );
    rejects(
        &text,
        &value_at(&text, "  maximum_lag_on_failover: "),
        "`patroni.maximum_lag_on_failover` and `objectives.rpo` both decide",
    );
    let text = with_objectives(
        &patroni_variant(PATRONI).replacen(
            "    max_connections: 100\n",
            "    max_connections: 100\n    synchronous_commit: local\n",
            1,
        ),
        "  rpo: 0\n",
    );
    rejects(
        &text,
        &value_at(&text, "  rpo: "),
        "rpo 0 and `postgres.parameters.synchronous_commit: local`",
    );
}

#[test]
fn the_streaming_flavour_refuses_an_rto_and_rpo_zero() {
    let text = with_objectives(BASE, "  rto: 30s\n  rpo: 0\n");
    let err = rejects(
        &text,
        &value_at(&text, "  rto: "),
        "the streaming flavour does not fail over by itself",
    );
    assert!(err.contains("use the patroni flavour"), "{err}");
    let err = rejects(
        &text,
        &value_at(&text, "  rpo: "),
        "the streaming flavour has none",
    );
    assert!(err.contains("objectives.rpo"), "{err}");
}

#[test]
fn repmgr_refuses_rpo_zero_and_timing_set_twice() {
    let text = with_objectives(&repmgr_variant(""), "  rpo: 0\n");
    rejects(
        &text,
        &value_at(&text, "  rpo: "),
        "rpo 0 needs synchronous replication that follows the cluster, and the repmgr flavour has none",
    );
    let text = with_objectives(&repmgr_variant("  reconnect_interval: 5\n"), "  rto: 30s\n");
    rejects(
        &text,
        &value_at(&text, "  reconnect_interval: "),
        "`repmgr.reconnect_interval` and `objectives.rto` both decide",
    );
    let text = with_objectives(&repmgr_variant("  failover: manual\n"), "  rto: 30s\n");
    rejects(
        &text,
        &value_at(&text, "  failover: "),
        "`repmgr.failover: manual` and `objectives.rto`",
    );
    let text = with_objectives(&repmgr_variant(""), "  rto: 10s\n");
    rejects(
        &text,
        &value_at(&text, "  rto: "),
        "repmgr cannot fail over in under 15 s here",
    );
}

const BACKUPS: &str = "\
backups:
  method: basebackup
  from: replica
  schedule: \"*-*-* 01:00:00\"
  retention: {count: 7, age: 10d}
  directory: /srv/backups
  max_rate: 50M
  restore_test: {schedule: daily, amcheck: sample}
";

/// `line:column` of the value of `key` in BACKUPS after BASE.
fn backups_at(key: &str) -> String {
    let (i, line) = BACKUPS
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(key))
        .expect("key in BACKUPS");
    let column = line.find(key).expect("key") + key.len() + 1;
    format!("{}:{}", BASE.lines().count() + i + 1, column + 1)
}

#[test]
fn backups_are_valid_and_their_mistakes_are_located() {
    accepts(&format!("{BASE}{BACKUPS}"));
    rejects(
        &format!("{BASE}{}", BACKUPS.replace("from: replica", "from: pg9")),
        &backups_at("from:"),
        "`pg9` is not `primary`, `replica` or a standby of the inventory",
    );
    rejects(
        &format!("{BASE}{}", BACKUPS.replace("from: replica", "from: pg1")),
        &backups_at("from:"),
        "`pg1` is the primary in the inventory",
    );
    rejects(
        &format!(
            "{BASE}{}",
            BACKUPS.replace(
                "directory: /srv/backups",
                "directory: /var/lib/postgresql/15/main/backups"
            )
        ),
        &backups_at("directory:"),
        "overlaps PostgreSQL's folder /var/lib/postgresql/15/main",
    );
    rejects(
        &format!("{BASE}{}", BACKUPS.replace("age: 10d", "age: 10x")),
        &format!("{}:30", BASE.lines().count() + 5),
        "`10x` is not an age",
    );
    rejects(
        &format!("{BASE}{}", BACKUPS.replace("max_rate: 50M", "max_rate: 5G")),
        &backups_at("max_rate:"),
        "`5G` is not a transfer rate pg_basebackup takes",
    );
    rejects(
        &format!(
            "{BASE}{}",
            BACKUPS.replace(
                "schedule: \"*-*-* 01:00:00\"",
                "schedule: \"daily; rm -rf /\""
            )
        ),
        &backups_at("schedule:"),
        "is not a systemd calendar expression",
    );
    rejects(
        &format!(
            "{BASE}{}",
            BACKUPS.replace("method: basebackup", "method: pgbackrest")
        ),
        &backups_at("method:"),
        "`method: pgbackrest` needs `backups.repository`",
    );
    rejects(
        &format!(
            "{BASE}{}",
            BACKUPS.replace("amcheck: sample", "amcheck: some")
        ),
        &format!("{}:44", BASE.lines().count() + 8),
        "`some` is not a valid `backups.restore_test.amcheck`",
    );
}

/// Three data hosts, pgBackRest's repository on a fourth (`role: backup`).
fn pgbackrest_inventory(backups: &str) -> String {
    format!("{BASE}  - name: bk1\n    address: 10.0.0.20\n    role: backup\n{backups}")
}

const PGBACKREST: &str = "\
backups:
  method: pgbackrest
  repository:
    host: bk1
  from: replica
  retention: {count: 7}
  compress: true
";

#[test]
fn pgbackrest_backups_are_valid_and_their_mistakes_are_located() {
    accepts(&pgbackrest_inventory(PGBACKREST));
    // A shared path instead of a host: the primary takes them.
    accepts(&format!(
        "{BASE}{}",
        PGBACKREST
            .replace("    host: bk1", "    path: /mnt/pgbackrest")
            .replace("from: replica", "from: primary")
            .replace("{count: 7}", "{age: 14d}")
    ));
    let text = pgbackrest_inventory(&PGBACKREST.replace("host: bk1", "host: bk9"));
    rejects(
        &text,
        &value_at(&text, "    host: "),
        "`bk9` is not a host of the inventory",
    );
    let text =
        pgbackrest_inventory(&PGBACKREST.replace("host: bk1", "host: bk1\n    path: pgbackrest"));
    rejects(
        &text,
        &value_at(&text, "    path: "),
        "`pgbackrest` is not an absolute path",
    );
    let text = pgbackrest_inventory(&PGBACKREST.replace(
        "host: bk1",
        "host: bk1\n    path: /var/lib/postgresql/15/main/repo",
    ));
    rejects(
        &text,
        &value_at(&text, "    path: "),
        "overlaps /var/lib/postgresql/15/main",
    );
    let text = pgbackrest_inventory(&PGBACKREST.replace("from: replica", "from: pg2"));
    rejects(
        &text,
        &value_at(&text, "  from: "),
        "pgBackRest picks the standby it copies from itself",
    );
    let text = format!(
        "{BASE}{}",
        PGBACKREST.replace("    host: bk1", "    path: /mnt/pgbackrest")
    );
    rejects(
        &text,
        &value_at(&text, "  from: "),
        "with a repository on a shared path the primary takes pgBackRest's backups",
    );
    let text = pgbackrest_inventory(&PGBACKREST.replace("{count: 7}", "{count: 7, age: 10d}"));
    rejects(
        &text,
        &value_at(&text, "  retention: "),
        "pgBackRest keeps full backups by count or by age, not both",
    );
    let text = pgbackrest_inventory(&PGBACKREST.replace("{count: 7}", "{age: 36h}"));
    rejects(
        &text,
        &value_at(&text, "  retention: "),
        "in whole days: `36h` is not one, give e.g. `2d`",
    );
    let text = pgbackrest_inventory(&format!("{PGBACKREST}  max_rate: 50M\n"));
    rejects(
        &text,
        &value_at(&text, "  max_rate: "),
        "pgBackRest 2.45 has no bandwidth limit",
    );
    let text = pgbackrest_inventory(PGBACKREST).replace(
        "  password: {env: PGHA_REPLICATION_PASSWORD}\n",
        "  password: {env: PGHA_REPLICATION_PASSWORD}\n  archive: {mode: \"on\", command: \"cp %p /srv/wal/%f\"}\n",
    );
    rejects(
        &text,
        &value_at(&text, "  method: "),
        "`method: pgbackrest` archives the WAL itself",
    );
    let text = pgbackrest_inventory(
        &PGBACKREST.replace("repository:\n    host: bk1\n", "repository: {}\n"),
    );
    rejects(
        &text,
        &value_at(&text, "  repository: "),
        "`backups.repository` is empty",
    );
    // A backup host without pgBackRest's repository on it.
    let text = pgbackrest_inventory(BACKUPS);
    rejects(
        &text,
        &value_at(&text, "    role: "),
        "has `role: backup`, a role of the backups component that the inventory's settings do not take",
    );
    // The repository on a data host is fine; on nothing it is not.
    accepts(&format!(
        "{BASE}{}",
        PGBACKREST.replace("host: bk1", "host: pg3")
    ));
}

/// What pgBackRest's settings make of the loaded cluster: the archive command in the
/// replication settings (so the flavour writes it), the hosts that run the job, retention.
mod pgbackrest_settings {
    use std::path::Path;

    use pgha::components::backups::{Backups, RepoRetention};
    use pgha::inventory::{load_str, Inventory};

    fn inventory(backups: &str, extra_host: &str) -> Inventory {
        let text = format!(
            "cluster: {{name: main-db, flavour: streaming}}\npostgres: {{version: 15, superuser_password: {{env: X}}}}\nreplication: {{user: replicator, password: {{env: X}}}}\nhosts:\n  - {{name: pg1, address: 10.0.0.1, role: primary}}\n  - {{name: pg2, address: 10.0.0.2, role: standby}}\n{extra_host}{backups}"
        );
        load_str(Path::new("t.yml"), &text).expect("loads")
    }

    fn backups(inv: &Inventory) -> &Backups {
        inv.components
            .iter()
            .find_map(|c| c.as_any().downcast_ref::<Backups>())
            .expect("backups")
    }

    #[test]
    fn pgbackrest_archives_through_the_cluster_and_runs_on_the_repository_host() {
        let inv = inventory(
            "backups: {method: pgbackrest, repository: {host: bk1}, retention: {age: 14d}}\n",
            "  - {name: bk1, address: 10.0.0.9, role: backup}\n",
        );
        let r = &inv.cluster.replication;
        assert_eq!(r.archive_mode, "on");
        assert_eq!(
            r.archive_command,
            "pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=main-db archive-push %p"
        );
        let b = backups(&inv);
        assert_eq!(b.job_hosts(&inv.cluster), vec!["bk1".to_owned()]);
        assert_eq!(
            b.pgbackrest().map(|p| p.retention),
            Some(RepoRetention::Days(14))
        );
    }

    #[test]
    fn a_shared_path_runs_the_job_on_the_data_hosts_and_basebackup_archives_nothing() {
        let inv = inventory(
            "backups: {method: pgbackrest, repository: {path: /mnt/pgbackrest}}\n",
            "",
        );
        let b = backups(&inv);
        assert_eq!(b.job_hosts(&inv.cluster), vec!["pg1", "pg2"]);
        assert_eq!(
            b.pgbackrest().map(|p| p.retention),
            Some(RepoRetention::Count(7))
        );
        let inv = inventory("backups: {method: basebackup}\n", "");
        assert_eq!(inv.cluster.replication.archive_mode, "off");
        assert_eq!(backups(&inv).job_hosts(&inv.cluster), vec!["pg1", "pg2"]);
    }
}

// ---- package sources and extensions -------------------------------------------------------------

/// The base inventory with `tail` appended (its first line is line 34).
fn with_tail(tail: &str) -> String {
    format!("{BASE}{tail}")
}

fn test_key() -> String {
    root()
        .join("tests/fixtures/keys/test-repository.asc")
        .display()
        .to_string()
}

#[test]
fn package_sources_and_extensions_that_are_right_pass() {
    accepts(&with_tail(&format!(
        "package_sources:
  - name: local
    uris: file:/srv/repo
    suites: ./
    key: {key}
    pin: {{pgha-test: 1.0-1}}
extensions:
  - name: pg_cron
    databases: [app]
    package: postgresql-15-cron
    preload: true
    parameters: {{cron.database_name: app}}
  - preset: timescaledb
    database: app
    key: {key}
    parameters: {{timescaledb.telemetry_level: \"off\"}}
",
        key = test_key()
    )));
}

#[test]
fn a_package_sources_missing_key_file_is_named_with_its_line() {
    rejects(
        &with_tail(
            "package_sources:
  - name: local
    uris: [http://10.0.0.1/repo]
    suites: [bookworm]
    components: [main]
    key: keys/missing.asc
",
        ),
        "39:10",
        "cannot read the key file",
    );
}

#[test]
fn a_key_file_that_is_no_public_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.asc");
    std::fs::write(&bad, "-----BEGIN PGP PRIVATE KEY BLOCK-----\nxx\n").expect("write");
    rejects(
        &with_tail(&format!(
            "package_sources:\n  - name: local\n    uris: http://10.0.0.1/repo\n    suites: bookworm\n    components: main\n    key: {}\n",
            bad.display()
        )),
        "39:10",
        "a private key: give the public key",
    );
}

#[test]
fn a_package_source_name_that_is_no_file_name_is_refused() {
    rejects(
        &with_tail(&format!(
            "package_sources:\n  - name: Local_Repo\n    uris: http://10.0.0.1/repo\n    suites: bookworm\n    components: main\n    key: {}\n",
            test_key()
        )),
        "35:11",
        "`Local_Repo` is not a package source name",
    );
}

#[test]
fn a_flat_repository_has_no_components() {
    rejects(
        &with_tail(&format!(
            "package_sources:\n  - name: local\n    uris: file:/srv/repo\n    suites: ./\n    components: [main]\n    key: {}\n",
            test_key()
        )),
        "38:17",
        "a flat repository",
    );
}

#[test]
fn an_extension_parameter_with_another_prefix_is_refused() {
    rejects(
        &with_tail(
            "extensions:
  - name: pg_cron
    database: app
    preload: true
    parameters:
      cron.database_name: app
      timescaledb.max_background_workers: 8
",
        ),
        "40:7",
        "`timescaledb.max_background_workers` is not a parameter of pg_cron: its parameters start with `pg_cron.` or `cron.`",
    );
}

#[test]
fn a_server_parameter_under_an_extension_is_refused() {
    rejects(
        &with_tail(
            "extensions:\n  - name: pg_cron\n    database: app\n    parameters: {work_mem: 64MB}\n",
        ),
        "37:18",
        "`work_mem` is not a parameter of pg_cron: an extension's parameters are dotted",
    );
}

#[test]
fn an_extension_in_an_undeclared_database_is_refused() {
    rejects(
        &with_tail("extensions:\n  - name: pg_cron\n    database: reports\n"),
        "36:15",
        "`reports` is not a database of the inventory",
    );
}

#[test]
fn the_timescaledb_preset_needs_its_repository_key() {
    rejects(
        &with_tail("extensions:\n  - preset: timescaledb\n    database: app\n"),
        "35:5",
        "missing required key `extensions[0].key`",
    );
    rejects(
        &with_tail("extensions:\n  - preset: timescale\n    database: app\n"),
        "35:13",
        "`timescale` is not a valid `extensions[0].preset`",
    );
}

#[test]
fn an_extension_parameter_in_postgres_parameters_needs_its_extension() {
    rejects(
        &with_parameter("cron.database_name: app"),
        "10:5",
        "`cron.database_name` is a parameter of `cron`, which the inventory does not declare",
    );
    // Declared under `extensions:`, or its library preloaded: accepted.
    accepts(&format!(
        "{}extensions:\n  - name: pg_cron\n    database: app\n    preload: true\n",
        with_parameter("cron.database_name: app")
    ));
    accepts(&with_parameter(
        "shared_preload_libraries: pg_stat_statements\n    pg_stat_statements.max: \"10000\"",
    ));
}

#[test]
fn pg_cron_is_created_only_in_its_cron_database() {
    rejects(
        &with_tail("extensions:\n  - name: pg_cron\n    database: app\n    preload: true\n"),
        "36:15",
        "pg_cron is created only in the database cron.database_name names (`postgres`), not in app",
    );
}

/// `decommission:` names hosts that left `hosts:`: one still there, or a staying host's
/// machine under another name, is refused (stopping it would take a member with it).
#[test]
fn decommission_names_only_hosts_that_left() {
    rejects(
        &variant(
            "hosts:\n",
            "decommission:\n  - name: pg2\n    address: 10.0.0.99\nhosts:\n",
        ),
        "25:11",
        "`pg2` is listed under `hosts:` or twice under `decommission:`",
    );
    rejects(
        &variant(
            "hosts:\n",
            "decommission:\n  - name: pg9\n    address: 10.0.0.12\nhosts:\n",
        ),
        "26:14",
        "10.0.0.12 is the address of host `pg2`, which stays in the cluster",
    );
    rejects(
        &variant(
            "hosts:\n",
            "decommission:\n  - name: pg9\n    address: 10.0.0.19\n    wipe_data: please\nhosts:\n",
        ),
        "27:16",
        "wipe_data",
    );
    accepts(&variant(
        "hosts:\n",
        "decommission:\n  - name: pg9\n    address: 10.0.0.19\n    wipe_data: true\nhosts:\n",
    ));
}
