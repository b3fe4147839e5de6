//! Output: the summary block and the formatting helpers of the progress lines.

use super::*;

pub(crate) struct Summary<'a> {
    pub(crate) cli: &'a Cli,
    pub(crate) elapsed: Duration,
    pub(crate) stats: Stats,
    pub(crate) calls: u64,
    pub(crate) mock_requests: u64,
    pub(crate) faults: BTreeMap<&'static str, u64>,
    pub(crate) rss_start: Option<u64>,
    pub(crate) rss_end: Option<u64>,
    pub(crate) rss_peak: Option<u64>,
    pub(crate) exit: String,
    pub(crate) log: BTreeMap<String, u64>,
}

impl Summary<'_> {
    pub(crate) fn print(&self) {
        let s = &self.stats;
        let unanswered: u64 = s.unanswered.values().sum();
        let errors: u64 = s.errors.values().sum();
        let change = match (self.rss_start, self.rss_end) {
            (Some(a), Some(b)) if a > 0 => Some((b as f64 - a as f64) * 100.0 / a as f64),
            _ => None,
        };
        let row = |name: &str, value: String| println!("{name:<24} {value}");
        println!();
        println!("== soak summary");
        row(
            "run",
            format!(
                "{:.1} s, {} workers, fault rate {:.1}% of upstream calls, upstream.timeout {}s, cache.ttl 2s",
                self.elapsed.as_secs_f64(),
                self.cli.workers,
                self.cli.fault_rate * 100.0,
                UPSTREAM_TIMEOUT.as_secs()
            ),
        );
        row(
            "machine",
            format!(
                "{} cores, loadavg {}",
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                std::fs::read_to_string("/proc/loadavg")
                    .unwrap_or_default()
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        );
        row(
            "client requests",
            format!(
                "{} ({:.0}/s)",
                s.requests,
                s.requests as f64 / self.elapsed.as_secs_f64().max(0.001)
            ),
        );
        row("  by kind", join(&s.kinds));
        row("  status classes", join(&s.classes));
        row("errors (4xx/5xx)", format!("{errors}"));
        for (kind, n) in &s.errors {
            row("", format!("{kind}: {n}"));
        }
        for (kind, body) in &s.samples {
            row("  first body", format!("{kind}: {body}"));
        }
        row("unanswered", format!("{unanswered}"));
        for (why, n) in &s.unanswered {
            row("", format!("{why}: {n}"));
        }
        row("cache-status (list)", join(&s.cache));
        row(
            "upstream calls",
            format!(
                "{} = {:.3} per client request (mock answered {})",
                self.calls,
                self.calls as f64 / s.requests.max(1) as f64,
                self.mock_requests
            ),
        );
        row("  faults injected", join(&self.faults));
        row(
            "latency",
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.1} ms; {} answered after > {:.1} s",
                s.hist.quantile_ms(0.50),
                s.hist.quantile_ms(0.99),
                s.hist.quantile_ms(0.999),
                s.hist.max_us as f64 / 1000.0,
                s.slow,
                (UPSTREAM_TIMEOUT + Duration::from_millis(500)).as_secs_f64()
            ),
        );
        row(
            "gateway VmRSS",
            format!(
                "start {} (after {} s warm-up), end {}, change {}, peak VmHWM {}",
                kib(self.rss_start),
                self.cli.warmup_secs,
                kib(self.rss_end),
                change.map_or("?".to_owned(), |c| format!("{c:+.1}%")),
                kib(self.rss_peak)
            ),
        );
        row("gateway exit", self.exit.clone());
        row(
            "gateway log lines",
            format!("{}", self.log.values().sum::<u64>()),
        );
        let mut top: Vec<_> = self.log.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1));
        for (line, n) in top.into_iter().take(8) {
            row("", format!("{n} x {line}"));
        }
        let flat = change.is_some_and(|c| c.abs() <= 10.0);
        row("RSS flat (within 10%)", yes(flat));
        row("every request answered", yes(unanswered == 0));
    }
}

pub(crate) fn join<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    if m.is_empty() {
        return "-".to_owned();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("  ")
}

pub(crate) fn yes(ok: bool) -> String {
    if ok { "yes" } else { "NO" }.to_owned()
}

pub(crate) fn kib(v: Option<u64>) -> String {
    v.map_or("?".to_owned(), |k| {
        format!("{:.1} MiB ({k} KiB)", k as f64 / 1024.0)
    })
}

pub(crate) fn secs(start: Instant, now: Instant) -> f64 {
    now.duration_since(start).as_secs_f64()
}
