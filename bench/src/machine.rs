//! A description of the machine the benchmark runs on.

use std::fs;

/// `N cpus, <model name>, <memory>` from the scheduler and `/proc`.
pub fn describe() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "? ".to_string());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| proc_field(&info, "model name"))
        .unwrap_or_else(|| "unknown CPU model".to_string());
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| proc_field(&info, "MemTotal"))
        .and_then(|total| total.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| format!(", {:.1} GiB RAM", kib as f64 / (1024.0 * 1024.0)))
        .unwrap_or_default();
    format!("{cpus} cpus (nproc), {model}{memory}")
}

/// The value of the first `key: value` line of a `/proc` file.
fn proc_field(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_fields() {
        let info = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t: x\n";
        assert_eq!(proc_field(info, "model name").as_deref(), Some("AMD EPYC"));
        assert_eq!(proc_field(info, "missing"), None);
    }
}
