//! The global Merkle log of session heads, as in RFC 6962 (Certificate Transparency): tree hash,
//! an append-only compact form for the writer, inclusion proofs and their verification.
//!
//! Leaf and node hashes come from `format`; this module only arranges them.

use sha2::{Digest, Sha256};

use crate::format::{node_hash, Hash};

/// The tree's roots of perfect subtrees, largest first: all the writer needs to append a leaf and
/// compute the root in O(log n), without keeping every leaf in memory.
#[derive(Clone, Debug, Default)]
pub struct CompactTree {
    size: u64,
    /// Roots of the perfect subtrees that make up the tree, one per set bit of `size`.
    peaks: Vec<Hash>,
}

impl CompactTree {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf_hash: Hash) {
        let mut hash = leaf_hash;
        let mut size = self.size;
        // Like carrying in a binary counter: each trailing 1 bit of the size is a peak of the same
        // height as the new one, and the two merge.
        while size & 1 == 1 {
            let left = self.peaks.pop().expect("a peak per set bit");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// The RFC 6962 Merkle tree hash of all leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else { return empty_root() };
        peaks.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// The hash of an empty tree: SHA-256 of no bytes.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// MTH(D[n]) computed from all leaf hashes.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]): the audit path for leaf `index` in the tree of `leaves`.
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Vec<Hash> {
    let mut proof = Vec::new();
    collect_path(index, leaves, &mut proof);
    proof
}

fn collect_path(index: usize, leaves: &[Hash], proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if index < k {
        collect_path(index, &leaves[..k], proof);
        proof.push(root_of(&leaves[k..]));
    } else {
        collect_path(index - k, &leaves[k..], proof);
        proof.push(root_of(&leaves[..k]));
    }
}

/// Every leaf and the hash of every perfect, aligned subtree above them, so that many audit paths
/// over one ledger's leaves (an export bundle of many sessions) cost O(log² n) each, not the O(n)
/// of [`inclusion_proof`].
pub struct MerkleLevels {
    /// `levels[k][i]` is the root of leaves `i·2^k .. (i+1)·2^k`; `levels[0]` the leaves.
    levels: Vec<Vec<Hash>>,
}

impl MerkleLevels {
    pub fn new(leaves: Vec<Hash>) -> MerkleLevels {
        let mut levels = vec![leaves];
        while let Some(below) = levels.last().filter(|level| level.len() > 1) {
            let above = below.chunks_exact(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
            levels.push(above);
        }
        MerkleLevels { levels }
    }

    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// PATH(index, D[size]) over the first `size` leaves, as [`inclusion_proof`] gives it.
    pub fn inclusion_proof(&self, index: usize, size: usize) -> Vec<Hash> {
        assert!(index < size && size <= self.len(), "leaf {index} of {size} in a tree of {}", self.len());
        let mut proof = Vec::new();
        self.collect_path(index, 0, size, &mut proof);
        proof
    }

    /// The path of leaf `start + index` within leaves `start..end`, as `collect_path` does.
    fn collect_path(&self, index: usize, start: usize, end: usize, proof: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split_point(n);
        if index < k {
            self.collect_path(index, start, start + k, proof);
            proof.push(self.root(start + k, end));
        } else {
            self.collect_path(index - k, start + k, end, proof);
            proof.push(self.root(start, start + k));
        }
    }

    /// MTH of leaves `start..end` (not empty): a perfect subtree's root is kept; any other range
    /// splits as RFC 6962 does, and its left part is perfect.
    fn root(&self, start: usize, end: usize) -> Hash {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let height = n.trailing_zeros() as usize;
            return self.levels[height][start >> height];
        }
        let k = split_point(n);
        node_hash(&self.root(start, start + k), &self.root(start + k, end))
    }
}

/// Checks an audit path as RFC 9162 section 2.1.3.2 describes.
pub fn verify_inclusion(index: u64, tree_size: u64, leaf_hash: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= tree_size {
        return false;
    }
    let (mut fnode, mut snode) = (index, tree_size - 1);
    let mut hash = *leaf_hash;
    for sibling in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            hash = node_hash(sibling, &hash);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && hash == *root
}

/// The largest power of two smaller than `n` (n > 1).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| Sha256::digest((i as u64).to_le_bytes()).into()).collect()
    }

    #[test]
    fn compact_tree_root_equals_the_recursive_definition() {
        let all = leaves(70);
        let mut tree = CompactTree::default();
        assert_eq!(tree.root(), root_of(&[]));
        for n in 1..=all.len() {
            tree.push(all[n - 1]);
            assert_eq!(tree.root(), root_of(&all[..n]), "size {n}");
        }
    }

    #[test]
    fn kept_levels_give_the_same_paths_as_the_recursive_definition() {
        let all = leaves(70);
        let levels = MerkleLevels::new(all.clone());
        for n in 1..=all.len() {
            for m in 0..n {
                assert_eq!(levels.inclusion_proof(m, n), inclusion_proof(m, &all[..n]), "leaf {m} of {n}");
            }
        }
        assert!(MerkleLevels::new(Vec::new()).is_empty());
    }

    #[test]
    fn every_inclusion_proof_verifies_and_wrong_ones_do_not() {
        let all = leaves(33);
        for n in 1..=all.len() {
            let root = root_of(&all[..n]);
            for m in 0..n {
                let proof = inclusion_proof(m, &all[..n]);
                assert!(verify_inclusion(m as u64, n as u64, &all[m], &proof, &root), "leaf {m} of {n}");
                let other_leaf = all[(m + 1) % all.len()];
                assert!(!verify_inclusion(m as u64, n as u64, &other_leaf, &proof, &root), "wrong leaf {m} of {n}");
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = node_hash(first, first);
                    assert!(!verify_inclusion(m as u64, n as u64, &all[m], &bad, &root), "tampered proof {m} of {n}");
                }
                assert!(!verify_inclusion(m as u64 + n as u64, n as u64, &all[m], &proof, &root), "index past the tree");
            }
        }
    }

    #[test]
    fn known_answer_for_rfc6962_empty_tree() {
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
