//! OpenTelemetry export (feature `otlp`): the request and upstream spans go to an OTLP/HTTP
//! collector as protobuf, batched on the tokio runtime, and W3C trace context is read from the
//! caller and written upstream. Span fields become span attributes under their own names, so the
//! X-Traceid is the attribute `trace_id`.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::registry::LookupSpan;

use super::TelemetryError;
use crate::tls::tls_config;

/// Bound on one export request, connect included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on the final flush at exit, so an unreachable collector cannot hold the process.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// The OTLP span pipeline: exporter, batch processor and the provider that owns them.
pub struct Export {
    provider: SdkTracerProvider,
}

impl Export {
    /// Builds the exporter posting to `<endpoint>/v1/traces`; needs a tokio runtime, where the
    /// batch processor runs (its schedule follows the standard `OTEL_BSP_*` variables).
    pub fn new(endpoint: &Uri, service_name: &str) -> Result<Export, TelemetryError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(None).map_err(TelemetryError::Tls)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(HyperClient::new(https, EXPORT_TIMEOUT, None))
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint))
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(TelemetryError::Exporter)?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter, Tokio).build())
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name.to_owned())
                    .build(),
            )
            .build();
        Ok(Export { provider })
    }

    /// The tracing layer that turns spans into OpenTelemetry spans for this pipeline.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer(env!("CARGO_PKG_NAME")))
    }

    /// Exports what is queued and stops; bounded by `SHUTDOWN_TIMEOUT`.
    pub async fn shutdown(self) {
        let provider = self.provider;
        // The provider blocks until the batch task (on this runtime) has exported.
        let flush = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "OTLP export at shutdown failed"),
            Ok(Err(error)) => tracing::warn!(%error, "OTLP export at shutdown failed"),
            Err(_) => tracing::warn!("OTLP export at shutdown timed out"),
        }
    }
}

fn traces_url(endpoint: &Uri) -> String {
    format!("{}/v1/traces", endpoint.to_string().trim_end_matches('/'))
}

/// Makes the request span a child of the caller's W3C `traceparent`; without a valid one the
/// span starts a new trace.
pub fn adopt_parent(headers: &HeaderMap, span: &tracing::Span) {
    if !headers.contains_key(TRACEPARENT) {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed (no endpoint): nothing to adopt.
        let _ = span.set_parent(parent);
    }
}

/// Replaces the caller's `traceparent`/`tracestate` with the current span's, so KooDrive's
/// side of the call is a child of the gateway's span. Without export (no valid span context)
/// the caller's headers pass through unchanged.
pub fn inject_context(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return;
    }
    headers.remove(TRACEPARENT);
    headers.remove(TRACESTATE);
    TraceContextPropagator::new().inject_context(&context, &mut HeadersMut(headers));
}

/// Reads trace context from request headers (values that are not visible ASCII are skipped).
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes trace context into request headers.
struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn traces_go_to_v1_traces_under_the_endpoint() {
        for (endpoint, url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://c:4318/", "http://c:4318/v1/traces"),
            ("https://c/otel", "https://c/otel/v1/traces"),
        ] {
            assert_eq!(traces_url(&endpoint.parse().unwrap()), url);
        }
    }

    #[test]
    fn trace_context_round_trips_through_headers() {
        let mut incoming = HeaderMap::new();
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        incoming.insert(TRACEPARENT, HeaderValue::from_static(parent));
        incoming.insert(TRACESTATE, HeaderValue::from_static("k=v"));
        let propagator = TraceContextPropagator::new();
        let context = propagator.extract(&Headers(&incoming));
        assert!(context.span().span_context().is_valid());
        let mut outgoing = HeaderMap::new();
        propagator.inject_context(&context, &mut HeadersMut(&mut outgoing));
        assert_eq!(outgoing.get(TRACEPARENT).unwrap(), parent);
        assert_eq!(outgoing.get(TRACESTATE).unwrap(), "k=v");
    }

    #[test]
    fn without_a_layer_the_callers_traceparent_passes_through() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static("00-x-y-01"));
        inject_context(&mut headers);
        assert_eq!(headers.get(TRACEPARENT).unwrap(), "00-x-y-01");
    }
}
