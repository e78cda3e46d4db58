//! A latency histogram whose observations are a few relaxed atomic additions (no lock), for
//! the request and store paths. prometheus-client's own histogram takes a mutex per
//! observation; this one encodes through the same encoder.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds (seconds) for request and store latencies: 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Debug)]
struct Inner {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is +Inf.
    counts: Box<[AtomicU64]>,
    /// Sum of the observations in nanoseconds.
    sum_ns: AtomicU64,
}

/// A histogram of durations. Clones share the counts.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<Inner>);

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram(Arc::new(Inner {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }))
    }

    pub fn latency() -> Histogram {
        Histogram::new(LATENCY_BUCKETS)
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .0
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.0.bounds.len());
        self.0.counts[i].fetch_add(1, Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_ns.fetch_add(ns, Relaxed);
    }

    /// (sum in seconds, count, per-bucket counts with their upper bounds).
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut buckets = Vec::with_capacity(self.0.counts.len());
        let mut count = 0;
        for (i, c) in self.0.counts.iter().enumerate() {
            let n = c.load(Relaxed);
            count += n;
            let bound = self.0.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, n));
        }
        let sum = self.0.sum_ns.load(Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(2));
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 4);
        assert!((sum - 2.0065).abs() < 1e-9, "{sum}");
        assert_eq!(
            buckets,
            vec![(0.001, 2), (0.01, 1), (f64::INFINITY, 1)],
            "not cumulative; +Inf last"
        );
    }
}
