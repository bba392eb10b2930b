//! Tests of the fake Mastodon server itself, using raw TCP and tungstenite clients on
//! 127.0.0.1. Every test runs under a deadline and every socket has a read timeout.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

const DEADLINE: Duration = Duration::from_secs(20);
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(5);
const HOME: &str = "/api/v1/timelines/home";

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", self.body))
    }
}

fn connect(server: &FakeServer) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", server.port())).expect("connect to fake server");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// Reads one response with a `Content-Length` body from a keep-alive connection.
fn read_response(stream: &mut TcpStream) -> HttpResponse {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read response head");
        assert_eq!(n, 1, "connection closed inside the response head");
        head.push(byte[0]);
    }

    let head = String::from_utf8(head).expect("response head is UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line has a colon");
            (name.trim().to_string(), value.trim().to_string())
        })
        .collect();

    let len: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.parse().unwrap())
        .expect("response has Content-Length");
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).expect("read response body");
    HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).expect("body is UTF-8"),
    }
}

fn write_get(stream: &mut TcpStream, target: &str, token: Option<&str>) {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write request");
}

fn get(server: &FakeServer, target: &str, token: Option<&str>) -> HttpResponse {
    let mut stream = connect(server);
    write_get(&mut stream, target, token);
    read_response(&mut stream)
}

fn upgrade_request(path: &str, extra_headers: &[&str]) -> String {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for header in extra_headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

fn connect_ws(server: &FakeServer, path: &str) -> WebSocket<TcpStream> {
    let url = format!("{}{path}", server.ws_url());
    let mut request = url.into_client_request().unwrap();
    let authorization = "Bearer test-token".parse().unwrap();
    request.headers_mut().insert("Authorization", authorization);
    let (socket, response) =
        tungstenite::client(request, connect(server)).expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    socket
}

/// Reads until a text message arrives, skipping pings and pongs.
fn read_text(socket: &mut WebSocket<TcpStream>) -> String {
    let deadline = Instant::now() + READ_TIMEOUT;
    while Instant::now() < deadline {
        match socket.read().expect("read a WebSocket message") {
            Message::Text(text) => return text.as_str().to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
    panic!("no text message within {READ_TIMEOUT:?}");
}

fn subscribe(socket: &mut WebSocket<TcpStream>, message: &Value) {
    socket
        .send(Message::text(message.to_string()))
        .expect("send subscribe message");
}

fn statuses(ids: std::ops::RangeInclusive<u32>) -> Vec<Value> {
    ids.map(|id| json!({ "id": id.to_string(), "content": format!("status {id}") }))
        .collect()
}

fn ids_of(page: &Value) -> Vec<String> {
    page.as_array()
        .expect("page is an array")
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_string())
        .collect()
}

fn id_strings(ids: impl Iterator<Item = u32>) -> Vec<String> {
    ids.map(|id| id.to_string()).collect()
}

#[test]
fn instance_endpoints_return_streaming_url() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();

        let v2 = get(&server, "/api/v2/instance", None);
        assert_eq!(v2.status, 200);
        assert_eq!(
            v2.json()["configuration"]["urls"]["streaming"],
            server.ws_url()
        );

        let v1 = get(&server, "/api/v1/instance", None);
        assert_eq!(v1.status, 200);
        assert_eq!(v1.json()["urls"]["streaming_api"], server.ws_url());
        assert_eq!(server.requests().len(), 2);
    });
}

#[test]
fn instance_endpoint_without_url_is_404() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        let other = "ws://127.0.0.1:9".to_string();
        server.set_streaming_url(None, Some(other.clone()));

        assert_eq!(get(&server, "/api/v2/instance", None).status, 404);
        let v1 = get(&server, "/api/v1/instance", None);
        assert_eq!(v1.status, 200);
        assert_eq!(v1.json()["urls"]["streaming_api"], other);
    });
}

#[test]
fn unknown_path_is_404_json() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        let response = get(&server, "/api/v1/nothing", Some("test-token"));
        assert_eq!(response.status, 404);
        assert_eq!(response.json()["error"], "Record not found");
    });
}

#[test]
fn websocket_records_subscriptions_and_sends_text() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.push_script(vec![
            Step::Accept,
            Step::WaitSubscriptions(2),
            Step::Text("first".to_string()),
            Step::Text("second".to_string()),
            Step::Live,
        ]);

        let mut socket = connect_ws(&server, "/api/v1/streaming/?stream=user");
        subscribe(&mut socket, &json!({"type": "subscribe", "stream": "user"}));
        let hashtag = json!({"type": "subscribe", "stream": "hashtag", "tag": "rust"});
        subscribe(&mut socket, &hashtag);
        assert_eq!(read_text(&mut socket), "first");
        assert_eq!(read_text(&mut socket), "second");

        server.wait_until("live connection", WAIT, |s| s.live_connections() == 1);
        server.send("third");
        assert_eq!(read_text(&mut socket), "third");

        let records = server.connections();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].path_and_query, "/api/v1/streaming/?stream=user");
        assert_eq!(records[0].status, 101);
        assert_eq!(records[0].subscriptions.len(), 2);
        assert_eq!(records[0].subscriptions[1], hashtag);
        let authorization = records[0]
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.as_str());
        assert_eq!(authorization, Some("Bearer test-token"));
    });
}

#[test]
fn send_before_connect_is_buffered() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.send("early");
        server.send_raw(&[0x81, 0x03, b'r', b'a', b'w']);

        let mut socket = connect_ws(&server, "/api/v1/streaming");
        assert_eq!(read_text(&mut socket), "early");
        assert_eq!(read_text(&mut socket), "raw");
    });
}

#[test]
fn websocket_wrong_token_gets_401() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        let cases = [
            (Some("Authorization: Bearer wrong"), "Invalid access token"),
            (
                Some("Authorization: bearer test-token"),
                "Invalid access token",
            ),
            (None, "Missing access token"),
        ];
        for (header, message) in cases {
            let mut stream = connect(&server);
            let headers: Vec<&str> = header.into_iter().collect();
            let request = upgrade_request("/api/v1/streaming", &headers);
            stream.write_all(request.as_bytes()).unwrap();

            let response = read_response(&mut stream);
            assert_eq!(response.status, 401, "{header:?}");
            assert_eq!(
                response.header("X-Error-Message"),
                Some(message),
                "{header:?}"
            );
            assert_eq!(response.header("Content-Length"), Some("0"));
            assert_eq!(response.header("Connection"), Some("close"));
            let mut rest = Vec::new();
            assert_eq!(
                stream.read_to_end(&mut rest).unwrap(),
                0,
                "no bytes after the 401"
            );
        }
        let statuses: Vec<u16> = server.connections().iter().map(|c| c.status).collect();
        assert_eq!(statuses, [401, 401, 401]);
    });
}

#[test]
fn token_in_query_or_protocol_is_accepted() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();

        let mut stream = connect(&server);
        let request = upgrade_request("/api/v1/streaming?access_token=test-token", &[]);
        stream.write_all(request.as_bytes()).unwrap();
        let response = read_response_head_only(&mut stream);
        assert_eq!(response.status, 101);
        assert_eq!(response.header("Sec-WebSocket-Protocol"), None);

        let mut stream = connect(&server);
        let request = upgrade_request("/api/v1/streaming", &["Sec-WebSocket-Protocol: test-token"]);
        stream.write_all(request.as_bytes()).unwrap();
        let response = read_response_head_only(&mut stream);
        assert_eq!(response.status, 101);
        assert_eq!(
            response.header("Sec-WebSocket-Protocol"),
            Some("test-token")
        );
    });
}

/// Reads a response head only, for 101 responses that have no body.
fn read_response_head_only(stream: &mut TcpStream) -> HttpResponse {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("read head"), 1);
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: String::new(),
    }
}

#[test]
fn reject_step_sends_given_response() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.push_script(vec![Step::Reject {
            status: 503,
            headers: vec![("Retry-After".to_string(), "1".to_string())],
            body: "<html>maintenance</html>".to_string(),
        }]);

        let mut stream = connect(&server);
        let request = upgrade_request("/api/v1/streaming", &["Authorization: Bearer test-token"]);
        stream.write_all(request.as_bytes()).unwrap();
        let response = read_response(&mut stream);
        assert_eq!(response.status, 503);
        assert_eq!(response.header("Retry-After"), Some("1"));
        assert_eq!(response.body, "<html>maintenance</html>");
        assert_eq!(server.requests()[0].status, 503);
    });
}

#[test]
fn hang_step_never_answers_handshake() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.push_script(vec![Step::Hang]);

        let mut stream = connect(&server);
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let request = upgrade_request("/api/v1/streaming", &["Authorization: Bearer test-token"]);
        stream.write_all(request.as_bytes()).unwrap();
        let mut buffer = [0u8; 64];
        let error = stream.read(&mut buffer).expect_err("no bytes may arrive");
        assert!(
            matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{error:?}"
        );
        assert!(server.connections()[0].open);
        assert_eq!(server.connections()[0].status, 0);
    });
}

#[test]
fn dribble_frame_arrives_intact() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        let frame: String = (0..20_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        server.push_script(vec![
            Step::Accept,
            Step::Dribble {
                frame: frame.clone(),
                chunk: 997,
                delay: Duration::from_millis(2),
            },
            Step::Live,
        ]);

        let mut socket = connect_ws(&server, "/api/v1/streaming");
        assert_eq!(read_text(&mut socket), frame);
    });
}

#[test]
fn close_none_sends_empty_close_frame() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.push_script(vec![Step::Accept, Step::Close(None)]);

        let mut socket = connect_ws(&server, "/api/v1/streaming");
        match socket.read().expect("read close frame") {
            Message::Close(frame) => assert_eq!(frame, None),
            other => panic!("expected a close frame, got {other:?}"),
        }
        // The next read sends tungstenite's reply close frame and then returns ConnectionClosed.
        let error = socket
            .read()
            .expect_err("connection ends after the close handshake");
        assert!(
            matches!(error, tungstenite::Error::ConnectionClosed),
            "{error:?}"
        );
        server.wait_until("client close recorded", WAIT, |s| {
            s.connections()[0].closed_by_client.is_some()
        });
        assert_eq!(server.connections()[0].closed_by_client, Some(None));
    });
}

#[test]
fn client_close_is_echoed() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        let mut socket = connect_ws(&server, "/api/v1/streaming");
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        socket.close(Some(frame)).unwrap();
        let echo = loop {
            match socket.read() {
                Ok(Message::Close(echo)) => break echo,
                Ok(_) => {}
                Err(error) => panic!("expected the echoed close frame, got {error:?}"),
            }
        };
        assert_eq!(echo.map(|frame| frame.code), Some(CloseCode::Normal));
        server.wait_until("client close recorded", WAIT, |s| {
            s.connections()[0].closed_by_client.is_some()
        });
        assert_eq!(server.connections()[0].closed_by_client, Some(Some(1000)));
    });
}

#[test]
fn binary_frame_is_closed_with_1003() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        let mut socket = connect_ws(&server, "/api/v1/streaming");
        socket.send(Message::binary(vec![1, 2, 3])).unwrap();
        let frame = loop {
            match socket.read().expect("read close frame") {
                Message::Close(frame) => break frame.expect("close frame has a code"),
                _ => continue,
            }
        };
        assert_eq!(frame.code, CloseCode::Unsupported);
        assert_eq!(
            frame.reason.as_str(),
            "The mastodon streaming server does not support binary messages"
        );
        assert_eq!(server.connections()[0].binary_frames, 1);
    });
}

#[test]
fn client_ping_gets_pong_with_same_payload() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        let mut socket = connect_ws(&server, "/api/v1/streaming");
        socket
            .send(Message::Ping(b"probe".to_vec().into()))
            .unwrap();
        let payload = loop {
            match socket.read().expect("read pong") {
                Message::Pong(payload) => break payload,
                _ => continue,
            }
        };
        assert_eq!(payload.as_ref(), b"probe");
        assert_eq!(server.connections()[0].pings_received, 1);
    });
}

#[test]
fn stop_and_resume_listening_on_same_port() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        let port = server.port();
        let mut socket = connect_ws(&server, "/api/v1/streaming");
        server.wait_until("live connection", WAIT, |s| s.live_connections() == 1);

        server.stop_listening();
        match socket.read() {
            Err(tungstenite::Error::Protocol(_)) | Err(tungstenite::Error::Io(_)) => {}
            other => panic!("expected the connection to end without a close frame, got {other:?}"),
        }
        let refused = TcpStream::connect(("127.0.0.1", port)).expect_err("listener is closed");
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

        server.resume_listening();
        assert_eq!(server.port(), port);
        let mut socket = connect_ws(&server, "/api/v1/streaming");
        server.wait_until("live connection", WAIT, |s| s.live_connections() == 1);
        server.send("after restart");
        assert_eq!(read_text(&mut socket), "after restart");
        assert_eq!(server.connections().len(), 2);
    });
}

#[test]
fn ping_interval_closes_client_without_pong() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.set_ping_interval(Some(Duration::from_millis(100)));

        let mut stream = connect(&server);
        let request = upgrade_request("/api/v1/streaming", &["Authorization: Bearer test-token"]);
        stream.write_all(request.as_bytes()).unwrap();
        assert_eq!(read_response_head_only(&mut stream).status, 101);

        // Send no pong: collect every byte until the server ends the connection.
        let started = Instant::now();
        let mut received = Vec::new();
        stream
            .read_to_end(&mut received)
            .expect("server ends with FIN");
        let elapsed = started.elapsed();

        let mut opcodes = Vec::new();
        let mut rest = received.as_slice();
        while let [first, len, tail @ ..] = rest {
            opcodes.push(first & 0x0F);
            rest = &tail[usize::from(*len)..];
        }
        assert_eq!(opcodes, [0x9], "one ping and no close frame");
        assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
        drop(stream);
        server.wait_until("connection closed", WAIT, |s| !s.connections()[0].open);
    });
}

#[test]
fn ping_interval_keeps_client_that_answers() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.set_ping_interval(Some(Duration::from_millis(50)));
        let mut socket = connect_ws(&server, "/api/v1/streaming");

        let mut pings = 0;
        while pings < 4 {
            if let Message::Ping(payload) = socket.read().expect("read ping") {
                assert!(payload.is_empty());
                pings += 1;
            }
        }
        server.wait_until("pongs recorded", WAIT, |s| {
            s.connections()[0].pongs_received >= 3
        });
        assert!(server.connections()[0].open);
    });
}

#[test]
fn reset_before_accept_resets_client() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.push_script(vec![Step::Reset]);

        let mut stream = connect(&server);
        let request = upgrade_request("/api/v1/streaming", &["Authorization: Bearer test-token"]);
        stream.write_all(request.as_bytes()).unwrap();
        let mut buffer = [0u8; 64];
        let error = stream.read(&mut buffer).expect_err("connection is reset");
        assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    });
}

#[test]
fn reset_after_accept_resets_client() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.push_script(vec![Step::Accept, Step::Reset]);

        let mut socket = connect_ws(&server, "/api/v1/streaming");
        let error = loop {
            match socket.read() {
                Ok(Message::Ping(_)) => continue,
                Ok(other) => panic!("unexpected message {other:?}"),
                Err(error) => break error,
            }
        };
        match error {
            tungstenite::Error::Io(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset),
            other => panic!("expected a connection reset, got {other:?}"),
        }
    });
}

#[test]
fn silence_step_answers_no_ping() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.push_script(vec![
            Step::Accept,
            Step::Silence(Duration::from_millis(400)),
            // The server sends the pong for the ping from the silence during this sleep.
            Step::Sleep(Duration::from_millis(50)),
            Step::Text("awake".to_string()),
        ]);

        let mut socket = connect_ws(&server, "/api/v1/streaming");
        socket
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        socket.send(Message::Ping(Vec::new().into())).unwrap();
        let error = socket.read().expect_err("no pong during the silence");
        assert!(matches!(error, tungstenite::Error::Io(_)), "{error:?}");

        socket
            .get_mut()
            .set_read_timeout(Some(READ_TIMEOUT))
            .unwrap();
        let mut messages = Vec::new();
        while messages.len() < 2 {
            messages.push(socket.read().expect("read after the silence"));
        }
        assert!(matches!(messages[0], Message::Pong(_)), "{messages:?}");
        assert_eq!(messages[1], Message::text("awake"));
    });
}

#[test]
fn rest_min_id_walks_forward_in_three_pages() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.add_items(HOME, statuses(1..=100));

        let mut stream = connect(&server);
        let mut cursor = "0".to_string();
        let expected_pages = [(1, 40), (41, 80), (81, 100)];
        for (oldest, newest) in expected_pages {
            let target = format!("{HOME}?min_id={cursor}&limit=40");
            write_get(&mut stream, &target, Some("test-token"));
            let response = read_response(&mut stream);
            assert_eq!(response.status, 200);
            let ids = ids_of(&response.json());
            assert_eq!(ids, id_strings((oldest..=newest).rev()));

            let url = format!("{}{HOME}", server.http_url());
            let link = format!(
                "<{url}?limit=40&max_id={oldest}>; rel=\"next\", \
                 <{url}?limit=40&min_id={newest}>; rel=\"prev\""
            );
            assert_eq!(response.header("Link"), Some(link.as_str()));
            cursor = ids[0].clone();
        }

        write_get(
            &mut stream,
            &format!("{HOME}?min_id={cursor}&limit=40"),
            Some("test-token"),
        );
        let last = read_response(&mut stream);
        assert_eq!(last.json(), json!([]));
        assert_eq!(last.header("Link"), None);
        assert_eq!(
            server.requests().len(),
            4,
            "all requests on one kept-alive connection"
        );
    });
}

#[test]
fn rest_max_id_and_since_id_select_newest() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.add_items(HOME, statuses(1..=100));
        let token = Some("test-token");

        let default_page = get(&server, HOME, token).json();
        assert_eq!(ids_of(&default_page), id_strings((81..=100).rev()));

        let older = get(&server, &format!("{HOME}?max_id=50&limit=5"), token).json();
        assert_eq!(ids_of(&older), id_strings((45..=49).rev()));

        let newer = get(&server, &format!("{HOME}?since_id=10&limit=5"), token).json();
        assert_eq!(ids_of(&newer), id_strings((96..=100).rev()));

        let between = get(&server, &format!("{HOME}?since_id=10&max_id=14"), token).json();
        assert_eq!(ids_of(&between), id_strings((11..=13).rev()));

        let capped = get(&server, &format!("{HOME}?limit=500"), token).json();
        assert_eq!(capped.as_array().unwrap().len(), 40);

        server.set_page_max(HOME, 10);
        let small = get(&server, &format!("{HOME}?limit=40"), token).json();
        assert_eq!(small.as_array().unwrap().len(), 10);
    });
}

#[test]
fn rest_ids_compare_by_length_first() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        let items = ["9", "100", "11", "1000"].map(|id| json!({ "id": id }));
        server.add_items(HOME, items.to_vec());

        let page = get(&server, &format!("{HOME}?min_id=10"), Some("test-token")).json();
        assert_eq!(ids_of(&page), ["1000", "100", "11"]);
    });
}

#[test]
fn rest_conversations_page_by_last_status_id() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        let path = "/api/v1/conversations";
        let conversations = [("7", "300"), ("8", "100"), ("9", "200")]
            .map(|(id, status)| json!({ "id": id, "last_status": { "id": status } }));
        server.add_items(path, conversations.to_vec());

        let response = get(&server, &format!("{path}?max_id=300"), Some("test-token"));
        let ids = ids_of(&response.json());
        assert_eq!(ids, ["9", "8"]);
        let prev_only = format!("<{}{path}?min_id=200>; rel=\"prev\"", server.http_url());
        assert_eq!(response.header("Link"), Some(prev_only.as_str()));
    });
}

#[test]
fn rest_requires_bearer_token() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.set_token("secret");

        for token in [None, Some("wrong"), Some("test-token")] {
            let response = get(&server, "/api/v1/notifications", token);
            assert_eq!(response.status, 401, "{token:?}");
            assert_eq!(response.json()["error"], "The access token is invalid");
        }
        assert_eq!(
            get(&server, "/api/v1/notifications", Some("secret")).status,
            200
        );
    });
}

#[test]
fn rest_fault_is_served_once() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.add_items(HOME, statuses(1..=3));
        server.push_rest_fault(
            HOME,
            RestFault::Status {
                status: 503,
                headers: Vec::new(),
                body: "<html>down</html>".to_string(),
            },
        );
        server.push_rest_fault(HOME, RestFault::Partial);

        let first = get(&server, HOME, Some("test-token"));
        assert_eq!(first.status, 503);
        assert_eq!(
            first.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(first.body, "<html>down</html>");

        let second = get(&server, HOME, Some("test-token"));
        assert_eq!(second.status, 206);
        assert_eq!(second.json(), json!([]));

        let third = get(&server, HOME, Some("test-token"));
        assert_eq!(third.status, 200);
        assert_eq!(ids_of(&third.json()), ["3", "2", "1"]);

        let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [503, 206, 200]);
    });
}

#[test]
fn rest_hang_fault_answers_nothing() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        server.push_rest_fault(HOME, RestFault::Hang(Duration::from_millis(300)));
        server.push_rest_fault(HOME, RestFault::MalformedBody);

        let mut stream = connect(&server);
        write_get(&mut stream, HOME, Some("test-token"));
        let started = Instant::now();
        let mut received = Vec::new();
        stream
            .read_to_end(&mut received)
            .expect("server closes after the hang");
        assert!(received.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(250));

        let malformed = get(&server, HOME, Some("test-token"));
        assert_eq!(malformed.status, 200);
        assert!(serde_json::from_str::<Value>(&malformed.body).is_err());
    });
}

#[test]
fn drop_closes_open_connections() {
    with_deadline(DEADLINE, || {
        let server = FakeServer::start();
        let port = server.port();
        let mut socket = connect_ws(&server, "/api/v1/streaming");
        server.wait_until("live connection", WAIT, |s| s.live_connections() == 1);

        drop(server);
        assert!(socket.read().is_err());
        let refused = TcpStream::connect(("127.0.0.1", port)).expect_err("server is gone");
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    });
}
