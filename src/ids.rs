//! Object ids: random 64-hex ids (lookup by unique prefix is the registry's).

/// A new random 64-hex id.
pub fn new_id() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_64_hex() {
        let a = super::new_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, super::new_id().unwrap());
    }
}
