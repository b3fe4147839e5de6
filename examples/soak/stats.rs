//! Tallies: answers and unanswered requests by kind, Cache-Status classes, a latency histogram.

use super::*;
use crate::load::Answer;

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) requests: u64,
    pub(crate) kinds: BTreeMap<String, u64>,
    pub(crate) classes: BTreeMap<String, u64>,
    pub(crate) errors: BTreeMap<String, u64>,
    /// The first body seen for each error kind, shortened.
    pub(crate) samples: BTreeMap<String, String>,
    pub(crate) cache: BTreeMap<String, u64>,
    pub(crate) unanswered: BTreeMap<String, u64>,
    pub(crate) slow: u64,
    pub(crate) hist: Hist,
    pub(crate) window: Window,
}

/// The figures of one report interval.
#[derive(Default)]
pub(crate) struct Window {
    pub(crate) errors: u64,
    pub(crate) unanswered: u64,
    pub(crate) hist: Hist,
}

impl Stats {
    pub(crate) fn answered(&mut self, kind: &str, answer: &Answer, latency: Duration) {
        self.requests += 1;
        let status = answer.status.as_u16();
        *self
            .kinds
            .entry(format!("{kind} {}xx", status / 100))
            .or_default() += 1;
        *self
            .classes
            .entry(format!("{}xx", status / 100))
            .or_default() += 1;
        if status >= 400 {
            let label = match &answer.gateway_error {
                Some(code) => format!("{code} ({status})"),
                None => format!("koodrive {status} ({kind})"),
            };
            if !self.samples.contains_key(&label) {
                let body = String::from_utf8_lossy(&answer.body);
                let sample = body.chars().take(120).collect();
                self.samples.insert(label.clone(), sample);
            }
            *self.errors.entry(label).or_default() += 1;
            self.window.errors += 1;
        }
        if let Some(cache) = &answer.cache {
            *self.cache.entry(cache_class(cache)).or_default() += 1;
        }
        if latency > UPSTREAM_TIMEOUT + Duration::from_millis(500) {
            self.slow += 1;
        }
        self.hist.add(latency);
        self.window.hist.add(latency);
    }

    pub(crate) fn unanswered(&mut self, kind: &str, why: String) {
        self.requests += 1;
        *self.kinds.entry(format!("{kind} unanswered")).or_default() += 1;
        *self.unanswered.entry(why).or_default() += 1;
        self.window.unanswered += 1;
    }
}

/// `koodrive-gateway; fwd=miss; stored` -> `fwd=miss,stored`; `ttl=` is dropped.
pub(crate) fn cache_class(value: &str) -> String {
    value
        .split(';')
        .skip(1)
        .map(str::trim)
        .filter(|part| !part.starts_with("ttl="))
        .collect::<Vec<_>>()
        .join(",")
}

/// Log-scale latency histogram, ~2% resolution, 1 us to hours.
pub(crate) struct Hist {
    pub(crate) counts: Vec<u64>,
    pub(crate) n: u64,
    pub(crate) max_us: u64,
}

pub(crate) const PER_E: f64 = 50.0;

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: vec![0; 1200],
            n: 0,
            max_us: 0,
        }
    }
}

impl Hist {
    pub(crate) fn add(&mut self, latency: Duration) {
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = ((us as f64 + 1.0).ln() * PER_E) as usize;
        let last = self.counts.len() - 1;
        self.counts[bucket.min(last)] += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
    }

    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        let target = ((q * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= target {
                let us = ((bucket as f64 + 0.5) / PER_E).exp() - 1.0;
                return us.min(self.max_us as f64) / 1000.0;
            }
        }
        0.0
    }
}

// The fault front between the gateway and the mock.
