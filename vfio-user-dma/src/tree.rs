// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A small persistent (copy-on-write) B+ tree keyed by `u64`.
//!
//! Device threads look regions up in an immutable snapshot that is swapped
//! atomically on every map/unmap. Rebuilding a flat sorted array (as
//! `GuestMemoryMmap::insert_region` does) costs O(n) per map, i.e. O(n²) for a
//! client that maps 64 Ki regions one message at a time. This tree shares all
//! untouched nodes between versions: an insert or remove copies one node per
//! level (at most [`FANOUT`] entries each), so it costs O(FANOUT · log n),
//! and a lookup is O(log n).
//!
//! Removal never merges under-full nodes; empty nodes are dropped and a root
//! with a single child is collapsed, so the depth never exceeds what the
//! inserts built.

use std::sync::Arc;

/// Maximum entries per node.
const FANOUT: usize = 32;

enum Node<V> {
    Leaf(Vec<(u64, V)>),
    Inner(Vec<(u64, Arc<Node<V>>)>),
}

impl<V: Clone> Node<V> {
    fn min_key(&self) -> u64 {
        match self {
            Node::Leaf(e) => e[0].0,
            Node::Inner(e) => e[0].0,
        }
    }

    /// Index of the last entry whose key is `<= key`, if any.
    fn floor_idx<T>(entries: &[(u64, T)], key: u64) -> Option<usize> {
        entries.partition_point(|(k, _)| *k <= key).checked_sub(1)
    }

    fn floor(&self, key: u64) -> Option<(u64, &V)> {
        let mut node = self;
        loop {
            match node {
                Node::Leaf(e) => return Self::floor_idx(e, key).map(|i| (e[i].0, &e[i].1)),
                Node::Inner(e) => node = &e[Self::floor_idx(e, key)?].1,
            }
        }
    }

    /// Returns the new version of this node and, when it had to split, the
    /// new right sibling.
    fn insert(&self, key: u64, value: V) -> (Node<V>, Option<Node<V>>) {
        match self {
            Node::Leaf(e) => {
                let mut e = e.clone();
                match e.binary_search_by_key(&key, |(k, _)| *k) {
                    Ok(i) => e[i].1 = value,
                    Err(i) => e.insert(i, (key, value)),
                }
                Self::split(e, Node::Leaf)
            }
            Node::Inner(e) => {
                let i = Self::floor_idx(e, key).unwrap_or(0);
                let (child, sibling) = e[i].1.insert(key, value);
                let mut e = e.clone();
                e[i] = (child.min_key(), Arc::new(child));
                if let Some(s) = sibling {
                    e.insert(i + 1, (s.min_key(), Arc::new(s)));
                }
                Self::split(e, Node::Inner)
            }
        }
    }

    fn split<T>(mut e: Vec<(u64, T)>, make: fn(Vec<(u64, T)>) -> Node<V>) -> (Node<V>, Option<Node<V>>) {
        if e.len() <= FANOUT {
            return (make(e), None);
        }
        let right = e.split_off(e.len() / 2);
        (make(e), Some(make(right)))
    }

    /// `None` if `key` is absent; otherwise the new version of this node
    /// (`None` when it became empty) and the removed value.
    fn remove(&self, key: u64) -> Option<(Option<Node<V>>, V)> {
        match self {
            Node::Leaf(e) => {
                let i = e.binary_search_by_key(&key, |(k, _)| *k).ok()?;
                let mut e = e.clone();
                let (_, v) = e.remove(i);
                Some(((!e.is_empty()).then_some(Node::Leaf(e)), v))
            }
            Node::Inner(e) => {
                let i = Self::floor_idx(e, key)?;
                let (child, v) = e[i].1.remove(key)?;
                let mut e = e.clone();
                match child {
                    Some(c) => e[i] = (c.min_key(), Arc::new(c)),
                    None => {
                        e.remove(i);
                    }
                }
                Some(((!e.is_empty()).then_some(Node::Inner(e)), v))
            }
        }
    }
}

/// An immutable version of the map; updates return a new version that shares
/// structure with this one. Cloning is O(1).
pub(crate) struct Tree<V> {
    root: Option<Arc<Node<V>>>,
    len: usize,
}

impl<V> Clone for Tree<V> {
    fn clone(&self) -> Self {
        Tree { root: self.root.clone(), len: self.len }
    }
}

impl<V> Default for Tree<V> {
    fn default() -> Self {
        Tree { root: None, len: 0 }
    }
}

impl<V: Clone> Tree<V> {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The entry with the greatest key `<= key`.
    pub(crate) fn floor(&self, key: u64) -> Option<(u64, &V)> {
        self.root.as_ref()?.floor(key)
    }

    /// A new version with `key` set to `value`.
    pub(crate) fn insert(&self, key: u64, value: V) -> Tree<V> {
        let existed = self.floor(key).is_some_and(|(k, _)| k == key);
        let len = if existed { self.len } else { self.len + 1 };
        let root = match &self.root {
            None => Node::Leaf(vec![(key, value)]),
            Some(r) => match r.insert(key, value) {
                (n, None) => n,
                (l, Some(r)) => Node::Inner(vec![(l.min_key(), Arc::new(l)), (r.min_key(), Arc::new(r))]),
            },
        };
        Tree { root: Some(Arc::new(root)), len }
    }

    /// The values in key order. Walks the nodes with a small stack (the
    /// depth of the tree), without cloning.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> + '_ {
        let mut stack: Vec<std::slice::Iter<'_, (u64, Arc<Node<V>>)>> = Vec::new();
        let mut leaf: std::slice::Iter<'_, (u64, V)> = [].iter();
        match self.root.as_deref() {
            Some(Node::Leaf(e)) => leaf = e.iter(),
            Some(Node::Inner(e)) => stack.push(e.iter()),
            None => {}
        }
        std::iter::from_fn(move || loop {
            if let Some((_, v)) = leaf.next() {
                return Some(v);
            }
            match stack.last_mut()?.next() {
                None => {
                    stack.pop();
                }
                Some((_, child)) => match &**child {
                    Node::Leaf(e) => leaf = e.iter(),
                    Node::Inner(e) => stack.push(e.iter()),
                },
            }
        })
    }

    /// A new version without `key` and the removed value, or `None` if absent.
    pub(crate) fn remove(&self, key: u64) -> Option<(Tree<V>, V)> {
        let (root, v) = self.root.as_ref()?.remove(key)?;
        let mut root = root.map(Arc::new);
        // Collapse single-child inner roots.
        while let Some(Node::Inner(e)) = root.as_deref() {
            if e.len() != 1 {
                break;
            }
            root = Some(e[0].1.clone());
        }
        Some((Tree { root, len: self.len - 1 }, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn check(t: &Tree<u64>, m: &BTreeMap<u64, u64>, probes: &[u64]) {
        assert_eq!(t.len(), m.len());
        assert!(t.values().copied().eq(m.values().copied()));
        for &p in probes {
            let want = m.range(..=p).next_back().map(|(k, v)| (*k, *v));
            assert_eq!(t.floor(p).map(|(k, v)| (k, *v)), want, "probe {p}");
        }
    }

    /// xorshift64, deterministic.
    fn rng(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn empty() {
        let t: Tree<u64> = Tree::default();
        assert!(t.floor(5).is_none());
        assert_eq!(t.values().count(), 0);
        assert!(t.remove(5).is_none());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn random_against_btreemap() {
        let mut s = 0x1234_5678_9abc_def1u64;
        let mut t = Tree::default();
        let mut m = BTreeMap::new();
        let mut versions = Vec::new();
        for round in 0..6000 {
            let k = rng(&mut s) % 3000 * 16;
            if rng(&mut s) % 3 == 0 {
                match t.remove(k) {
                    Some((nt, v)) => {
                        assert_eq!(m.remove(&k), Some(v));
                        t = nt;
                    }
                    None => assert!(!m.contains_key(&k)),
                }
            } else {
                t = t.insert(k, round);
                m.insert(k, round);
            }
            if round % 500 == 0 {
                versions.push((t.clone(), m.clone()));
            }
        }
        let probes: Vec<u64> = (0..3000 * 16 + 20).step_by(7).chain([0, u64::MAX]).collect();
        check(&t, &m, &probes);
        // Old versions are unaffected by later updates (persistence).
        for (vt, vm) in &versions {
            check(vt, vm, &probes);
        }
        // Remove everything.
        for k in m.keys().copied().collect::<Vec<_>>() {
            t = t.remove(k).unwrap().0;
        }
        assert_eq!(t.len(), 0);
        assert!(t.root.is_none());
    }

    #[test]
    fn sequential_large() {
        let mut t = Tree::default();
        for i in 0..20_000u64 {
            t = t.insert(i * 4096, i);
        }
        assert_eq!(t.len(), 20_000);
        assert!(t.values().copied().eq(0..20_000));
        assert_eq!(t.floor(4096 * 777 + 5).map(|(k, v)| (k, *v)), Some((4096 * 777, 777)));
        for i in 0..20_000u64 {
            t = t.remove(i * 4096).unwrap().0;
        }
        assert_eq!(t.len(), 0);
    }
}
