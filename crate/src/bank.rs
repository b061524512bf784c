//! Building a bank (query bank or gallery bank) from row blocks: one copy into memory the bank
//! owns, optional exact de-duplication of identical rows, and optional seeded random subsampling
//! (reservoir sampling, so a bank larger than memory can stream through in blocks).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::rows::row_hash;

/// SplitMix64: a small, well-distributed seedable generator (public-domain algorithm).
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform integer in `0..n` (n ≥ 1), by rejection (no modulo bias).
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// Summary of a built bank.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BankSummary {
    /// Rows kept.
    pub size: usize,
    /// Values per row.
    pub dim: usize,
    /// Rows offered.
    pub source_rows: usize,
    /// Rows dropped as exact duplicates of an earlier row.
    pub duplicates_dropped: usize,
    /// Whether random subsampling dropped rows.
    pub subsampled: bool,
}

/// Accumulates row blocks into a bank.
#[derive(Clone, Debug)]
pub struct BankBuilder {
    dim: usize,
    capacity: Option<usize>,
    dedupe: bool,
    rng: SplitMix64,
    data: Vec<f32>,
    /// Hashes of every distinct row seen, with the rows' positions in `seen_rows` to confirm equality.
    seen: HashMap<u64, Vec<u32>>,
    seen_rows: Vec<f32>,
    distinct: usize,
    offered: usize,
    dups: usize,
}

impl BankBuilder {
    /// `dim` values per row; `subsample`: keep at most this many rows (uniformly at random with
    /// `seed`); `dedupe`: drop rows bit-identical to an earlier row (before sampling).
    pub fn new(dim: usize, subsample: Option<usize>, seed: u64, dedupe: bool) -> Result<Self> {
        if dim == 0 {
            return Err(Error::shape("bank rows have dim 0"));
        }
        if subsample == Some(0) {
            return Err(Error::param("subsample must be ≥ 1"));
        }
        Ok(BankBuilder {
            dim,
            capacity: subsample,
            dedupe,
            rng: SplitMix64(seed),
            data: Vec::new(),
            seen: HashMap::new(),
            seen_rows: Vec::new(),
            distinct: 0,
            offered: 0,
            dups: 0,
        })
    }

    /// Offers a block of `rows` rows (row-major, `rows·dim` values, all finite).
    pub fn append(&mut self, block: &[f32], rows: usize) -> Result<()> {
        let d = self.dim;
        if block.len() != rows * d {
            return Err(Error::shape(format!("bank block: expected rows·dim = {rows}·{d} = {} values, got {}", rows * d, block.len())));
        }
        if let Some(i) = block.iter().position(|v| !v.is_finite()) {
            return Err(Error::non_finite(format!("bank: value at row {}, column {} is {} (must be finite)", self.offered + i / d, i % d, block[i])));
        }
        for row in block.chunks_exact(d) {
            self.offered += 1;
            if self.dedupe {
                let h = row_hash(row);
                let ids = self.seen.entry(h).or_default();
                let dup = ids.iter().any(|&p| self.seen_rows[p as usize * d..(p as usize + 1) * d].iter().zip(row).all(|(a, b)| a.to_bits() == b.to_bits()));
                if dup {
                    self.dups += 1;
                    continue;
                }
                ids.push((self.seen_rows.len() / d) as u32);
                self.seen_rows.extend_from_slice(row);
            }
            // Reservoir sampling (Algorithm R) over the distinct rows.
            let t = self.distinct;
            self.distinct += 1;
            match self.capacity {
                Some(cap) if t >= cap => {
                    let j = self.rng.below(t as u64 + 1) as usize;
                    if j < cap {
                        self.data[j * d..(j + 1) * d].copy_from_slice(row);
                    }
                }
                _ => self.data.extend_from_slice(row),
            }
        }
        Ok(())
    }

    /// The bank rows (row-major) and their summary.
    pub fn finish(self) -> (Vec<f32>, BankSummary) {
        let size = self.data.len() / self.dim;
        let summary = BankSummary { size, dim: self.dim, source_rows: self.offered, duplicates_dropped: self.dups, subsampled: size < self.distinct };
        (self.data, summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_then_subsample_is_seeded_and_uniformish() {
        let rows: Vec<f32> = (0..1000).flat_map(|i| [(i % 500) as f32, 1.0]).collect();
        let mut b = BankBuilder::new(2, Some(100), 7, true).unwrap();
        for blk in rows.chunks(2 * 64) {
            b.append(blk, blk.len() / 2).unwrap();
        }
        let (data, s) = b.finish();
        assert_eq!(s, BankSummary { size: 100, dim: 2, source_rows: 1000, duplicates_dropped: 500, subsampled: true });
        // distinct kept rows, all from the source
        let mut firsts: Vec<i64> = data.chunks(2).map(|r| r[0] as i64).collect();
        firsts.sort();
        firsts.dedup();
        assert_eq!(firsts.len(), 100);
        // same seed, same bank; other seed, other bank
        let again = {
            let mut b = BankBuilder::new(2, Some(100), 7, true).unwrap();
            b.append(&rows, 1000).unwrap();
            b.finish().0
        };
        assert_eq!(again, data);
        let other = {
            let mut b = BankBuilder::new(2, Some(100), 8, true).unwrap();
            b.append(&rows, 1000).unwrap();
            b.finish().0
        };
        assert_ne!(other, data);
        // the reservoir is uniform: over many seeds, early and late rows are kept equally often
        let (mut early, mut late) = (0, 0);
        for seed in 0..200 {
            let mut b = BankBuilder::new(2, Some(50), seed, false).unwrap();
            b.append(&rows[..1000], 500).unwrap();
            for r in b.finish().0.chunks(2) {
                if r[0] < 250.0 { early += 1 } else { late += 1 }
            }
        }
        let ratio = early as f64 / late as f64;
        assert!((0.85..1.15).contains(&ratio), "early/late = {ratio}");
    }

    #[test]
    fn no_subsample_keeps_order_and_errors_are_coded() {
        let mut b = BankBuilder::new(3, None, 0, false).unwrap();
        b.append(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0], 2).unwrap();
        let (d, s) = b.finish();
        assert_eq!(d, vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        assert_eq!(s.duplicates_dropped, 0);
        let mut b = BankBuilder::new(3, None, 0, false).unwrap();
        assert_eq!(b.append(&[1.0, 2.0], 1).unwrap_err().code, crate::ErrorCode::Shape);
        assert_eq!(b.append(&[1.0, f32::NAN, 0.0], 1).unwrap_err().code, crate::ErrorCode::NonFinite);
        assert_eq!(BankBuilder::new(3, Some(0), 0, false).unwrap_err().code, crate::ErrorCode::Param);
    }
}
