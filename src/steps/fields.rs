//! The argument names of each step kind, read from the argument structs themselves, so a
//! playbook's unknown argument is reported with its line before anything is rendered.
//!
//! serde's derive hands a struct's field names to `deserialize_struct`; a deserializer that
//! only records them gives us the list without writing it twice.

use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::steps::{
    command, file, package, patroni_dcs, pg_clone, pg_database, pg_extension, pg_reload, pg_role,
    pg_slot, pg_slots_prune, service, wait_for,
};

#[derive(Debug)]
struct Captured(&'static [&'static str]);

impl std::fmt::Display for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fields captured")
    }
}
impl std::error::Error for Captured {}
impl de::Error for Captured {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        Captured(&[])
    }
}

struct FieldNames;

impl<'de> Deserializer<'de> for FieldNames {
    type Error = Captured;
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _v: V,
    ) -> Result<V::Value, Captured> {
        Err(Captured(fields))
    }
    fn deserialize_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value, Captured> {
        Err(Captured(&[]))
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(FieldNames) {
        Err(Captured(f)) => f,
        Ok(_) => &[],
    }
}

/// The step kinds a playbook may name (plus `template`, which expands into `file`).
pub const KINDS: [&str; 14] = [
    "package",
    "template",
    "file",
    "service",
    "pg_role",
    "pg_database",
    "pg_extension",
    "pg_slot",
    "pg_slots_prune",
    "pg_clone",
    "pg_reload_or_restart",
    "command",
    "wait_for",
    "patroni_dcs",
];

/// Argument names of a kind; `None` for an unknown kind.
pub fn arguments(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "package" => fields_of::<package::Package>(),
        "template" => &file::TEMPLATE_ARGS,
        "file" => fields_of::<file::File>(),
        "service" => fields_of::<service::Service>(),
        "pg_role" => fields_of::<pg_role::PgRole>(),
        "pg_database" => fields_of::<pg_database::PgDatabase>(),
        "pg_extension" => fields_of::<pg_extension::PgExtension>(),
        "pg_slot" => fields_of::<pg_slot::PgSlot>(),
        "pg_slots_prune" => fields_of::<pg_slots_prune::PgSlotsPrune>(),
        "pg_clone" => fields_of::<pg_clone::PgClone>(),
        "pg_reload_or_restart" => fields_of::<pg_reload::PgReloadOrRestart>(),
        "command" => fields_of::<command::Command>(),
        "wait_for" => fields_of::<wait_for::WaitFor>(),
        "patroni_dcs" => fields_of::<patroni_dcs::PatroniDcs>(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::{arguments, KINDS};

    #[test]
    fn every_kind_lists_its_arguments() {
        for kind in KINDS {
            let args = arguments(kind).expect("known kind");
            assert!(!args.is_empty(), "{kind} has no arguments listed");
        }
        assert!(arguments("package").expect("package").contains(&"names"));
        assert!(arguments("nope").is_none());
    }
}
