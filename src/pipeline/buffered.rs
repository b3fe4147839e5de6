//! Request bodies read whole (to be signed): bounded in size and held against the memory budget
//! from before their first byte is read.

use bytes::Bytes;
use http::{header, HeaderValue, Method};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::budget::{Budget, Reservation};
use crate::error::GatewayError;
use crate::headers;

/// A reservation for a body to be read whole: its declared length at once (503 when the budget
/// has not that much free now, 413 when it never could), or nothing yet for a chunked body.
pub fn reserve_declared(
    budget: &Budget,
    headers: &http::HeaderMap,
) -> Result<Reservation, GatewayError> {
    let declared = headers::declared_length(headers).unwrap_or(0);
    if declared > budget.max() {
        return Err(GatewayError::OverBudget {
            len: declared,
            budget: budget.max(),
        });
    }
    budget
        .reserve(declared)
        .ok_or(GatewayError::BufferBudget(budget.max()))
}

/// Reads a body whole, up to `limit` bytes, each frame reserved in `held` before it is kept.
pub async fn read_bounded(
    incoming: Incoming,
    limit: u64,
    held: &mut Reservation,
) -> Result<Bytes, GatewayError> {
    let mut limited = Limited::new(incoming, usize::try_from(limit).unwrap_or(usize::MAX));
    // Sized once for a declared length (reserved already), rather than grown by doubling past
    // what is counted.
    let mut buffer = bytes::BytesMut::with_capacity(usize::try_from(held.bytes()).unwrap_or(0));
    while let Some(frame) = limited.frame().await {
        let frame = frame.map_err(|e| match e.is::<http_body_util::LengthLimitError>() {
            true => GatewayError::BodyTooLarge { limit },
            false => GatewayError::ClientBody(e),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let total = (buffer.len() + data.len()) as u64;
        if !held.grow_to(total) {
            return Err(over_budget(held, total));
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer.freeze())
}

/// Why a request body could not grow to `total` bytes in the budget: it never could (413), or
/// not now (503).
fn over_budget(held: &Reservation, total: u64) -> GatewayError {
    match total > held.max() {
        true => GatewayError::OverBudget {
            len: total,
            budget: held.max(),
        },
        false => GatewayError::BufferBudget(held.max()),
    }
}

/// A buffered body has a known length: say so, except on a bodiless GET or HEAD.
pub fn set_content_length(parts: &mut http::request::Parts, len: usize) {
    let bodiless = len == 0 && (parts.method == Method::GET || parts.method == Method::HEAD);
    if bodiless && !parts.headers.contains_key(header::CONTENT_LENGTH) {
        return;
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}
