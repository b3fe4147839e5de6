//! The accept loop every mock shares: HTTP/1.1 and h2c with prior knowledge on one listener,
//! connections counted, a graceful stop, and every connection closed when the server is dropped.

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// How long a graceful stop lets open connections finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

type BoxError = Box<dyn StdError + Send + Sync>;

/// A listener being served from a spawned task; dropping it aborts the task and so every
/// connection it holds.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `listener` with `handle` for every request of every connection.
    pub(crate) fn spawn<F, Fut, B, E>(listener: TcpListener, handle: F) -> std::io::Result<Server>
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
        E: Into<BoxError> + 'static,
    {
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept(listener, handle, Arc::clone(&connections), stopped));
        Ok(Server {
            addr,
            connections,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Stops accepting, lets requests in flight finish (up to 5 s), then closes every connection.
    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept<F, Fut, B, E>(
    listener: TcpListener,
    handle: F,
    connections: Arc<AtomicUsize>,
    mut stop: oneshot::Receiver<()>,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    E: Into<BoxError> + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    // Connection tasks live in the set, so aborting this task (on drop) closes them all.
    let mut open = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = open.join_next(), if !open.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // e.g. too many open files: back off instead of spinning.
                        tracing::warn!(%error, "mock KooDrive accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                connections.fetch_add(1, Ordering::SeqCst);
                // As KooDrive's servers answer: without Nagle's algorithm, which would hold a
                // reply's second write for the gateway's delayed ACK (about 40 ms) on a connection
                // reused after a short pause, timing that belongs to the mock, not the gateway.
                let _ = stream.set_nodelay(true);
                let service = service_fn(handle.clone());
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                open.spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "mock KooDrive connection ended");
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
}
