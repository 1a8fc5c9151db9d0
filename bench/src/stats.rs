//! What a run records: latency samples with their percentiles, and errors.

use std::time::Duration;

/// How many error messages are kept per workload as examples.
const ERROR_SAMPLES: usize = 5;

/// Latency samples of successful requests, in microseconds.
#[derive(Debug, Default)]
pub struct Latencies {
    micros: Vec<u64>,
}

impl Latencies {
    /// Records one request's latency.
    pub fn record(&mut self, latency: Duration) {
        self.micros
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// How many samples were taken.
    pub fn count(&self) -> usize {
        self.micros.len()
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
    }

    /// The median, 99th percentile (nearest rank) and maximum, if any sample
    /// was taken.
    pub fn percentiles(mut self) -> Option<Percentiles> {
        if self.micros.is_empty() {
            return None;
        }
        self.micros.sort_unstable();
        let at = |p: f64| {
            let rank = (p * self.micros.len() as f64).ceil() as usize;
            let index = rank.clamp(1, self.micros.len()) - 1;
            Duration::from_micros(self.micros[index])
        };
        Some(Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

/// Median, 99th percentile and maximum latency.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The slowest sample.
    pub max: Duration,
}

/// A count of failed requests with the first few distinct messages.
#[derive(Debug, Default)]
pub struct ErrorLog {
    /// Number of failures.
    pub count: u64,
    /// The first few distinct failure messages, each with how often it came.
    pub samples: Vec<(String, u64)>,
}

impl ErrorLog {
    /// Records one failure.
    pub fn record(&mut self, error: &anyhow::Error) {
        self.add(format!("{error:#}"), 1);
    }

    /// Adds the failures of `other`.
    pub fn merge(&mut self, other: ErrorLog) {
        let sampled: u64 = other.samples.iter().map(|(_, n)| n).sum();
        for (message, times) in other.samples {
            self.add(message, times);
        }
        // Failures `other` counted but did not keep a message for.
        self.count += other.count - sampled;
    }

    fn add(&mut self, message: String, times: u64) {
        self.count += times;
        if let Some((_, n)) = self.samples.iter_mut().find(|(m, _)| *m == message) {
            *n += times;
        } else if self.samples.len() < ERROR_SAMPLES {
            self.samples.push((message, times));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut latencies = Latencies::default();
        for ms in 1..=100 {
            latencies.record(Duration::from_millis(ms));
        }
        let p = latencies.percentiles().expect("samples");
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));
        assert!(Latencies::default().percentiles().is_none());
    }

    #[test]
    fn errors_keep_distinct_messages_and_the_full_count() {
        let mut log = ErrorLog::default();
        log.record(&anyhow!("a"));
        log.record(&anyhow!("a"));
        let mut other = ErrorLog::default();
        for i in 0..10 {
            other.record(&anyhow!("b{i}"));
        }
        log.merge(other);
        assert_eq!(log.count, 12);
        assert_eq!(log.samples.len(), ERROR_SAMPLES);
        assert_eq!(log.samples[0], ("a".to_string(), 2));
    }
}
