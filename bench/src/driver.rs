//! Load generation: closed loops of concurrent requests, and timed repeats of
//! one big request.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::stats::{ErrorLog, Latencies};

/// What a load loop did: units of work done (docs, requests or rows), over
/// how long, with the latency of each successful operation and the errors.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Units of work done by successful operations.
    pub units: u64,
    /// Time the units took.
    pub elapsed: Duration,
    /// Latency of every successful operation.
    pub latencies: Latencies,
    /// Failed operations.
    pub errors: ErrorLog,
}

impl Outcome {
    /// Units per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.units as f64 / secs
        } else {
            0.0
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.units += other.units;
        self.latencies.merge(other.latencies);
        self.errors.merge(other.errors);
    }
}

/// Runs operations `0..ops` on `concurrency` workers, each issuing its next
/// operation as soon as the previous one finished. `op(i)` returns the units
/// of work it did; the elapsed time is the wall clock of the whole loop.
/// No operation starts after `limit`; any left undone count as one error.
pub async fn closed_loop<F, Fut>(concurrency: usize, ops: u64, limit: Duration, op: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + limit;
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let op = Arc::clone(&op);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                let mut attempted = 0;
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ops {
                        break;
                    }
                    attempted += 1;
                    // Building the request (e.g. its body) is not latency.
                    let request = op(i);
                    let sent = Instant::now();
                    match request.await {
                        Ok(units) => {
                            outcome.latencies.record(sent.elapsed());
                            outcome.units += units;
                        }
                        Err(error) => outcome.errors.record(&error),
                    }
                }
                (outcome, attempted)
            })
        })
        .collect();

    let mut total = Outcome::default();
    let mut attempted = 0;
    for worker in workers {
        match worker.await {
            Ok((outcome, tried)) => {
                total.merge(outcome);
                attempted += tried;
            }
            Err(error) => total.errors.record(&anyhow!("load worker died: {error}")),
        }
    }
    total.elapsed = start.elapsed();
    if attempted < ops {
        total
            .errors
            .record(&time_limit_error(limit, attempted, ops));
    }
    total
}

/// Runs `op` `repeats` times one after the other. Each call returns the units
/// it did and the time they took (so it can leave checking the response out
/// of the measurement); the elapsed time is the sum of those times. No call
/// starts after `limit`; any left undone count as one error.
pub async fn repeated<F, Fut>(repeats: u64, limit: Duration, op: F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(u64, Duration)>>,
{
    let deadline = Instant::now() + limit;
    let mut outcome = Outcome::default();
    for done in 0..repeats {
        if Instant::now() >= deadline {
            outcome
                .errors
                .record(&time_limit_error(limit, done, repeats));
            break;
        }
        match op().await {
            Ok((units, took)) => {
                outcome.units += units;
                outcome.elapsed += took;
                outcome.latencies.record(took);
            }
            Err(error) => outcome.errors.record(&error),
        }
    }
    outcome
}

/// The error recorded when a loop ran out of time.
fn time_limit_error(limit: Duration, attempted: u64, ops: u64) -> anyhow::Error {
    anyhow!(
        "time limit of {} s reached: only {attempted} of {ops} operations started",
        limit.as_secs()
    )
}
