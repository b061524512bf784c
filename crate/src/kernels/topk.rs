//! Running top-k under the library's total order: score descending, then index ascending.
//!
//! The top-k of a set under a total order is unique, so partial results merged in any order give
//! bit-identical output — which is what makes search deterministic regardless of thread count.

use std::cmp::Ordering;

/// `true` when `(sa, ia)` ranks strictly before `(sb, ib)`: higher score, or equal score and lower index.
#[inline(always)]
pub fn before(sa: f64, ia: u32, sb: f64, ib: u32) -> bool {
    sa > sb || (sa == sb && ia < ib)
}

/// The tie rule as an ordering for sorts (best first): score descending, then index ascending.
/// Exactly [`before`] as an ordering (so `-0.0` and `+0.0` tie and fall back to the index, as in
/// every top-k); scores must not be NaN.
#[inline]
pub fn rank_cmp(sa: f64, ia: u32, sb: f64, ib: u32) -> Ordering {
    if before(sa, ia, sb, ib) {
        Ordering::Less
    } else if before(sb, ib, sa, ia) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

/// Sorts `(score, index)` pairs best first under the tie rule (rerank's full ordering).
pub fn sort_ranked(v: &mut [(f64, u32)]) {
    v.sort_unstable_by(|a, b| rank_cmp(a.0, a.1, b.0, b.1));
}

/// The one insertion step of every top-k in the crate: offers `(s, i)` to the list `scores[..len]`,
/// `idx[..len]` kept best first (capacity `k = scores.len()`), and returns the new length. A full
/// list rejects a candidate that does not rank strictly before its last entry. Scores must not be NaN.
#[inline(always)]
pub fn insert_ranked<S: Copy + Into<f64>>(scores: &mut [S], idx: &mut [u32], len: usize, s: S, i: u32) -> usize {
    let k = scores.len();
    let mut n = len;
    if n == k {
        if k == 0 || !before(s.into(), i, scores[k - 1].into(), idx[k - 1]) {
            return n;
        }
        n -= 1;
    }
    // Shift from the back (new candidates usually land near the tail).
    let mut pos = n;
    while pos > 0 && before(s.into(), i, scores[pos - 1].into(), idx[pos - 1]) {
        scores[pos] = scores[pos - 1];
        idx[pos] = idx[pos - 1];
        pos -= 1;
    }
    scores[pos] = s;
    idx[pos] = i;
    n + 1
}

/// A bounded list of the best `k` (score, index) pairs seen so far, kept sorted best first.
///
/// Insertion is O(k) but is preceded by an O(1) threshold test, so after warm-up almost every
/// candidate is rejected by a single comparison. Scores must not be NaN.
#[derive(Clone, Debug)]
pub struct TopK {
    len: usize,
    scores: Vec<f64>,
    indices: Vec<u32>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK { len: 0, scores: vec![0.0; k], indices: vec![0; k] }
    }

    pub fn k(&self) -> usize {
        self.scores.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offers one candidate.
    #[inline(always)]
    pub fn push(&mut self, score: f64, index: u32) {
        self.len = insert_ranked(&mut self.scores, &mut self.indices, self.len, score, index);
    }

    /// The current worst kept score when full (candidates must beat it), else `-∞`.
    #[inline(always)]
    pub fn threshold(&self) -> f64 {
        let k = self.scores.len();
        if self.len == k && k > 0 {
            self.scores[k - 1]
        } else {
            f64::NEG_INFINITY
        }
    }

    /// Merges another list (any order of merging gives the same result).
    pub fn merge(&mut self, other: &TopK) {
        for (&s, &i) in other.scores().iter().zip(other.indices()) {
            self.push(s, i);
        }
    }

    /// Scores, best first.
    pub fn scores(&self) -> &[f64] {
        &self.scores[..self.len]
    }

    /// Indices, best first.
    pub fn indices(&self) -> &[u32] {
        &self.indices[..self.len]
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// `cols` independent top-k lists in flat arrays (list `c` at `c·k..(c + 1)·k`) with `f32` scores:
/// the per-bank-row activation candidates of the statistics pass. Same insertion step and tie rule
/// as [`TopK`].
#[derive(Clone, Debug)]
pub struct TopKLists {
    k: usize,
    len: Vec<u32>,
    score: Vec<f32>,
    idx: Vec<u32>,
    /// Per list: the score a candidate must exceed (`-∞` until full).
    thr: Vec<f32>,
}

impl TopKLists {
    pub fn new(cols: usize, k: usize) -> Self {
        TopKLists { k, len: vec![0; cols], score: vec![0.0; cols * k], idx: vec![0; cols * k], thr: vec![f32::NEG_INFINITY; cols] }
    }

    /// The score a candidate of list `c` must exceed (or equal with a lower index) to enter.
    #[inline(always)]
    pub fn threshold(&self, c: usize) -> f32 {
        self.thr[c]
    }

    /// Offers `(s, i)` to list `c`.
    #[inline(always)]
    pub fn push(&mut self, c: usize, s: f32, i: u32) {
        let k = self.k;
        let r = c * k..(c + 1) * k;
        let n = insert_ranked(&mut self.score[r.clone()], &mut self.idx[r], self.len[c] as usize, s, i);
        self.len[c] = n as u32;
        if n == k && k > 0 {
            self.thr[c] = self.score[c * k + k - 1];
        }
    }

    /// List `c`: (indices, scores), best first.
    pub fn list(&self, c: usize) -> (&[u32], &[f32]) {
        let (k, l) = (self.k, self.len[c] as usize);
        (&self.idx[c * k..c * k + l], &self.score[c * k..c * k + l])
    }

    pub fn lists(&self) -> usize {
        self.len.len()
    }

    /// Every list's threshold (for vectorised rejection of whole groups of lists).
    #[inline(always)]
    pub fn thresholds(&self) -> &[f32] {
        &self.thr
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
    fn lists_and_sort_follow_the_same_rule() {
        let xs: Vec<f32> = (0..300).map(|i| ((i * 53) % 13) as f32).collect();
        for k in [0usize, 1, 4, 13] {
            let mut lists = TopKLists::new(3, k);
            let mut one = TopK::new(k);
            for (i, &x) in xs.iter().enumerate() {
                lists.push(i % 3, x, i as u32);
                if i % 3 == 1 {
                    one.push(x as f64, i as u32);
                }
            }
            let (li, ls) = lists.list(1);
            assert_eq!(li, one.indices());
            assert!(ls.iter().zip(one.scores()).all(|(&a, &b)| a as f64 == b));
            let mut all: Vec<(f64, u32)> = xs.iter().enumerate().filter(|(i, _)| i % 3 == 1).map(|(i, &x)| (x as f64, i as u32)).collect();
            sort_ranked(&mut all);
            assert_eq!(all.iter().take(k).map(|p| p.1).collect::<Vec<_>>(), one.indices());
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
