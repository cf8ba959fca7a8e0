//! The in-memory index of one kind of record (containers, pod sandboxes), as containerd's CRI
//! stores: lookup by full id or unique prefix (crictl's short ids), name reservation (a second
//! pod or container of the same name is refused while the first exists), and CRI-style
//! filtering, oldest first. Durable state is the metadata store's; this is its index.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A record the registry can index.
pub trait Record: Clone {
    /// What clients call it, in messages ("container", "pod sandbox").
    const KIND: &'static str;
    fn id(&self) -> &str;
    /// Unix nanoseconds; lists are sorted by it.
    fn created_at(&self) -> i64;
}

/// Why a lookup found nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("{kind} id is required")]
    Empty { kind: &'static str },
    #[error("{kind} id prefix {id:?} is ambiguous")]
    Ambiguous { kind: &'static str, id: String },
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
}

/// A name already reserved, and by which id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTaken(pub String);

struct Index<R> {
    by_id: HashMap<String, R>,
    /// Name key -> id.
    names: HashMap<String, String>,
}

/// All records of one kind.
pub struct Registry<R> {
    index: RwLock<Index<R>>,
}

impl<R: Record> Registry<R> {
    pub fn new(records: impl IntoIterator<Item = R>) -> Registry<R> {
        Registry {
            index: RwLock::new(Index {
                by_id: records
                    .into_iter()
                    .map(|r| (r.id().to_string(), r))
                    .collect(),
                names: HashMap::new(),
            }),
        }
    }

    // A panic while holding the lock leaves a consistent map (every change is one insert or
    // remove), so a poisoned lock is used as is.
    fn read(&self) -> RwLockReadGuard<'_, Index<R>> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index<R>> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The record with full id `id`, else the one whose id starts with `id`.
    pub fn get(&self, id: &str) -> Result<R, LookupError> {
        if id.is_empty() {
            return Err(LookupError::Empty { kind: R::KIND });
        }
        let index = self.read();
        if let Some(r) = index.by_id.get(id) {
            return Ok(r.clone());
        }
        let mut found = index.by_id.iter().filter(|(k, _)| k.starts_with(id));
        match (found.next(), found.next()) {
            (Some((_, r)), None) => Ok(r.clone()),
            (Some(_), Some(_)) => Err(LookupError::Ambiguous {
                kind: R::KIND,
                id: id.to_string(),
            }),
            _ => Err(LookupError::NotFound {
                kind: R::KIND,
                id: id.to_string(),
            }),
        }
    }

    /// Records for which `keep` holds, oldest first.
    pub fn list(&self, keep: impl Fn(&R) -> bool) -> Vec<R> {
        let mut out: Vec<R> = self
            .read()
            .by_id
            .values()
            .filter(|r| keep(r))
            .cloned()
            .collect();
        out.sort_by_key(|r| r.created_at());
        out
    }

    /// `f` of every record where it gives something (no clone of the records).
    pub fn scan<T>(&self, f: impl FnMut(&R) -> Option<T>) -> Vec<T> {
        self.read().by_id.values().filter_map(f).collect()
    }

    /// Add or replace a record.
    pub fn put(&self, rec: R) {
        self.write().by_id.insert(rec.id().to_string(), rec);
    }

    /// Forget a record and the names it holds.
    pub fn remove(&self, id: &str) {
        let mut index = self.write();
        index.by_id.remove(id);
        index.names.retain(|_, v| v != id);
    }

    /// Reserve `key` for `id`, unless another id holds it.
    pub fn reserve(&self, key: &str, id: &str) -> Result<(), NameTaken> {
        let mut index = self.write();
        match index.names.get(key) {
            Some(owner) if owner != id => Err(NameTaken(owner.clone())),
            _ => {
                index.names.insert(key.to_string(), id.to_string());
                Ok(())
            }
        }
    }

    /// Release `key` if `id` holds it.
    pub fn release(&self, key: &str, id: &str) {
        let mut index = self.write();
        if index.names.get(key).is_some_and(|owner| owner == id) {
            index.names.remove(key);
        }
    }

    /// Reserve the name of every record (after loading), as `key` names them.
    pub fn reserve_all(&self, key: impl Fn(&R) -> Option<String>) {
        let mut index = self.write();
        let keys: Vec<(String, String)> = index
            .by_id
            .values()
            .filter_map(|r| Some((key(r)?, r.id().to_string())))
            .collect();
        index.names.extend(keys);
    }
}

/// CRI's filter semantics: an empty filter value matches everything, an id matches by prefix,
/// every label of the selector must be present with that value.
pub fn id_matches(filter: &str, id: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}

/// See [`id_matches`].
pub fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Rec(&'static str, i64);

    impl Record for Rec {
        const KIND: &'static str = "thing";
        fn id(&self) -> &str {
            self.0
        }
        fn created_at(&self) -> i64 {
            self.1
        }
    }

    #[test]
    fn lookup_by_id_or_unique_prefix() {
        let r = Registry::new([Rec("abc1", 3), Rec("abc2", 1), Rec("abc", 2)]);
        assert_eq!(r.get("abc1").unwrap(), Rec("abc1", 3));
        assert_eq!(r.get("abc").unwrap(), Rec("abc", 2), "an exact id wins");
        assert_eq!(
            r.get("ab").unwrap_err().to_string(),
            "thing id prefix \"ab\" is ambiguous"
        );
        assert_eq!(r.get("x").unwrap_err().to_string(), "thing \"x\" not found");
        assert_eq!(r.get("").unwrap_err().to_string(), "thing id is required");
        let ids: Vec<_> = r.list(|_| true).into_iter().map(|x| x.0).collect();
        assert_eq!(ids, ["abc2", "abc", "abc1"], "oldest first");
        r.remove("abc");
        assert!(matches!(r.get("abc"), Err(LookupError::Ambiguous { .. })));
    }

    #[test]
    fn names_are_reserved_once() {
        let r: Registry<Rec> = Registry::new([]);
        r.reserve("pod/a", "1").unwrap();
        r.reserve("pod/a", "1").unwrap();
        assert_eq!(r.reserve("pod/a", "2"), Err(NameTaken("1".into())));
        r.release("pod/a", "2");
        assert!(r.reserve("pod/a", "2").is_err(), "only the owner releases");
        r.put(Rec("1", 0));
        r.remove("1");
        r.reserve("pod/a", "2").unwrap();
    }

    #[test]
    fn filters() {
        let labels: HashMap<String, String> = [("a".to_string(), "1".to_string())].into();
        assert!(labels_match(&HashMap::new(), &labels));
        assert!(labels_match(&labels, &labels));
        assert!(!labels_match(&labels, &HashMap::new()));
        assert!(id_matches("", "x") && id_matches("ab", "abc") && !id_matches("b", "abc"));
    }
}
