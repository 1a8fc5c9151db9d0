//! CouchDB's `sequential` uuid algorithm: a random 26-hex prefix and a 6-hex
//! counter that grows by a random step, so new ids sort near each other.

use std::sync::Mutex;

/// Generates uuids for `/_uuids` and for documents POSTed without an id.
pub struct UuidGenerator {
    state: Mutex<(String, u64)>,
}

impl Default for UuidGenerator {
    fn default() -> Self {
        Self::new()
    }
}

fn new_prefix() -> String {
    hex::encode(rand::random::<[u8; 13]>())
}

impl UuidGenerator {
    /// A generator with a fresh random prefix.
    pub fn new() -> Self {
        UuidGenerator {
            state: Mutex::new((new_prefix(), rand::random::<u64>() % 0xfff)),
        }
    }

    /// The next uuid: 32 lowercase hex characters.
    pub fn next(&self) -> String {
        let Ok(mut s) = self.state.lock() else {
            return hex::encode(rand::random::<[u8; 16]>());
        };
        let step = 1 + rand::random::<u64>() % 0xffe;
        s.1 += step;
        if s.1 >= 0xfff000 {
            *s = (new_prefix(), rand::random::<u64>() % 0xfff);
        }
        format!("{}{:06x}", s.0, s.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_sort() {
        let g = UuidGenerator::new();
        let a = g.next();
        let b = g.next();
        assert_eq!(a.len(), 32);
        assert!(a < b || a[..26] != b[..26]);
    }
}
