//! The registry of step kinds: each kind's name, its argument names and how to build it from
//! its rendered arguments. The `kinds!` macro writes a registry from one line per kind (the
//! module that holds it and its type), so a kind is registered in exactly one place.
//!
//! The argument names are read from the argument structs themselves: serde's derive hands a
//! struct's field names to `deserialize_struct`, and a deserializer that only records them
//! gives us the list without writing it twice. A playbook's unknown argument is thus reported
//! with its line before anything is rendered.

use std::sync::Arc;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use crate::steps::Module;

/// One step kind as a playbook names it.
#[derive(Clone, Copy)]
pub struct Kind {
    pub name: &'static str,
    /// The names of its arguments.
    pub arguments: fn() -> &'static [&'static str],
    /// Its typed step from rendered arguments (a JSON mapping).
    pub build: fn(serde_json::Value) -> Result<Arc<dyn Module>, String>,
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Kind {
    pub const fn of<T: Module + DeserializeOwned>(name: &'static str) -> Kind {
        Kind {
            name,
            arguments: fields_of::<T>,
            build: build::<T>,
        }
    }
}

fn build<T: Module + DeserializeOwned>(args: serde_json::Value) -> Result<Arc<dyn Module>, String> {
    serde_json::from_value::<T>(args)
        .map(|m| Arc::new(m) as Arc<dyn Module>)
        .map_err(|e| e.to_string())
}

/// Declares each kind's module (`pub mod NAME;`) and a `KINDS` registry of them, in one line
/// per kind: `NAME: Type`. The kind's name in playbooks is its module's name.
#[macro_export]
macro_rules! kinds {
    ($($module:ident : $ty:ident),+ $(,)?) => {
        $(pub mod $module;)+
        /// The step kinds registered here, by name.
        pub static KINDS: &[$crate::steps::registry::Kind] = &[
            $($crate::steps::registry::Kind::of::<$module::$ty>(stringify!($module)),)+
        ];
    };
}

/// Find a kind by name among registries.
pub fn find<'a>(registries: &[&'a [Kind]], name: &str) -> Option<&'a Kind> {
    registries
        .iter()
        .flat_map(|r| r.iter())
        .find(|k| k.name == name)
}

/// Build a step from `{KIND: {ARGS}}`, as fixtures and tests write it.
pub fn from_json(
    registries: &[&[Kind]],
    value: &serde_json::Value,
) -> Result<Arc<dyn Module>, String> {
    let Some((name, args)) = value.as_object().and_then(|m| m.iter().next()) else {
        return Err("a step is `{KIND: {ARGS}}`".to_owned());
    };
    let kind = find(registries, name).ok_or_else(|| format!("unknown step kind `{name}`"))?;
    (kind.build)(args.clone()).map_err(|e| format!("arguments of `{name}`: {e}"))
}

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

fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    match T::deserialize(FieldNames) {
        Err(Captured(f)) => f,
        Ok(_) => &[],
    }
}

#[cfg(test)]
mod tests {
    use crate::steps::KINDS;

    #[test]
    fn every_kind_lists_its_arguments() {
        for kind in KINDS {
            let args = (kind.arguments)();
            assert!(!args.is_empty(), "{} has no arguments listed", kind.name);
        }
        let package = super::find(&[KINDS], "package").expect("package");
        assert!((package.arguments)().contains(&"names"));
        assert!(super::find(&[KINDS], "nope").is_none());
    }
}
