//! Ordering of status and notification ids, and the bounded set of recently delivered keys.

use std::cmp::Ordering;
use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Compares two ids by length first, then byte by byte.
///
/// Ids are opaque strings, so this order is only correct for id schemes where a
/// newer id is never shorter than an older one and ids of equal length sort as
/// bytes. That holds for Mastodon snowflake ids (decimal strings without leading
/// zeros), GoToSocial ULIDs (26 characters of Crockford base32) and fixed-width
/// flake ids such as Pleroma's base62 ids. For any other scheme the result is
/// a stable total order but does not tell which id is newer.
pub fn compare_ids(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Hashes a key with SipHash and fixed keys, so the same key always gives the same value.
fn fingerprint(key: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// Set of the most recent `capacity` dedupe keys, evicting the oldest insert first.
///
/// Keys are kept as 64-bit fingerprints, 16 bytes each with both structures, whatever the
/// key's length. Two different keys share a fingerprint with a probability of about
/// `capacity / 2^64` per insert, which would drop one event as a duplicate.
#[derive(Debug, Clone)]
pub struct SeenSet {
    capacity: usize,
    order: VecDeque<u64>,
    keys: HashSet<u64>,
}

impl SeenSet {
    /// Creates an empty set that keeps at most `capacity` keys.
    ///
    /// With a capacity of 0 the set keeps nothing, so every insert reports a new key.
    pub fn new(capacity: usize) -> Self {
        SeenSet {
            capacity,
            order: VecDeque::with_capacity(capacity.min(4096)),
            keys: HashSet::with_capacity(capacity.min(4096)),
        }
    }

    /// Inserts `key` and returns true when it was not already present.
    ///
    /// A key already present is left in its place in the eviction order, so
    /// seeing it again does not extend its life. Inserting a new key into a full
    /// set evicts the oldest key.
    pub fn insert(&mut self, key: &str) -> bool {
        let key = fingerprint(key);
        if self.keys.contains(&key) {
            return false;
        }
        if self.capacity == 0 {
            return true;
        }

        while self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.keys.remove(&oldest);
            }
        }

        self.order.push_back(key);
        self.keys.insert(key);
        true
    }

    /// Returns true when `key` is among the keys currently kept.
    pub fn contains(&self, key: &str) -> bool {
        self.keys.contains(&fingerprint(key))
    }

    /// Returns the number of keys currently kept, at most the capacity.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Returns true when no key is kept.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Returns the maximum number of keys kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_ids_mastodon_snowflakes() {
        assert_eq!(
            compare_ids("113600000000000101", "113600000000000102"),
            Ordering::Less
        );
        assert_eq!(compare_ids("99", "100"), Ordering::Less);
        assert_eq!(compare_ids("68739215", "9"), Ordering::Greater);
        assert_eq!(compare_ids("12345", "12345"), Ordering::Equal);
    }

    #[test]
    fn compare_ids_ulids() {
        let older = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
        let newer = "01BX5ZZKBKACTAV9WEVGEMMVRZ";
        assert_eq!(compare_ids(older, newer), Ordering::Less);
        assert_eq!(compare_ids(newer, older), Ordering::Greater);
    }

    #[test]
    fn compare_ids_base62_flakes() {
        // Pleroma flake ids are fixed width, and in ASCII digits < upper < lower.
        assert_eq!(
            compare_ids("AbCdEf0123456789Zz", "AbCdEf0123456789za"),
            Ordering::Less
        );
        assert_eq!(
            compare_ids("AbCdEf0123456789Zz", "AbCdEf01234567890z"),
            Ordering::Greater
        );
    }

    #[test]
    fn seen_set_insert_and_contains() {
        let mut seen = SeenSet::new(4);
        assert!(seen.is_empty());
        assert!(seen.insert("a"));
        assert!(seen.insert("b"));
        assert!(!seen.insert("a"));
        assert_eq!(seen.len(), 2);
        assert!(seen.contains("a"));
        assert!(seen.contains("b"));
        assert!(!seen.contains("c"));
        assert!(!seen.is_empty());
    }

    #[test]
    fn seen_set_evicts_oldest_first() {
        let mut seen = SeenSet::new(3);
        for key in ["1", "2", "3"] {
            assert!(seen.insert(key));
        }

        // A repeated insert does not move "1" to the back of the queue.
        assert!(!seen.insert("1"));
        assert!(seen.insert("4"));
        assert!(!seen.contains("1"));
        assert!(seen.contains("2"));
        assert!(seen.contains("3"));
        assert!(seen.contains("4"));

        assert!(seen.insert("5"));
        assert!(!seen.contains("2"));
        assert!(seen.contains("3"));

        // An evicted key counts as new again.
        assert!(seen.insert("1"));
        assert!(!seen.contains("3"));
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn seen_set_stays_bounded() {
        let capacity = 100;
        let mut seen = SeenSet::new(capacity);
        for i in 0..10_000 {
            assert!(seen.insert(&format!("key-{i}")));
            assert!(seen.len() <= capacity);
            assert_eq!(seen.order.len(), seen.keys.len());
        }
        assert_eq!(seen.len(), capacity);
        assert!(seen.contains("key-9999"));
        assert!(seen.contains("key-9900"));
        assert!(!seen.contains("key-9899"));
    }

    #[test]
    fn seen_set_zero_capacity() {
        let mut seen = SeenSet::new(0);
        assert!(seen.insert("a"));
        assert!(seen.insert("a"));
        assert!(!seen.contains("a"));
        assert!(seen.is_empty());
        assert_eq!(seen.capacity(), 0);
    }
}
