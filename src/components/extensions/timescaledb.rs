//! The TimescaleDB preset: its apt repository (the key is the user's file: the repository is
//! not reachable to check it here), its packages pinned to the last minor release that
//! supports the cluster's PostgreSQL, and the tuning `timescaledb-tune` would write, computed
//! by pgha from the data hosts' memory and CPUs and written like any other parameter (under
//! Patroni through the DCS) instead of editing postgresql.conf in place.
//!
//! The formulas follow timescaledb-tune's default profile (its pkg/pgtune), re-derived:
//! - memory: shared_buffers 1/4 of memory, effective_cache_size 3/4, maintenance_work_mem
//!   128 MB per GB up to 2047 MB, work_mem = memory in GB x (400 MB / connections) /
//!   round(CPUs / 2), at least 64 kB;
//! - parallelism (more than one CPU): timescaledb.max_background_workers 16,
//!   max_worker_processes 3 + 16 + CPUs, max_parallel_workers CPUs,
//!   max_parallel_workers_per_gather round(CPUs / 2);
//! - WAL: wal_buffers 7864 kB per GB below 2 GB of memory, else 16 MB; min/max_wal_size
//!   512 MB / 1 GB (its values without a WAL disk size);
//! - the rest: max_locks_per_transaction 128, 256 from 8 GB, 512 from 16 GB, 1024 from 32 GB;
//!   fixed values for statistics, random_page_cost, checkpoints, autovacuum, lz4 TOAST
//!   compression, jit off, effective_io_concurrency.
//!
//! Left out on purpose: max_connections (timescaledb-tune lowers it to 25 on a 2 GB host;
//! pgha leaves connections to the DBA). work_mem divides by the connections the server will
//! have: the user's max_connections, else PostgreSQL's 100.

use crate::components::package_sources::AptSource;
use crate::model::Hardware;

/// The TimescaleDB release line pinned for a PostgreSQL major version that TimescaleDB no
/// longer supports, as apt's version pattern. 2.28 is the last with PostgreSQL 15 (2.29.0
/// removed it; 2.28's patch releases keep it): the pin follows that line's fixes and never
/// moves past it. None: the versions TimescaleDB still builds need no pin (`version:` sets
/// one).
pub fn pinned_version(pg_version: u32) -> Option<&'static str> {
    match pg_version {
        15 => Some("2.28.*"),
        _ => None,
    }
}

/// Where TimescaleDB publishes its Debian packages.
pub const REPOSITORY: &str = "https://packagecloud.io/timescale/timescaledb/debian/";

/// The extension and its loader (the library `shared_preload_libraries` names, which loads
/// the versioned one a database's extension asks for).
pub fn packages(pg_version: u32) -> Vec<String> {
    vec![
        format!("timescaledb-2-postgresql-{pg_version}"),
        format!("timescaledb-2-loader-postgresql-{pg_version}"),
    ]
}

/// The repository with both packages pinned.
pub fn source(pg_version: u32, suite: &str, key: String, version: Option<&str>) -> AptSource {
    AptSource {
        name: "timescaledb".to_owned(),
        uris: vec![REPOSITORY.to_owned()],
        suites: vec![suite.to_owned()],
        components: vec!["main".to_owned()],
        key,
        pin: match version {
            Some(v) => packages(pg_version)
                .into_iter()
                .map(|p| (p, v.to_owned()))
                .collect(),
            None => Default::default(),
        },
    }
}

const KB: u64 = 1024;
const MB: u64 = 1024 * KB;
const GB: u64 = 1024 * MB;
const TB: u64 = 1024 * GB;

/// Background workers TimescaleDB gets (its scheduler and jobs).
const BACKGROUND_WORKERS: u32 = 16;
/// Processes PostgreSQL itself keeps (checkpointer, WAL writer, autovacuum launcher).
const BUILT_IN_PROCESSES: u32 = 3;

/// The tuned parameters, in timescaledb-tune's order. `connections`: what the server will
/// allow (work_mem is shared among them).
pub fn tune(hardware: Hardware, connections: u64) -> Vec<(String, String)> {
    let memory = hardware.memory;
    let cpus = hardware.cpus;
    let gigs = memory as f64 / GB as f64;
    let half_cpus = (f64::from(cpus) / 2.0).round();
    let mut out: Vec<(&str, String)> = Vec::new();
    out.push(("shared_buffers", pg_bytes(memory / 4)));
    out.push(("effective_cache_size", pg_bytes(memory * 3 / 4)));
    let maintenance = (gigs * 128.0 * MB as f64).min(2047.0 * MB as f64);
    out.push(("maintenance_work_mem", pg_bytes(maintenance as u64)));
    let per_connection = 20.0 * 20.0 * MB as f64 / connections.max(1) as f64;
    let work_mem = ((gigs * per_connection / half_cpus.max(1.0)) as u64).max(64 * KB);
    out.push(("work_mem", pg_bytes(work_mem)));
    if cpus > 1 {
        out.push((
            "timescaledb.max_background_workers",
            BACKGROUND_WORKERS.to_string(),
        ));
        out.push((
            "max_worker_processes",
            (BUILT_IN_PROCESSES + BACKGROUND_WORKERS + cpus).to_string(),
        ));
        out.push(("max_parallel_workers_per_gather", format!("{half_cpus}")));
        out.push(("max_parallel_workers", cpus.to_string()));
    }
    let wal_buffers = if memory < 2 * GB {
        (gigs * 7864.0 * KB as f64) as u64
    } else {
        16 * MB
    };
    out.push(("wal_buffers", pg_bytes(wal_buffers)));
    out.push(("min_wal_size", pg_bytes(512 * MB)));
    out.push(("max_wal_size", pg_bytes(GB)));
    out.push(("default_statistics_target", "100".into()));
    out.push(("random_page_cost", "1.1".into()));
    out.push(("checkpoint_completion_target", "0.9".into()));
    let locks = match memory {
        m if m >= 32 * GB => "1024",
        m if m >= 16 * GB => "512",
        m if m >= 8 * GB => "256",
        _ => "128",
    };
    out.push(("max_locks_per_transaction", locks.into()));
    out.push(("autovacuum_max_workers", "10".into()));
    out.push(("autovacuum_naptime", "10".into()));
    out.push(("default_toast_compression", "lz4".into()));
    out.push(("jit", "off".into()));
    out.push(("effective_io_concurrency", "256".into()));
    out.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Bytes as timescaledb-tune writes them: in the largest unit that fits, one unit lower when
/// that would drop more than a thousandth of it, never below 1kB.
pub fn pg_bytes(bytes: u64) -> String {
    let units = [(TB, "TB", "GB"), (GB, "GB", "MB"), (MB, "MB", "kB")];
    for (size, unit, lower) in units {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if value.fract() > 0.001 {
                format!("{}{lower}", (value * 1024.0) as u64)
            } else {
                format!("{}{unit}", value as u64)
            };
        }
    }
    if bytes >= KB {
        format!("{}kB", (bytes as f64 / KB as f64).round() as u64)
    } else {
        "1kB".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::{pg_bytes, pinned_version, tune, GB, MB};
    use crate::model::Hardware;

    fn value(tuned: &[(String, String)], name: &str) -> Option<String> {
        tuned
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn bytes_are_written_in_the_largest_exact_unit() {
        assert_eq!(pg_bytes(2 * GB), "2GB");
        assert_eq!(pg_bytes(6 * GB), "6GB");
        // 1.5 GB is not a whole number of GB: one unit lower.
        assert_eq!(pg_bytes(3 * GB / 2), "1536MB");
        assert_eq!(pg_bytes(64 * 1024), "64kB");
        assert_eq!(pg_bytes(10), "1kB");
    }

    #[test]
    fn eight_gigabytes_and_four_cpus_tune_as_timescaledb_tune_does() {
        let t = tune(
            Hardware {
                memory: 8 * GB,
                cpus: 4,
            },
            100,
        );
        let expect = [
            ("shared_buffers", "2GB"),
            ("effective_cache_size", "6GB"),
            ("maintenance_work_mem", "1GB"),
            // 8 x 400MB / 100 connections / round(4/2) = 16MB.
            ("work_mem", "16MB"),
            ("timescaledb.max_background_workers", "16"),
            ("max_worker_processes", "23"),
            ("max_parallel_workers_per_gather", "2"),
            ("max_parallel_workers", "4"),
            ("wal_buffers", "16MB"),
            ("max_locks_per_transaction", "256"),
            ("jit", "off"),
        ];
        for (name, wanted) in expect {
            assert_eq!(value(&t, name).as_deref(), Some(wanted), "{name}");
        }
    }

    #[test]
    fn small_hosts_cap_and_floor_as_the_tool_does() {
        // One CPU: no parallelism settings at all.
        let one = tune(
            Hardware {
                memory: GB,
                cpus: 1,
            },
            100,
        );
        assert_eq!(value(&one, "max_worker_processes"), None);
        assert_eq!(value(&one, "shared_buffers").as_deref(), Some("256MB"));
        // Below 2 GB, wal_buffers is 7864 kB per GB.
        assert_eq!(value(&one, "wal_buffers").as_deref(), Some("7864kB"));
        assert_eq!(
            value(&one, "max_locks_per_transaction").as_deref(),
            Some("128")
        );
        // maintenance_work_mem stops at 2047MB; work_mem never below 64kB.
        let big = tune(
            Hardware {
                memory: 64 * GB,
                cpus: 16,
            },
            5000,
        );
        assert_eq!(
            value(&big, "maintenance_work_mem").as_deref(),
            Some("2047MB")
        );
        assert_eq!(
            value(&big, "max_locks_per_transaction").as_deref(),
            Some("1024")
        );
        assert_eq!(value(&big, "max_worker_processes").as_deref(), Some("35"));
        let starved = tune(
            Hardware {
                memory: 256 * MB,
                cpus: 8,
            },
            1000,
        );
        assert_eq!(value(&starved, "work_mem").as_deref(), Some("64kB"));
    }

    #[test]
    fn every_tuned_value_is_one_postgresql_15_takes() {
        for (memory, cpus) in [(GB / 2, 1), (2 * GB, 2), (8 * GB, 4), (96 * GB, 32)] {
            for (name, value) in tune(Hardware { memory, cpus }, 100) {
                if crate::model::pg_params::is_custom(&name) {
                    continue;
                }
                let param = crate::model::pg_params::lookup(&name).expect(&name);
                crate::model::pg_params::check_value(param, &value)
                    .unwrap_or_else(|why| panic!("{name} = {value}: {why}"));
            }
        }
    }

    #[test]
    fn postgresql_15_is_pinned_to_the_last_line_that_supports_it() {
        assert_eq!(pinned_version(15), Some("2.28.*"));
        assert_eq!(pinned_version(16), None);
    }
}
