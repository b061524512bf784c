//! Running top-k under the library's total order: score descending, then index ascending.
//!
//! The top-k of a set under a total order is unique, so partial results merged in any order give
//! bit-identical output — which is what makes search deterministic regardless of thread count.

/// `true` when `(sa, ia)` ranks strictly before `(sb, ib)`: higher score, or equal score and lower index.
#[inline(always)]
pub fn before(sa: f64, ia: u32, sb: f64, ib: u32) -> bool {
    sa > sb || (sa == sb && ia < ib)
}

/// A bounded list of the best `k` (score, index) pairs seen so far, kept sorted best first.
///
/// Insertion is O(k) but is preceded by an O(1) threshold test, so after warm-up almost every
/// candidate is rejected by a single comparison. Scores must not be NaN.
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    scores: Vec<f64>,
    indices: Vec<u32>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK { k, scores: Vec::with_capacity(k), indices: Vec::with_capacity(k) }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Offers one candidate.
    #[inline(always)]
    pub fn push(&mut self, score: f64, index: u32) {
        let n = self.scores.len();
        if n == self.k {
            if self.k == 0 || !before(score, index, self.scores[n - 1], self.indices[n - 1]) {
                return;
            }
            self.scores.pop();
            self.indices.pop();
        }
        // Find the insertion point from the back (new candidates are usually near the tail).
        let mut pos = self.scores.len();
        while pos > 0 && before(score, index, self.scores[pos - 1], self.indices[pos - 1]) {
            pos -= 1;
        }
        self.scores.insert(pos, score);
        self.indices.insert(pos, index);
    }

    /// The current worst kept score when full (candidates must beat it), else `-∞`.
    #[inline(always)]
    pub fn threshold(&self) -> f64 {
        if self.scores.len() == self.k && self.k > 0 {
            self.scores[self.k - 1]
        } else {
            f64::NEG_INFINITY
        }
    }

    /// Merges another list (any order of merging gives the same result).
    pub fn merge(&mut self, other: &TopK) {
        for (&s, &i) in other.scores.iter().zip(&other.indices) {
            self.push(s, i);
        }
    }

    /// Scores, best first.
    pub fn scores(&self) -> &[f64] {
        &self.scores
    }

    /// Indices, best first.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    pub fn clear(&mut self) {
        self.scores.clear();
        self.indices.clear();
    }
}

/// Running top-k of *values only* (indices irrelevant, e.g. the K largest bank similarities of a
/// gallery item). Kept as a sorted-descending array; O(1) rejection below the threshold.
#[derive(Clone, Debug)]
pub struct TopValues {
    k: usize,
    vals: Vec<f32>,
}

impl TopValues {
    pub fn new(k: usize) -> Self {
        TopValues { k, vals: Vec::with_capacity(k) }
    }

    /// Offers every value of `xs`.
    #[inline]
    pub fn extend(&mut self, xs: &[f32]) {
        if self.k == 0 {
            return;
        }
        // Fast path: a full list rejects a whole chunk with one vectorised comparison.
        if self.vals.len() == self.k {
            let mut rest = xs;
            while !rest.is_empty() {
                let n = rest.len().min(16);
                let (head, tail) = rest.split_at(n);
                let thr = self.vals[self.k - 1];
                if head.iter().fold(false, |a, &x| a | (x > thr)) {
                    self.extend_slow(head);
                }
                rest = tail;
            }
            return;
        }
        self.extend_slow(xs);
    }

    fn extend_slow(&mut self, xs: &[f32]) {
        for &x in xs {
            if self.vals.len() == self.k {
                if x <= self.vals[self.k - 1] {
                    continue;
                }
                self.vals.pop();
            }
            let mut pos = self.vals.len();
            while pos > 0 && x > self.vals[pos - 1] {
                pos -= 1;
            }
            self.vals.insert(pos, x);
        }
    }

    /// The value a candidate must exceed to enter: the smallest kept value once full, else `-∞`.
    #[inline(always)]
    pub fn threshold(&self) -> f32 {
        if self.k > 0 && self.vals.len() == self.k {
            self.vals[self.k - 1]
        } else {
            f32::NEG_INFINITY
        }
    }

    /// The kept values, largest first (fewer than `k` if fewer were offered).
    pub fn values(&self) -> &[f32] {
        &self.vals
    }

    /// Mean of the kept values in `f64`, summed largest first (deterministic); NaN when empty.
    pub fn mean(&self) -> f64 {
        if self.vals.is_empty() {
            return f64::NAN;
        }
        self.vals.iter().map(|&v| v as f64).sum::<f64>() / self.vals.len() as f64
    }

    pub fn merge(&mut self, other: &TopValues) {
        self.extend(&other.vals);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_matches_full_sort_with_ties() {
        let xs: Vec<f64> = (0..200).map(|i| ((i * 37) % 11) as f64).collect();
        for k in [0, 1, 3, 10, 199, 200, 500] {
            let mut t = TopK::new(k);
            for (i, &x) in xs.iter().enumerate() {
                t.push(x, i as u32);
            }
            let mut order: Vec<u32> = (0..xs.len() as u32).collect();
            order.sort_by(|&a, &b| xs[b as usize].partial_cmp(&xs[a as usize]).unwrap().then(a.cmp(&b)));
            order.truncate(k.min(xs.len()));
            assert_eq!(t.indices(), &order[..], "k {k}");
            // merge of two halves in either order equals the whole
            let (mut a, mut b) = (TopK::new(k), TopK::new(k));
            for (i, &x) in xs.iter().enumerate() {
                if i % 3 == 0 { a.push(x, i as u32) } else { b.push(x, i as u32) }
            }
            let mut ab = a.clone();
            ab.merge(&b);
            b.merge(&a);
            assert_eq!(ab.indices(), &order[..]);
            assert_eq!(b.indices(), &order[..]);
        }
    }

    #[test]
    fn top_values_keep_largest() {
        let xs: Vec<f32> = (0..100).map(|i| ((i * 13) % 17) as f32).collect();
        let mut t = TopValues::new(5);
        t.extend(&xs[..50]);
        t.extend(&xs[50..]);
        let mut s = xs.clone();
        s.sort_by(|a, b| b.partial_cmp(a).unwrap());
        assert_eq!(t.values(), &s[..5]);
        assert_eq!(t.mean(), s[..5].iter().map(|&v| v as f64).sum::<f64>() / 5.0);
        assert!(TopValues::new(3).mean().is_nan());
    }
}
