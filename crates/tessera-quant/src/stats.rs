//! Codebook statistics (spec §9.5): batch perplexity, usage over a sliding window of steps and
//! over an epoch, and dead codes (unused in the whole window).
//!
//! Perplexity `exp(−Σ p̄ log(p̄ + 1e-10))` of the batch-mean assignment depends on batch size
//! (bshall/VectorQuantizedVAE#3), so usage is also counted over many steps.

use std::collections::VecDeque;

/// Running usage counts of a K-code codebook.
#[derive(Clone, Debug)]
pub struct CodebookStats {
    num_codes: usize,
    window_len: usize,
    window: VecDeque<Vec<u64>>,
    window_sum: Vec<u64>,
    epoch: Vec<u64>,
    last_perplexity: f64,
}

impl CodebookStats {
    pub fn new(num_codes: usize, window_len: usize) -> Self {
        Self {
            num_codes,
            window_len: window_len.max(1),
            window: VecDeque::new(),
            window_sum: vec![0; num_codes],
            epoch: vec![0; num_codes],
            last_perplexity: 0.0,
        }
    }

    /// Record one step's per-code counts.
    pub fn observe(&mut self, counts: &[u64]) {
        assert_eq!(counts.len(), self.num_codes);
        self.last_perplexity = perplexity(counts);
        for (k, &c) in counts.iter().enumerate() {
            self.window_sum[k] += c;
            self.epoch[k] += c;
        }
        self.window.push_back(counts.to_vec());
        if self.window.len() > self.window_len {
            let old = self.window.pop_front().unwrap();
            for (k, c) in old.into_iter().enumerate() {
                self.window_sum[k] -= c;
            }
        }
    }

    /// Perplexity of the last observed batch.
    pub fn batch_perplexity(&self) -> f64 {
        self.last_perplexity
    }

    /// Fraction of codes used at least once in the window.
    pub fn window_usage(&self) -> f64 {
        self.window_sum.iter().filter(|&&c| c > 0).count() as f64 / self.num_codes as f64
    }

    /// Fraction of codes used at least once since the last [`reset_epoch`](Self::reset_epoch).
    pub fn epoch_usage(&self) -> f64 {
        self.epoch.iter().filter(|&&c| c > 0).count() as f64 / self.num_codes as f64
    }

    /// Codes not used in the window.
    pub fn dead_codes(&self) -> usize {
        self.window_sum.iter().filter(|&&c| c == 0).count()
    }

    /// Perplexity of all assignments in the window.
    pub fn window_perplexity(&self) -> f64 {
        perplexity(&self.window_sum)
    }

    pub fn reset_epoch(&mut self) {
        self.epoch.iter_mut().for_each(|c| *c = 0);
    }
}

/// `exp(−Σ p log(p + 1e-10))` of the normalised counts.
pub fn perplexity(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let h: f64 = counts
        .iter()
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * (p + 1e-10).ln()
        })
        .sum();
    h.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perplexity_of_uniform_and_single_code() {
        assert!((perplexity(&[5, 5, 5, 5]) - 4.0).abs() < 1e-6);
        assert!((perplexity(&[0, 9, 0, 0]) - 1.0).abs() < 1e-6);
        // Two codes at 3:1 -> exp(H), H = -(.75 ln .75 + .25 ln .25).
        let h: f64 = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!((perplexity(&[3, 1]) - h.exp()).abs() < 1e-6);
    }

    #[test]
    fn window_forgets_and_epoch_remembers() {
        let mut s = CodebookStats::new(4, 2);
        s.observe(&[1, 0, 0, 0]);
        s.observe(&[0, 1, 0, 0]);
        assert_eq!(s.window_usage(), 0.5);
        s.observe(&[0, 0, 1, 0]);
        assert_eq!(s.window_usage(), 0.5, "the first step left the window");
        assert_eq!(s.dead_codes(), 2);
        assert_eq!(s.epoch_usage(), 0.75);
        s.reset_epoch();
        assert_eq!(s.epoch_usage(), 0.0);
    }
}
