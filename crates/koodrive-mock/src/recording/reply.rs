//! What a scripted mock answers: a status, headers and body (or KooDrive's own answer), and the
//! faults to apply to it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

/// One scripted answer; the builders below set one fault each.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub delay: Duration,
    /// Wait for this before answering at all (after the delay, if any).
    pub hold: Option<Arc<Notify>>,
    /// Send the first half of the body, then wait for this before the rest.
    pub gate: Option<Arc<Notify>>,
    /// Drop the connection instead of answering.
    pub drop_connection: bool,
    /// Send the body chunked, without a Content-Length.
    pub chunked: bool,
    /// Answer with KooDrive's status, headers and body (from the mock's
    /// [`KooDrive`](crate::koodrive::KooDrive), see [`Mock::koodrive`](crate::Mock::koodrive))
    /// in place of `status`, `headers` and `body`; the delay, hold, gate, chunking and dropped
    /// connection still apply.
    pub koodrive: bool,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
            hold: None,
            gate: None,
            drop_connection: false,
            chunked: false,
            koodrive: false,
        }
    }

    pub fn ok() -> Reply {
        Reply::json(200, r#"{"code":0,"msg":"Success."}"#)
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn hold(mut self, hold: Arc<Notify>) -> Reply {
        self.hold = Some(hold);
        self
    }

    pub fn gate(mut self, gate: Arc<Notify>) -> Reply {
        self.gate = Some(gate);
        self
    }

    pub fn chunked(mut self) -> Reply {
        self.chunked = true;
        self
    }

    /// KooDrive's own answer to the request (see the `koodrive` field).
    pub fn koodrive() -> Reply {
        Reply {
            koodrive: true,
            ..Reply::ok()
        }
    }

    pub fn drop_connection() -> Reply {
        Reply {
            drop_connection: true,
            ..Reply::ok()
        }
    }
}
