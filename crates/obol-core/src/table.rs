//! The state table: application state that must survive a restart (the review queue, policy
//! changes, limits an account owner set) kept as keyed values written through the record log.
//!
//! A [`Put`] is an op like any other: it rides a record, is persisted with the record's sync, is
//! applied in the log's order with the money it sits beside, and is replayed at start. The core
//! does not read the values; the shells that wrote them do. An empty value removes the key.

use std::collections::BTreeMap;

/// The longest key, in bytes.
pub const KEY_BYTES_MAX: usize = 255;
/// The longest value, in bytes (4 MiB: a held batch of 8,190 transfers with its review fits).
pub const VALUE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Sets `key` to `value` (an empty value removes it).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Put {
    /// The key: UTF-8, at most [`KEY_BYTES_MAX`] bytes; `/` separates a namespace by convention.
    pub key: String,
    /// The value, at most [`VALUE_BYTES_MAX`] bytes.
    pub value: Vec<u8>,
}

impl Put {
    /// Whether the key and value fit their limits.
    pub fn fits(&self) -> bool {
        !self.key.is_empty() && self.key.len() <= KEY_BYTES_MAX && self.value.len() <= VALUE_BYTES_MAX
    }
}

/// The keyed values [`Put`]s left, ordered by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    entries: BTreeMap<String, Vec<u8>>,
    bytes: usize,
}

impl Table {
    /// Applies one put.
    pub fn apply(&mut self, put: &Put) {
        let removed = if put.value.is_empty() {
            self.entries.remove(&put.key)
        } else {
            self.bytes += put.key.len() + put.value.len();
            self.entries.insert(put.key.clone(), put.value.clone())
        };
        if let Some(old) = removed {
            self.bytes -= put.key.len() + old.len();
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    /// Every key starting with `prefix` and its value, in key order.
    pub fn scan<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        self.entries
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.as_str(), value.as_slice()))
    }

    /// Up to `limit` entries whose key starts with `prefix` and sorts before `before` (or all,
    /// without it), in descending key order: the newest first of keys that sort by time, a page
    /// at a time, in `O(log n + limit)`.
    pub fn scan_back<'a>(
        &'a self,
        prefix: &'a str,
        before: Option<&'a str>,
        limit: usize,
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        // The first string after every key that starts with `prefix` (its last character plus
        // one), so the range holds the prefix's keys alone; `before` can only narrow it.
        let end: Option<String> = prefix.char_indices().last().and_then(|(at, last)| {
            let next = char::from_u32(u32::from(last) + 1)?;
            Some(format!("{}{next}", prefix.get(..at)?))
        });
        let mut upper = end.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        if let Some(before) = before {
            let narrower = match &upper {
                std::ops::Bound::Excluded(end) => before < end.as_str(),
                _ => true,
            };
            if narrower {
                upper = std::ops::Bound::Excluded(before.max(prefix).to_string());
            }
        }
        let upper = match &upper {
            std::ops::Bound::Excluded(key) => std::ops::Bound::Excluded(key.as_str()),
            _ => std::ops::Bound::Unbounded,
        };
        self.entries
            .range::<str, _>((std::ops::Bound::Included(prefix), upper))
            .rev()
            .take_while(move |(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, value)| (key.as_str(), value.as_slice()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// How many keys the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn scan_back_pages_a_prefix_newest_first_and_nothing_else() {
        let mut table = Table::default();
        for key in ["a/0", "a/1", "a/2", "a/3", "a0", "b/1", "a"] {
            table.apply(&Put { key: key.into(), value: key.as_bytes().to_vec() });
        }
        let keys = |before, limit| table.scan_back("a/", before, limit).map(|(k, _)| k.to_string()).collect::<Vec<_>>();
        assert_eq!(keys(None, 10), ["a/3", "a/2", "a/1", "a/0"]);
        assert_eq!(keys(None, 2), ["a/3", "a/2"]);
        assert_eq!(keys(Some("a/2"), 10), ["a/1", "a/0"]);
        assert_eq!(keys(Some("a/"), 10), Vec::<String>::new());
        assert_eq!(keys(Some("zzz"), 1), ["a/3"]);
        assert_eq!(keys(Some(""), 1), Vec::<String>::new());
    }

    use super::*;

    fn put(key: &str, value: &[u8]) -> Put {
        Put { key: key.into(), value: value.to_vec() }
    }

    #[test]
    fn puts_replace_remove_and_scan_by_prefix_in_key_order() {
        let mut table = Table::default();
        table.apply(&put("risk/review/b", b"2"));
        table.apply(&put("risk/review/a", b"1"));
        table.apply(&put("risk/reviewer", b"x"));
        table.apply(&put("risk/limit/7", b"100"));
        table.apply(&put("risk/review/a", b"one"));
        let reviews: Vec<_> = table.scan("risk/review/").collect();
        assert_eq!(reviews, [("risk/review/a", &b"one"[..]), ("risk/review/b", &b"2"[..])]);
        assert_eq!(table.bytes(), 13 + 3 + 13 + 1 + 13 + 1 + 12 + 3);
        table.apply(&put("risk/review/a", b""));
        assert_eq!(table.get("risk/review/a"), None);
        assert_eq!(table.len(), 3);
        assert_eq!(table.bytes(), 13 + 1 + 13 + 1 + 12 + 3);
        table.apply(&put("absent", b""));
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn limits_bound_key_and_value() {
        assert!(put("k", b"v").fits());
        assert!(!put("", b"v").fits());
        assert!(!put(&"k".repeat(KEY_BYTES_MAX + 1), b"v").fits());
        assert!(Put { key: "k".into(), value: vec![0; VALUE_BYTES_MAX] }.fits());
        assert!(!Put { key: "k".into(), value: vec![0; VALUE_BYTES_MAX + 1] }.fits());
    }
}
