//! Numbers as people read them in plans, checks and reports.

/// `512 B`, `35.0 MB`, `1.2 GB` (1024-based, PostgreSQL's unit names).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_in_postgresql_units() {
        assert_eq!(super::size(0), "0 B");
        assert_eq!(super::size(1023), "1023 B");
        assert_eq!(super::size(41_943_040), "40.0 MB");
        assert_eq!(super::size(3 << 30), "3.0 GB");
    }
}
