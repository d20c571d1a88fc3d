//! The RFC 9162 Merkle tree (§2.1): leaf hash `SHA-256(0x00 ‖ entry)`, node hash
//! `SHA-256(0x01 ‖ left ‖ right)`, inclusion and consistency proofs, and their verification.
//! Pure functions and one in-memory structure, tested against the published RFC 6962 vectors.
//!
//! [`Tree`] keeps every complete, aligned subtree hash (two hashes per leaf in all), so roots and
//! proofs for any tree size cost O(log² n) hashing instead of rehashing the leaves.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The hash of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Why a proof could not be produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {size} is larger than the log ({log_size} entries)")]
    SizeTooLarge { size: u64, log_size: u64 },
    #[error("a consistency proof needs 0 < first ≤ second, got {first} and {second}")]
    BadRange { first: u64, second: u64 },
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

/// Every complete aligned subtree hash of an append-only tree.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// `levels[k][i]` is the hash of leaves `[i·2^k, (i+1)·2^k)`.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf (its leaf hash).
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let parent = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
    }

    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels.first()?.get(index as usize).copied()
    }

    /// MTH of leaves `[start, end)`; every range the RFC recursion asks for is either complete
    /// and aligned (looked up) or split further.
    fn subtree(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            return self.levels[level][(start / n) as usize];
        }
        let k = split(n);
        node_hash(
            &self.subtree(start, start + k),
            &self.subtree(start + k, end),
        )
    }

    /// The root of the tree's first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.size() {
            return Err(ProofError::SizeTooLarge {
                size,
                log_size: self.size(),
            });
        }
        Ok(self.subtree(0, size))
    }

    pub fn root(&self) -> Hash {
        self.subtree(0, self.size())
    }

    /// RFC 9162 §2.1.3.1: the inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.size() {
            return Err(ProofError::SizeTooLarge {
                size,
                log_size: self.size(),
            });
        }
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Ok(proof)
    }

    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.subtree(start, start + k));
        }
    }

    /// RFC 9162 §2.1.4.1: the consistency proof between the trees of `first` and `second` leaves.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        if second > self.size() {
            return Err(ProofError::SizeTooLarge {
                size: second,
                log_size: self.size(),
            });
        }
        if first == 0 || first > second {
            return Err(ProofError::BadRange { first, second });
        }
        let mut proof = Vec::new();
        self.subproof(first, 0, second, true, &mut proof);
        Ok(proof)
    }

    fn subproof(&self, m: u64, start: u64, end: u64, complete: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !complete {
                out.push(self.subtree(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, complete, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.subtree(start, start + k));
        }
    }
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is at `index` in the tree of `size` with `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: checks that the tree of `first` leaves with `first_root` is a prefix of
/// the tree of `second` leaves with `second_root`.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::BadRange { first, second });
    }
    if first == second {
        return if proof.is_empty() && first_root == second_root {
            Ok(())
        } else if proof.is_empty() {
            Err(ProofError::RootMismatch)
        } else {
            Err(ProofError::WrongLength)
        };
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *first_root);
    }
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let Some((head, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != first_root || &sr != second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaves of the RFC 6962 reference tests (certificate-transparency).
    fn reference_tree() -> Tree {
        let leaves: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let mut tree = Tree::new();
        for leaf in leaves {
            tree.push(leaf_hash(leaf));
        }
        tree
    }

    fn h(hex: &str) -> Hash {
        hex::decode(hex).unwrap().try_into().unwrap()
    }

    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn roots_match_the_published_vectors() {
        let tree = reference_tree();
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for (i, root) in ROOTS.iter().enumerate() {
            assert_eq!(
                tree.root_at(i as u64 + 1).unwrap(),
                h(root),
                "size {}",
                i + 1
            );
        }
    }

    #[test]
    fn inclusion_proofs_match_the_published_vectors_and_verify() {
        let tree = reference_tree();
        let proof = tree.inclusion_proof(0, 8).unwrap();
        assert_eq!(
            proof,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ]
        );
        for size in 1..=8 {
            let root = tree.root_at(size).unwrap();
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).unwrap();
                let leaf = tree.leaf(index).unwrap();
                verify_inclusion(index, size, &leaf, &proof, &root).unwrap();
                // A wrong leaf, index or root is refused.
                assert!(verify_inclusion(index, size, &[7; 32], &proof, &root).is_err());
                assert!(verify_inclusion(index, size, &leaf, &proof, &[7; 32]).is_err());
                if size > 1 {
                    assert!(
                        verify_inclusion((index + 1) % size, size, &leaf, &proof, &root).is_err()
                    );
                }
            }
        }
        assert_eq!(
            tree.inclusion_proof(8, 8),
            Err(ProofError::IndexOutOfRange { index: 8, size: 8 })
        );
        assert!(matches!(
            tree.inclusion_proof(0, 9),
            Err(ProofError::SizeTooLarge { .. })
        ));
    }

    #[test]
    fn consistency_proofs_match_the_published_vectors_and_verify() {
        let tree = reference_tree();
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
        for second in 1..=8 {
            for first in 1..=second {
                let proof = tree.consistency_proof(first, second).unwrap();
                let (r1, r2) = (tree.root_at(first).unwrap(), tree.root_at(second).unwrap());
                verify_consistency(first, second, &r1, &r2, &proof)
                    .unwrap_or_else(|e| panic!("{first}->{second}: {e}"));
                if first < second {
                    assert!(verify_consistency(first, second, &[9; 32], &r2, &proof).is_err());
                    assert!(verify_consistency(first, second, &r1, &[9; 32], &proof).is_err());
                }
            }
        }
    }

    #[test]
    fn a_large_tree_agrees_with_direct_hashing() {
        // Recompute MTH directly (the RFC definition) for odd sizes around powers of two.
        fn mth(leaves: &[Hash]) -> Hash {
            match leaves.len() {
                0 => empty_root(),
                1 => leaves[0],
                n => {
                    let k = split(n as u64) as usize;
                    node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
                }
            }
        }
        let mut tree = Tree::new();
        let mut leaves = Vec::new();
        for i in 0u32..300 {
            let l = leaf_hash(&i.to_be_bytes());
            tree.push(l);
            leaves.push(l);
        }
        for size in [
            1u64, 2, 3, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 300,
        ] {
            assert_eq!(
                tree.root_at(size).unwrap(),
                mth(&leaves[..size as usize]),
                "size {size}"
            );
        }
        let proof = tree.inclusion_proof(200, 300).unwrap();
        verify_inclusion(200, 300, &leaves[200], &proof, &tree.root()).unwrap();
        let proof = tree.consistency_proof(129, 300).unwrap();
        verify_consistency(129, 300, &tree.root_at(129).unwrap(), &tree.root(), &proof).unwrap();
    }
}
