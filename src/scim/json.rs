//! SCIM request bodies parsed into JSON values with one rule more than
//! `serde_json` applies: no object may name a member twice, exactly or in
//! another case (`{"active": true, "active": false}`, `{"Active": true,
//! "aCTIVE": false}`). SCIM attribute names are case-insensitive (RFC 7643
//! §2.1), so either is one attribute given two values, and which one wins
//! differs between JSON libraries (serde_json keeps the last, others the
//! first): the IdP's audit log and our directory would then disagree about
//! what was sent. Such a body is refused rather than resolved.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Deepest nesting accepted; SCIM resources nest three levels (a User's
/// extension → manager → value). serde_json's own limit is 128.
pub const MAX_DEPTH: usize = 32;

/// Parses `bytes` as JSON, refusing duplicate member names (compared
/// case-insensitively) and nesting deeper than [`MAX_DEPTH`].
pub fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict { depth: 0 }.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

struct Strict {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.deeper::<A::Error>()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict { depth })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.deeper::<A::Error>()?;
        let mut out = Map::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !seen.insert(k.to_lowercase()) {
                return Err(de::Error::custom(format!(
                    "member {k:?} is given twice (names are case-insensitive)"
                )));
            }
            let v = map.next_value_seed(Strict { depth })?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

impl Strict {
    fn deeper<E: de::Error>(&self) -> Result<usize, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(self.depth + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_names_are_refused_in_any_case_and_at_any_depth() {
        for body in [
            r#"{"active": true, "active": false}"#,
            r#"{"Active": true, "aCTIVE": false}"#,
            r#"{"userName": "a", "name": {"givenName": "x", "GIVENNAME": "y"}}"#,
            r#"{"emails": [{"value": "a", "VALUE": "b"}]}"#,
        ] {
            let e = parse(body.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("twice"), "{body}: {e}");
        }
    }

    #[test]
    fn parses_what_serde_json_parses_otherwise() {
        let body = r#"{"a": [1, -2, 3.5, true, null, "s", {"b": {}}], "A1": "x", "n": 18446744073709551615}"#;
        assert_eq!(
            parse(body.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(body).unwrap()
        );
        assert!(parse(b"{} trailing").is_err());
        assert!(parse(b"{\"a\":").is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert!(parse(deep.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("deeper"));
        let ok = format!("{}{}", "[".repeat(20), "]".repeat(20));
        assert!(parse(ok.as_bytes()).is_ok());
    }
}
