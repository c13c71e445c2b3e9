//! `SortedMap`: a map kept as a sorted vector. The keyed state's maps inside one key (per
//! origin, per set element) hold a few entries; a vector's heap is what it accounts
//! ([`vec_cost`]), where a B-tree allocates a node of eleven slots for its first entry.

use std::borrow::Borrow;

/// What a vector of `len` slots of `slot` bytes may hold on the heap: twice its length
/// (growth by doubling), at least the four slots of its first allocation.
pub fn vec_cost(len: usize, slot: usize) -> u64 {
    if len == 0 {
        0
    } else {
        (slot * (2 * len).max(4)) as u64
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortedMap<K, V> {
    items: Vec<(K, V)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap { items: Vec::new() }
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    /// The map of `items` if their keys are strictly increasing, else `None`.
    pub fn from_sorted(items: Vec<(K, V)>) -> Option<Self> {
        items.windows(2).all(|pair| pair[0].0 < pair[1].0).then_some(SortedMap { items })
    }

    fn find<Q: Ord + ?Sized>(&self, k: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.items.binary_search_by(|(x, _)| x.borrow().cmp(k))
    }

    pub fn get<Q: Ord + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| &self.items[i].1)
    }

    /// The value of `k`, inserted as the default when missing.
    pub fn get_or_default<Q: Ord + ToOwned<Owned = K> + ?Sized>(&mut self, k: &Q) -> &mut V
    where
        K: Borrow<Q>,
        V: Default,
    {
        let i = match self.find(k) {
            Ok(i) => i,
            Err(i) => {
                self.items.insert(i, (k.to_owned(), V::default()));
                i
            }
        };
        &mut self.items[i].1
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| self.items.remove(i).1)
    }

    pub fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        self.items.retain_mut(|(k, v)| f(k, v));
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.items.iter().map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.items.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The heap its slots may take ([`vec_cost`]); what the keys and values own beside
    /// their slots is the caller's to add.
    pub fn slots_cost(&self) -> u64 {
        vec_cost(self.items.len(), std::mem::size_of::<(K, V)>())
    }
}
