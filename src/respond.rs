//! Upstream responses on their way back: buffered (bounded), decoded and normalized where a rule
//! applies, streamed untouched everywhere else. Normalization runs once per upstream response,
//! before anything is stored, so a cache hit does no JSON work.

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::BodyExt;

use crate::body::{self, Body};
use crate::budget::{Budget, Reservation};
use crate::cache::Page;
use crate::error::GatewayError;
use crate::headers;
use crate::metrics::{Metrics, ReasonLabels};
use crate::normalize::{self, Code, DecodeError, Outcome, Rule};
use crate::quota::Quota;
use crate::upstream::DeadlineElapsed;

/// A body read up to a bound: whole, or the part read so far plus the rest still streaming
/// (over the bound, or over what the memory budget had free).
enum Read {
    Whole(Bytes),
    Partial(Bytes, Body, Stopped),
}

/// Why a body was not read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    TooLarge,
    OverBudget,
}

/// Reads a body whole up to `limit`, each frame reserved in `held` before it is kept. A body
/// that comes in one frame (most pages) is kept as it came, not copied; the frames of one that
/// does not are gathered in a buffer sized once from a declared length, so that it does not
/// grow by doubling past what is counted.
async fn read_up_to(
    mut body: Body,
    declared: Option<u64>,
    limit: usize,
    held: &mut Reservation,
) -> Result<Read, GatewayError> {
    let capacity = declared
        .and_then(|len| usize::try_from(len).ok())
        .filter(|len| *len <= limit)
        .unwrap_or(0);
    let mut first = Bytes::new();
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| match e.downcast_ref::<DeadlineElapsed>() {
            Some(elapsed) => GatewayError::UpstreamTimeout(elapsed.0),
            None => GatewayError::UpstreamProtocol(e),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let total = first.len() + buffer.len() + data.len();
        if total <= limit && !held.grow_to(total as u64) {
            let rest = body::prefixed(data, body);
            return Ok(Read::Partial(
                gathered(first, buffer),
                rest,
                Stopped::OverBudget,
            ));
        }
        if first.is_empty() && buffer.is_empty() {
            first = data;
        } else {
            if buffer.is_empty() {
                buffer.reserve(capacity.max(total));
                buffer.extend_from_slice(&std::mem::take(&mut first));
            }
            buffer.extend_from_slice(&data);
        }
        if total > limit {
            return Ok(Read::Partial(
                gathered(first, buffer),
                body,
                Stopped::TooLarge,
            ));
        }
    }
    Ok(Read::Whole(gathered(first, buffer)))
}

/// What [`read_up_to`] read: the one frame, or the frames gathered.
fn gathered(first: Bytes, buffer: BytesMut) -> Bytes {
    match buffer.is_empty() {
        true => first,
        false => buffer.freeze(),
    }
}

/// Counts `body`, which replaces what `held` held, in its place: false if the budget has not
/// the room (the caller then gives up on it).
fn hold_instead(held: &mut Reservation, body: &Bytes) -> bool {
    let len = body.len() as u64;
    let ok = held.grow_to(len);
    held.shrink_to(len);
    ok
}

/// The body as plain bytes: decoded per `Content-Encoding`, bounded by `limit` after decoding
/// (a compression bomb is cut off as a 502, never an out-of-memory).
fn decoded(headers: &mut HeaderMap, raw: Bytes, limit: usize) -> Result<Bytes, GatewayError> {
    // An empty body has nothing to decode, whatever its label says.
    let Some(encoding) = headers.get(CONTENT_ENCODING).filter(|_| !raw.is_empty()) else {
        return Ok(raw);
    };
    let encoding = encoding.to_str().unwrap_or("unknown").to_owned();
    let plain = normalize::decode(&encoding, &raw, limit).map_err(|e| match e {
        DecodeError::TooLarge { .. } => GatewayError::UpstreamBodyTooLarge,
        other => GatewayError::UpstreamProtocol(Box::new(other)),
    })?;
    headers.remove(CONTENT_ENCODING);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(plain.len()));
    Ok(plain)
}

/// Rewrites a whole JSON body: success bodies by `rule`, error bodies into one error shape.
fn rewrite(page: &mut Page, rule: Option<&Rule>, metrics: &Metrics) {
    let rewritten = if page.status.is_success() {
        match rule.map(|rule| normalize::normalize_page(rule, &page.body)) {
            Some((Outcome::Normalized { body, mismatches }, code)) => {
                metrics.normalize_mismatches.inc_by(mismatches as u64);
                page.code = code;
                Some(body)
            }
            Some((Outcome::PassThrough(reason), _)) => {
                fallback(metrics, reason.as_str());
                None
            }
            None => None,
        }
    } else {
        normalize::normalize_error_body(&page.body, rule.is_some_and(Rule::code_is_string))
    };
    if let Some(body) = rewritten {
        page.body = body;
    }
    page.headers
        .insert(CONTENT_LENGTH, HeaderValue::from(page.body.len()));
}

fn fallback(metrics: &Metrics, reason: &'static str) {
    metrics
        .normalize_fallbacks
        .get_or_create(&ReasonLabels { reason })
        .inc();
    tracing::info!(reason, "body not normalized; passed through");
}

/// Reads a whole response into a normalized [`Page`] (the task list's path: it is shared with
/// collapsed waiters and stored, so it must be whole). A body over `limit` is
/// [`GatewayError::PageTooLarge`]: each request then streams it through with [`shape`].
pub async fn page(
    response: Response<Body>,
    rule: Option<&Rule>,
    limit: usize,
    budget: &Budget,
    metrics: &Metrics,
    quota: &Quota,
) -> Result<Page, GatewayError> {
    // A page larger than the whole budget could never be buffered: too large, as over the bound.
    let limit = limit.min(usize::try_from(budget.max()).unwrap_or(usize::MAX));
    if headers::declared_length(response.headers()).is_some_and(|len| len > limit as u64) {
        return Err(GatewayError::PageTooLarge);
    }
    let declared = headers::declared_length(response.headers());
    let (parts, body) = response.into_parts();
    let mut headers = parts.headers;
    // Counted in the budget while it is read, decoded and normalized; from then on it is in
    // the cache (cache.max_bytes) or on its way to the requests that shared its fetch.
    let mut held = budget.none();
    let raw = match read_up_to(body, declared, limit, &mut held).await? {
        Read::Whole(raw) => raw,
        Read::Partial(_, _, Stopped::TooLarge) => return Err(GatewayError::PageTooLarge),
        Read::Partial(_, _, Stopped::OverBudget) => {
            return Err(GatewayError::BufferBudget(budget.max()))
        }
    };
    let mut page = Page {
        status: parts.status,
        body: Bytes::new(),
        headers: HeaderMap::new(),
        code: Code::Unknown,
    };
    // Decoded whatever its type: the fetch asked for gzip on behalf of callers who may not
    // accept it (a load balancer's HTML error page included).
    page.body = decoded(&mut headers, raw, limit)?;
    page.headers = headers;
    quota.saw_body(page.status, &page.headers, &page.body);
    if normalize::is_json(&page.headers) {
        rewrite(&mut page, rule, metrics);
    } else if rule.is_some() {
        fallback(metrics, "not_json");
    }
    if !hold_instead(&mut held, &page.body) {
        return Err(GatewayError::BufferBudget(budget.max()));
    }
    Ok(page)
}

/// Shapes a response on an uncached route: JSON success bodies with a rule and JSON error bodies
/// are normalized when they fit in `limit`; everything else streams through untouched.
pub async fn shape(
    response: Response<Body>,
    rule: Option<&Rule>,
    limit: usize,
    budget: &Budget,
    metrics: &Metrics,
    quota: &Quota,
) -> Result<Response<Body>, GatewayError> {
    let limit = limit.min(usize::try_from(budget.max()).unwrap_or(usize::MAX));
    // No content to shape (RFC 9110 section 6.4.1): a 304 may still describe the representation
    // (`Content-Encoding` too), and passes on as it came.
    if matches!(response.status().as_u16(), 100..=199 | 204 | 304) {
        return Ok(response);
    }
    let wanted = (rule.is_some() || !response.status().is_success())
        && normalize::is_json(response.headers());
    let too_large =
        headers::declared_length(response.headers()).is_some_and(|len| len > limit as u64);
    // A coding the gateway cannot undo (one the client asked for: this route passes its
    // Accept-Encoding on) streams through as it came, never a 502.
    let decodable = response
        .headers()
        .get(CONTENT_ENCODING)
        .map_or(true, |v| v.to_str().is_ok_and(normalize::decodable));
    if !wanted || too_large || !decodable {
        if wanted && too_large {
            fallback(metrics, "too_large");
        } else if wanted {
            fallback(metrics, "unsupported_encoding");
        } else if rule.is_some() && response.status().is_success() {
            fallback(metrics, "not_json");
        }
        return Ok(response);
    }
    let declared = headers::declared_length(response.headers());
    let (parts, body) = response.into_parts();
    // Counted in the budget from its first byte until hyper is done sending the answer; what
    // does not fit in the budget streams through as it came.
    let mut held = budget.none();
    let raw = match read_up_to(body, declared, limit, &mut held).await? {
        Read::Whole(raw) => raw,
        Read::Partial(prefix, rest, stopped) => {
            fallback(
                metrics,
                match stopped {
                    Stopped::TooLarge => "too_large",
                    Stopped::OverBudget => "over_budget",
                },
            );
            return Ok(Response::from_parts(parts, body::prefixed(prefix, rest)));
        }
    };
    let mut headers = parts.headers.clone();
    let body = decoded(&mut headers, raw, limit)?;
    if !hold_instead(&mut held, &body) {
        return Err(GatewayError::BufferBudget(budget.max()));
    }
    quota.saw_body(parts.status, &headers, &body);
    let mut page = Page {
        status: parts.status,
        headers,
        body,
        code: Code::Unknown,
    };
    rewrite(&mut page, rule, metrics);
    if !hold_instead(&mut held, &page.body) {
        return Err(GatewayError::BufferBudget(budget.max()));
    }
    let mut response = Response::from_parts(parts, body::full_holding(page.body, held));
    *response.headers_mut() = page.headers;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(body: Body, limit: usize) -> (Bytes, bool) {
        let budget = Budget::new(1 << 20, Default::default());
        let mut held = budget.none();
        match read_up_to(body, None, limit, &mut held).await {
            Ok(Read::Whole(bytes)) => (bytes, true),
            Ok(Read::Partial(bytes, _, _)) => (bytes, false),
            Err(error) => panic!("{error}"),
        }
    }

    #[tokio::test]
    async fn a_body_in_one_frame_is_kept_as_it_came() {
        let page = Bytes::from(br#"{"code":"0"}"#.to_vec());
        let (read, whole) = read(body::full(page.clone()), 100).await;
        assert!(whole);
        assert_eq!(read, page);
        assert_eq!(read.as_ptr(), page.as_ptr(), "not copied");
    }

    #[tokio::test]
    async fn frames_are_gathered_up_to_the_limit() {
        let two = |a: &'static str, b: &'static str| body::two_pieces(a.into(), b.into());
        assert_eq!(read(two("abc", "def"), 6).await, ("abcdef".into(), true));
        assert_eq!(read(two("abc", "def"), 5).await, ("abcdef".into(), false));
        assert_eq!(
            read(body::full("abcdef"), 5).await,
            ("abcdef".into(), false)
        );
        assert_eq!(read(two("", "x"), 5).await, ("x".into(), true));
        assert_eq!(read(body::empty(), 5).await, (Bytes::new(), true));
    }
}
