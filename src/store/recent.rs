//! The states a partition's disk store read or wrote last, in memory, so that
//! a customer's next event does not search the LSM tree again.
//!
//! A customer's events come close together (a request, its decision, the
//! dismantling's answers), and a lookup in the tree costs a search of every
//! memtable and a Bloom probe of every segment: profiled on the throughput
//! bench, 12 % of the worker thread's CPU with the disk store. What a lookup found, absent included,
//! stays valid until this store writes the key, and every write of the
//! partition goes through its one store, which updates this map too.
//!
//! Two generations bound the memory: entries go into the young one; when it
//! holds [`BYTES_PER_GENERATION`], it becomes the old one and the previous old
//! one is dropped. A hit in the old generation moves the entry to the young.
//! So at most two generations' bytes are held, and what was used in the last
//! generation's worth of traffic stays.

use foldhash::HashMap;

/// Bytes of keys and values one generation holds before it ages (a partition
/// holds at most twice this). With states of about 100 bytes, one
/// generation is about 12,000 customers.
pub const BYTES_PER_GENERATION: usize = 2 * 1024 * 1024;

/// What an entry costs besides its key and value bytes: the map's slot, the
/// key's `String` and the value's header.
const ENTRY_OVERHEAD: usize = 64;

/// Key → the value the store holds (`None`: the store has no such key).
pub struct Recent<V> {
    young: HashMap<String, Option<V>>,
    old: HashMap<String, Option<V>>,
    young_bytes: usize,
    budget: usize,
}

/// A value whose size counts against the budget.
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for fjall::Slice {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl<V: Clone + Weigh> Recent<V> {
    pub fn new(budget: usize) -> Recent<V> {
        Recent {
            young: HashMap::default(),
            old: HashMap::default(),
            young_bytes: 0,
            budget,
        }
    }

    /// What the store holds for `key`, if known here: `Some(None)` means it
    /// holds nothing for it.
    pub fn get(&mut self, key: &str) -> Option<Option<V>> {
        if let Some(value) = self.young.get(key) {
            return Some(value.clone());
        }
        let (key, value) = self.old.remove_entry(key)?;
        self.put(key, value.clone());
        Some(value)
    }

    /// Records that the store now holds `value` for `key`.
    pub fn put(&mut self, key: String, value: Option<V>) {
        let bytes = key.len() + value.as_ref().map_or(0, Weigh::weight) + ENTRY_OVERHEAD;
        self.old.remove(&key);
        match self.young.insert(key, value) {
            // Replaced: counted once already (near enough; values of one key
            // are of a size).
            Some(_) => {}
            None => self.young_bytes += bytes,
        }
        if self.young_bytes >= self.budget {
            self.old = std::mem::take(&mut self.young);
            self.young_bytes = 0;
        }
    }

    /// Forgets everything (the store was wiped).
    pub fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
        self.young_bytes = 0;
    }

    /// Entries held, both generations.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weigh for Vec<u8> {
        fn weight(&self) -> usize {
            self.len()
        }
    }

    fn entry(n: usize) -> (String, Option<Vec<u8>>) {
        (format!("C-{n:04}"), Some(vec![0; 30]))
    }

    #[test]
    fn what_was_put_is_got_absent_included_until_it_is_put_again() {
        let mut recent = Recent::new(1 << 20);
        assert_eq!(recent.get("C-1"), None, "unknown");
        recent.put("C-1".into(), None);
        assert_eq!(recent.get("C-1"), Some(None), "known absent");
        recent.put("C-1".into(), Some(vec![1]));
        assert_eq!(recent.get("C-1"), Some(Some(vec![1])));
        recent.put("C-1".into(), None);
        assert_eq!(recent.get("C-1"), Some(None), "deleted");
        recent.clear();
        assert_eq!(recent.get("C-1"), None, "cleared");
    }

    #[test]
    fn memory_stays_within_two_generations_and_what_is_used_stays() {
        // 100 bytes an entry: a generation of 10 entries.
        let mut recent = Recent::new(1000);
        let (hot, hot_value) = entry(9999);
        recent.put(hot.clone(), hot_value.clone());
        for n in 0..1000 {
            let (key, value) = entry(n);
            recent.put(key, value);
            assert!(recent.len() <= 21, "{} entries after {n}", recent.len());
            if n % 5 == 0 {
                assert_eq!(recent.get(&hot), Some(hot_value.clone()), "used, so kept");
            }
        }
        assert_eq!(recent.get(&entry(0).0), None, "long unused, so dropped");
        assert_eq!(recent.get(&entry(999).0), Some(entry(999).1));
    }
}
