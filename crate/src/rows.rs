//! Exact row identity: hashing rows of a row-major `f32` matrix by their bit patterns, for
//! de-duplicating banks and for the leak guard (test queries identical to bank rows).
//! `-0.0` and `+0.0` are different bit patterns and count as different rows; NaN never occurs
//! (inputs are validated finite).

use std::collections::HashMap;

/// 64-bit hash of a row's bit pattern: a multiply–rotate hash over the 32-bit words (the FxHash
/// construction). Not collision-resistant — every hash hit is confirmed by comparing the rows — but
/// ~10× faster than SipHash, which matters because the leak guard hashes every query of a search.
#[inline]
pub fn row_hash(row: &[f32]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = 0u64;
    for v in row {
        h = (h.rotate_left(5) ^ v.to_bits() as u64).wrapping_mul(K);
    }
    h
}

fn same(a: &[f32], b: &[f32]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Hash index of the rows of a matrix (`cols` values per row), for exact membership tests. It does
/// not hold the rows: pass the same `data` it was built from to every query.
#[derive(Clone, Debug, Default)]
pub struct RowIndex {
    cols: usize,
    by_hash: HashMap<u64, Vec<u32>>,
}

impl RowIndex {
    pub fn new(data: &[f32], cols: usize) -> Self {
        let mut by_hash: HashMap<u64, Vec<u32>> = HashMap::new();
        if cols > 0 {
            for (i, row) in data.chunks_exact(cols).enumerate() {
                by_hash.entry(row_hash(row)).or_default().push(i as u32);
            }
        }
        RowIndex { cols, by_hash }
    }

    /// Index of a row of `data` bit-identical to `row`, if any.
    pub fn find(&self, data: &[f32], row: &[f32]) -> Option<u32> {
        let ids = self.by_hash.get(&row_hash(row))?;
        ids.iter().copied().find(|&i| same(&data[i as usize * self.cols..(i as usize + 1) * self.cols], row))
    }

    /// How many rows of `other` (row-major, same `cols`) are also rows of `data`.
    pub fn count_in(&self, data: &[f32], other: &[f32]) -> usize {
        if self.cols == 0 {
            return 0;
        }
        other.chunks_exact(self.cols).filter(|r| self.find(data, r).is_some()).count()
    }
}

/// Indices of the first occurrence of every distinct row, in order.
pub fn unique_rows(data: &[f32], cols: usize) -> Vec<u32> {
    if cols == 0 {
        return (0..(if data.is_empty() { 0 } else { 1 })).collect();
    }
    let mut seen: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut keep = Vec::new();
    for (i, row) in data.chunks_exact(cols).enumerate() {
        let ids = seen.entry(row_hash(row)).or_default();
        if !ids.iter().any(|&j| same(&data[j as usize * cols..(j as usize + 1) * cols], row)) {
            ids.push(i as u32);
            keep.push(i as u32);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_and_membership() {
        let m = [1.0f32, 2.0, 3.0, 4.0, 1.0, 2.0, -0.0, 0.0, 0.0, 0.0];
        assert_eq!(unique_rows(&m, 2), vec![0, 1, 3, 4]);
        let set = RowIndex::new(&m[..4], 2);
        assert_eq!(set.find(&m[..4], &[3.0, 4.0]), Some(1));
        assert_eq!(set.find(&m[..4], &[3.0, 4.5]), None);
        assert_eq!(set.count_in(&m[..4], &m), 3);
    }
}
