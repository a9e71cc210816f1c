//! PostgreSQL 15's own list of server parameters (from `pg_settings` of a real server, see
//! `data/gen_pg15_settings.sh`) and a checker for values written in an inventory.
//!
//! The checker follows the server's own parsing rules (guc.c): booleans by their accepted
//! spellings, integers and reals with optional units converted to the parameter's base unit
//! and compared against its range, enums case-insensitively.

use std::collections::BTreeMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("../../data/pg15_settings.tsv");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Integer,
    Real,
    Enum,
    String,
}

/// When a change to the parameter takes effect (`pg_settings.context`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Read-only: compiled in or set by initdb.
    Internal,
    /// Needs a server restart.
    Postmaster,
    /// A reload is enough (sighup, superuser-backend, backend, superuser, user).
    Reload,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub context: Context,
    pub unit: &'static str,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub enumvals: Vec<&'static str>,
}

fn table() -> &'static BTreeMap<String, Param> {
    static TABLE_CELL: OnceLock<BTreeMap<String, Param>> = OnceLock::new();
    TABLE_CELL.get_or_init(|| {
        TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(parse_row)
            .map(|p| (p.name.to_ascii_lowercase(), p))
            .collect()
    })
}

fn parse_row(line: &'static str) -> Option<Param> {
    let f: Vec<&'static str> = line.split('\t').collect();
    if f.len() != 7 {
        return None;
    }
    let kind = match f[1] {
        "bool" => Kind::Bool,
        "integer" => Kind::Integer,
        "real" => Kind::Real,
        "enum" => Kind::Enum,
        _ => Kind::String,
    };
    let context = match f[2] {
        "internal" => Context::Internal,
        "postmaster" => Context::Postmaster,
        _ => Context::Reload,
    };
    Some(Param {
        name: f[0],
        kind,
        context,
        unit: f[3],
        min: f[4].parse().ok(),
        max: f[5].parse().ok(),
        enumvals: if f[6].is_empty() {
            Vec::new()
        } else {
            f[6].split(',').collect()
        },
    })
}

/// Look a parameter up the way PostgreSQL does: case-insensitively.
pub fn lookup(name: &str) -> Option<&'static Param> {
    table().get(&name.to_ascii_lowercase())
}

pub fn names() -> impl Iterator<Item = &'static str> {
    table().values().map(|p| p.name)
}

/// Custom (extension) parameters have a dot: `pg_stat_statements.max`. PostgreSQL accepts
/// any such name as a placeholder, so do we.
pub fn is_custom(name: &str) -> bool {
    name.contains('.')
}

/// A custom parameter name the server takes (`valid_custom_variable_name`): two or more
/// simple identifiers joined by dots, each a letter or `_` followed by letters, digits, `_`
/// or `$`.
pub fn valid_custom_name(name: &str) -> bool {
    let identifier = |part: &str| {
        part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    name.split('.').count() >= 2 && name.split('.').all(identifier)
}

/// The server's own value of a parameter pgha's rules need when the inventory leaves it out
/// (PostgreSQL 15's boot values).
pub fn default_value(name: &str) -> Option<&'static str> {
    Some(match name {
        "max_connections" => "100",
        "superuser_reserved_connections" => "3",
        "autovacuum_max_workers" => "3",
        "max_worker_processes" => "8",
        _ => return None,
    })
}

/// A numeric value in the parameter's base unit (`1GB` of shared_buffers is 131072 pages).
pub fn number(param: &Param, value: &str) -> Option<f64> {
    in_base_units(param, value)
}

/// Why a value does not fit the parameter, as a sentence for the user.
pub fn check_value(param: &Param, value: &str) -> Result<(), String> {
    match param.kind {
        Kind::Bool => parse_bool(value).map(|_| ()).ok_or_else(|| {
            format!(
                "`{}` is a boolean: use on/off, true/false, yes/no or 1/0, not `{value}`",
                param.name
            )
        }),
        Kind::Enum => {
            if param.enumvals.iter().any(|v| v.eq_ignore_ascii_case(value)) {
                Ok(())
            } else {
                Err(format!(
                    "`{value}` is not a value of `{}`: one of {}",
                    param.name,
                    param.enumvals.join(", ")
                ))
            }
        }
        Kind::Integer | Kind::Real => check_number(param, value),
        Kind::String => Ok(()),
    }
}

/// PostgreSQL's boolean spellings (parse_bool in guc.c), whole words only.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

const MEMORY_UNITS: [(&str, f64); 5] = [
    ("B", 1.0),
    ("kB", 1024.0),
    ("MB", 1024.0 * 1024.0),
    ("GB", 1024.0 * 1024.0 * 1024.0),
    ("TB", 1024.0 * 1024.0 * 1024.0 * 1024.0),
];
const TIME_UNITS: [(&str, f64); 6] = [
    ("us", 0.001),
    ("ms", 1.0),
    ("s", 1000.0),
    ("min", 60_000.0),
    ("h", 3_600_000.0),
    ("d", 86_400_000.0),
];

/// Size in bytes (memory) or milliseconds (time) of one of the parameter's base units.
fn base_unit(unit: &str) -> Option<(bool, f64)> {
    match unit {
        "8kB" => Some((true, 8192.0)),
        "16MB" => Some((true, 16.0 * 1024.0 * 1024.0)),
        _ => MEMORY_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, f)| (true, *f))
            .or_else(|| {
                TIME_UNITS
                    .iter()
                    .find(|(u, _)| *u == unit)
                    .map(|(_, f)| (false, *f))
            }),
    }
}

fn check_number(param: &Param, value: &str) -> Result<(), String> {
    let (number, unit) = split_unit(value);
    let what = if param.kind == Kind::Integer {
        "an integer"
    } else {
        "a number"
    };
    let parsed: f64 = number.parse().map_err(|_| {
        format!(
            "`{}` takes {what}{}, not `{value}`",
            param.name,
            unit_hint(param.unit)
        )
    })?;
    if param.kind == Kind::Integer && unit.is_empty() && number.contains('.') {
        return Err(format!("`{}` takes an integer, not `{value}`", param.name));
    }
    let in_base = if unit.is_empty() {
        parsed
    } else {
        let Some((is_memory, base)) = base_unit(param.unit) else {
            return Err(format!(
                "`{}` takes a plain number without a unit, not `{value}`",
                param.name
            ));
        };
        let table: &[(&str, f64)] = if is_memory {
            &MEMORY_UNITS
        } else {
            &TIME_UNITS
        };
        let Some((_, factor)) = table.iter().find(|(u, _)| *u == unit) else {
            let valid: Vec<&str> = table.iter().map(|(u, _)| *u).collect();
            return Err(format!(
                "`{unit}` is not a unit of `{}`: valid units are {} (case-sensitive)",
                param.name,
                valid.join(", ")
            ));
        };
        parsed * factor / base
    };
    // -1 often means "off/unlimited" and is inside min..max where the server allows it.
    if let (Some(min), Some(max)) = (param.min, param.max) {
        if in_base < min || in_base > max {
            let unit = if param.unit.is_empty() {
                String::new()
            } else {
                format!(" (in units of {})", param.unit)
            };
            return Err(format!(
                "`{value}` is out of range for `{}`: {min} .. {max}{unit}",
                param.name
            ));
        }
    }
    Ok(())
}

fn unit_hint(unit: &str) -> String {
    match base_unit(unit) {
        Some((true, _)) => " with an optional memory unit (B, kB, MB, GB, TB)".to_owned(),
        Some((false, _)) => " with an optional time unit (us, ms, s, min, h, d)".to_owned(),
        None => String::new(),
    }
}

/// Whether two spellings of a value mean the same to the server: `256MB` and `32768` (8kB
/// pages) for shared_buffers, `on` and `true`, `Replica` and `replica`.
pub fn same_value(param: &Param, a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match param.kind {
        Kind::Bool => parse_bool(a).is_some() && parse_bool(a) == parse_bool(b),
        Kind::Enum => a.eq_ignore_ascii_case(b),
        Kind::Integer | Kind::Real => match (in_base_units(param, a), in_base_units(param, b)) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-9 * x.abs().max(1.0),
            _ => false,
        },
        // archive_command reads `(disabled)` while archive_mode is off: the server hides the
        // value, so the file (compared by its own step) is the only truth.
        Kind::String if a == "(disabled)" || b == "(disabled)" => true,
        Kind::String => a.trim_matches('\'') == b.trim_matches('\''),
    }
}

/// The size of one of the parameter's base units and of `unit`, in bytes or milliseconds;
/// None when `unit` is not of the parameter's kind.
fn unit_sizes(param: &Param, unit: &str) -> Option<(f64, f64)> {
    let (is_memory, base) = base_unit(param.unit)?;
    let table: &[(&str, f64)] = if is_memory {
        &MEMORY_UNITS
    } else {
        &TIME_UNITS
    };
    let (_, size) = table.iter().find(|(u, _)| *u == unit)?;
    Some((base, *size))
}

/// A numeric value converted to the parameter's base unit.
fn in_base_units(param: &Param, value: &str) -> Option<f64> {
    let (number, unit) = split_unit(value);
    let number = number.parse::<f64>().ok()?;
    if unit.is_empty() {
        return Some(number);
    }
    let (base, size) = unit_sizes(param, unit)?;
    Some(number * size / base)
}

/// `value`, in the parameter's base unit (as `pg_settings.setting` gives it), written in the
/// unit of `like` (as the user wrote the wanted value): `16384` of shared_buffers is `128MB`
/// beside a wanted `160MB`. None when `like` has no unit or either is not a number.
pub fn in_unit_of(param: &Param, value: &str, like: &str) -> Option<String> {
    let (_, unit) = split_unit(like);
    if unit.is_empty() {
        return None;
    }
    let number = value.trim().parse::<f64>().ok()?;
    let (base, size) = unit_sizes(param, unit)?;
    let converted = number * base / size;
    let text = format!("{converted:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    Some(format!("{text}{unit}"))
}

/// `"256 MB"` -> (`"256"`, `"MB"`).
fn split_unit(value: &str) -> (&str, &str) {
    let text = value.trim();
    let split = text
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || ((*c == '-' || *c == '+') && *i == 0)))
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    (&text[..split], text[split..].trim())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_current_value_is_shown_in_the_unit_the_user_wrote() {
        let sb = super::lookup("shared_buffers").expect("shared_buffers");
        assert_eq!(
            super::in_unit_of(sb, "16384", "160MB").as_deref(),
            Some("128MB")
        );
        assert_eq!(
            super::in_unit_of(sb, "16384", "1GB").as_deref(),
            Some("0.125GB")
        );
        assert_eq!(super::in_unit_of(sb, "16384", "20000"), None);
        let timeout = super::lookup("statement_timeout").expect("statement_timeout");
        assert_eq!(
            super::in_unit_of(timeout, "90000", "2min").as_deref(),
            Some("1.5min")
        );
    }

    use super::{check_value, lookup, Context};

    fn check(name: &str, value: &str) -> Result<(), String> {
        check_value(lookup(name).expect("known parameter"), value)
    }

    #[test]
    fn knows_postgres_15() {
        assert!(lookup("shared_buffers").is_some());
        assert!(lookup("DateStyle").is_some() && lookup("datestyle").is_some());
        assert_eq!(
            lookup("wal_level").map(|p| p.context),
            Some(Context::Postmaster)
        );
        assert_eq!(lookup("work_mem").map(|p| p.context), Some(Context::Reload));
        assert!(lookup("shared_bufers").is_none());
    }

    #[test]
    fn accepts_values_the_server_accepts() {
        for (name, value) in [
            ("shared_buffers", "256MB"),
            ("shared_buffers", "32768"),
            ("max_slot_wal_keep_size", "10GB"),
            ("max_slot_wal_keep_size", "-1"),
            ("log_min_duration_statement", "1s"),
            ("checkpoint_timeout", "5min"),
            ("hot_standby", "on"),
            ("wal_level", "REPLICA"),
            ("checkpoint_completion_target", "0.9"),
            ("vacuum_cost_delay", "2ms"),
            ("search_path", "\"$user\", public"),
        ] {
            assert_eq!(check(name, value), Ok(()), "{name} = {value}");
        }
    }

    #[test]
    fn refuses_values_the_server_refuses() {
        for (name, value) in [
            ("shared_buffers", "256XB"),
            ("shared_buffers", "lots"),
            ("max_connections", "0"),
            ("max_connections", "1.5"),
            ("checkpoint_timeout", "10s"),
            ("hot_standby", "maybe"),
            ("wal_level", "archive"),
            ("max_connections", "100MB"),
        ] {
            assert!(check(name, value).is_err(), "{name} = {value}");
        }
    }
}
