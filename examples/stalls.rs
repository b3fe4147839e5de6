//! The host's stalls during a `bench/compare.sh` load run: how often the CPU it runs on was taken
//! away from this machine. On a virtual machine the hypervisor can stop a virtual CPU for
//! milliseconds; every process on that CPU then stalls as long, and no steal time need show it.
//!
//! ```text
//! chrt -f 50 taskset -c 0 stalls --millis 10000
//! ```
//!
//! It wakes every millisecond for `--millis` and counts how late each wake-up was. Run it as a
//! real-time task (`chrt -f`), so that no task on its CPU can delay it: a late wake-up then means
//! the CPU itself did not run (or ran the kernel with preemption off). It prints one line:
//!
//! ```text
//! wakeups=9812 late_0.5ms=14 late_1ms=6 late_2ms=1 late_total_ms=18.4 max_ms=2.61
//! ```
//!
//! where `late_total_ms` adds up the wake-ups at least 0.5 ms late. Its wake-up a millisecond
//! costs its CPU about 2% under load, the same for every server the bench measures; the bench
//! runs it only when asked (`STALLS=1`).

use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    /// How long to watch, in milliseconds.
    #[arg(long)]
    millis: u64,
}

const TICK: Duration = Duration::from_millis(1);

/// Wake-ups late by at least 0.5, 1 and 2 ms.
const THRESHOLDS: [Duration; 3] = [
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_millis(2),
];

#[derive(Debug, Default)]
struct Lateness {
    wakeups: u64,
    over: [u64; 3],
    total: Duration,
    max: Duration,
}

impl Lateness {
    fn record(&mut self, late: Duration) {
        self.wakeups += 1;
        self.max = self.max.max(late);
        for (count, threshold) in self.over.iter_mut().zip(THRESHOLDS) {
            *count += u64::from(late >= threshold);
        }
        if late >= THRESHOLDS[0] {
            self.total += late;
        }
    }
}

impl std::fmt::Display for Lateness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [half, one, two] = self.over;
        write!(
            f,
            "wakeups={} late_0.5ms={half} late_1ms={one} late_2ms={two} late_total_ms={:.1} max_ms={:.2}",
            self.wakeups,
            self.total.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3,
        )
    }
}

fn main() {
    let cli = Cli::parse();
    let end = Instant::now() + Duration::from_millis(cli.millis);
    let mut lateness = Lateness::default();
    loop {
        let asleep = Instant::now();
        if asleep >= end {
            break;
        }
        std::thread::sleep(TICK);
        lateness.record(asleep.elapsed().saturating_sub(TICK));
    }
    println!("{lateness}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_threshold_and_adds_up_only_the_late_ones() {
        let mut lateness = Lateness::default();
        for micros in [10, 499, 500, 999, 1_000, 2_500] {
            lateness.record(Duration::from_micros(micros));
        }
        assert_eq!(lateness.wakeups, 6);
        assert_eq!(lateness.over, [4, 2, 1]);
        assert_eq!(
            lateness.total,
            Duration::from_micros(500 + 999 + 1_000 + 2_500)
        );
        assert_eq!(lateness.max, Duration::from_micros(2_500));
        assert_eq!(
            lateness.to_string(),
            "wakeups=6 late_0.5ms=4 late_1ms=2 late_2ms=1 late_total_ms=5.0 max_ms=2.50"
        );
    }
}
