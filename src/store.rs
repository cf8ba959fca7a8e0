//! Crash-safe metadata: one redb file under the root dir. Records are JSON values in one table
//! per object kind; several changes commit in one ACID transaction, so a crash leaves either
//! all of them or none. Each value is `{"version": N, "record": ...}` (records.rs: how records of
//! older versions still load).

use crate::error::{self, DomainError};
use crate::records::RECORD_VERSION;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store {path}: {source}")]
    Open {
        path: String,
        source: Box<redb::DatabaseError>,
    },
    #[error("metadata store: {0}")]
    Db(#[from] Box<redb::Error>),
    #[error("metadata record {kind}/{key} is corrupt: {source}")]
    Corrupt {
        kind: &'static str,
        key: String,
        source: serde_json::Error,
    },
    #[error("encoding metadata record {kind}/{key}: {source}")]
    Encode {
        kind: &'static str,
        key: String,
        source: serde_json::Error,
    },
    #[error(
        "metadata record {kind}/{key} has version {version}, newer than this berth's {}",
        crate::records::RECORD_VERSION
    )]
    TooNew {
        kind: &'static str,
        key: String,
        version: u64,
    },
}

impl DomainError for StoreError {
    fn kind(&self) -> error::Kind {
        error::Kind::Internal
    }
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// One kind of record (one table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind(&'static str);

/// Images by id.
pub const IMAGES: Kind = Kind("images");
/// Unpacked layers by chain id.
pub const SNAPSHOTS: Kind = Kind("snapshots");
/// Pod sandboxes by id.
pub const SANDBOXES: Kind = Kind("sandboxes");
/// Containers by id.
pub const CONTAINERS: Kind = Kind("containers");

impl Kind {
    fn table(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.0)
    }
}

/// One change in a transaction.
#[derive(Debug)]
pub enum Change {
    Put(Kind, String, Vec<u8>),
    Delete(Kind, String),
}

impl Change {
    /// Store `value` under `key`.
    pub fn put<T: Serialize>(kind: Kind, key: &str, value: &T) -> Result<Change, StoreError> {
        let envelope = Envelope {
            version: RECORD_VERSION,
            record: value,
        };
        let bytes = serde_json::to_vec(&envelope).map_err(|source| StoreError::Encode {
            kind: kind.0,
            key: key.to_string(),
            source,
        })?;
        Ok(Change::Put(kind, key.to_string(), bytes))
    }

    /// Remove `key` (absent is fine).
    pub fn delete(kind: Kind, key: &str) -> Change {
        Change::Delete(kind, key.to_string())
    }
}

/// A stored value: the record and the version of berth's records it was written as.
#[derive(Serialize)]
struct Envelope<'a, T> {
    version: u32,
    record: &'a T,
}

/// One stored value as a record of this version: unwrapped from its envelope, or, without one, a
/// version 1 record (written before records had a version).
fn decode<T: DeserializeOwned>(kind: Kind, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |source| StoreError::Corrupt {
        kind: kind.0,
        key: key.to_string(),
        source,
    };
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(corrupt)?;
    let enveloped = value.as_object().is_some_and(|o| {
        o.len() == 2 && o.get("version").is_some_and(|v| v.is_u64()) && o.contains_key("record")
    });
    if enveloped {
        let version = value["version"].as_u64().unwrap_or(0);
        if version > u64::from(RECORD_VERSION) {
            return Err(StoreError::TooNew {
                kind: kind.0,
                key: key.to_string(),
                version,
            });
        }
        value = value["record"].take();
    }
    serde_json::from_value(value).map_err(corrupt)
}

/// The metadata store.
pub struct Store {
    db: redb::Database,
}

impl Store {
    /// Open (or create) the store file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = redb::Database::create(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(source),
        })?;
        let store = Store { db };
        // Create every table up front so readers never meet a missing one.
        let txn = store.db.begin_write().map_err(db_err)?;
        for kind in [IMAGES, SNAPSHOTS, SANDBOXES, CONTAINERS] {
            txn.open_table(kind.table()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(store)
    }

    /// Every record of one kind, in key order.
    pub fn load<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<(String, T)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(kind.table()).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let key = k.value().to_string();
            let value = decode(kind, &key, v.value())?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// Apply every change in one durable transaction.
    pub fn apply(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(db_err)?;
        for change in &changes {
            match change {
                Change::Put(kind, key, value) => {
                    let mut t = txn.open_table(kind.table()).map_err(db_err)?;
                    t.insert(key.as_str(), value.as_slice()).map_err(db_err)?;
                }
                Change::Delete(kind, key) => {
                    let mut t = txn.open_table(kind.table()).map_err(db_err)?;
                    t.remove(key.as_str()).map_err(db_err)?;
                }
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let s = Store::open(&path).unwrap();
            s.apply(vec![
                Change::put(IMAGES, "a", &vec![1u32]).unwrap(),
                Change::put(IMAGES, "b", &vec![2u32]).unwrap(),
            ])
            .unwrap();
            s.apply(vec![Change::delete(IMAGES, "a")]).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let rows: Vec<(String, Vec<u32>)> = s.load(IMAGES).unwrap();
        assert_eq!(rows, vec![("b".to_string(), vec![2])]);
        assert!(s.load::<u32>(SNAPSHOTS).unwrap().is_empty());
    }

    #[test]
    fn second_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let _first = Store::open(&path).unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::Open { .. })));
    }
}
