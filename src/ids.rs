//! Object ids: random 64-hex ids, and lookup by a unique prefix as crictl's short ids need.

use std::collections::HashMap;

/// A new random 64-hex id.
pub fn new_id() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(hex::encode(b))
}

/// The outcome of looking an id up.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    Ambiguous,
    Missing,
}

/// Find by full id, else by unique prefix.
pub fn by_prefix<'a, T>(map: &'a HashMap<String, T>, id: &str) -> Lookup<&'a T> {
    if let Some(v) = map.get(id) {
        return Lookup::Found(v);
    }
    let mut found = map
        .iter()
        .filter(|(k, _)| k.starts_with(id))
        .map(|(_, v)| v);
    match (found.next(), found.next()) {
        (Some(v), None) => Lookup::Found(v),
        (Some(_), Some(_)) => Lookup::Ambiguous,
        _ => Lookup::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let a = new_id().unwrap();
        assert_eq!(a.len(), 64);
        let m: HashMap<String, u8> = [
            ("abc1".to_string(), 1),
            ("abc2".to_string(), 2),
            ("abc".to_string(), 3),
        ]
        .into_iter()
        .collect();
        assert_eq!(by_prefix(&m, "abc1"), Lookup::Found(&1));
        assert_eq!(by_prefix(&m, "abc"), Lookup::Found(&3), "an exact id wins");
        assert_eq!(by_prefix(&m, "ab"), Lookup::Ambiguous);
        assert_eq!(by_prefix(&m, "x"), Lookup::Missing);
    }
}
