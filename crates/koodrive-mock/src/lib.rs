//! The one mock KooDrive, on loopback sockets, for `koodrive-gateway --demo` and every test:
//!
//! - [`MockKooDrive`] behaves like KooDrive: it checks app signatures (with its own reading of the
//!   published algorithm, [`signature`]) or bearer tokens and `X-Date`, serves each user's tasks in
//!   KooDrive's wire shape with cursor paging, creates tasks and moves them through their states.
//! - [`Mock`] answers as a test scripts it ([`Reply`]: status, headers, body, delay, hold, gate,
//!   chunked, dropped connection) and records every request ([`Recorded`]), its hits and its
//!   connections.
//! - [`FaultServer`] misbehaves below HTTP (resets, stalls, garbage, bombs), one request per
//!   connection.
//!
//! Both HTTP mocks share one accept loop (HTTP/1.1 and h2c with prior knowledge, a graceful
//! stop, every connection closed on drop).
//!
//! ```
//! use koodrive_mock::{MockAuth, MockKooDrive};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let auth = MockAuth { app_id: "app".into(), app_secret: "secret".into(), tokens: vec![] };
//! let koodrive = MockKooDrive::start(listener, auth).await?;
//! assert!(koodrive.addr().ip().is_loopback());
//! koodrive.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod faults;
pub mod koodrive;
pub mod recording;
mod server;
pub mod signature;

pub use faults::{Fault, FaultServer};
pub use koodrive::{MockAuth, MockKooDrive};
pub use recording::{ChannelBody, Mock, Recorded, Reply};
