// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Percentiles of latency samples.

/// Percentiles of a set of samples (nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Summary {
    /// Sorts `samples` and takes the nearest-rank percentiles (all zero when empty).
    pub fn of(samples: &mut [u64]) -> Summary {
        samples.sort_unstable();
        let n = samples.len();
        let at = |p: f64| {
            if n == 0 {
                0
            } else {
                let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
                samples[rank - 1]
            }
        };
        Summary { n, p50: at(0.50), p99: at(0.99), p999: at(0.999), max: samples.last().copied().unwrap_or(0) }
    }
}

/// Nanoseconds as microseconds with one decimal.
pub fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u64> = (1..=1000).rev().collect();
        let s = Summary::of(&mut v);
        assert_eq!((s.n, s.p50, s.p99, s.p999, s.max), (1000, 500, 990, 999, 1000));
        let s = Summary::of(&mut [7]);
        assert_eq!((s.p50, s.p99, s.max), (7, 7, 7));
        assert_eq!(Summary::of(&mut []).p50, 0);
        assert_eq!(us(1540), "1.5 µs");
    }
}
