//! `shared_preload_libraries` gathered from every source that needs a library loaded at
//! server start, in one stable order:
//!
//! 1. the user's own `postgres.parameters.shared_preload_libraries`, as written;
//! 2. each declared extension's library, in the order of `extensions:`;
//! 3. the flavour's (repmgr's `repmgr`).
//!
//! Each library once, at its first place. The user's come first so that what a DBA wrote
//! reads the same in the server; the flavour's last, where pgha always put `repmgr`, so that
//! a cluster built before extensions existed keeps its value (and is not restarted for a
//! reordering).

/// The libraries of a `shared_preload_libraries` value: comma separated, quotes and spaces
/// around each dropped, empty ones left out.
pub fn parse(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().trim_matches(['\'', '"']).trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `libraries` added after the ones `value` already names (each once): the value to write.
pub fn append(value: Option<&str>, libraries: &[String]) -> String {
    let mut merged = value.map(parse).unwrap_or_default();
    for l in libraries {
        if !merged.contains(l) {
            merged.push(l.clone());
        }
    }
    merged.join(",")
}

#[cfg(test)]
mod tests {
    use super::{append, parse};

    #[test]
    fn parses_a_list_written_with_quotes_and_spaces() {
        assert_eq!(
            parse(" 'pg_stat_statements', \"pg_cron\" ,,"),
            ["pg_stat_statements", "pg_cron"]
        );
        assert!(parse("").is_empty());
    }

    #[test]
    fn the_users_come_first_then_the_extensions_then_the_flavours_each_once() {
        let user = "pg_stat_statements, pg_cron";
        let with_extensions = append(Some(user), &["timescaledb".into(), "pg_cron".into()]);
        assert_eq!(with_extensions, "pg_stat_statements,pg_cron,timescaledb");
        let with_flavour = append(Some(&with_extensions), &["repmgr".into()]);
        assert_eq!(
            with_flavour,
            "pg_stat_statements,pg_cron,timescaledb,repmgr"
        );
        // The same inputs give the same value every time (no restart for a reordering).
        assert_eq!(
            append(Some(&with_flavour), &["repmgr".into()]),
            with_flavour
        );
        assert_eq!(append(None, &["repmgr".into()]), "repmgr");
    }
}
