//! How stored records outlive upgrades.
//!
//! Every record the store holds is written as `{"version": N, "record": ...}` (store.rs); a value
//! without that envelope is a version 1 record, as berth wrote them before records had a version.
//! berth's own fields carry `#[serde(default)]`, so a record written before a field existed
//! loads with its default.
//!
//! The CRI configs kubelet sent (`ContainerConfig`, `PodSandboxConfig`) are generated prost
//! types whose serde derive has no defaults: JSON of them written by one version of the CRI
//! crate does not load into a version that added a field. From version 2 they are stored as
//! their protobuf encoding (base64 in the JSON), which every later CRI version decodes, as
//! containerd stores them. Version 1 records hold them as JSON objects; those still load
//! (`config` below accepts both), through a deserializer that gives every field the JSON lacks
//! its protobuf default.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::{Map, Value};

/// The version of the records this berth writes.
pub const RECORD_VERSION: u32 = 2;

/// `#[serde(with = "crate::records::cri")]` for a CRI message field: written as base64 of its
/// protobuf encoding; read from that, or from the JSON object a version 1 record holds.
pub mod cri {
    use super::*;

    pub fn serialize<M: prost::Message, S: Serializer>(m: &M, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(m.encode_to_vec()))
    }

    pub fn deserialize<'de, M, D>(d: D) -> Result<M, D::Error>
    where
        M: prost::Message + Default + DeserializeOwned,
        D: Deserializer<'de>,
    {
        match Value::deserialize(d)? {
            Value::String(b64) => {
                let bytes = STANDARD.decode(b64.as_bytes()).map_err(de::Error::custom)?;
                M::decode(bytes.as_slice()).map_err(de::Error::custom)
            }
            legacy => from_legacy_json(legacy).map_err(de::Error::custom),
        }
    }
}

/// A generated CRI type from the JSON serde wrote of it (version 1 records), every missing (or
/// null) field taking its protobuf default; unknown fields are ignored.
pub fn from_legacy_json<T: DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    T::deserialize(Lenient(v))
}

/// A `serde_json::Value` deserializer for which null (and so a missing struct field) is the
/// default of whatever type is asked for: "" , 0, false, empty list or map, a message of
/// defaults, None.
struct Lenient(Value);

type Error = serde_json::Error;

macro_rules! forward_scalar {
    ($($method:ident => $default:expr),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                match self.0 {
                    Value::Null => $default(visitor),
                    v => v.$method(visitor),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Lenient {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(a) => visitor.visit_seq(LenientSeq(a.into_iter())),
            Value::Object(m) => visitor.visit_map(LenientMap::new(m, &[])),
            v => v.deserialize_any(visitor),
        }
    }

    forward_scalar! {
        deserialize_bool => |v: V| v.visit_bool(false),
        deserialize_i8 => |v: V| v.visit_i8(0),
        deserialize_i16 => |v: V| v.visit_i16(0),
        deserialize_i32 => |v: V| v.visit_i32(0),
        deserialize_i64 => |v: V| v.visit_i64(0),
        deserialize_u8 => |v: V| v.visit_u8(0),
        deserialize_u16 => |v: V| v.visit_u16(0),
        deserialize_u32 => |v: V| v.visit_u32(0),
        deserialize_u64 => |v: V| v.visit_u64(0),
        deserialize_f32 => |v: V| v.visit_f32(0.0),
        deserialize_f64 => |v: V| v.visit_f64(0.0),
        deserialize_char => |v: V| v.visit_char('\0'),
        deserialize_str => |v: V| v.visit_str(""),
        deserialize_string => |v: V| v.visit_string(String::new()),
        deserialize_bytes => |v: V| v.visit_bytes(&[]),
        deserialize_byte_buf => |v: V| v.visit_byte_buf(Vec::new()),
        deserialize_unit => |v: V| v.visit_unit(),
        deserialize_identifier => |v: V| v.visit_str(""),
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            v => visitor.visit_some(Lenient(v)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_seq(LenientSeq(Vec::new().into_iter())),
            Value::Array(a) => visitor.visit_seq(LenientSeq(a.into_iter())),
            v => Err(de::Error::invalid_type(unexpected(&v), &visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_map(LenientMap::new(Map::new(), &[])),
            Value::Object(m) => visitor.visit_map(LenientMap::new(m, &[])),
            v => Err(de::Error::invalid_type(unexpected(&v), &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_map(LenientMap::new(Map::new(), fields)),
            Value::Object(m) => visitor.visit_map(LenientMap::new(m, fields)),
            v => Err(de::Error::invalid_type(unexpected(&v), &visitor)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // No CRI message has a oneof today; an enum has no default, so it must be present.
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

struct LenientSeq(std::vec::IntoIter<Value>);

impl<'de> de::SeqAccess<'de> for LenientSeq {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Lenient(v)))
            .transpose()
    }
}

/// The object's entries, then a null for every field of the struct the object lacks.
struct LenientMap {
    entries: std::vec::IntoIter<(String, Value)>,
    value: Option<Value>,
}

impl LenientMap {
    fn new(mut m: Map<String, Value>, fields: &'static [&'static str]) -> LenientMap {
        for f in fields {
            if !m.contains_key(*f) {
                m.insert((*f).to_string(), Value::Null);
            }
        }
        LenientMap {
            entries: m.into_iter().collect::<Vec<_>>().into_iter(),
            value: None,
        }
    }
}

impl<'de> de::MapAccess<'de> for LenientMap {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                let key: de::value::StringDeserializer<Error> = k.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let v = self.value.take().unwrap_or(Value::Null);
        seed.deserialize(Lenient(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{ContainerRecord, ContainerState};
    use crate::sandbox::{SandboxRecord, SandboxState};
    use crate::store::{CONTAINERS, Change, SANDBOXES, Store, StoreError};

    /// Records as the previous version (main at d045034, before records had a version) wrote them.
    const V1_CONTAINER: &str = include_str!("../tests/fixtures/records/v1-container.json");
    const V1_SANDBOX: &str = include_str!("../tests/fixtures/records/v1-sandbox.json");

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.db")).unwrap();
        (dir, store)
    }

    fn put_raw(store: &Store, kind: crate::store::Kind, key: &str, json: &Value) {
        let bytes = serde_json::to_vec(json).unwrap();
        store
            .apply(vec![Change::Put(kind, key.to_string(), bytes)])
            .unwrap();
    }

    fn load_one<T: DeserializeOwned>(store: &Store, kind: crate::store::Kind) -> T {
        let mut rows = store.load::<T>(kind).unwrap();
        assert_eq!(rows.len(), 1);
        rows.remove(0).1
    }

    fn check_v1_container(c: &ContainerRecord) {
        assert_eq!(c.id, "b".repeat(64));
        assert_eq!(c.state, ContainerState::Exited);
        assert_eq!(c.exit_code, 137);
        assert_eq!(c.pid, 4242);
        let cfg = &c.config;
        assert_eq!(cfg.metadata.as_ref().unwrap().name, "nginx");
        assert_eq!(cfg.args, ["-c", "sleep 3600"]);
        assert_eq!(cfg.mounts[0].host_path, "/var/lib/data");
        assert!(cfg.mounts[0].readonly);
        assert_eq!(cfg.labels["app"], "web");
        let linux = cfg.linux.as_ref().unwrap();
        let sc = linux.security_context.as_ref().unwrap();
        assert_eq!(
            sc.capabilities.as_ref().unwrap().add_capabilities,
            ["NET_ADMIN"]
        );
        assert_eq!(sc.run_as_user.as_ref().unwrap().value, 0);
        assert_eq!(
            sc.seccomp.as_ref().unwrap().profile_type,
            0 /* RuntimeDefault */
        );
    }

    #[test]
    fn loads_the_previous_versions_records() {
        let (_dir, store) = store();
        let c: Value = serde_json::from_str(V1_CONTAINER).unwrap();
        let s: Value = serde_json::from_str(V1_SANDBOX).unwrap();
        put_raw(&store, CONTAINERS, &"b".repeat(64), &c);
        put_raw(&store, SANDBOXES, &"a".repeat(64), &s);

        let c: ContainerRecord = load_one(&store, CONTAINERS);
        check_v1_container(&c);
        let s: SandboxRecord = load_one(&store, SANDBOXES);
        assert_eq!(s.state, SandboxState::Ready);
        assert_eq!(s.ips, ["10.88.0.5"]);
        assert_eq!(s.config.metadata.as_ref().unwrap().namespace, "default");
        assert_eq!(s.config.port_mappings[0].host_port, 8080);
        assert_eq!(s.config.dns_config.as_ref().unwrap().options, ["ndots:5"]);
        let linux = s.config.linux.as_ref().unwrap();
        assert_eq!(linux.sysctls["net.ipv4.ip_forward"], "1");

        // Written back, they are version 2 records with the config as protobuf, and equal.
        store
            .apply(vec![
                Change::put(CONTAINERS, &c.id, &c).unwrap(),
                Change::put(SANDBOXES, &s.id, &s).unwrap(),
            ])
            .unwrap();
        assert_eq!(load_one::<ContainerRecord>(&store, CONTAINERS), c);
        assert_eq!(load_one::<SandboxRecord>(&store, SANDBOXES), s);
    }

    #[test]
    fn a_previous_version_record_missing_fields_loads_with_defaults() {
        let (_dir, store) = store();
        let mut c: Value = serde_json::from_str(V1_CONTAINER).unwrap();
        // A berth field and CRI fields at several depths, as a record written before they
        // existed (or by a CRI crate without them) lacks them.
        let o = c.as_object_mut().unwrap();
        o.remove("reason");
        o.remove("log_path");
        let cfg = o["config"].as_object_mut().unwrap();
        cfg.remove("working_dir");
        cfg.remove("stop_signal");
        cfg["metadata"].as_object_mut().unwrap().remove("attempt");
        let res = cfg["linux"]["resources"].as_object_mut().unwrap();
        res.remove("memory_swap_limit_in_bytes");
        res.remove("unified");
        cfg["mounts"][0]
            .as_object_mut()
            .unwrap()
            .remove("selinux_relabel");
        // And one it does not know (a field removed since) is ignored.
        cfg.insert("retired_field".to_string(), Value::Bool(true));
        put_raw(&store, CONTAINERS, "c", &c);

        let c: ContainerRecord = load_one(&store, CONTAINERS);
        check_v1_container(&c);
        assert_eq!(c.reason, "");
        assert_eq!(c.log_path, None);
        assert_eq!(c.config.working_dir, "");
        assert_eq!(c.config.metadata.as_ref().unwrap().attempt, 0);
        let res = c.config.linux.as_ref().unwrap().resources.as_ref().unwrap();
        assert_eq!(res.memory_limit_in_bytes, 64 << 20);
        assert_eq!(res.memory_swap_limit_in_bytes, 0);
        assert!(res.unified.is_empty());
        assert!(!c.config.mounts[0].selinux_relabel);
    }

    #[test]
    fn a_current_record_missing_fields_loads_with_defaults() {
        let (_dir, store) = store();
        let c: ContainerRecord = serde_json::from_str(V1_CONTAINER).unwrap();
        let Change::Put(_, _, bytes) = Change::put(CONTAINERS, &c.id, &c).unwrap() else {
            panic!("put is a Put");
        };
        let mut raw: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(raw["version"], RECORD_VERSION);
        assert!(raw["record"]["config"].is_string(), "{raw}");

        raw["record"].as_object_mut().unwrap().remove("message");
        raw["record"].as_object_mut().unwrap().remove("layers");
        put_raw(&store, CONTAINERS, &c.id, &raw);
        let got: ContainerRecord = load_one(&store, CONTAINERS);
        assert_eq!(got.message, "");
        assert!(got.layers.is_empty());
        assert_eq!(got.config, c.config);
    }

    #[test]
    fn a_record_from_a_newer_version_is_refused() {
        let (_dir, store) = store();
        let c: Value = serde_json::from_str(V1_CONTAINER).unwrap();
        let raw = serde_json::json!({"version": RECORD_VERSION + 1, "record": c});
        put_raw(&store, CONTAINERS, "c", &raw);
        let err = store.load::<ContainerRecord>(CONTAINERS).unwrap_err();
        assert!(
            matches!(err, StoreError::TooNew { version, .. } if version == u64::from(RECORD_VERSION) + 1)
        );
    }
}
