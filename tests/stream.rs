//! The binary against the fake server: output shape, discovery, subscriptions, error frames,
//! rejected tokens, and replays of frames recorded from a real Mastodon streaming server.

mod harness;
mod support;

use std::collections::HashSet;
use std::time::Duration;

use harness::{FAST, Mastotail, TOKEN, frame, status};
use serde_json::{Value, json};
use support::{FakeServer, Step};

const WAIT: Duration = Duration::from_secs(10);

fn args<'a>(server: &'a FakeServer, url: &'a str, streams: &[&'a str]) -> Vec<&'a str> {
    let _ = server;
    let mut args = vec!["--server", url];
    args.extend_from_slice(FAST);
    args.extend_from_slice(streams);
    args
}

fn capture(name: &str) -> String {
    let path = format!("{}/tests/captures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Computes, without mastotail's code, what mastotail must print for a frame: the payload
/// string decoded once when it contains a JSON object or array.
fn expected_line(frame: &str) -> Value {
    let frame: Value = serde_json::from_str(frame).unwrap();
    let payload = match &frame["payload"] {
        Value::String(text) if text.starts_with('{') || text.starts_with('[') => {
            serde_json::from_str(text).unwrap()
        }
        other => other.clone(),
    };
    json!({"stream": frame["stream"], "event": frame["event"], "payload": payload})
}

/// Returns the key under which a copy of an event counts as already printed.
fn copy_key(line: &Value) -> Option<String> {
    let event = line["event"].as_str().unwrap();
    let payload = &line["payload"];
    let id = match payload {
        Value::String(id) if event == "delete" || event == "announcement.delete" => id.clone(),
        Value::Object(map) => map.get("id")?.as_str()?.to_string(),
        _ => return None,
    };
    let version = payload["edited_at"].as_str().unwrap_or("");
    let last_status = payload["last_status"]["id"].as_str().unwrap_or("");
    Some(format!("{event}/{id}/{version}/{last_status}"))
}

/// Replays a capture file on one connection and checks every printed line.
fn replay(file: &str, streams: &[&str]) {
    let server = FakeServer::start();
    let frames: Vec<String> = capture(file).lines().map(str::to_string).collect();
    let mut script = vec![Step::Accept, Step::WaitSubscriptions(streams.len())];
    script.extend(frames.iter().cloned().map(Step::Text));
    script.push(Step::Live);
    server.push_script(script);

    let mut seen = HashSet::new();
    let expected: Vec<Value> = frames
        .iter()
        .map(|frame| expected_line(frame))
        .filter(|line| copy_key(line).is_none_or(|key| seen.insert(key)))
        .collect();

    let url = server.http_url();
    let mut mastotail = Mastotail::start(&args(&server, &url, streams));
    let printed = mastotail.json_lines(expected.len(), WAIT);
    for (index, (printed, expected)) in printed.iter().zip(&expected).enumerate() {
        assert_eq!(printed, expected, "{file} line {index}");
    }
    assert!(
        mastotail.no_line_within(Duration::from_millis(200)),
        "extra output"
    );
}

#[test]
fn replays_user_capture() {
    replay("user.jsonl", &["user"]);
}

#[test]
fn replays_direct_capture() {
    replay("direct.jsonl", &["direct"]);
}

#[test]
fn replays_public_capture() {
    replay(
        "public.jsonl",
        &[
            "public",
            "public:local",
            "public:remote",
            "public:media",
            "public:local:media",
            "public:remote:media",
        ],
    );
}

#[test]
fn replays_multiplex_capture() {
    replay(
        "multiplex.jsonl",
        &[
            "user",
            "user:notification",
            "public:local",
            "hashtag:rust",
            "list:1",
        ],
    );
}

#[test]
fn delete_id_printed_byte_for_byte() {
    let server = FakeServer::start();
    server.push_script(vec![
        Step::Accept,
        Step::WaitSubscriptions(1),
        Step::Text(
            r#"{"stream":["public"],"event":"delete","payload":"106692867363994015"}"#.into(),
        ),
        Step::Live,
    ]);
    let url = server.http_url();
    let mut mastotail = Mastotail::start(&args(&server, &url, &["public"]));
    assert_eq!(
        mastotail.line(WAIT),
        r#"{"stream":["public"],"event":"delete","payload":"106692867363994015"}"#
    );
}

#[test]
fn all_streams_share_one_socket() {
    let server = FakeServer::start();
    let url = server.http_url();
    let streams = [
        "user",
        "hashtag:#café",
        "hashtag:local:日本語",
        "list:12",
        "direct",
    ];
    let _mastotail = Mastotail::start(&args(&server, &url, &streams));
    server.wait_until("five subscriptions", WAIT, |server| {
        server
            .connections()
            .first()
            .is_some_and(|c| c.subscriptions.len() == 5)
    });
    let connections = server.connections();
    assert_eq!(connections.len(), 1);
    assert_eq!(
        connections[0].path_and_query,
        "/api/v1/streaming?stream=user"
    );
    let subscriptions = &connections[0].subscriptions;
    assert_eq!(
        subscriptions[0],
        json!({"type": "subscribe", "stream": "user"})
    );
    assert_eq!(
        subscriptions[1],
        json!({"type": "subscribe", "stream": "hashtag", "tag": "café"})
    );
    assert_eq!(
        subscriptions[2],
        json!({"type": "subscribe", "stream": "hashtag:local", "tag": "日本語"})
    );
    assert_eq!(
        subscriptions[3],
        json!({"type": "subscribe", "stream": "list", "list": "12"})
    );
    assert_eq!(
        subscriptions[4],
        json!({"type": "subscribe", "stream": "direct"})
    );
}

#[test]
fn token_sent_as_bearer_header_only() {
    let server = FakeServer::start();
    let url = server.http_url();
    let mut mastotail = Mastotail::start(&{
        let mut a = args(&server, &url, &["user"]);
        a.push("-vv");
        a
    });
    server.send(&frame(&["user"], "update", &status("1")));
    mastotail.line(WAIT);
    let connection = &server.connections()[0];
    assert!(!connection.path_and_query.contains(TOKEN));
    let authorization = connection
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.as_str());
    assert_eq!(authorization, Some("Bearer test-token"));
    for request in server.requests() {
        assert!(!request.path_and_query.contains(TOKEN), "{request:?}");
        if request.path_and_query.starts_with("/api/v1/instance")
            || request.path_and_query.starts_with("/api/v2/instance")
        {
            let has_auth = request
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
            assert!(!has_auth, "token sent to the public instance endpoint");
        }
    }
    mastotail.kill();
    assert!(
        !mastotail.stderr().contains(TOKEN),
        "{}",
        mastotail.stderr()
    );
    assert!(mastotail.stderr().contains("mastotail: connected to"));
}

#[test]
fn frames_dribbled_in_small_pieces_arrive_whole() {
    let server = FakeServer::start();
    let big = capture("user.jsonl").lines().next().unwrap().to_string();
    server.push_script(vec![
        Step::Accept,
        Step::WaitSubscriptions(1),
        Step::Dribble {
            frame: big.clone(),
            chunk: 7,
            delay: Duration::from_micros(300),
        },
        Step::Dribble {
            frame: frame(&["user"], "delete", &json!("42")),
            chunk: 1,
            delay: Duration::from_millis(2),
        },
        Step::Live,
    ]);
    let url = server.http_url();
    let mut mastotail = Mastotail::start(&args(&server, &url, &["user"]));
    let lines = mastotail.json_lines(2, WAIT);
    assert_eq!(lines[0], expected_line(&big));
    assert_eq!(lines[1]["payload"], json!("42"));
}

#[test]
fn empty_and_payloadless_frames_tolerated() {
    let server = FakeServer::start();
    server.push_script(vec![
        Step::Accept,
        Step::WaitSubscriptions(1),
        Step::Text(String::new()),
        Step::Text(r#"{"stream":["user"],"event":"filters_changed"}"#.into()),
        Step::Text("not json at all".into()),
        Step::Text(r#"{"stream":["user"],"event":"x.future_event","payload":"{\"a\":1}"}"#.into()),
        Step::Live,
    ]);
    let url = server.http_url();
    let mut mastotail = Mastotail::start(&args(&server, &url, &["user"]));
    let lines = mastotail.json_lines(2, WAIT);
    assert_eq!(
        lines[0],
        json!({"stream": ["user"], "event": "filters_changed", "payload": null})
    );
    assert_eq!(
        lines[1],
        json!({"stream": ["user"], "event": "x.future_event", "payload": {"a": 1}})
    );
    assert_eq!(
        server.connections().len(),
        1,
        "a bad frame caused a reconnect"
    );
}

#[test]
fn subscription_rejected_exits_4() {
    let server = FakeServer::start();
    server.push_script(vec![
        Step::Accept,
        Step::WaitSubscriptions(2),
        Step::Text(r#"{"error":"Missing tag name parameter","status":400}"#.into()),
        Step::Live,
    ]);
    let url = server.http_url();
    let mut mastotail = Mastotail::start(&args(&server, &url, &["user", "hashtag:rust"]));
    assert_eq!(mastotail.wait_exit(WAIT), Some(4));
    let stderr = mastotail.stderr();
    assert!(stderr.contains("Missing tag name parameter"), "{stderr}");
    assert!(stderr.contains("hashtag:rust"), "{stderr}");
    assert!(mastotail.seen.is_empty());
}

#[test]
fn error_frames_replayed_from_capture() {
    for line in capture("errors.jsonl").lines() {
        let error: Value = serde_json::from_str(line).unwrap();
        let fatal = error["status"]
            .as_u64()
            .is_some_and(|status| (400..500).contains(&status));
        let server = FakeServer::start();
        server.push_script(vec![
            Step::Accept,
            Step::WaitSubscriptions(1),
            Step::Text(line.to_string()),
            Step::Text(frame(&["user"], "delete", &json!("7"))),
            Step::Live,
        ]);
        let url = server.http_url();
        let mut mastotail = Mastotail::start(&args(&server, &url, &["user"]));
        let message = error["error"].as_str().unwrap();
        if fatal {
            assert_eq!(mastotail.wait_exit(WAIT), Some(4), "{line}");
            assert!(mastotail.stderr().contains(message), "{line}");
        } else {
            let printed = mastotail.json_lines(1, WAIT);
            assert_eq!(printed[0]["event"], "delete", "{line}");
            mastotail.wait_stderr(message, WAIT);
        }
        assert!(
            !mastotail.seen.iter().any(|l| l.contains("\"error\"")),
            "{line}"
        );
    }
}

/// Parses a recorded handshake reply into a `Step::Reject`.
fn recorded_reply(file: &str) -> Step {
    let text = capture(file);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    Step::Reject {
        status,
        headers,
        body: body.to_string(),
    }
}

#[test]
fn recorded_401_replies_exit_3_with_message() {
    for (file, message) in [
        ("handshake-401-invalid.http", "Invalid access token"),
        ("handshake-401-missing.http", "Missing access token"),
        ("handshake-401-revoked.http", "Invalid access token"),
    ] {
        let server = FakeServer::start();
        server.push_script(vec![recorded_reply(file)]);
        server.push_script(vec![recorded_reply(file)]);
        let url = server.http_url();
        let mut mastotail = Mastotail::start(&args(&server, &url, &["user"]));
        assert_eq!(mastotail.wait_exit(WAIT), Some(3), "{file}");
        let stderr = mastotail.stderr();
        assert!(stderr.contains(message), "{file}: {stderr}");
        assert!(!stderr.contains(TOKEN), "{file}: {stderr}");
        assert_eq!(
            server.connections().len(),
            2,
            "{file}: one confirming retry"
        );
    }
}

#[test]
fn wrong_token_exits_3() {
    let server = FakeServer::start();
    let url = server.http_url();
    let mut command_args = args(&server, &url, &["user"]);
    command_args.push("-vv");
    let mut mastotail = Mastotail::start_with(&command_args, &[("MASTODON_TOKEN", "wrong-secret")]);
    assert_eq!(mastotail.wait_exit(WAIT), Some(3));
    let stderr = mastotail.stderr();
    assert!(stderr.contains("Invalid access token"), "{stderr}");
    assert!(!stderr.contains("wrong-secret"), "{stderr}");
}

#[test]
fn recorded_101_replies_accepted() {
    for file in ["handshake-101-bearer.http", "handshake-101-query.http"] {
        let server = FakeServer::start();
        server.push_script(vec![
            Step::AcceptRecorded(capture(file)),
            Step::WaitSubscriptions(1),
            Step::Text(frame(&["user"], "delete", &json!("1"))),
            Step::Live,
        ]);
        let url = server.http_url();
        let mut mastotail = Mastotail::start(&args(&server, &url, &["user"]));
        assert_eq!(
            mastotail.json_lines(1, WAIT)[0]["payload"],
            json!("1"),
            "{file}"
        );
        assert_eq!(server.connections().len(), 1, "{file}");
    }
}

#[test]
fn recorded_unrequested_subprotocol_retried() {
    // The server echoes a subprotocol only when one was offered; mastotail offers none, so
    // a reply that names one is a broken handshake.
    let server = FakeServer::start();
    server.push_script(vec![Step::AcceptRecorded(capture(
        "handshake-101-protocol.http",
    ))]);
    let url = server.http_url();
    let mut mastotail = Mastotail::start(&args(&server, &url, &["user"]));
    server.wait_until("a second connection", WAIT, |s| s.connections().len() >= 2);
    server.send(&frame(&["user"], "delete", &json!("2")));
    assert_eq!(mastotail.json_lines(1, WAIT)[0]["payload"], json!("2"));
    assert!(
        mastotail.stderr().contains("handshake"),
        "{}",
        mastotail.stderr()
    );
    assert!(!mastotail.stderr().contains(TOKEN));
}

#[test]
fn recorded_500_and_400_replies_retried() {
    for (file, expected) in [
        ("handshake-500.http", "An unexpected error occurred"),
        (
            "handshake-400-bad-version.http",
            "Missing or invalid Sec-WebSocket-Version header",
        ),
    ] {
        let server = FakeServer::start();
        server.push_script(vec![recorded_reply(file)]);
        let url = server.http_url();
        let mut mastotail = Mastotail::start(&args(&server, &url, &["user"]));
        server.wait_until("a second connection", WAIT, |s| s.connections().len() >= 2);
        server.send(&frame(&["user"], "delete", &json!("3")));
        assert_eq!(
            mastotail.json_lines(1, WAIT)[0]["payload"],
            json!("3"),
            "{file}"
        );
        let stderr = mastotail.stderr();
        assert!(stderr.contains(expected), "{file}: {stderr}");
    }
}

#[test]
fn discovery_prefers_v2_then_v1_then_server() {
    let streaming = FakeServer::start();
    streaming.set_token(TOKEN);
    for (v2, v1) in [
        (Some(streaming.ws_url()), None),
        (None, Some(streaming.ws_url().replace("ws://", "http://"))),
    ] {
        let api = FakeServer::start();
        api.set_streaming_url(v2, v1);
        let url = api.http_url();
        let before = streaming.connections().len();
        let mut mastotail = Mastotail::start(&args(&api, &url, &["user"]));
        streaming.wait_until("connection on the streaming host", WAIT, |s| {
            s.connections().len() > before
        });
        assert!(api.connections().is_empty());
        mastotail.kill();
    }
    let api = FakeServer::start();
    api.set_streaming_url(None, None);
    let url = api.http_url();
    let _mastotail = Mastotail::start(&args(&api, &url, &["user"]));
    api.wait_until("connection on the server itself", WAIT, |s| {
        !s.connections().is_empty()
    });
}

#[test]
fn streaming_url_skips_discovery() {
    let server = FakeServer::start();
    let url = server.http_url();
    let ws = server.ws_url();
    let mut command_args = args(&server, &url, &["user"]);
    command_args.extend(["--streaming-url", &ws]);
    let _mastotail = Mastotail::start(&command_args);
    server.wait_until("a connection", WAIT, |s| !s.connections().is_empty());
    let discovery = server
        .requests()
        .iter()
        .filter(|r| r.path_and_query.contains("/instance"))
        .count();
    assert_eq!(discovery, 0);
}

/// Starts `mastotail ... user | head -n 3` in bash, which then prints mastotail's exit
/// status as a last line `status=N`.
fn spawn_into_head(url: &str, extra: &str) -> std::process::Child {
    let command = format!(
        "'{}' --server '{url}' {} {extra} user | head -n 3; echo \"status=${{PIPESTATUS[0]}}\"",
        harness::BIN,
        FAST.join(" ")
    );
    std::process::Command::new("bash")
        .args(["-c", &command])
        .env("MASTODON_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Collects the pipeline's output. When it has not `exited`, it is killed first, and so is
/// its mastotail, which keeps the output pipes open and would make the read wait for ever.
fn collect_pipeline(
    mut child: std::process::Child,
    url: &str,
    exited: bool,
) -> std::process::Output {
    if !exited {
        let _ = child.kill();
        let _ = std::process::Command::new("pkill")
            .args(["-f", "--", &format!("--server {url}")])
            .status();
    }
    child.wait_with_output().unwrap()
}

#[test]
fn closed_stdout_ends_quietly() {
    let server = FakeServer::start();
    let url = server.http_url();
    let mut child = spawn_into_head(&url, "");
    // Events keep coming, as on a real server, so that a write after `head` exited finds
    // the pipe closed. At most 250 events, 20 ms apart.
    server.wait_until("a connection", WAIT, |s| !s.connections().is_empty());
    let mut exited = false;
    for id in 1..=250 {
        server.send(&frame(&["user"], "delete", &json!(id.to_string())));
        std::thread::sleep(Duration::from_millis(20));
        if child.try_wait().unwrap().is_some() {
            exited = true;
            break;
        }
    }
    let output = collect_pipeline(child, &url, exited);
    assert!(exited, "mastotail did not end after stdout closed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(lines[3], "status=0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn count_exits_after_n_events() {
    let server = FakeServer::start();
    let url = server.http_url();
    let mut command_args = args(&server, &url, &["user"]);
    command_args.extend(["--count", "2"]);
    let mut mastotail = Mastotail::start(&command_args);
    for id in ["1", "2", "3"] {
        server.send(&frame(&["user"], "delete", &json!(id)));
    }
    assert_eq!(mastotail.wait_exit(WAIT), Some(0));
    assert_eq!(mastotail.remaining_lines().len(), 2);
}

#[test]
fn tags_sent_exactly_and_encoded_in_query() {
    let server = FakeServer::start();
    let url = server.http_url();
    let streams = [
        "hashtag:c++",
        "hashtag:a&b",
        "hashtag:\"quote\"",
        "hashtag:#fediverse",
    ];
    let _mastotail = Mastotail::start(&args(&server, &url, &streams));
    server.wait_until("four subscriptions", WAIT, |server| {
        server
            .connections()
            .first()
            .is_some_and(|c| c.subscriptions.len() == 4)
    });
    let connection = &server.connections()[0];
    assert_eq!(
        connection.path_and_query,
        "/api/v1/streaming?stream=hashtag&tag=c%2B%2B"
    );
    let tags: Vec<&str> = connection
        .subscriptions
        .iter()
        .map(|s| s["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["c++", "a&b", "\"quote\"", "fediverse"]);
}

#[test]
fn token_in_query_only_when_asked_and_never_logged() {
    let server = FakeServer::start();
    let url = server.http_url();
    let mut command_args = args(&server, &url, &["user"]);
    command_args.extend(["--token-in-query", "-vv"]);
    let mut mastotail = Mastotail::start(&command_args);
    server.send(&frame(&["user"], "delete", &json!("1")));
    mastotail.json_lines(1, WAIT);
    let connection = &server.connections()[0];
    assert_eq!(
        connection.path_and_query,
        format!("/api/v1/streaming?stream=user&access_token={TOKEN}")
    );
    for request in server.requests() {
        if !request.path_and_query.starts_with("/api/v1/streaming") {
            assert!(!request.path_and_query.contains(TOKEN), "{request:?}");
        }
    }
    mastotail.kill();
    assert!(
        !mastotail.stderr().contains(TOKEN),
        "{}",
        mastotail.stderr()
    );
}

#[test]
fn closed_pipe_noticed_while_stream_is_quiet() {
    // All events arrive in one burst and fit in the pipe, so no later write fails: mastotail
    // must notice that `head` is gone while the stream is quiet.
    let server = FakeServer::start();
    let url = server.http_url();
    let mut script = vec![Step::Accept, Step::WaitSubscriptions(1)];
    for id in 1..=10 {
        script.push(Step::Text(frame(
            &["user"],
            "delete",
            &json!(id.to_string()),
        )));
    }
    script.push(Step::Live);
    server.push_script(script);
    let mut child = spawn_into_head(&url, "--no-backfill");
    let deadline = std::time::Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let exited = child.try_wait().unwrap().is_some();
    let output = collect_pipeline(child, &url, exited);
    assert!(exited, "mastotail kept running after head exited");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().last(), Some("status=0"), "{stdout}");
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
}
