//! The accept loop both floors (`examples/floor.rs`, `examples/forward_floor.rs`) run: tokio's
//! single-threaded runtime, one listener, every connection (with `TCP_NODELAY`, as the gateway
//! sets it) handed to `serve`, until `lifetime` is over.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

pub fn run(
    listen: SocketAddr,
    lifetime: Duration,
    mut serve: impl FnMut(TcpStream),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(listen).await?;
        let lifetime = tokio::time::sleep(lifetime);
        tokio::pin!(lifetime);
        loop {
            let stream = tokio::select! {
                () = &mut lifetime => return Ok(()),
                accepted = listener.accept() => accepted?.0,
            };
            stream.set_nodelay(true)?;
            serve(stream);
        }
    })
}
