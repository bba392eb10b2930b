//! Staying alive: every way a connection fails, what is retried and what ends the run,
//! heartbeats, backoff resets, and an endurance run through many faults in a row.

mod harness;
mod support;

use std::time::{Duration, Instant, SystemTime};

use harness::{FAST, Mastotail, frame};
use serde_json::json;
use support::{FakeServer, Step};

const WAIT: Duration = Duration::from_secs(10);

fn start(server: &FakeServer, extra: &[&str]) -> Mastotail {
    let url = server.http_url();
    let ws = server.ws_url();
    let mut args = vec!["--server", url.as_str(), "--streaming-url", ws.as_str()];
    args.extend_from_slice(FAST);
    args.extend_from_slice(extra);
    args.push("user");
    Mastotail::start(&args)
}

fn delete(id: &str) -> String {
    frame(&["user"], "delete", &json!(id))
}

/// Builds a connection script that delivers one event and then ends with `ending`.
fn delivers_then(id: &str, ending: Vec<Step>) -> Vec<Step> {
    let mut script = vec![
        Step::Accept,
        Step::WaitSubscriptions(1),
        Step::Text(delete(id)),
    ];
    script.extend(ending);
    script
}

/// Builds a text frame whose payload is not UTF-8.
fn invalid_utf8_frame() -> Vec<u8> {
    vec![0x81, 0x04, b'{', 0xff, 0xfe, b'}']
}

/// Checks that mastotail survives the fault that ends the first connection: the event before
/// it and one sent on the next connection are both printed, once each.
fn survives(ending: Vec<Step>, extra: &[&str]) -> Mastotail {
    let server = FakeServer::start();
    server.push_script(delivers_then("1", ending));
    let mut mastotail = start(&server, extra);
    assert_eq!(mastotail.json_lines(1, WAIT)[0]["payload"], "1");
    server.wait_until("a second connection", WAIT, |s| s.connections().len() >= 2);
    server.send(&delete("2"));
    assert_eq!(
        mastotail.json_lines(1, WAIT)[0]["payload"],
        "2",
        "stderr: {}",
        mastotail.stderr()
    );
    mastotail
}

#[test]
fn eof_without_close_frame_retried() {
    let mastotail = survives(vec![Step::Eof], &[]);
    assert!(mastotail.stderr().contains("disconnected"));
}

#[test]
fn connection_reset_retried() {
    survives(vec![Step::Reset], &[]);
}

#[test]
fn close_codes_retried() {
    for code in [Some(1000), Some(1001), None, Some(1011)] {
        let mastotail = survives(vec![Step::Close(code)], &[]);
        let expected = match code {
            Some(code) => format!("code {code}"),
            None => "without a status code".to_string(),
        };
        assert!(
            mastotail.stderr().contains(&expected),
            "{}",
            mastotail.stderr()
        );
    }
}

#[test]
fn invalid_utf8_frame_retried() {
    let mastotail = survives(vec![Step::Raw(invalid_utf8_frame()), Step::Live], &[]);
    assert!(
        mastotail.stderr().contains("invalid UTF-8"),
        "{}",
        mastotail.stderr()
    );
}

#[test]
fn oversized_message_retried() {
    let big = frame(&["user"], "delete", &json!("x".repeat(5000)));
    let mastotail = survives(
        vec![Step::Text(big), Step::Live],
        &["--max-message-size", "4096"],
    );
    assert!(
        mastotail.stderr().contains("size limit"),
        "{}",
        mastotail.stderr()
    );
}

#[test]
fn silent_server_declared_dead() {
    let mastotail = survives(vec![Step::Silence(Duration::from_secs(3))], &[]);
    assert!(
        mastotail.stderr().contains("--silence-timeout"),
        "{}",
        mastotail.stderr()
    );
}

/// Checks that a failed handshake is retried and the next connection works.
fn handshake_retried(first: Step, extra: &[&str]) -> Mastotail {
    let server = FakeServer::start();
    server.push_script(vec![first]);
    let mut mastotail = start(&server, extra);
    server.wait_until("a second connection", WAIT, |s| s.connections().len() >= 2);
    server.send(&delete("1"));
    assert_eq!(mastotail.json_lines(1, WAIT)[0]["payload"], "1");
    mastotail
}

#[test]
fn handshake_5xx_retried() {
    let html = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
    for (status, body) in [(500, ""), (502, html), (503, "")] {
        let step = Step::Reject {
            status,
            headers: vec![],
            body: body.to_string(),
        };
        let mastotail = handshake_retried(step, &[]);
        let stderr = mastotail.stderr();
        assert!(stderr.contains(&format!("HTTP {status}")), "{stderr}");
        if status == 502 {
            assert!(stderr.contains("502 Bad Gateway nginx"), "{stderr}");
            assert!(!stderr.contains("<html>"), "{stderr}");
        }
    }
}

#[test]
fn handshake_timeout_retried() {
    let mastotail = handshake_retried(Step::Hang, &[]);
    assert!(
        mastotail.stderr().contains("WebSocket handshake timed out"),
        "{}",
        mastotail.stderr()
    );
}

#[test]
fn refused_connection_retried() {
    let server = FakeServer::start();
    server.stop_listening();
    let mut mastotail = start(&server, &[]);
    mastotail.wait_stderr("Connection refused", WAIT);
    server.resume_listening();
    server.wait_until("a connection", WAIT, |s| !s.connections().is_empty());
    server.send(&delete("1"));
    assert_eq!(mastotail.json_lines(1, WAIT)[0]["payload"], "1");
}

#[test]
fn server_restart_retried() {
    let server = FakeServer::start();
    let mut mastotail = start(&server, &[]);
    server.send(&delete("1"));
    mastotail.json_lines(1, WAIT);
    server.stop_listening();
    mastotail.wait_stderr("Connection refused", WAIT);
    server.resume_listening();
    server.wait_until("a second connection", WAIT, |s| s.connections().len() >= 2);
    server.wait_until("subscriptions re-sent", WAIT, |s| {
        s.connections()
            .last()
            .is_some_and(|c| c.subscriptions.len() == 1)
    });
    server.send(&delete("2"));
    assert_eq!(mastotail.json_lines(1, WAIT)[0]["payload"], "2");
}

#[test]
fn dns_failure_retried() {
    // A 70-letter label is longer than DNS allows, so the lookup fails on this machine
    // without sending a query anywhere.
    let host = format!("ws://{}.example:9", "a".repeat(70));
    let server = FakeServer::start();
    let url = server.http_url();
    let mut args = vec![
        "--server",
        url.as_str(),
        "--streaming-url",
        host.as_str(),
        "--allow-insecure",
    ];
    args.extend_from_slice(FAST);
    args.push("user");
    let mastotail = Mastotail::start(&args);
    mastotail.wait_stderr("DNS lookup failed", WAIT);
    mastotail.wait_stderr("attempt 2", WAIT);
}

#[test]
fn tls_handshake_failure_retried() {
    // The fake server speaks plain HTTP, so a TLS client hello gets no valid TLS response.
    let server = FakeServer::start();
    let url = server.http_url();
    let wss = server.ws_url().replace("ws://", "wss://");
    let mut args = vec!["--server", url.as_str(), "--streaming-url", wss.as_str()];
    args.extend_from_slice(FAST);
    args.push("user");
    let mastotail = Mastotail::start(&args);
    mastotail.wait_stderr("TLS", WAIT);
    mastotail.wait_stderr("attempt 2", WAIT);
}

#[test]
fn rate_limited_handshake_waits_for_reset() {
    let server = FakeServer::start();
    let reset = SystemTime::now() + Duration::from_millis(1500);
    server.push_script(vec![Step::Reject {
        status: 429,
        headers: vec![(
            "X-RateLimit-Reset".to_string(),
            mastotail::ratelimit::format_rfc3339(reset).replace('Z', ".000000Z"),
        )],
        body: r#"{"error":"Too many requests"}"#.to_string(),
    }]);
    let mut mastotail = start(&server, &[]);
    server.wait_until("a first connection", WAIT, |s| !s.connections().is_empty());
    let first = Instant::now();
    server.wait_until("a second connection", WAIT, |s| s.connections().len() >= 2);
    // The backoff ceiling in these tests is 0.1 s, so a longer wait came from the header,
    // which names a whole second at least 0.5 s after the first attempt.
    assert!(
        first.elapsed() >= Duration::from_millis(300),
        "{:?}",
        first.elapsed()
    );
    server.send(&delete("1"));
    mastotail.json_lines(1, WAIT);
    assert!(
        mastotail.stderr().contains("rate limited"),
        "{}",
        mastotail.stderr()
    );
}

#[test]
fn rate_limited_handshake_honours_retry_after() {
    let server = FakeServer::start();
    server.push_script(vec![Step::Reject {
        status: 429,
        headers: vec![("Retry-After".to_string(), "1".to_string())],
        body: String::new(),
    }]);
    let mastotail = start(&server, &[]);
    server.wait_until("a first connection", WAIT, |s| !s.connections().is_empty());
    let first = Instant::now();
    server.wait_until("a second connection", WAIT, |s| s.connections().len() >= 2);
    assert!(
        first.elapsed() >= Duration::from_millis(800),
        "{:?}",
        first.elapsed()
    );
    assert!(
        mastotail.stderr().contains("reconnecting in 1.00 s"),
        "{}",
        mastotail.stderr()
    );
}

#[test]
fn forbidden_exits_after_one_confirming_retry() {
    let server = FakeServer::start();
    for _ in 0..3 {
        server.push_script(vec![Step::Reject {
            status: 403,
            headers: vec![(
                "X-Error-Message".to_string(),
                "Forbidden for test".to_string(),
            )],
            body: String::new(),
        }]);
    }
    let mut mastotail = start(&server, &[]);
    assert_eq!(mastotail.wait_exit(WAIT), Some(3));
    assert_eq!(server.connections().len(), 2);
    assert!(mastotail.stderr().contains("Forbidden for test"));
}

#[test]
fn revoked_token_close_then_401_exits() {
    let server = FakeServer::start();
    server.push_script(delivers_then("1", vec![Step::Close(None)]));
    let rejected = Step::Reject {
        status: 401,
        headers: vec![(
            "X-Error-Message".to_string(),
            "Invalid access token".to_string(),
        )],
        body: String::new(),
    };
    for _ in 0..5 {
        server.push_script(vec![rejected.clone()]);
    }
    let mut mastotail = start(&server, &[]);
    assert_eq!(mastotail.wait_exit(WAIT), Some(3));
    assert_eq!(mastotail.seen.len() + mastotail.remaining_lines().len(), 1);
    assert_eq!(server.connections().len(), 3, "close, 401, confirming 401");
}

#[test]
fn backoff_grows_until_a_healthy_connection() {
    let server = FakeServer::start();
    for _ in 0..4 {
        server.push_script(vec![Step::Accept, Step::WaitSubscriptions(1), Step::Eof]);
    }
    server.push_script(delivers_then("1", vec![Step::Eof]));
    server.push_script(vec![Step::Accept, Step::WaitSubscriptions(1), Step::Eof]);
    let mut mastotail = start(&server, &[]);
    mastotail.json_lines(1, WAIT);
    server.wait_until("seven connections", WAIT, |s| s.connections().len() >= 7);
    mastotail.wait_stderr("attempt 2)", WAIT);
    let stderr = mastotail.stderr();
    let attempts: Vec<u32> = stderr
        .lines()
        .filter_map(|line| line.split("(attempt ").nth(1))
        .map(|rest| rest.trim_end_matches(')').parse().unwrap())
        .collect();
    // Four sockets that closed at once keep counting up; the one that delivered an event
    // resets the count before its own failure.
    assert_eq!(attempts[..6], [1, 2, 3, 4, 1, 2], "{stderr}");
}

#[test]
fn pings_answered_and_sent_while_idle() {
    let server = FakeServer::start();
    server.set_ping_interval(Some(Duration::from_millis(100)));
    let mastotail = start(&server, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let connections = server.connections();
    assert_eq!(connections.len(), 1, "stderr: {}", mastotail.stderr());
    assert!(connections[0].pongs_received >= 5, "{connections:?}");
    assert!(connections[0].pings_received >= 3, "{connections:?}");
}

#[test]
fn idle_connection_does_not_spin() {
    let server = FakeServer::start();
    let mastotail = start(&server, &[]);
    server.wait_until("a connection", WAIT, |s| !s.connections().is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let before = context_switches(mastotail.pid());
    std::thread::sleep(Duration::from_secs(1));
    let after = context_switches(mastotail.pid());
    // Pings every 0.2 s need about ten wake-ups a second; a loop that polled would need
    // thousands.
    assert!(
        after - before < 60,
        "{} wake-ups in one idle second",
        after - before
    );
    assert_eq!(server.connections().len(), 1);
}

fn context_switches(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .filter(|line| line.contains("ctxt_switches"))
        .map(|line| {
            line.split_whitespace()
                .last()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

/// A fixed-seed generator for the endurance run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn endurance_through_fifty_faults() {
    let server = FakeServer::start();
    let big = frame(&["user"], "delete", &json!("y".repeat(3000)));
    let mut random = Lcg(20261204);
    let mut expected = Vec::new();
    let mut faults = Vec::new();
    for round in 0..60 {
        let id = format!("{}", 1000 + round);
        let fault = random.below(14);
        faults.push(fault);
        let ending = match fault {
            0 => vec![Step::Eof],
            1 => vec![Step::Reset],
            2 => vec![Step::Close(Some(1000))],
            3 => vec![Step::Close(Some(1001))],
            4 => vec![Step::Close(None)],
            5 => vec![Step::Close(Some(1011))],
            6 => vec![Step::Raw(invalid_utf8_frame()), Step::Live],
            7 => vec![Step::Text(big.clone()), Step::Live],
            8 => vec![Step::Silence(Duration::from_secs(2))],
            _ => vec![Step::Eof],
        };
        let handshake_fault = match fault {
            9 => Some(Step::Reject {
                status: 500,
                headers: vec![],
                body: String::new(),
            }),
            10 => Some(Step::Reject {
                status: 502,
                headers: vec![],
                body: "<html><body>Bad Gateway</body></html>".to_string(),
            }),
            11 => Some(Step::Reject {
                status: 503,
                headers: vec![],
                body: String::new(),
            }),
            12 => Some(Step::Hang),
            13 => Some(Step::Reject {
                status: 429,
                headers: vec![("Retry-After".to_string(), "0".to_string())],
                body: String::new(),
            }),
            _ => None,
        };
        if let Some(step) = handshake_fault {
            server.push_script(vec![step]);
        }
        server.push_script(delivers_then(&id, ending));
        expected.push(id);
    }
    let mut mastotail = start(&server, &["--max-message-size", "2048"]);
    for (round, id) in expected.iter().enumerate() {
        let line = mastotail.line(WAIT);
        let value: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("round {round}: cut line ({error}): {line}"));
        assert_eq!(
            value["payload"],
            json!(id),
            "round {round}, fault {}",
            faults[round]
        );
        assert_eq!(mastotail.thread_count(), 1, "round {round}");
    }
    assert!(
        mastotail.no_line_within(Duration::from_millis(300)),
        "a line was printed twice"
    );
    let distinct: std::collections::HashSet<&u64> = faults.iter().collect();
    assert!(
        distinct.len() >= 12,
        "the seed covers too few kinds of fault: {faults:?}"
    );
}

#[test]
fn tls_stream_dribbled_byte_by_byte() {
    let dir = std::env::temp_dir().join(format!("mastotail-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeServer::start();
    let front = harness::tls::TlsFront::start(server.port(), &dir);
    let sent = frame(&["user"], "update", &harness::status("77"));
    server.push_script(vec![
        Step::Accept,
        Step::WaitSubscriptions(1),
        Step::Dribble {
            frame: sent.clone(),
            chunk: 1,
            delay: Duration::from_millis(1),
        },
        Step::Eof,
    ]);
    let url = server.http_url();
    let wss = format!("wss://localhost:{}", front.port);
    let ca_file = front.ca_file.to_str().unwrap().to_string();
    let mut args = vec![
        "--server",
        url.as_str(),
        "--streaming-url",
        wss.as_str(),
        "--ca-file",
        ca_file.as_str(),
        "--format",
        "raw",
    ];
    args.extend_from_slice(FAST);
    args.push("user");
    let mut mastotail = Mastotail::start(&args);
    assert_eq!(mastotail.line(WAIT), sent);
    // The connection ends after the frame; the next one over TLS works too.
    server.wait_until("a second connection", WAIT, |s| s.connections().len() >= 2);
    server.send(&delete("78"));
    assert_eq!(mastotail.line(WAIT), delete("78"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn untrusted_certificate_retried_not_accepted() {
    let dir = std::env::temp_dir().join(format!("mastotail-tls-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeServer::start();
    let front = harness::tls::TlsFront::start(server.port(), &dir);
    let url = server.http_url();
    let wss = format!("wss://localhost:{}", front.port);
    let mut args = vec!["--server", url.as_str(), "--streaming-url", wss.as_str()];
    args.extend_from_slice(FAST);
    args.push("user");
    let mastotail = Mastotail::start(&args);
    mastotail.wait_stderr("TLS failed", WAIT);
    mastotail.wait_stderr("attempt 2", WAIT);
    assert!(
        server.connections().is_empty(),
        "connected despite an untrusted certificate"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn redirect_not_followed_with_token() {
    let elsewhere = FakeServer::start();
    let server = FakeServer::start();
    let location = format!(
        "{}/api/v1/streaming?access_token=leaked",
        elsewhere.ws_url()
    );
    server.push_script(vec![Step::Reject {
        status: 301,
        headers: vec![("Location".to_string(), location)],
        body: String::new(),
    }]);
    let mut mastotail = start(&server, &[]);
    server.wait_until("a second connection", WAIT, |s| s.connections().len() >= 2);
    server.send(&delete("1"));
    assert_eq!(mastotail.json_lines(1, WAIT)[0]["payload"], "1");
    let stderr = mastotail.stderr();
    assert!(stderr.contains("redirected to"), "{stderr}");
    assert!(stderr.contains("access_token=REDACTED"), "{stderr}");
    assert!(!stderr.contains("leaked"), "{stderr}");
    assert!(
        elsewhere.connections().is_empty(),
        "the redirect was followed"
    );
}

#[test]
fn without_pings_silence_still_detected() {
    let server = FakeServer::start();
    server.push_script(delivers_then(
        "1",
        vec![Step::Sleep(Duration::from_secs(3))],
    ));
    let url = server.http_url();
    let ws = server.ws_url();
    let mut args = vec!["--server", url.as_str(), "--streaming-url", ws.as_str()];
    let fast_without_pings: Vec<&str> = FAST
        .chunks(2)
        .filter(|pair| pair[0] != "--ping-interval")
        .flatten()
        .copied()
        .collect();
    args.extend(fast_without_pings);
    args.extend(["--ping-interval", "0", "user"]);
    let mut mastotail = Mastotail::start(&args);
    assert_eq!(mastotail.json_lines(1, WAIT)[0]["payload"], "1");
    server.wait_until("a reconnect after silence", WAIT, |s| {
        s.connections().len() >= 2
    });
    assert_eq!(server.connections()[0].pings_received, 0);
    assert!(
        mastotail.stderr().contains("--silence-timeout"),
        "{}",
        mastotail.stderr()
    );
}

/// Builds a script from a recorded timeline, with time scaled down a hundredfold.
fn timeline_script(file: &str) -> (Vec<Step>, usize, bool) {
    let path = format!("{}/tests/captures/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut script = vec![Step::Accept, Step::WaitSubscriptions(1)];
    let mut elapsed = 0u64;
    let mut texts = 0;
    let mut ends = false;
    for line in text.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let at = entry["t_ms"].as_u64().unwrap() / 100;
        if at > elapsed {
            script.push(Step::Sleep(Duration::from_millis(at - elapsed)));
            elapsed = at;
        }
        match entry["kind"].as_str().unwrap() {
            "ping" => script.push(Step::Ping(Vec::new())),
            "text" => {
                texts += 1;
                script.push(Step::Text(delete(&format!("t{texts}"))));
            }
            "close" => {
                let code = entry["code"].as_u64().map(|code| code as u16);
                script.push(Step::Close(code));
                ends = true;
            }
            "eof" if !ends => {
                script.push(Step::Eof);
                ends = true;
            }
            _ => {}
        }
    }
    if !ends {
        script.push(Step::Live);
    }
    (script, texts, ends)
}

#[test]
fn recorded_timelines_replayed() {
    for file in [
        "timeline-idle.jsonl",
        "timeline-kill-token.jsonl",
        "timeline-kill-system.jsonl",
        "timeline-restart.jsonl",
        "timeline-restart-kill.jsonl",
        "timeline-no-pong.jsonl",
        "timeline-no-pong-never.jsonl",
        "timeline-binary-frame.jsonl",
    ] {
        let (script, texts, ends) = timeline_script(file);
        let server = FakeServer::start();
        server.push_script(script);
        let mut mastotail = start(&server, &[]);
        for index in 1..=texts {
            let line = mastotail.json_lines(1, WAIT).remove(0);
            assert_eq!(line["payload"], format!("t{index}"), "{file}");
        }
        if ends {
            server.wait_until("a reconnect", WAIT, |s| s.connections().len() >= 2);
            server.send(&delete("after"));
            assert_eq!(
                mastotail.json_lines(1, WAIT)[0]["payload"],
                "after",
                "{file}"
            );
        } else {
            // The recording has three server pings; all are answered on one connection.
            server.wait_until("three pongs", WAIT, |s| {
                s.connections()
                    .first()
                    .is_some_and(|c| c.pongs_received >= 3)
            });
            assert_eq!(
                server.connections().len(),
                1,
                "{file}: {}",
                mastotail.stderr()
            );
        }
    }
}

#[test]
fn large_messages_kept_and_oversized_refused() {
    let server = FakeServer::start();
    let mut big = harness::status("70");
    big["content"] = json!(format!("<p>{}</p>", "lorem ipsum ".repeat(6_000)));
    let mut huge = harness::status("1000");
    huge["content"] = json!(format!("<p>{}</p>", "lorem ipsum ".repeat(90_000)));
    let mut oversized = harness::status("20000");
    oversized["content"] = json!("x".repeat(20 << 20));
    server.push_script(vec![
        Step::Accept,
        Step::WaitSubscriptions(1),
        Step::Text(frame(&["user"], "update", &big)),
        Step::Text(frame(&["user"], "update", &huge)),
        Step::Text(frame(&["user"], "update", &oversized)),
        Step::Live,
    ]);
    let mut mastotail = start(&server, &["--no-backfill"]);
    let lines = mastotail.json_lines(2, WAIT);
    assert_eq!(lines[0]["payload"], big);
    assert_eq!(lines[1]["payload"], huge);
    server.wait_until("a reconnect", WAIT, |s| s.connections().len() >= 2);
    server.send(&delete("after"));
    assert_eq!(mastotail.json_lines(1, WAIT)[0]["payload"], "after");
    let stderr = mastotail.stderr();
    assert!(stderr.contains("size limit"), "{stderr}");
    assert!(stderr.contains("16777216"), "{stderr}");
}
