//! JSON helpers shared by the SpeechBrain, ZED and Lhotse readers.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::data::DataError;

/// The entries of a JSON object in file order, duplicates kept (`serde_json::Map` keeps only the
/// last of a repeated key, which would hide a duplicated utterance id).
#[derive(Debug)]
pub(crate) struct Entries(pub(crate) Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object mapping utterance ids to entries")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        de.deserialize_map(V)
    }
}

/// Parses a JSON object of entries, naming the file and line of a syntax error.
pub(crate) fn parse_entries(path: &Path, text: &str) -> Result<Entries, DataError> {
    serde_json::from_str::<Entries>(text).map_err(|e| json_error(path, &e))
}

pub(crate) fn json_error(path: &Path, e: &serde_json::Error) -> DataError {
    let line = (e.line() > 0).then_some(e.line());
    DataError::syntax(path, line, format!("invalid JSON: {e}"))
}

/// An entry's fields, with typed getters that say which key had the wrong type.
pub(crate) struct Fields<'a>(pub(crate) &'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// The fields of a manifest entry, or why it has none.
    pub(crate) fn of(value: &'a Value) -> Result<Self, String> {
        match value {
            Value::Object(map) => Ok(Fields(map)),
            _ => Err("the entry is not a JSON object".into()),
        }
    }

    /// The first of `keys` present (and not null).
    pub(crate) fn find(&self, keys: &[&'static str]) -> Option<(&'static str, &'a Value)> {
        keys.iter()
            .find_map(|&k| self.0.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
    }

    /// A string field.
    pub(crate) fn string(&self, keys: &[&'static str]) -> Result<Option<String>, String> {
        match self.find(keys) {
            None => Ok(None),
            Some((_, Value::String(s))) => Ok(Some(s.clone())),
            Some((k, v)) => Err(format!("{k} is {}, not a string", kind(v))),
        }
    }

    /// A string, or a number written as one (speaker ids are often numbers).
    pub(crate) fn label(&self, keys: &[&'static str]) -> Result<Option<String>, String> {
        match self.find(keys) {
            None => Ok(None),
            Some((_, Value::String(s))) => Ok(Some(s.clone())),
            Some((_, Value::Number(n))) => Ok(Some(n.to_string())),
            Some((k, v)) => Err(format!("{k} is {}, not a string", kind(v))),
        }
    }

    /// A finite number, or a string holding one.
    pub(crate) fn number(&self, keys: &[&'static str]) -> Result<Option<f64>, String> {
        let (k, x) = match self.find(keys) {
            None => return Ok(None),
            Some((k, Value::Number(n))) => (k, n.as_f64()),
            Some((k, Value::String(s))) => (k, s.trim().parse::<f64>().ok()),
            Some((k, v)) => return Err(format!("{k} is {}, not a number", kind(v))),
        };
        match x {
            Some(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(format!("{k} = {} is not a finite number", self.0[k])),
        }
    }
}

/// "a string", "an array", ... for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
