//! HTTP/1.1 and HTTP/2 edges on the forwarding path, as a proxy engineer would test them. Each
//! test states what RFC 9110/9112 (and nginx/Envoy) do.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::faults::{read_head, read_head_into};
use crate::support::{exchange, status_line, within, Mock, Reply, TestGateway, TASK_LIST};

mod bodies;
mod head;
mod requests;
mod slow_readers;
mod upstream_answers;

const TOKEN_MODE: &str = "[auth]\nmode = \"token\"\naccess_token = \"tok-r3b\"\n";

/// A raw upstream that keeps connections alive: reads each request head (and a body by its
/// Content-Length), records the head, and answers with `answer(n)` (n counts requests overall).
struct RawUpstream {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    async fn start(answer: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                let answer = Arc::clone(&answer);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let Some(end) = read_head_into(&mut stream, &mut buf).await else {
                            return;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                let (n, v) = l.split_once(':')?;
                                n.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        while buf.len() < end + length {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..end + length);
                        let n = {
                            let mut heads = seen.lock().unwrap();
                            heads.push(head);
                            heads.len() - 1
                        };
                        if stream.write_all(&answer(n)).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        RawUpstream { url, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn page_json() -> String {
    r#"{"taskListDtos":[{"taskId":"1","taskName":"a","taskType":0,"status":2}],"code":0,"msg":"Success."}"#.to_owned()
}
