//! `postgres.package_version`: one exact Debian version of the server's packages.
//!
//! Exact, not a pattern (`15.20*`): `apt-get install NAME=VERSION` takes exact versions, and a
//! plan must name the version it installs; a pattern would be apt pinning, which also steers
//! every other apt run on the host.

/// The upstream part of a Debian version (`15.20` of `1:15.20-0+deb12u1`).
pub fn upstream(version: &str) -> &str {
    let no_epoch = version.split_once(':').map_or(version, |(_, v)| v);
    no_epoch.rsplit_once('-').map_or(no_epoch, |(u, _)| u)
}

/// Whether `version` is a Debian version of PostgreSQL `major`, or why not.
pub fn package_version(version: &str, major: u32) -> Result<(), String> {
    if version.contains(['*', '?', '[']) {
        return Err(format!(
            "`{version}` is a pattern: give the exact Debian version (`apt-cache policy postgresql-{major}` lists them, e.g. `{major}.20-0+deb12u1`)"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
    if version.is_empty() || !version.chars().all(allowed) {
        return Err(format!("`{version}` is not a Debian package version"));
    }
    let up = upstream(version);
    let minor = up.strip_prefix(&format!("{major}."));
    match minor {
        Some(m) if !m.is_empty() && m.chars().take_while(char::is_ascii_digit).count() > 0 => {
            Ok(())
        }
        _ => Err(format!(
            "`{version}` is not a minor version of PostgreSQL {major} (postgres.version): a minor upgrade keeps the major version; see docs/major-upgrade.md"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_versions_of_the_same_major_only() {
        assert!(package_version("15.20-0+deb12u1", 15).is_ok());
        assert!(package_version("15.8-1.pgdg120+1", 15).is_ok());
        assert!(package_version("1:15.20-0+deb12u1", 15).is_ok());
        assert!(package_version("15.20*", 15)
            .unwrap_err()
            .contains("is a pattern"));
        assert!(package_version("16.4-1", 15)
            .unwrap_err()
            .contains("not a minor version of PostgreSQL 15"));
        assert!(package_version("15", 15).is_err());
        assert!(package_version("15.20 ; rm", 15).is_err());
        assert_eq!(upstream("1:15.20-0+deb12u1"), "15.20");
        assert_eq!(upstream("15.20"), "15.20");
    }
}
