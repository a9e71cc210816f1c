//! A client's write load for failover tests: sequential ids, one INSERT per connection
//! through a multi-host connection string (libpq finds the primary), as an application that
//! reconnects after a failure. What it was told was committed is checked against the new
//! primary afterwards.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cluster::Sandbox;

pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(i64, Instant)>>,
}

/// What the load saw.
pub struct Acked {
    /// Every acknowledged id and when the acknowledgement came.
    pub ids: Vec<(i64, Instant)>,
}

/// The application's connection string over `hosts` and its password.
pub fn app_conninfo(sb: &Sandbox, hosts: &[&str]) -> (String, String) {
    let addresses: Vec<String> = hosts.iter().map(|h| sb.ip(h)).collect();
    let password = sb.env_value("PGHA_APP_PASSWORD");
    (
        format!(
            "host={} port=5432 dbname=appdb user=app target_session_attrs=read-write connect_timeout=2",
            addresses.join(",")
        ),
        password,
    )
}

/// One statement as a client of the cluster: a new connection through `conninfo` (libpq
/// picks the host), true when it was acknowledged.
pub fn client_sql(conninfo: &str, password: &str, sql: &str) -> bool {
    std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            conninfo,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Writer {
    /// Create the table and start writing.
    pub fn start(conninfo: &str, password: &str) -> Writer {
        Writer::start_rotating(conninfo, Arc::new(Mutex::new(vec![password.to_owned()])))
    }

    /// Start writing with the passwords the application holds, tried in order on each new
    /// connection: during a password rotation, the new one first, then the previous one.
    pub fn start_rotating(conninfo: &str, passwords: Arc<Mutex<Vec<String>>>) -> Writer {
        let first = passwords.lock().expect("passwords")[0].clone();
        assert!(
            client_sql(
                conninfo,
                &first,
                "CREATE TABLE IF NOT EXISTS writes (id bigint PRIMARY KEY, at timestamptz DEFAULT now())"
            ),
            "the app user can write"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let conninfo = conninfo.to_owned();
        let thread = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut id = 0i64;
            while !flag.load(Ordering::Relaxed) {
                id += 1;
                let sql = format!("INSERT INTO writes (id) VALUES ({id})");
                let held = passwords.lock().map(|p| p.clone()).unwrap_or_default();
                if held.iter().any(|p| client_sql(&conninfo, p, &sql)) {
                    acked.push((id, Instant::now()));
                } else {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            acked
        });
        Writer { stop, thread }
    }

    pub fn stop(self) -> Acked {
        self.stop.store(true, Ordering::Relaxed);
        Acked {
            ids: self.thread.join().expect("writer"),
        }
    }
}

impl Acked {
    pub fn before(&self, at: Instant) -> usize {
        self.ids.iter().filter(|(_, t)| *t < at).count()
    }

    pub fn after(&self, at: Instant) -> usize {
        self.ids.iter().filter(|(_, t)| *t >= at).count()
    }

    /// The longest pause between two acknowledged writes around `crash` (an INSERT in flight
    /// when the crash lands may still be acknowledged just after it).
    pub fn gap_around(&self, crash: Instant) -> Duration {
        self.ids
            .windows(2)
            .filter(|w| w[1].1 + Duration::from_secs(2) >= crash)
            .map(|w| w[1].1.duration_since(w[0].1))
            .max()
            .unwrap_or_default()
    }

    /// The longest pause between two acknowledged writes that ends within `[from, to]`.
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        self.ids
            .windows(2)
            .filter(|w| w[1].1 >= from && w[0].1 <= to)
            .map(|w| w[1].1.duration_since(w[0].1))
            .max()
            .unwrap_or_default()
    }

    /// Acknowledged ids that `host` does not have, with when each was acknowledged.
    pub fn missing_on(&self, sb: &Sandbox, host: &str) -> Vec<(i64, Instant)> {
        let present: BTreeSet<i64> = sb
            .sh(
                host,
                "cd / && runuser -u postgres -- psql -X -At -d appdb -c 'SELECT id FROM writes'",
            )
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        self.ids
            .iter()
            .filter(|(id, _)| !present.contains(id))
            .copied()
            .collect()
    }
}
