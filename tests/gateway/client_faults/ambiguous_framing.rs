//! Requests framed ambiguously (request smuggling) are refused and never forwarded, whatever came
//! before them on the connection.

use super::*;

/// Content-Length with Transfer-Encoding (in either order, whatever the coding) and a repeated
/// Content-Length are refused with a 400 and the connection closed, even after good requests on
/// the same connection; hyper alone would resolve them and forward one of the framings.
/// `first`, then a create with both `Content-Length` and `Transfer-Encoding`, on one connection:
/// the two answers.
async fn then_an_ambiguous_request(gw: &TestGateway, first: &str) -> Vec<(String, String)> {
    let raw = format!(
        "{first}{CREATE}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    );
    let answers = answers(&exchange(gw, raw.as_bytes()).await);
    assert_eq!(answers.len(), 2, "{answers:?}");
    answers
}

fn assert_refused_as_ambiguous((status, body): &(String, String)) {
    assert!(status.starts_with("400"), "{status} {body}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["code"], "GATEWAY_BAD_REQUEST");
}

#[tokio::test]
async fn ambiguous_framing_after_a_request_asking_for_an_upgrade_is_still_refused() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[auth]\nmode = \"token\"\naccess_token = \"t\"").await;
    // The gateway never upgrades (`Upgrade` is hop-by-hop), so the connection stays HTTP/1 and
    // the guard keeps reading along.
    let first = format!(
        "{CREATE}Upgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let answers = then_an_ambiguous_request(&gw, &first).await;
    assert!(answers[0].0.starts_with("200"), "{answers:?}");
    assert_refused_as_ambiguous(&answers[1]);
    assert_eq!(mock.hits(), 1);
    assert_eq!(mock.requests()[0].header("upgrade"), None);
}

#[tokio::test]
async fn ambiguous_framing_after_a_connect_is_still_refused() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[auth]\nmode = \"token\"\naccess_token = \"t\"").await;
    // Refused with a 405, a CONNECT leaves the connection HTTP/1: the guard keeps reading along.
    let first = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let answers = then_an_ambiguous_request(&gw, first).await;
    assert!(answers[0].0.starts_with("405"), "{answers:?}");
    assert_refused_as_ambiguous(&answers[1]);
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn ambiguous_framing_is_refused_and_never_forwarded() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[auth]\nmode = \"token\"\naccess_token = \"t\"").await;
    let ambiguous = [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "Content-Length: 2\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
        "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    ];
    // Good requests first, pipelined on the same connection: a chunked body and a sized one.
    let good = [
        "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "Content-Length: 2\r\n\r\n{}",
    ];
    for (i, framing) in ambiguous.iter().enumerate() {
        let mut raw = String::new();
        for request in good.iter().chain([framing, &good[1]]) {
            raw.push_str(CREATE);
            raw.push_str(request);
        }
        let before = mock.hits();
        let answers = answers(&exchange(&gw, raw.as_bytes()).await);
        assert_eq!(answers.len(), 3, "{framing:?}: {answers:?}");
        assert!(answers[0].0.starts_with("200") && answers[1].0.starts_with("200"));
        let (status, body) = &answers[2];
        assert!(status.starts_with("400"), "{framing:?}: {status}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "GATEWAY_BAD_REQUEST", "{i}");
        // Only the two good requests reached KooDrive; the one after the refusal was never read.
        assert_eq!(mock.hits() - before, 2, "{framing:?}");
    }
}

#[tokio::test]
async fn a_bare_lf_after_the_last_chunk_cannot_hide_an_ambiguous_request() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[auth]\nmode = \"token\"\naccess_token = \"t\"").await;
    // After the last chunk hyper takes any byte but CR, a bare LF too, as the start of a trailer
    // line, and a bare LF inside one as part of it: the trailers then run on to the next CRLF
    // CRLF, swallowing the head after them, and what that head frames as its body is the next
    // request hyper reads.
    let ends = ["0\r\n\n\r\n", "0\r\nX-Trailer: 1\n\r\n"];
    let ambiguous = [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    ];
    for end in ends {
        for framing in ambiguous {
            let hidden = format!("{CREATE}{framing}");
            let raw = format!(
                "{CREATE}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n{end}\
                 {CREATE}Content-Length: {}\r\n\r\n{hidden}",
                hidden.len()
            );
            let before = mock.hits();
            let answers = answers(&exchange(&gw, raw.as_bytes()).await);
            // The chunked request reached KooDrive, the one hidden behind it did not.
            assert_eq!(mock.hits() - before, 1, "{end:?} {framing:?}: {answers:?}");
            assert_eq!(answers.len(), 2, "{end:?} {framing:?}: {answers:?}");
            assert!(answers[0].0.starts_with("200"), "{answers:?}");
            assert_refused_as_ambiguous(&answers[1]);
        }
    }
}
