use super::*;

/// Feeds `stream` in pieces of `step` bytes; returns the flagged index and the final state.
fn scan(stream: &[u8], step: usize) -> (Option<u64>, State, u64) {
    let framing = Framing::default();
    let mut scan = Scan {
        state: State::Head,
        heads: 0,
        partial: Vec::new(),
        max_head: 64 * 1024,
    };
    for piece in stream.chunks(step) {
        scan.feed(piece, &framing);
    }
    let flagged = framing.flagged.load(Ordering::Relaxed);
    (
        (flagged != u64::MAX).then_some(flagged),
        scan.state,
        scan.heads,
    )
}

const GET: &str = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
const POST: &str = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
const CHUNKED: &str = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;ext=1\r\nhello\r\n10 \t;x\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n";

#[test]
fn follows_requests_in_any_split() {
    let stream = [GET, POST, CHUNKED, GET, "\r\n", GET, CHUNKED, POST].concat();
    for step in [1, 2, 3, 7, 64, stream.len()] {
        assert_eq!(
            scan(stream.as_bytes(), step),
            (None, State::Head, 7),
            "step {step}"
        );
    }
}

#[test]
fn flags_the_first_ambiguous_head() {
    let cases = [
        "POST /a HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "POST /a HTTP/1.1\r\ntransfer-encoding: identity\r\ncontent-length: 5\r\n\r\n",
        "POST /a HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
    ];
    for ambiguous in cases {
        // After two good requests, one with a body that looks like a head.
        let smuggled = format!(
            "POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n{ambiguous}",
            ambiguous.len()
        );
        let stream = [GET, &smuggled, ambiguous, GET].concat();
        for step in [1, 5, stream.len()] {
            let (flagged, state, _) = scan(stream.as_bytes(), step);
            assert_eq!(
                (flagged, state),
                (Some(2), State::Off),
                "{ambiguous:?} {step}"
            );
        }
    }
}

#[test]
fn upgrade_and_connect_requests_are_followed_like_any_other() {
    let firsts = [
        "GET /a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT x:443 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    ];
    for first in firsts {
        let stream = [
            first,
            "POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        ];
        for step in [1, 7, 4096] {
            let (flagged, state, _) = scan(stream.concat().as_bytes(), step);
            assert_eq!((flagged, state), (Some(1), State::Off), "{first:?} {step}");
        }
    }
}

#[test]
fn stops_quietly_after_http2s_whole_preface_however_it_comes() {
    // Nothing after it is read, so nothing after it is flagged.
    let stream = [
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    ]
    .concat();
    for step in 1..=stream.len() {
        assert_eq!(
            scan(stream.as_bytes(), step),
            (None, State::Off, 0),
            "step {step}"
        );
    }
}

#[test]
fn flags_the_request_where_it_cannot_follow() {
    let heads = [
        // Not HTTP/2 after all: hyper-util's `auto` serves these as HTTP/1, which refuses them.
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r",
        "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
        "GET /a HTTP/1.1\r\nbad header\r\n\r\n",
        "POST /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST /a HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n",
    ];
    // HTTP/2's preface is that only as a connection's first bytes.
    let later = format!("{GET}PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let chunked = "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let bodies = [
        "zz\r\n",
        "\r\n",
        "2\r\nab\n",
        "2\r\nab\r\r",
        "0\n",
        "0 1\r\n",
        "0;x\n",
        "0\r\r\n",
        "0\r\n\r\r\n",
        "0\r\nX: a\rb\r\n\r\n",
        "ffffffffffffffffff\r\n",
    ];
    // The head it cannot read, or the one after the body it cannot follow.
    let cases = heads
        .iter()
        .map(|head| (head.to_string(), 0))
        .chain([(later, 1)])
        .chain(
            bodies
                .iter()
                .map(|body| (format!("{GET}{chunked}{body}"), 2)),
        );
    for (case, index) in cases {
        let stream = [&case, "X", GET].concat();
        for step in [1, 3, stream.len()] {
            let (flagged, state, _) = scan(stream.as_bytes(), step);
            assert_eq!((flagged, state), (Some(index), State::Off), "{case:?}");
        }
    }
}

#[test]
fn a_chunked_body_ends_where_hyper_ends_it() {
    // After the last chunk, hyper takes any byte but `\r` as the start of a trailer line,
    // and a trailer line runs to its `\r\n`, bare `\n`s and all. So after some of these
    // the GET that follows is read as trailers, not as a request.
    let cases = [
        ("0\r\n\r\n", 2),
        ("0 \t;x=\"y\"\r\nX-Trailer: 1\r\n\r\n", 2),
        ("0\r\n\n\r\n\r\n", 2),
        ("0\r\nX-Trailer: 1\n\r\n\r\n", 2),
        ("0\r\nX\nY\r\n\r\n", 2),
        ("0\r\n\n\r\n", 1),
        ("0\r\n\n\n\r\n", 1),
        ("0\r\nX-Trailer: 1\n\r\n", 1),
        ("0\r\nX-Trailer: 1\r\n\n\r\n", 1),
    ];
    let chunked = "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n";
    for (end, heads) in cases {
        let stream = [chunked, end, GET].concat();
        for step in [1, 2, 5, stream.len()] {
            assert_eq!(
                scan(stream.as_bytes(), step),
                (None, State::Head, heads),
                "{end:?} {step}"
            );
        }
    }
}

/// One well-formed request: no body, a sized body, or chunked, with arbitrary body bytes.
fn request() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let body = prop::collection::vec(any::<u8>(), 0..64);
    (0..3u8, prop::collection::vec(body, 0..4)).prop_map(|(kind, chunks)| {
        let mut out = b"POST /a HTTP/1.1\r\nHost: x\r\n".to_vec();
        let all = chunks.concat();
        match kind {
            0 => out.extend_from_slice(b"\r\n"),
            1 => {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", all.len()).as_bytes());
                out.extend_from_slice(&all);
            }
            _ => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for chunk in chunks.iter().filter(|c| !c.is_empty()) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
        }
        out
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::fuzz_cases(256)))]

    #[test]
    fn never_flags_well_formed_requests(
        requests in proptest::collection::vec(request(), 1..6),
        step in 1..200usize,
    ) {
        let count = requests.len() as u64;
        let stream = requests.concat();
        proptest::prop_assert_eq!(scan(&stream, step), (None, State::Head, count));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        step in 1..64usize,
    ) {
        let _ = scan(&bytes, step);
    }
}

/// A request with ambiguous framing, to be hidden where the guard might miss it.
const HIDDEN: &str =
    "POST /hidden HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx";

/// Requests `/0`, `/1`, ...: sized, some with [`HIDDEN`] as their body, or chunked, with bare
/// LFs and CRs, extensions and trailers where hyper might end the body other than the RFC
/// does (mostly well-formed, so that hyper reads on).
fn tangled() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    use proptest::sample::select;
    let line_end = || select(vec!["\r\n", "\r\n", "\r\n", "\r\n", "\n", "\r", "\r\r\n"]);
    let extension = || select(vec!["", "", "", " ", ";x", "\t;y=\"z\"", ";x\n"]);
    let chunk = (
        prop::collection::vec(select(vec![b'a', b'a', b'\r', b'\n']), 1..4),
        extension(),
        line_end(),
    );
    let trailer = select(vec![
        "\r\n",
        "\n",
        "\n",
        "\r",
        "X-T: 1",
        "X-T: 1\r\n",
        HIDDEN,
    ]);
    let chunked = (
        prop::collection::vec(chunk, 0..3),
        extension(),
        line_end(),
        prop::collection::vec(trailer, 0..4),
        select(vec!["\r\n", "\r\n", "\r\n", "\n", ""]),
    );
    let request = prop_oneof![
        any::<bool>().prop_map(|hidden| {
            let body = if hidden { HIDDEN } else { "ab" };
            format!("Content-Length: {}\r\n\r\n{body}", body.len())
        }),
        chunked.prop_map(|(chunks, extension, size_end, trailers, end)| {
            let mut body = String::from("Transfer-Encoding: chunked\r\n\r\n");
            for (data, extension, data_end) in chunks {
                let data = String::from_utf8(data).unwrap_or_default();
                body += &format!("{:x}{extension}\r\n{data}{data_end}", data.len());
            }
            body += &format!("0{extension}{size_end}{}{end}", trailers.concat());
            body
        }),
    ];
    prop::collection::vec(request, 1..6).prop_map(|requests| {
        let mut stream = Vec::new();
        for (i, framing) in requests.iter().enumerate() {
            stream.extend_from_slice(format!("POST /{i} HTTP/1.1\r\nHost: x\r\n").as_bytes());
            stream.extend_from_slice(framing.as_bytes());
        }
        stream
    })
}

/// The requests hyper serves from `stream` through the guard, as the gateway serves them (a
/// flagged one answered and the connection closed): each one's path, whether the guard
/// flagged it, and whether hyper read its body whole.
async fn served_by_hyper(stream: Vec<u8>) -> Vec<(String, bool, bool)> {
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (client, server) = tokio::io::duplex(64 * 1024);
    let framing = Arc::new(Framing::default());
    let server = Guarded::new(server, Arc::clone(&framing), 64 * 1024);
    let served = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&served);
    let service =
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let flagged = framing.next().is_some();
            let record = Arc::clone(&record);
            async move {
                let path = request.uri().path().to_owned();
                let whole = request.into_body().collect().await.is_ok();
                record.lock().unwrap().push((path, flagged, whole));
                let mut response =
                    http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                if flagged {
                    let close = http::HeaderValue::from_static("close");
                    response
                        .headers_mut()
                        .insert(http::header::CONNECTION, close);
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
    // Served on after the client's end of the stream (half-closed here, to end the stream).
    let connection = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .serve_connection(hyper_util::rt::TokioIo::new(server), service);
    let (mut answers, mut requests) = tokio::io::split(client);
    let send = async move {
        let _ = requests.write_all(&stream).await;
        let _ = requests.shutdown().await;
    };
    let receive = async move { answers.read_to_end(&mut Vec::new()).await };
    let all = async { tokio::join!(connection, send, receive) };
    let finished = tokio::time::timeout(std::time::Duration::from_secs(10), all).await;
    assert!(finished.is_ok(), "hyper never finished with the connection");
    let served = std::mem::take(&mut *served.lock().unwrap());
    served
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::fuzz_cases(256)))]

    /// hyper and the guard agree on where each request starts: hyper serves no request the
    /// guard has not seen (an ambiguous one it serves is the one the guard flagged), and as
    /// many as the guard saw.
    #[test]
    fn hyper_serves_the_requests_the_guard_reads(stream in tangled()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let served = runtime.block_on(served_by_hyper(stream.clone()));
        for (path, flagged, _) in &served {
            proptest::prop_assert_eq!(*flagged, path == "/hidden", "{:?}", served);
        }
        let (_, state, heads) = scan(&stream, 7);
        if state != State::Off && served.iter().all(|(_, _, whole)| *whole) {
            proptest::prop_assert_eq!(served.len() as u64, heads, "{:?}", served);
        }
    }
}

#[test]
fn a_head_larger_than_the_bound_is_flagged() {
    let big = format!("GET /a HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100 * 1024));
    assert_eq!(scan(big.as_bytes(), 1000), (Some(0), State::Off, 0));
}
