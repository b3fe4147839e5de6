//! The log writer: lines are appended to a buffer on the calling thread and written out in
//! batches by a background thread, like nginx's `access_log ... buffer=64k flush=...`.
//!
//! Handing each line to a writer thread on its own (tracing-appender's non-blocking writer)
//! costs a channel hand-off, a `write` and, on a one-core sidecar, a couple of `sched_yield`s per
//! line, more than the cache hit it logs. Here a line costs a lock and a copy; the thread wakes
//! once per batch. Only access-log lines wait for a batch:
//! any other line (startup, reload, warnings, errors) is written at once, with those before it.
//! Nothing is dropped: when the output stalls, callers wait once `max_pending` bytes are queued.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::Metadata;
use tracing_subscriber::fmt::MakeWriter;

/// When a batch is written.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A batch this large is written at once.
    pub batch: usize,
    /// The longest a line waits for its batch to fill.
    pub flush_after: Duration,
    /// Callers wait while this much is queued and the output has not taken it.
    pub max_pending: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            batch: 64 * 1024,
            flush_after: Duration::from_millis(100),
            max_pending: 4 * 1024 * 1024,
        }
    }
}

/// The `MakeWriter` for the fmt layer (cloned into it).
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread once everything queued is written; held for the process's lifetime.
pub struct Flush {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// The writer thread waits here for a batch to start, fill or turn urgent.
    wake: Condvar,
    /// Callers wait here for room when the output has stalled.
    room: Condvar,
    limits: Limits,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    urgent: bool,
    closed: bool,
}

/// Starts the writer thread over `out`.
pub fn spawn<W: Write + Send + 'static>(
    out: W,
    limits: Limits,
) -> io::Result<(BatchWriter, Flush)> {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        wake: Condvar::new(),
        room: Condvar::new(),
        limits,
    });
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn({
            let shared = Arc::clone(&shared);
            move || shared.write_batches(out)
        })?;
    let flush = Flush {
        shared: Arc::clone(&shared),
        thread: Some(thread),
    };
    Ok((BatchWriter { shared }, flush))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, line: &[u8], urgent: bool) {
        let mut pending = self.lock();
        while pending.bytes.len() >= self.limits.max_pending && !pending.closed {
            pending = self
                .room
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let before = pending.bytes.len();
        pending.bytes.extend_from_slice(line);
        pending.urgent |= urgent;
        // Each notify is a syscall: only when the thread has something new to act on.
        let filled = before < self.limits.batch && pending.bytes.len() >= self.limits.batch;
        if before == 0 || urgent || filled {
            self.wake.notify_one();
        }
    }

    fn write_batches<W: Write>(&self, mut out: W) {
        let mut batch = Vec::new();
        loop {
            {
                let mut pending = self.lock();
                while pending.bytes.is_empty() && !pending.closed {
                    pending = self
                        .wake
                        .wait(pending)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if pending.bytes.is_empty() {
                    return; // closed, and everything written
                }
                // A batch has started: give it until it fills, turns urgent or its time is up.
                let deadline = Instant::now() + self.limits.flush_after;
                while !pending.closed && !pending.urgent && pending.bytes.len() < self.limits.batch
                {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    pending = self
                        .wake
                        .wait_timeout(pending, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                std::mem::swap(&mut pending.bytes, &mut batch);
                pending.urgent = false;
            }
            self.room.notify_all();
            // A log that cannot be written (stdout closed) must not stop the gateway.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            // After a burst, give back what a backlog grew the buffer to.
            batch.shrink_to(self.limits.batch);
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One event's line: the fmt layer formats it whole, then writes it with one `write_all`.
pub struct Line<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared.push(buf, self.urgent);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            shared: &self.shared,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        Line {
            shared: &self.shared,
            urgent: meta.target() != super::ACCESS_TARGET,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An output the test can read while the writer thread writes to it.
    #[derive(Clone, Default)]
    struct Sink(Arc<(Mutex<Vec<u8>>, Condvar)>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (bytes, changed) = &*self.0;
            bytes.lock().unwrap().extend_from_slice(buf);
            changed.notify_all();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0 .0.lock().unwrap().clone()).unwrap()
        }

        /// Waits (up to a minute) until `done` holds for what was written.
        fn wait_for(&self, done: impl Fn(&str) -> bool) -> String {
            let (bytes, changed) = &*self.0;
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut guard = bytes.lock().unwrap();
            loop {
                let text = String::from_utf8(guard.clone()).unwrap();
                if done(&text) {
                    return text;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "not written in time; so far:\n{text}");
                guard = changed.wait_timeout(guard, left).unwrap().0;
            }
        }
    }

    /// Writes a line as the fmt layer does: an access-log line, or an urgent one.
    fn line(writer: &BatchWriter, urgent: bool, text: &str) {
        let mut line = Line {
            shared: &writer.shared,
            urgent,
        };
        line.write_all(text.as_bytes()).unwrap();
    }

    const NEVER: Duration = Duration::from_secs(3600);

    #[test]
    fn every_line_arrives_whole_and_in_order_by_the_time_the_guard_drops() {
        let sink = Sink::default();
        let (writer, flush) = spawn(sink.clone(), Limits::default()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        line(&writer, false, &format!("t{t} line {i:05}\n"));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(flush);
        let text = sink.text();
        assert_eq!(text.lines().count(), 20_000);
        for t in 0..4 {
            let prefix = format!("t{t} ");
            let mine: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
            let expected: Vec<String> = (0..5_000).map(|i| format!("t{t} line {i:05}")).collect();
            assert_eq!(mine, expected);
        }
    }

    #[test]
    fn a_started_batch_is_written_within_flush_after() {
        let sink = Sink::default();
        let limits = Limits {
            flush_after: Duration::from_millis(50),
            ..Limits::default()
        };
        let (writer, _flush) = spawn(sink.clone(), limits).unwrap();
        line(&writer, false, "lonely\n");
        sink.wait_for(|text| text == "lonely\n");
    }

    #[test]
    fn an_urgent_line_is_written_at_once_with_the_lines_before_it() {
        let sink = Sink::default();
        let limits = Limits {
            flush_after: NEVER,
            ..Limits::default()
        };
        let (writer, _flush) = spawn(sink.clone(), limits).unwrap();
        line(&writer, false, "before\n");
        line(&writer, true, "warned\n");
        sink.wait_for(|text| text == "before\nwarned\n");
        line(&writer, true, "failed\n");
        sink.wait_for(|text| text.ends_with("failed\n"));
    }

    #[test]
    fn a_full_batch_is_written_without_waiting_for_its_time() {
        let sink = Sink::default();
        let limits = Limits {
            batch: 1024,
            flush_after: NEVER,
            ..Limits::default()
        };
        let (writer, _flush) = spawn(sink.clone(), limits).unwrap();
        let text = "x".repeat(99) + "\n";
        for _ in 0..11 {
            line(&writer, false, &text);
        }
        sink.wait_for(|written| written.len() >= 1024);
    }

    /// An output that takes nothing until the test lets it.
    struct Stalled {
        open: Arc<(Mutex<bool>, Condvar)>,
        sink: Sink,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, opened) = &*self.open;
            let mut guard = open.lock().unwrap();
            while !*guard {
                guard = opened.wait(guard).unwrap();
            }
            self.sink.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_holds_callers_back_and_loses_nothing() {
        let sink = Sink::default();
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let stalled = Stalled {
            open: Arc::clone(&open),
            sink: sink.clone(),
        };
        let limits = Limits {
            batch: 100,
            flush_after: Duration::from_millis(1),
            max_pending: 1000,
        };
        let (writer, flush) = spawn(stalled, limits).unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let producer = std::thread::spawn(move || {
            for i in 0..1000 {
                line(&writer, false, &format!("{i:09}\n"));
            }
            done_tx.send(()).unwrap();
        });
        // 10,000 bytes cannot fit in one stalled batch plus 1,000 pending.
        assert!(done_rx.recv_timeout(Duration::from_millis(300)).is_err());
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        producer.join().unwrap();
        drop(flush);
        let expected: String = (0..1000).map(|i| format!("{i:09}\n")).collect();
        assert_eq!(sink.text(), expected);
    }
}
