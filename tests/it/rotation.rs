//! A changed password is a planned rotation: plan names it (the role and the secret's label,
//! never a value), apply changes the role on the primary before anything connects with the
//! new password, and replication keeps streaming under a write load. The figures (longest
//! time a standby was not streaming, longest pause between acknowledged writes, how long a
//! stream takes to come back on the new password) are printed for quoting.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::Sandbox;
use crate::load::{app_conninfo, Writer};

/// Which passwords change.
struct Rotate {
    replication: bool,
    app: bool,
    /// repmgr's own role (`repmgr.password`).
    repmgr: bool,
    /// The step with which a standby starts using the new replication password.
    consumer: &'static str,
}

/// What was measured around the apply.
struct Figures {
    /// Per standby: the longest time it was not streaming while apply ran.
    not_streaming: BTreeMap<String, Duration>,
    /// The longest time between two polls: no shorter interval can be seen.
    resolution: Duration,
    /// How often a standby's walsender changed (it reconnected) while apply ran.
    reconnects: usize,
    write_gap: Duration,
    writes: usize,
    apply: Duration,
    /// Once every stream was ended after the apply: until all stream again (new password).
    reconnect: Duration,
}

/// Per standby, from `primary`'s pg_stat_replication: (application_name, walsender pid).
fn streaming(sb: &Sandbox, primary: &str) -> BTreeMap<String, String> {
    sb.psql(
        primary,
        "SELECT application_name, pid FROM pg_stat_replication WHERE state = 'streaming'",
    )
    .lines()
    .filter_map(|l| l.split_once('|'))
    .map(|(name, pid)| (name.to_owned(), pid.to_owned()))
    .collect()
}

/// Poll the primary every ~200 ms until `stop`: per standby, the longest interval between two
/// sightings of it streaming (the interval it was not), and how often its walsender changed.
fn watch_streams(
    sb: &Sandbox,
    primary: &str,
    standbys: &[&str],
    stop: &AtomicBool,
) -> (BTreeMap<String, Duration>, usize, Duration) {
    let mut last_seen: BTreeMap<String, (Instant, String)> = BTreeMap::new();
    let mut longest: BTreeMap<String, Duration> = BTreeMap::new();
    let mut reconnects = 0;
    let mut resolution = Duration::ZERO;
    let started = Instant::now();
    let mut previous = started;
    loop {
        let now = Instant::now();
        resolution = resolution.max(now.duration_since(previous));
        previous = now;
        let seen = streaming(sb, primary);
        for s in standbys {
            let entry = longest.entry((*s).to_owned()).or_default();
            match (seen.get(*s), last_seen.get(*s)) {
                (Some(pid), Some((at, last_pid))) => {
                    *entry = (*entry).max(now.duration_since(*at));
                    if pid != last_pid {
                        reconnects += 1;
                    }
                    last_seen.insert((*s).to_owned(), (now, pid.clone()));
                }
                (Some(pid), None) => {
                    *entry = (*entry).max(now.duration_since(started));
                    last_seen.insert((*s).to_owned(), (now, pid.clone()));
                }
                (None, Some((at, _))) => *entry = (*entry).max(now.duration_since(*at)),
                (None, None) => *entry = now.duration_since(started),
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (longest, reconnects, resolution)
}

/// A new value for one of the sandbox's passwords (what pgha's runs see from now on; the
/// sandbox keeps checking its runs for the replaced one too).
fn set_env(sb: &mut Sandbox, name: &str, value: &str) {
    let slot = sb
        .env
        .iter_mut()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("{name} in the sandbox's env.sh"));
    slot.1 = value.to_owned();
}

/// Converged `sb` (primary `primary`) under a write load: change the passwords, plan, apply,
/// then prove replication and writes, and the order the steps ran in.
fn rotate_under_load(
    sb: &mut Sandbox,
    primary: &str,
    standbys: &[&str],
    rotate: Rotate,
) -> Figures {
    let hosts: Vec<&str> = std::iter::once(primary)
        .chain(standbys.iter().copied())
        .collect();
    let (conninfo, old_app) = app_conninfo(sb, &hosts);
    // The application's secret store: the current password first, then the previous one, as
    // an application holds both while a rotation is under way (a role has one password: the
    // application cannot know the moment it changes).
    let passwords = Arc::new(Mutex::new(vec![old_app.clone()]));
    let writer = Writer::start_rotating(&conninfo, passwords.clone());
    sb.wait_until("every standby streams", Duration::from_secs(30), || {
        streaming(sb, primary).len() == standbys.len()
    });
    std::thread::sleep(Duration::from_secs(2));

    if rotate.replication {
        set_env(sb, "PGHA_REPLICATION_PASSWORD", "rotated-Repl-9f3c2a71");
    }
    if rotate.repmgr {
        set_env(sb, "PGHA_REPMGR_PASSWORD", "rotated-Repmgr-7d0e6b13");
    }
    if rotate.app {
        set_env(sb, "PGHA_APP_PASSWORD", "rotated-App-5be81d04");
        passwords
            .lock()
            .expect("passwords")
            .insert(0, sb.env_value("PGHA_APP_PASSWORD"));
    }

    // plan says what rotates, by role and secret label.
    let plan = sb.pgha(["plan", "--detailed-exitcode"]).status(2).run();
    if rotate.replication {
        assert!(
            plan.stdout
                .contains("password rotation (replication.password)")
                && plan
                    .stdout
                    .contains("password rotation: replication.password"),
            "{}",
            plan.stdout
        );
    }
    if rotate.app {
        assert!(
            plan.stdout.contains(
                "update app (application roles) — password rotation (users[app].password)"
            ),
            "{}",
            plan.stdout
        );
    }

    if rotate.repmgr {
        assert!(
            plan.stdout.contains("password rotation (repmgr.password)")
                && plan
                    .stdout
                    .contains("password rotation: replication.password, repmgr.password"),
            "{}",
            plan.stdout
        );
    }

    // apply, with the streams watched from beside it.
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (apply, (not_streaming, reconnects, resolution)) = std::thread::scope(|s| {
        let sb: &Sandbox = sb;
        let watcher = s.spawn(|| watch_streams(sb, primary, standbys, &stop));
        let apply = sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        (apply, watcher.join().expect("watcher"))
    });
    let applied = Instant::now();
    let apply_time = applied.duration_since(started);

    // The role changed on the primary before any standby took up the new password.
    if rotate.replication {
        // Progress, one line per change as it is made, goes to stderr.
        let lines: Vec<&str> = apply.stderr.lines().collect();
        let role = lines
            .iter()
            .position(|l| l.contains(&format!("] {primary}: replication role")))
            .unwrap_or_else(|| panic!("no role change:\n{}", apply.stderr));
        let taken_up: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                !l.contains(": waiting for ")
                    && standbys
                        .iter()
                        .any(|s| l.contains(&format!("] {s}: {}:", rotate.consumer)))
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(taken_up.len(), standbys.len(), "{}", apply.stderr);
        assert!(
            taken_up.iter().all(|&t| t > role),
            "a standby took up the new password before the role had it:\n{}",
            apply.stderr
        );
    }

    // The new replication password works: every stream ended, each comes back on it.
    let ended = Instant::now();
    sb.psql(
        primary,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_replication",
    );
    sb.wait_until(
        "every standby streams again on the new password",
        Duration::from_secs(30),
        || {
            let now = streaming(sb, primary);
            standbys.iter().all(|s| now.contains_key(*s))
        },
    );
    let reconnect = ended.elapsed();

    std::thread::sleep(Duration::from_secs(2));
    let acked = writer.stop();
    let gap = acked.longest_gap(started, applied);
    let missing = acked.missing_on(sb, primary);
    assert!(
        missing.is_empty(),
        "acknowledged writes missing on {primary}: {:?}",
        missing.iter().map(|(id, _)| id).collect::<Vec<_>>()
    );
    assert!(
        acked.after(applied) > 0,
        "the application writes with the new password"
    );
    for s in standbys {
        sb.wait_until(
            &format!("{s} has every acknowledged write"),
            Duration::from_secs(30),
            || acked.missing_on(sb, s).is_empty(),
        );
    }
    sb.assert_plan_clean();
    // Every pgha run of a sandbox is checked for its secrets, the replaced ones too.
    sb.pgha(["status"]).run();
    sb.pgha(["verify"]).stdout_has("0 failed.").run();
    Figures {
        not_streaming,
        resolution,
        reconnects,
        write_gap: gap,
        writes: acked.ids.len(),
        apply: apply_time,
        reconnect,
    }
}

fn report(flavour: &str, f: &Figures) {
    for (standby, d) in &f.not_streaming {
        eprintln!(
            "{flavour} rotation: {standby} longest not streaming during apply {:.2} s",
            d.as_secs_f64()
        );
    }
    eprintln!(
        "{flavour} rotation: streams polled every {:.2} s at worst; {} walsender reconnects during apply",
        f.resolution.as_secs_f64(),
        f.reconnects
    );
    eprintln!(
        "{flavour} rotation: apply {:.1} s, longest write gap {:.2} s over {} writes, streams back on the new password {:.2} s after they were ended",
        f.apply.as_secs_f64(),
        f.write_gap.as_secs_f64(),
        f.writes,
        f.reconnect.as_secs_f64()
    );
}

fn assert_figures(f: &Figures) {
    // Seconds, not a stream that stays down (the poll itself takes up to a second when the
    // machine is loaded); the write gap, reported, is bounded loosely: a loaded machine
    // stretches it (about half a second on a quiet one).
    for (standby, d) in &f.not_streaming {
        assert!(
            *d < Duration::from_secs(10),
            "{standby} was not streaming for {d:?}"
        );
    }
    assert!(
        f.write_gap < Duration::from_secs(15),
        "write gap {:?}",
        f.write_gap
    );
    assert!(
        f.reconnect < Duration::from_secs(10),
        "streams back after {:?}",
        f.reconnect
    );
}

/// Streaming, 3 hosts: the replication and the application's passwords rotate together.
#[test]
fn streaming_password_rotation_under_load() {
    let mut sb = Sandbox::up("srotate", crate::cluster::Options::packaged(3));
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let f = rotate_under_load(
        &mut sb,
        "pg1",
        &["pg2", "pg3"],
        Rotate {
            replication: true,
            app: true,
            repmgr: false,
            consumer: "replication password file",
        },
    );
    report("streaming", &f);
    assert_figures(&f);
}

/// Patroni, 3 members: the replication password rotates; Patroni is reloaded with it only
/// once the leader's role has it.
#[test]
fn patroni_replication_password_rotation_under_load() {
    let mut sb = Sandbox::patroni("protate", 3);
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let f = rotate_under_load(
        &mut sb,
        "pg1",
        &["pg2", "pg3"],
        Rotate {
            replication: true,
            app: false,
            repmgr: false,
            consumer: "reload Patroni",
        },
    );
    report("patroni", &f);
    assert_figures(&f);

    // Patroni's own secrets: the superuser's and the rewind role's passwords change on the
    // leader first, then Patroni is reloaded with them; the REST API takes its new password
    // on the reload, and pgha's own requests read it where Patroni does.
    for (name, value) in [
        ("PGHA_SUPERUSER_PASSWORD", "rotated-Super-4c1d9e72"),
        ("PGHA_REWIND_PASSWORD", "rotated-Rewind-81fa0c55"),
        ("PGHA_RESTAPI_PASSWORD", "rotated-Rest-2e6b7d90"),
    ] {
        set_env(&mut sb, name, value);
    }
    let plan = sb.pgha(["plan", "--detailed-exitcode"]).status(2).run();
    for label in [
        "password rotation (postgres.superuser_password)",
        "password rotation (patroni.rewind.password)",
    ] {
        assert!(plan.stdout.contains(label), "{label}:\n{}", plan.stdout);
    }
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    sb.assert_plan_clean();
    let login = |user: &str, env: &str, host: &str| {
        sb.sh(
            "pg2",
            &format!(
                "PGPASSWORD='{}' psql -X -At \"host={} user={user} dbname=postgres sslmode=verify-full sslrootcert={}\" -c 'SELECT 1' 2>&1 || true",
                sb.env_value(env),
                sb.ip(host),
                crate::tls::PATRONI_CA
            ),
        )
    };
    assert_eq!(login("rewind", "PGHA_REWIND_PASSWORD", "pg1").trim(), "1");
    let superuser = sb.sh(
        "pg1",
        &format!(
            "PGPASSWORD='{}' psql -X -At -h 127.0.0.1 -U postgres -c 'SELECT 1' 2>&1 || true",
            sb.env_value("PGHA_SUPERUSER_PASSWORD")
        ),
    );
    assert_eq!(superuser.trim(), "1");
    assert_eq!(
        crate::tls::rest_status(&sb, "pg3", "pg2", "POST", "/restart", true),
        "200"
    );
    // A rewind after this would connect with what Patroni now has: check it has it.
    let yml = sb.sh("pg2", "cat /etc/patroni/15-main.yml");
    assert!(yml.contains("rotated-Rewind-81fa0c55"));
    // Neither the new nor the replaced passwords showed in any run (the sandbox checks each).
    sb.pgha(["verify"]).stdout_has(", 0 failed.").run();
}

/// repmgr, 2 data nodes and the witness: the replication and repmgr's passwords rotate;
/// every node's password file is written once the primary's roles have them.
#[test]
fn repmgr_password_rotation_under_load() {
    let mut sb = Sandbox::repmgr("rrotate", 2);
    sb.pgha(["apply", "-y"]).stdout_has("0 failed.").run();
    let f = rotate_under_load(
        &mut sb,
        "pg1",
        &["pg2"],
        Rotate {
            replication: true,
            app: false,
            repmgr: true,
            consumer: "password file",
        },
    );
    report("repmgr", &f);
    assert_figures(&f);
}
