//! A small HTTP client for the tests (HTTP/1.1, or cleartext HTTP/2 with prior knowledge).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::within;

#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    inner: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build(HttpConnector::new());
        Client { addr, inner }
    }

    /// A client that speaks cleartext HTTP/2 (prior knowledge) to the same address.
    pub fn http2(addr: SocketAddr) -> Client {
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(HttpConnector::new());
        Client { addr, inner }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder().method(method).uri(self.url(path))
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(
            self.request(Method::GET, path)
                .body(Full::default())
                .unwrap(),
        )
        .await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        let builder = with_headers(self.request(Method::GET, path), headers);
        self.send(builder.body(Full::default()).unwrap()).await
    }

    /// A POST of a whole body (a task write, a purge), with its `Content-Length`.
    pub async fn post_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> TestResponse {
        let builder = with_headers(self.request(Method::POST, path), headers);
        self.send(builder.body(Full::new(body.into())).unwrap())
            .await
    }

    pub async fn send(&self, request: Request<Full<Bytes>>) -> TestResponse {
        within("a response", async {
            let response = self.inner.request(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            TestResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        })
        .await
    }

    /// Sends and returns the response head with the body still streaming.
    pub async fn send_streaming(
        &self,
        request: Request<Full<Bytes>>,
    ) -> http::Response<hyper::body::Incoming> {
        within("response headers", self.inner.request(request))
            .await
            .unwrap()
    }
}

/// The headers in order; a name given twice is sent twice.
fn with_headers(
    mut builder: http::request::Builder,
    headers: &[(&str, &str)],
) -> http::request::Builder {
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
}
