//! Remembers accepted `messageId`s per workspace so retried events are
//! stored once.
//!
//! Ids are kept as 128-bit xxh3 hashes (collision odds are negligible at any
//! realistic volume) with their receive time; entries older than the window
//! are evicted. An id is first *reserved* (pending) while its batch is being
//! written, then *committed* once the batch is durable, or *released* if the
//! write failed. A second request carrying a pending id is told to retry, so
//! it is never acknowledged for data that might still fail to be written.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use parking_lot::Mutex;

const PENDING: i64 = i64::MIN;

/// Keys are already uniform 128-bit hashes: fold them instead of hashing again.
#[derive(Debug, Default)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }
}

type IdMap = HashMap<u128, i64, BuildHasherDefault<FoldHasher>>;
type IdSet = HashSet<u128, BuildHasherDefault<FoldHasher>>;

/// Hash of a message id.
pub fn id_hash(message_id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(message_id.as_bytes())
}

/// What [`Deduper::reserve`] decided for each id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New: reserved for this request.
    New,
    /// Already accepted (earlier, or earlier in the same request).
    Duplicate,
}

/// The dedupe index.
#[derive(Debug, Default)]
pub struct Deduper {
    tenants: Mutex<HashMap<String, IdMap>>,
}

impl Deduper {
    /// Reserves the new ids among `hashes`. If one is pending for another
    /// request, nothing is reserved and its position is returned.
    pub fn reserve(&self, tenant: &str, hashes: &[u128]) -> Result<Vec<Verdict>, usize> {
        let mut tenants = self.tenants.lock();
        let map = tenants.entry(tenant.to_owned()).or_default();
        let mut mine = IdSet::default();
        let mut verdicts = Vec::with_capacity(hashes.len());
        for (i, h) in hashes.iter().enumerate() {
            match map.get(h) {
                Some(&PENDING) if !mine.contains(h) => {
                    for own in &mine {
                        map.remove(own);
                    }
                    return Err(i);
                }
                Some(_) => verdicts.push(Verdict::Duplicate),
                None => {
                    map.insert(*h, PENDING);
                    mine.insert(*h);
                    verdicts.push(Verdict::New);
                }
            }
        }
        Ok(verdicts)
    }

    /// Marks reserved ids as accepted at `received_us`.
    pub fn commit(&self, tenant: &str, hashes: &[u128], received_us: i64) {
        let mut tenants = self.tenants.lock();
        let map = tenants.entry(tenant.to_owned()).or_default();
        for h in hashes {
            map.insert(*h, received_us);
        }
    }

    /// Remembers ids already stored, each with its receive time (startup
    /// rebuild from files and the WAL): one lock for the whole list.
    pub fn remember(&self, tenant: &str, ids: impl IntoIterator<Item = (u128, i64)>) {
        let mut tenants = self.tenants.lock();
        tenants.entry(tenant.to_owned()).or_default().extend(ids);
    }

    /// Forgets reserved ids (their write failed).
    pub fn release(&self, tenant: &str, hashes: &[u128]) {
        let mut tenants = self.tenants.lock();
        if let Some(map) = tenants.get_mut(tenant) {
            for h in hashes {
                if map.get(h) == Some(&PENDING) {
                    map.remove(h);
                }
            }
        }
    }

    /// Forgets every id of a deleted workspace.
    pub fn forget(&self, tenant: &str) {
        self.tenants.lock().remove(tenant);
    }

    /// Drops committed ids received before `cutoff_us`; returns how many.
    pub fn evict(&self, cutoff_us: i64) -> usize {
        let mut tenants = self.tenants.lock();
        let mut evicted = 0;
        for map in tenants.values_mut() {
            let before = map.len();
            map.retain(|_, received| *received == PENDING || *received >= cutoff_us);
            evicted += before - map.len();
        }
        evicted
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.tenants.lock().values().map(IdMap::len).sum()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_and_across_requests() {
        let d = Deduper::default();
        let (a, b) = (id_hash("a"), id_hash("b"));
        assert_eq!(
            d.reserve("t", &[a, b, a]).expect("no conflict"),
            vec![Verdict::New, Verdict::New, Verdict::Duplicate]
        );
        // While pending, another request with `a` must retry, and reserves nothing.
        let c = id_hash("c");
        assert_eq!(d.reserve("t", &[c, a]), Err(1));
        assert_eq!(
            d.reserve("t", &[c]).expect("c free again"),
            vec![Verdict::New]
        );
        d.commit("t", &[a, b, c], 10);
        assert_eq!(
            d.reserve("t", &[a]).expect("committed"),
            vec![Verdict::Duplicate]
        );
        // Other tenants are independent.
        assert_eq!(d.reserve("u", &[a]).expect("new"), vec![Verdict::New]);
        d.release("u", &[a]);
        assert_eq!(d.reserve("u", &[a]).expect("released"), vec![Verdict::New]);
        assert_eq!(d.evict(11), 3);
    }
}
