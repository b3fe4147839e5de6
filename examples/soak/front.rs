//! The fault front between the gateway and the mock: counts upstream calls, injects 503s, delays and drops.

use super::*;

pub(crate) struct Front {
    pub(crate) mock: SocketAddr,
    pub(crate) client: Client<HttpConnector, Body>,
    pub(crate) fault_rate: f64,
    pub(crate) calls: AtomicU64,
    pub(crate) faults: Mutex<BTreeMap<&'static str, u64>>,
}

pub(crate) async fn serve_front(listener: TcpListener, front: Arc<Front>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let front = Arc::clone(&front);
        let service = hyper::service::service_fn(move |request| {
            let front = Arc::clone(&front);
            async move { front.handle(request).await }
        });
        tokio::spawn(async move {
            // An error here is a dropped connection: the drop fault, or the gateway hanging up.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Front {
    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Body>, FrontError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let roll = fastrand::f64() * 3.0;
        let fault = if roll < self.fault_rate {
            "503"
        } else if roll < 2.0 * self.fault_rate {
            "delay"
        } else if roll < 3.0 * self.fault_rate {
            "drop"
        } else {
            ""
        };
        if !fault.is_empty() {
            *lock(&self.faults).entry(fault).or_default() += 1;
        }
        match fault {
            "503" => {
                let body = r#"{"code":13000503,"msg":"soak: injected 503"}"#;
                let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                return Ok(response);
            }
            "delay" => tokio::time::sleep(DELAY_FAULT).await,
            "drop" => return Err(FrontError("soak: injected connection drop".into())),
            _ => {}
        }
        self.forward(request)
            .await
            .map_err(|e| FrontError(format!("soak: forwarding to the mock: {e}")))
    }

    pub(crate) async fn forward(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Body>, BoxError> {
        let (mut parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("http://{}{path}", self.mock).parse()?;
        let response = self
            .client
            .request(Request::from_parts(parts, Full::new(body)))
            .await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response::from_parts(parts, Full::new(body)))
    }
}

/// Returned by the front's service: hyper then closes the connection without an answer.
#[derive(Debug)]
pub(crate) struct FrontError(String);

impl std::fmt::Display for FrontError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FrontError {}
