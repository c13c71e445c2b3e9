//! Version vectors: which writes of each origin a replica (or a write's author) has seen.
//!
//! A write is named by its [`Dot`]: the origin that wrote it and the record's sequence in
//! that origin's stream of the topic. Every replica receives an origin's records of a topic
//! in sequence order (guarantee 3), so "has seen `(o, s)`" is one number per origin: the
//! highest sequence of `o` seen. Two writes are concurrent when neither one's context
//! covers the other's dot.

use crate::types::{NodeId, Seq};

/// What one origin's entry costs in a vector: its 16 bytes twice (a vector grown by
/// pushes holds at most twice its length).
pub const ENTRY_BYTES: u64 = 32;

/// The name of one write: its origin and its sequence in the origin's stream of the topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dot {
    pub origin: NodeId,
    pub seq: Seq,
}

/// Per origin, the highest sequence seen. An origin without an entry has nothing seen.
/// A sorted vector: a key is written by a few origins, and its heap is what it accounts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionVector {
    seen: Vec<(NodeId, Seq)>,
}

impl VersionVector {
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// Whether the write `dot` is at or below what this vector has seen of its origin.
    pub fn covers(&self, dot: Dot) -> bool {
        self.get(dot.origin).is_some_and(|s| s >= dot.seq)
    }

    /// The highest sequence seen of `origin`, if any.
    pub fn get(&self, origin: NodeId) -> Option<Seq> {
        self.seen.binary_search_by_key(&origin, |&(o, _)| o).ok().map(|i| self.seen[i].1)
    }

    /// Notes `dot` as seen (a no-op when already covered).
    pub fn add(&mut self, dot: Dot) {
        match self.seen.binary_search_by_key(&dot.origin, |&(o, _)| o) {
            Ok(i) => self.seen[i].1 = self.seen[i].1.max(dot.seq),
            Err(i) => self.seen.insert(i, (dot.origin, dot.seq)),
        }
    }

    /// The union: each origin's highest sequence of both.
    pub fn merge(&mut self, other: &VersionVector) {
        for d in other.iter() {
            self.add(d);
        }
    }

    /// Whether everything `other` has seen, this one has too.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other.iter().all(|d| self.covers(d))
    }

    /// The entries, in origin order.
    pub fn iter(&self) -> impl Iterator<Item = Dot> + '_ {
        self.seen.iter().map(|&(origin, seq)| Dot { origin, seq })
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The vector of `entries` if they are in strictly increasing origin order (as `iter`
    /// yields them), else `None`.
    pub(crate) fn from_sorted(entries: Vec<(NodeId, Seq)>) -> Option<VersionVector> {
        entries.windows(2).all(|pair| pair[0].0 < pair[1].0).then_some(VersionVector { seen: entries })
    }

    /// What it accounts in the keyed state's budget: its entries, and the smallest
    /// allocation a vector makes (four entries) once it has one.
    pub fn cost(&self) -> u64 {
        match self.seen.len() {
            0 => 0,
            n => ENTRY_BYTES * (n as u64).max(2),
        }
    }
}

impl FromIterator<Dot> for VersionVector {
    fn from_iter<I: IntoIterator<Item = Dot>>(iter: I) -> VersionVector {
        let mut v = VersionVector::new();
        for d in iter {
            v.add(d);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(o: u64, s: Seq) -> Dot {
        Dot { origin: NodeId(o), seq: s }
    }

    #[test]
    fn a_vector_covers_every_sequence_up_to_its_origins_highest() {
        let v: VersionVector = [dot(1, 5), dot(2, 0), dot(1, 3)].into_iter().collect();
        assert!(v.covers(dot(1, 0)) && v.covers(dot(1, 5)) && v.covers(dot(2, 0)));
        assert!(!v.covers(dot(1, 6)) && !v.covers(dot(2, 1)) && !v.covers(dot(3, 0)));
        assert_eq!(v.get(NodeId(1)), Some(5), "adding a lower sequence keeps the highest");
    }

    #[test]
    fn dominance_is_per_origin_and_merge_is_the_union() {
        let a: VersionVector = [dot(1, 5), dot(2, 2)].into_iter().collect();
        let b: VersionVector = [dot(1, 3), dot(3, 1)].into_iter().collect();
        assert!(!a.dominates(&b) && !b.dominates(&a), "each saw something the other did not");
        let mut m = a.clone();
        m.merge(&b);
        assert!(m.dominates(&a) && m.dominates(&b));
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![dot(1, 5), dot(2, 2), dot(3, 1)]);
        assert!(VersionVector::new().dominates(&VersionVector::new()));
    }
}
