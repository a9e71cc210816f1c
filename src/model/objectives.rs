//! Declared objectives (`objectives:` in the inventory): how long a failover may take (RTO)
//! and how much acknowledged work it may lose (RPO). Flavours turn them into their own
//! settings; this module only says what the DBA declared and how to read and write it.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Objectives {
    /// The longest time from the primary's loss to writes accepted again through the route.
    pub rto: Option<Duration>,
    pub rpo: Option<Rpo>,
}

/// How much acknowledged WAL a failover may lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Rpo {
    /// No acknowledged write may be lost.
    Zero,
    Bytes(u64),
}

impl fmt::Display for Rpo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rpo::Zero => f.write_str("0"),
            Rpo::Bytes(n) => f.write_str(&show_size(*n)),
        }
    }
}

/// PostgreSQL's time units, in milliseconds.
const TIME_UNITS: [(&str, u64); 4] = [("ms", 1), ("s", 1000), ("min", 60_000), ("h", 3_600_000)];
/// PostgreSQL's memory units (powers of 1024, case-sensitive as the server reads them).
const SIZE_UNITS: [(&str, u64); 5] = [
    ("B", 1),
    ("kB", 1 << 10),
    ("MB", 1 << 20),
    ("GB", 1 << 30),
    ("TB", 1 << 40),
];

/// `"30 s"` -> (30, "s"); the number must be a whole one.
fn split(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number = text[..end].parse().ok()?;
    Some((number, text[end..].trim()))
}

/// `30s`, `2min`, `1500ms`, `1h`, or plain seconds (`30`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("`{text}` is not a duration: a whole number of seconds or one with a unit (ms, s, min, h), e.g. `30s` or `2min`")
    };
    let (number, unit) = split(text).ok_or_else(bad)?;
    let ms = if unit.is_empty() {
        number.checked_mul(1000)
    } else {
        let (_, factor) = TIME_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .ok_or_else(bad)?;
        number.checked_mul(*factor)
    };
    ms.map(Duration::from_millis).ok_or_else(bad)
}

/// `1MB`, `512kB`, `16 MB`, or plain bytes (`0`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("`{text}` is not a size: a whole number of bytes or one with a unit (B, kB, MB, GB, TB, case-sensitive as in PostgreSQL), e.g. `1MB`")
    };
    let (number, unit) = split(text).ok_or_else(bad)?;
    if unit.is_empty() {
        return Ok(number);
    }
    let (_, factor) = SIZE_UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .ok_or_else(bad)?;
    number.checked_mul(*factor).ok_or_else(bad)
}

/// `0` (nothing may be lost) or a size of WAL.
pub fn parse_rpo(text: &str) -> Result<Rpo, String> {
    Ok(match parse_size(text)? {
        0 => Rpo::Zero,
        n => Rpo::Bytes(n),
    })
}

/// A duration as the inventory would write it: `30s`, `2min`, `1500ms`.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 60_000 == 0 && ms >= 120_000 {
        format!("{}min", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A size in the largest unit that writes it whole: `1MB`, `1536kB`.
pub fn show_size(n: u64) -> String {
    SIZE_UNITS
        .iter()
        .rev()
        .find(|(_, f)| n >= *f && n % f == 0)
        .map_or_else(|| n.to_string(), |(u, f)| format!("{}{u}", n / f))
}

/// Whole seconds, rounded up (a worst case is never rounded down).
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_durations_as_postgresql_writes_them() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1500 ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "30 sec", "-3s", "1.5s", "30S"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(show_duration(Duration::from_secs(30)), "30s");
        assert_eq!(show_duration(Duration::from_secs(120)), "2min");
        assert_eq!(show_duration(Duration::from_secs(90)), "90s");
        assert_eq!(show_duration(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn reads_sizes_and_rpo() {
        assert_eq!(parse_rpo("0"), Ok(Rpo::Zero));
        assert_eq!(parse_rpo("0MB"), Ok(Rpo::Zero));
        assert_eq!(parse_rpo("1MB"), Ok(Rpo::Bytes(1 << 20)));
        assert_eq!(parse_rpo("16 kB"), Ok(Rpo::Bytes(16 << 10)));
        assert_eq!(parse_rpo("4096"), Ok(Rpo::Bytes(4096)));
        for bad in ["1mb", "1 MiB", "x", "-1"] {
            assert!(parse_rpo(bad).is_err(), "{bad}");
        }
        assert_eq!(show_size(1 << 20), "1MB");
        assert_eq!(show_size(1536 << 10), "1536kB");
        assert_eq!(show_size(100), "100B");
    }
}
