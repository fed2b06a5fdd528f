//! The RFC 9162 (Certificate Transparency 2.0, section 2.1) Merkle tree: leaf hash
//! `SHA-256(0x00 || data)`, node hash `SHA-256(0x01 || left || right)`, a tree of `n` leaves split
//! at the largest power of two below `n`; inclusion proofs (section 2.1.3) and consistency proofs
//! (section 2.1.4), made against any earlier size of the tree and checked with the RFC's own
//! verification algorithms.
//!
//! [`Tree`] keeps the hash of every complete subtree (two hashes per leaf), so a root or a proof
//! for any size costs `O(log n)` stored hashes and at most `O(log n)` fresh node hashes for the
//! incomplete right edge. Nothing here recurses; every loop is bounded by the tree's height.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Height bound: sizes are `u64`, so no tree has more than 64 levels above its leaves.
pub const LEVELS_MAX: usize = 64;

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// A leaf's hash: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    hasher.finalize().into()
}

/// An interior node's hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    assert!(n >= 2, "only a tree of two or more leaves splits");
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Why a proof was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The tree is smaller than the size asked for.
    #[error("the log holds {size} entries; {asked} were asked for")]
    SizeBeyondTree {
        /// Entries in the tree.
        size: u64,
        /// The size asked for.
        asked: u64,
    },
    /// The leaf is not in a tree of that size.
    #[error("entry {index} is not in a tree of {size} entries")]
    IndexBeyondSize {
        /// The leaf asked for.
        index: u64,
        /// The tree size asked for.
        size: u64,
    },
    /// A consistency proof goes from a smaller size to a larger one.
    #[error("a consistency proof runs from a smaller tree to a larger one ({from} > {to})")]
    SizesOutOfOrder {
        /// The older size.
        from: u64,
        /// The newer size.
        to: u64,
    },
}

/// An append-only Merkle tree of leaf hashes.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// `levels[h][i]`: the root of the complete subtree of `2^h` leaves starting at leaf `i * 2^h`.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree { levels: Vec::new() }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Appends a leaf by its hash ([`leaf_hash`] of its data) and completes every subtree it
    /// closes.
    #[expect(
        clippy::indexing_slicing,
        reason = "the row at `level` exists (pushed above) and holds `count >= 2` hashes"
    )]
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            assert!(level < LEVELS_MAX, "a tree of 2^64 leaves");
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            let count = row.len();
            if count % 2 == 1 {
                return;
            }
            hash = node_hash(&row[count - 2], &row[count - 1]);
            level += 1;
        }
    }

    /// The hash of leaf `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels.first().and_then(|leaves| leaves.get(usize::try_from(index).ok()?)).copied()
    }

    /// The root of the tree's first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        Ok(self.range_hash(0, size))
    }

    /// The audit path of leaf `index` in the tree's first `size` leaves, bottom up (RFC 9162
    /// section 2.1.3.1).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexBeyondSize { index, size });
        }
        let (mut low, mut high) = (0u64, size);
        let mut path = Vec::new();
        while high - low > 1 {
            let k = split(high - low);
            if index < low + k {
                path.push(self.range_hash(low + k, high));
                high = low + k;
            } else {
                path.push(self.range_hash(low, low + k));
                low += k;
            }
        }
        path.reverse();
        Ok(path)
    }

    /// The proof that the tree's first `from` leaves are a prefix of its first `to` (RFC 9162
    /// section 2.1.4.1). Empty when `from` is 0 or equals `to`.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(to)?;
        if from > to {
            return Err(ProofError::SizesOutOfOrder { from, to });
        }
        if from == 0 || from == to {
            return Ok(Vec::new());
        }
        let (mut low, mut high) = (0u64, to);
        let mut whole_tree = true;
        let mut proof = Vec::new();
        loop {
            if from == high {
                if !whole_tree {
                    proof.push(self.range_hash(low, high));
                }
                break;
            }
            let k = split(high - low);
            if from <= low + k {
                proof.push(self.range_hash(low + k, high));
                high = low + k;
            } else {
                proof.push(self.range_hash(low, low + k));
                low += k;
                whole_tree = false;
            }
        }
        proof.reverse();
        Ok(proof)
    }

    fn check_size(&self, asked: u64) -> Result<(), ProofError> {
        let size = self.size();
        if asked > size {
            return Err(ProofError::SizeBeyondTree { size, asked });
        }
        Ok(())
    }

    /// The Merkle tree hash of leaves `[low, high)`, `low < high <= size`, where `low` is a
    /// multiple of the largest power of two below `high - low` (every range the RFC's proofs
    /// name is): its complete aligned blocks, largest first, folded from the right.
    #[expect(
        clippy::indexing_slicing,
        reason = "a range within the tree splits into at most 64 blocks, each a complete subtree the levels hold"
    )]
    fn range_hash(&self, low: u64, high: u64) -> Hash {
        assert!(low < high, "an empty range has no hash");
        assert!(high <= self.size(), "a range past the tree");
        let mut blocks: [(usize, u64); LEVELS_MAX] = [(0, 0); LEVELS_MAX];
        let mut blocks_count = 0usize;
        let mut start = low;
        let mut remaining = high - low;
        while remaining > 0 {
            let level = 63 - remaining.leading_zeros() as usize;
            let block = 1u64 << level;
            assert_eq!(start % block, 0, "a range split off its subtree boundaries");
            blocks[blocks_count] = (level, start >> level);
            blocks_count += 1;
            start += block;
            remaining -= block;
        }
        let hash_of = |(level, index): (usize, u64)| -> Hash { self.levels[level][index as usize] };
        let mut hash = hash_of(blocks[blocks_count - 1]);
        for block in blocks[..blocks_count - 1].iter().rev() {
            hash = node_hash(&hash_of(*block), &hash);
        }
        hash
    }
}

/// Whether `path` proves that the leaf with hash `leaf` is entry `index` of the tree of `size`
/// leaves whose root is `root` (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// Whether `proof` shows that the tree of `from` leaves with root `from_root` is a prefix of the
/// tree of `to` leaves with root `to_root` (RFC 9162 section 2.1.4.2). Every tree is consistent
/// with the empty one, and a tree with itself.
pub fn verify_consistency(from: u64, to: u64, from_root: &Hash, to_root: &Hash, proof: &[Hash]) -> bool {
    if from > to {
        return false;
    }
    if from == 0 {
        return proof.is_empty();
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    let mut nodes: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        nodes.push(*from_root);
    }
    nodes.extend_from_slice(proof);
    let Some((first, rest)) = nodes.split_first() else { return false };
    let (mut f_n, mut s_n) = (from - 1, to - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    f_r == *from_root && s_r == *to_root && s_n == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    //! RFC 9162 trees checked against the test vectors of the Certificate Transparency reference
    //! implementations (the 8 leaves below, every root size 0 to 8, every complete subtree), and
    //! every proof of every size up to 40 checked by the RFC's verifiers, and rejected when any
    //! hash, index or size is changed.
    use super::*;

    fn hex(text: &str) -> Hash {
        let bytes: Vec<u8> =
            (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect();
        bytes.try_into().unwrap()
    }

    fn leaves() -> Vec<Vec<u8>> {
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
            .iter()
            .map(|h| (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect())
            .collect()
    }

    fn tree_of(count: usize) -> Tree {
        let mut tree = Tree::new();
        for index in 0..count {
            tree.push(leaf_hash(&(index as u64).to_be_bytes()));
        }
        tree
    }

    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn vector_tree() -> Tree {
        let mut tree = Tree::new();
        for leaf in leaves() {
            tree.push(leaf_hash(&leaf));
        }
        tree
    }

    #[test]
    fn the_rfc_vector_tree_has_the_published_root_at_every_size() {
        let tree = vector_tree();
        for (size, root) in ROOTS.iter().enumerate() {
            assert_eq!(tree.root(size as u64).unwrap(), hex(root), "size {size}");
        }
        assert_eq!(tree.root(0).unwrap(), empty_root());
        assert_eq!(tree.root(9), Err(ProofError::SizeBeyondTree { size: 8, asked: 9 }));
    }

    #[test]
    fn the_rfc_vector_tree_keeps_the_published_complete_subtrees() {
        let tree = vector_tree();
        assert_eq!(tree.levels[0][7], hex("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"));
        assert_eq!(tree.levels[1][2], hex("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"));
        assert_eq!(tree.levels[2][1], hex("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"));
    }

    #[test]
    fn the_rfc_vector_proofs_are_the_published_paths() {
        let tree = vector_tree();
        let h = |s: &str| hex(s);
        assert_eq!(
            tree.inclusion_proof(0, 8).unwrap(),
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ]
        );
        assert_eq!(
            tree.inclusion_proof(5, 8).unwrap(),
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ]
        );
        assert_eq!(
            tree.inclusion_proof(2, 3).unwrap(),
            vec![h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]
        );
        assert_eq!(
            tree.consistency_proof(1, 8).unwrap(),
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ]
        );
        assert_eq!(
            tree.consistency_proof(6, 8).unwrap(),
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ]
        );
        assert_eq!(
            tree.consistency_proof(2, 5).unwrap(),
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ]
        );
        assert!(tree.consistency_proof(8, 8).unwrap().is_empty());
        assert_eq!(tree.consistency_proof(5, 3), Err(ProofError::SizesOutOfOrder { from: 5, to: 3 }));
    }

    proptest::proptest! {
        /// ct-merkle, an independent implementation, accepts every proof this tree makes against
        /// its current size (the only size ct-merkle's own tree proves against).
        #[test]
        fn ct_merkle_accepts_these_proofs(leaves in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..40), 1..70)) {
            let mut theirs = ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2::Sha256, Vec<u8>>::new();
            let mut ours = Tree::new();
            for leaf in &leaves {
                theirs.push(leaf.clone());
                ours.push(leaf_hash(leaf));
            }
            let size = ours.size();
            let root = ours.root(size).unwrap();
            let their_root = theirs.root();
            proptest::prop_assert_eq!(their_root.as_bytes().as_slice(), root.as_slice());
            for (index, leaf) in leaves.iter().enumerate() {
                let path = ours.inclusion_proof(index as u64, size).unwrap();
                let proof = ct_merkle::InclusionProof::<sha2::Sha256>::from_bytes(path.concat());
                proptest::prop_assert!(their_root.verify_inclusion(leaf, index as u64, &proof).is_ok());
            }
            for from in 1..size {
                let proof = ours.consistency_proof(from, size).unwrap();
                let proof = ct_merkle::ConsistencyProof::<sha2::Sha256>::from_digests(proof.iter().map(|h| h.into()));
                let old = ct_merkle::RootHash::<sha2::Sha256>::new(ours.root(from).unwrap().into(), from);
                proptest::prop_assert!(their_root.verify_consistency(&old, &proof).is_ok(), "{} to {}", from, size);
            }
        }
    }

    #[test]
    fn every_proof_up_to_forty_leaves_verifies_and_no_altered_one_does() {
        let tree = tree_of(41);
        for size in 1..=40u64 {
            let root = tree.root(size).unwrap();
            for index in 0..size {
                let leaf = tree.leaf(index).unwrap();
                let path = tree.inclusion_proof(index, size).unwrap();
                assert!(path.len() <= 64 - (size - 1).leading_zeros() as usize);
                assert!(verify_inclusion(&leaf, index, size, &path, &root), "{index} in {size}");
                // A proof may fit more than one size (the RFC's caveat); the signed root pins it.
                assert!(!verify_inclusion(&leaf, index, size + 1, &path, &tree.root(size + 1).unwrap()));
                assert!(!verify_inclusion(&leaf, index ^ 1, size, &path, &root) || size == 1);
                assert!(!verify_inclusion(&leaf_hash(b"other"), index, size, &path, &root));
                for altered in 0..path.len() {
                    let mut bad = path.clone();
                    bad[altered][0] ^= 1;
                    assert!(!verify_inclusion(&leaf, index, size, &bad, &root));
                }
            }
            for from in 0..=size {
                let from_root = tree.root(from).unwrap();
                let proof = tree.consistency_proof(from, size).unwrap();
                assert!(verify_consistency(from, size, &from_root, &root, &proof), "{from} to {size}");
                if from > 0 && from < size {
                    assert!(!verify_consistency(from, size, &leaf_hash(b"fork"), &root, &proof));
                    assert!(!verify_consistency(from, size, &from_root, &leaf_hash(b"fork"), &proof));
                    for altered in 0..proof.len() {
                        let mut bad = proof.clone();
                        bad[altered][31] ^= 1;
                        assert!(!verify_consistency(from, size, &from_root, &root, &bad));
                    }
                    assert!(!verify_consistency(from, size, &from_root, &root, &proof[1..]));
                }
            }
        }
    }
}
