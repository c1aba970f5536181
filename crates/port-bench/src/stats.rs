//! The arithmetic of the report: percentiles of latency samples and the median and
//! spread of repeated measurements.

use serde::Serialize;

/// The `p`-th percentile (0–100) of `sorted` by the nearest-rank method: the smallest
/// sample with at least `p` % of the samples at or below it. `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // Nearest rank: ceil(p/100 × n), 1-based; rank 1 for p = 0.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latency percentiles of one set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// From samples in milliseconds, in any order; `None` when there are none.
    pub fn of(mut samples_ms: Vec<f64>) -> Option<Self> {
        samples_ms.retain(|v| v.is_finite());
        samples_ms.sort_by(f64::total_cmp);
        Some(Self {
            count: samples_ms.len(),
            p50_ms: percentile(&samples_ms, 50.0)?,
            p90_ms: percentile(&samples_ms, 90.0)?,
            p99_ms: percentile(&samples_ms, 99.0)?,
            max_ms: *samples_ms.last()?,
        })
    }
}

/// The median of repeated measurements and how far they spread.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// `(max - min) / median`, in percent (0 when the median is 0).
    pub spread_pct: f64,
}

impl Summary {
    /// `None` when there are no (finite) values.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let (min, max) = (sorted[0], sorted[n - 1]);
        let spread_pct = if median == 0.0 {
            0.0
        } else {
            (max - min) / median * 100.0
        };
        Some(Self {
            median,
            min,
            max,
            spread_pct,
        })
    }

    /// Whether the repeats disagree by more than the reference's 15 % (re-run then).
    pub fn noisy(&self) -> bool {
        self.spread_pct > 15.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&samples, 99.5), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        // Ten samples: p99 is the largest, p50 the fifth.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 99.0), Some(10.0));
        assert_eq!(percentile(&ten, 50.0), Some(5.0));
    }

    #[test]
    fn latency_sorts_and_drops_non_finite_samples() {
        let latency = Latency::of(vec![3.0, f64::NAN, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!(latency.count, 4);
        assert_eq!(latency.p50_ms, 2.0);
        assert_eq!(latency.p99_ms, 10.0);
        assert_eq!(latency.max_ms, 10.0);
        assert!(Latency::of(Vec::new()).is_none());
    }

    #[test]
    fn median_and_spread_of_repeats() {
        let odd = Summary::of(&[110.0, 90.0, 100.0]).unwrap();
        assert_eq!((odd.median, odd.min, odd.max), (100.0, 90.0, 110.0));
        assert!((odd.spread_pct - 20.0).abs() < 1e-9);
        assert!(odd.noisy());
        let even = Summary::of(&[1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(even.median, 2.5);
        let calm = Summary::of(&[100.0, 101.0, 99.0]).unwrap();
        assert!(!calm.noisy());
        assert_eq!(Summary::of(&[0.0, 0.0]).unwrap().spread_pct, 0.0);
        assert!(Summary::of(&[]).is_none());
    }
}
