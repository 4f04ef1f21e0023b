//! First-fragment records: how later fragments are matched without reassembly.
//!
//! The first fragment carries the transport header and is tracked like any
//! packet. Its verdict is recorded under (family, source, destination,
//! protocol, fragment id) for `frag.timeout` seconds; later fragments with the
//! same identity get that verdict, and their payload is added to the
//! connection's byte counter. A later fragment with no record, or one that
//! would overlap the transport header of the first (RFC 1858 / RFC 3128
//! overlap attacks), is invalid. Records are bounded per shard; when full the
//! one closest to expiry is evicted (counted).

use crate::ctx::CtState;
use crate::packet::{Addr, Family};
use crate::tracker::Verdict;
use crate::tuple::{CtDir, FlowKey};
use foldhash::fast::FixedState;
use hashbrown::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FragKey {
    pub src: Addr,
    pub dst: Addr,
    pub id: u32,
    pub proto: u8,
    pub family: u8,
}

impl FragKey {
    pub(crate) fn new(family: Family, src: Addr, dst: Addr, proto: u8, id: u32) -> FragKey {
        FragKey {
            src,
            dst,
            id,
            proto,
            family: match family {
                Family::Ipv4 => 4,
                Family::Ipv6 => 6,
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FragRecord {
    pub expires: u64,
    pub verdict: Verdict,
    pub state: CtState,
    /// The connection to credit later fragments' bytes to: key, hash, direction.
    pub conn: Option<(FlowKey, u64, CtDir)>,
    /// Transport header length of the first fragment; later fragments must start after it.
    pub hdr_len: u16,
    pub conn_id: Option<u32>,
}

pub(crate) struct FragTable {
    map: HashMap<FragKey, FragRecord, FixedState>,
    cap: usize,
}

impl FragTable {
    pub(crate) fn new(cap: usize, seed: u64) -> FragTable {
        FragTable {
            map: HashMap::with_hasher(FixedState::with_seed(seed)),
            cap: cap.max(1),
        }
    }

    /// Record a first fragment; returns whether another record was evicted.
    pub(crate) fn insert(&mut self, k: FragKey, r: FragRecord, now: u64) -> bool {
        if self.map.len() >= self.cap && !self.map.contains_key(&k) {
            self.map.retain(|_, v| v.expires > now);
            if self.map.len() >= self.cap {
                let victim = self
                    .map
                    .iter()
                    .min_by_key(|(_, v)| v.expires)
                    .map(|(k, _)| *k);
                if let Some(v) = victim {
                    self.map.remove(&v);
                }
                self.map.insert(k, r);
                return true;
            }
        }
        self.map.insert(k, r);
        false
    }

    /// The live record for a later fragment.
    pub(crate) fn get(&mut self, k: &FragKey, now: u64) -> Option<FragRecord> {
        match self.map.get(k) {
            Some(r) if r.expires > now => Some(*r),
            Some(_) => {
                self.map.remove(k);
                None
            }
            None => None,
        }
    }

    pub(crate) fn expire(&mut self, now: u64) {
        if !self.map.is_empty() {
            self.map.retain(|_, v| v.expires > now);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.map = HashMap::with_hasher(self.map.hasher().clone());
    }

    pub(crate) fn memory(&self) -> usize {
        self.map.allocation_size()
    }
}
