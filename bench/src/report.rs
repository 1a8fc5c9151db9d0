//! Results of a run and the table that shows them.

use std::time::Duration;

use crate::driver::Outcome;
use crate::stats::{ErrorLog, Latencies, Percentiles};

/// The headline figure of a measurement.
#[derive(Debug, Clone, Copy)]
pub enum Figure {
    /// Units of work per second: higher is better.
    Rate(f64),
    /// A latency: lower is better.
    Latency(Duration),
}

impl Figure {
    /// The figure as a number, for ratios.
    fn value(self) -> f64 {
        match self {
            Figure::Rate(rate) => rate,
            Figure::Latency(latency) => latency.as_secs_f64(),
        }
    }

    /// The figure as shown.
    fn render(self) -> String {
        match self {
            Figure::Rate(rate) => format_rate(rate),
            Figure::Latency(latency) => format_latency(latency),
        }
    }
}

/// One line of results: a rate (or a latency) measured on one server.
#[derive(Debug)]
pub struct Measurement {
    /// Workload name as shown, e.g. `get` or `all_docs include_docs`.
    pub workload: &'static str,
    /// What the figure is, e.g. `docs/s` for a rate or `max` for a latency.
    pub metric: &'static str,
    /// The headline figure, or `None` if the workload could not run at all.
    pub figure: Option<Figure>,
    /// Latency percentiles of the successful requests (or samples).
    pub latency: Option<Percentiles>,
    /// Units of work done (or latency samples taken).
    pub units: u64,
    /// Time the units took.
    pub elapsed: Duration,
    /// Failed requests.
    pub errors: ErrorLog,
}

impl Measurement {
    /// A measurement made from a load loop's outcome.
    pub fn from_outcome(workload: &'static str, metric: &'static str, outcome: Outcome) -> Self {
        Self {
            workload,
            metric,
            // Nothing done at all is no rate, not a rate of zero.
            figure: (outcome.units > 0 || outcome.errors.count == 0)
                .then(|| Figure::Rate(outcome.rate())),
            units: outcome.units,
            elapsed: outcome.elapsed,
            latency: outcome.latencies.percentiles(),
            errors: outcome.errors,
        }
    }

    /// A latency measurement over `samples` taken in `elapsed`: the slowest
    /// sample is the figure (`metric` should say so), with the p50 and p99.
    pub fn from_latencies(
        workload: &'static str,
        metric: &'static str,
        samples: Latencies,
        elapsed: Duration,
        errors: ErrorLog,
    ) -> Self {
        let units = samples.count() as u64;
        let latency = samples.percentiles();
        Self {
            workload,
            metric,
            figure: latency.map(|l| Figure::Latency(l.max)),
            latency,
            units,
            elapsed,
            errors,
        }
    }

    /// A workload that could not run because of `error`.
    pub fn failed(workload: &'static str, metric: &'static str, error: &anyhow::Error) -> Self {
        let mut errors = ErrorLog::default();
        errors.record(error);
        Self {
            workload,
            metric,
            figure: None,
            latency: None,
            units: 0,
            elapsed: Duration::ZERO,
            errors,
        }
    }

    /// A one-line account of the measurement, printed as each workload ends.
    pub fn progress_line(&self, server: &str) -> String {
        let figure = self.figure.map_or("-".to_string(), Figure::render);
        let done = match (self.figure, self.latency) {
            (Some(Figure::Latency(_)), Some(latency)) => format!(
                "p50 {}, p99 {} of {} samples",
                format_latency(latency.p50),
                format_latency(latency.p99),
                self.units
            ),
            _ => format!("{} in {:.2} s", self.units, self.elapsed.as_secs_f64()),
        };
        format!(
            "[{server}] {:<25} {:>12} {:<7} ({done}, errors: {})",
            self.workload, figure, self.metric, self.errors.count
        )
    }
}

/// The results of every server, in the order they ran (first, then the
/// `--compare` one).
pub struct Report {
    servers: Vec<(String, Vec<Measurement>)>,
}

impl Report {
    /// A report over `(server name, measurements)` pairs.
    pub fn new(servers: Vec<(String, Vec<Measurement>)>) -> Self {
        Self { servers }
    }

    /// Failed requests over all servers and workloads.
    pub fn total_errors(&self) -> u64 {
        self.servers
            .iter()
            .flat_map(|(_, rows)| rows)
            .map(|row| row.errors.count)
            .sum()
    }

    /// Renders the results table (plus the error details, if any).
    pub fn render(&self) -> String {
        let Some((first_name, first)) = self.servers.first() else {
            return String::new();
        };
        let second = self.servers.get(1);

        let mut header = vec!["workload".to_string(), "metric".to_string()];
        for (name, _) in &self.servers {
            header.extend([name.clone(), format!("{name} p50"), format!("{name} p99")]);
        }
        if let Some((second_name, _)) = second {
            header.push(format!("{first_name}/{second_name}"));
        }
        header.push("errors".to_string());

        let mut lines = vec![header];
        for row in first {
            let twin = second.and_then(|(_, rows)| {
                rows.iter()
                    .find(|r| r.workload == row.workload && r.metric == row.metric)
            });
            let mut line = vec![row.workload.to_string(), row.metric.to_string()];
            line.extend(value_cells(Some(row)));
            let mut errors = row.errors.count.to_string();
            if second.is_some() {
                line.extend(value_cells(twin));
                line.push(ratio(
                    row.figure.map(Figure::value),
                    twin.and_then(|t| t.figure).map(Figure::value),
                ));
                let twin_errors = twin.map_or("-".to_string(), |t| t.errors.count.to_string());
                errors = format!("{errors}/{twin_errors}");
            }
            line.push(errors);
            lines.push(line);
        }

        let mut out = table(&lines);
        if self.total_errors() > 0 {
            out.push('\n');
            out.push_str(&self.error_details());
        }
        out
    }

    fn error_details(&self) -> String {
        let total = self.total_errors();
        let banner = "!".repeat(72);
        let mut out = format!(
            "{banner}\n!!! FAILED REQUESTS: {total} -- THESE RESULTS ARE NOT VALID\n{banner}\n"
        );
        for (name, rows) in &self.servers {
            for row in rows.iter().filter(|row| row.errors.count > 0) {
                out.push_str(&format!(
                    "[{name}] {} ({}): {} failed, for example:\n",
                    row.workload, row.metric, row.errors.count
                ));
                for (message, times) in &row.errors.samples {
                    out.push_str(&format!("    - {times} x {message}\n"));
                }
            }
        }
        out
    }
}

/// Figure, p50 and p99 cells of one measurement (dashes if missing).
fn value_cells(row: Option<&Measurement>) -> [String; 3] {
    let dash = || "-".to_string();
    let latency = row.and_then(|r| r.latency);
    [
        row.and_then(|r| r.figure).map_or_else(dash, Figure::render),
        latency.map_or_else(dash, |l| format_latency(l.p50)),
        latency.map_or_else(dash, |l| format_latency(l.p99)),
    ]
}

/// `first / second` as `1.23x` (for latencies, below 1 means first is faster).
fn ratio(first: Option<f64>, second: Option<f64>) -> String {
    match (first, second) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".to_string(),
    }
}

/// A rate with thousands separators, e.g. `12,345` (one decimal below 100).
pub fn format_rate(rate: f64) -> String {
    if rate < 100.0 {
        return format!("{rate:.1}");
    }
    let digits = format!("{:.0}", rate);
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency in milliseconds, e.g. `1.23 ms`.
fn format_latency(latency: Duration) -> String {
    format!("{:.2} ms", latency.as_secs_f64() * 1000.0)
}

/// Lays out `lines` (the first is the header) in aligned columns: the first
/// two left-aligned, the numbers right-aligned.
fn table(lines: &[Vec<String>]) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .filter_map(|line| line.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, &width))| {
                if c < 2 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_get_thousands_separators() {
        assert_eq!(format_rate(1234567.4), "1,234,567");
        assert_eq!(format_rate(999.6), "1,000");
        assert_eq!(format_rate(100.0), "100");
        assert_eq!(format_rate(12.34), "12.3");
    }

    #[test]
    fn ratio_is_first_over_second() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50x");
        assert_eq!(ratio(Some(3.0), None), "-");
        assert_eq!(ratio(Some(3.0), Some(0.0)), "-");
    }
}
