//! JSON parsing that refuses duplicate keys.
//!
//! `serde_json` keeps the last of two equal keys in an object and says
//! nothing. A task or a request with `"status"` twice is ambiguous: two
//! readers may take different values, and a store that kept one of them would
//! have changed the writer's document. Every door through which a task enters
//! (the library, `put-task`, `serve`, replay, the layout files) parses with
//! [`parse`] instead, so one key holds one value at every depth.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Parses `bytes` as JSON, refusing an object that repeats a key at any depth
/// with an error that names the key and where it is (`duplicate key "id" at
/// line 1 column 19`). Object keys keep their order.
///
/// ```
/// assert!(statewal::__internal::json::parse(br#"{"a": {"b": 1, "b": 2}}"#).is_err());
/// assert_eq!(statewal::__internal::json::parse(br#"{"b": 1, "a": 2}"#).unwrap().to_string(), r#"{"b":1,"a":2}"#);
/// ```
pub fn parse(bytes: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice::<Unique>(bytes).map(|u| u.0)
}

/// [`parse`] on a string.
pub fn parse_str(s: &str) -> serde_json::Result<Value> {
    parse(s.as_bytes())
}

/// The deepest nesting of arrays and objects that a task, session record or
/// report may have, counting its own top-level object as level 1.
///
/// `serde_json` refuses text nested deeper than 128 levels, and `state.json`
/// holds a task or session two levels down (under its top-level object and
/// the `"tasks"` or `"sessions"` array). A value built in memory has no such
/// limit, so without this one a library caller could store a task that its
/// own record, or the next `state.json`, no longer parses from: the journal
/// would read as damage and the store would not reopen. The margin below 126
/// leaves room for an envelope (a `serve` request wraps its task).
pub const MAX_DEPTH: usize = 100;

/// Whether `value`, counted as level `level` (its parent's level plus one),
/// nests no deeper than [`MAX_DEPTH`]. Recursion stops past the limit, so a
/// value nested a million levels deep is refused without exhausting the stack.
pub(crate) fn within_depth(value: &Value, level: usize) -> bool {
    let mut children: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Array(a) => Box::new(a.iter()),
        Value::Object(m) => Box::new(m.values()),
        _ => return true,
    };
    level <= MAX_DEPTH && children.all(|c| within_depth(c, level + 1))
}

/// Refuses `value` (named `what` in the message) when it nests deeper than
/// [`MAX_DEPTH`].
pub(crate) fn check_depth(value: &Value, what: &str) -> Result<(), String> {
    if within_depth(value, 1) {
        Ok(())
    } else {
        Err(format!(
            "{what} nests arrays and objects more than {MAX_DEPTH} levels deep"
        ))
    }
}

/// A JSON value deserialized with duplicate keys refused at every depth.
pub(crate) struct Unique(pub(crate) Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text cannot spell NaN or an infinity; null is serde_json's
        // own answer for them.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Unique::deserialize(d).map(|u| u.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Unique(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let Unique(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_every_depth() {
        for doc in [
            r#"{"id":"a","id":"b"}"#,
            r#"{"id":"a","x":{"k":1,"k":1}}"#,
            r#"[{"a":[{"z":0,"z":0}]}]"#,
        ] {
            let e = parse_str(doc).unwrap_err().to_string();
            assert!(e.starts_with("duplicate key "), "{doc}: {e}");
        }
        let v = parse_str(r#"{"z":1,"a":[1.5,-2,null,true,"s",{"q":{}}]}"#).unwrap();
        assert_eq!(
            v.to_string(),
            r#"{"z":1,"a":[1.5,-2,null,true,"s",{"q":{}}]}"#
        );
    }

    #[test]
    fn depth_is_counted_from_the_top_object() {
        let nest = |levels: usize| {
            let mut v = Value::Null;
            for _ in 0..levels {
                v = Value::Array(vec![v]);
            }
            v
        };
        assert!(check_depth(&nest(MAX_DEPTH), "x").is_ok());
        assert!(check_depth(&nest(MAX_DEPTH + 1), "x").is_err());
        assert!(check_depth(&Value::Null, "x").is_ok());
        // Far too deep for a recursive walk to the bottom: refused all the same.
        let deep = nest(1_000_000);
        assert!(check_depth(&deep, "x").is_err());
        // Dropping a Value is recursive; unwind it by hand.
        let mut v = deep;
        while let Value::Array(mut a) = v {
            v = a.pop().unwrap_or(Value::Null);
        }
    }
}
