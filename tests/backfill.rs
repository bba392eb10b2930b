//! Losing nothing: catch-ups over REST after reconnects and restarts, deduplication, the state
//! file, and the REST failures a catch-up survives.

mod harness;
mod support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use harness::{FAST, Mastotail, frame, notification, status};
use serde_json::{Value, json};
use support::{FakeServer, RestFault};

const WAIT: Duration = Duration::from_secs(15);
const HOME: &str = "/api/v1/timelines/home";
const NOTIFICATIONS: &str = "/api/v1/notifications";

fn start(server: &FakeServer, extra: &[&str], streams: &[&str]) -> Mastotail {
    let url = server.http_url();
    let ws = server.ws_url();
    let mut args = vec!["--server", url.as_str(), "--streaming-url", ws.as_str()];
    args.extend_from_slice(FAST);
    args.extend_from_slice(extra);
    args.extend_from_slice(streams);
    Mastotail::start(&args)
}

fn statuses(ids: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    ids.map(|id| status(&id.to_string())).collect()
}

fn notifications(ids: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    ids.map(|id| notification(&id.to_string())).collect()
}

/// Waits until mastotail has fixed its starting cursors with one request per source.
fn wait_for_baseline(server: &FakeServer, paths: &[&str]) {
    server.wait_until("baseline requests", WAIT, |s| {
        let requests = s.requests();
        paths.iter().all(|path| {
            requests
                .iter()
                .any(|r| r.path_and_query.starts_with(path) && r.status == 200)
        })
    });
}

/// Returns the `min_id` values of the requests to `path`, in order.
fn min_ids(server: &FakeServer, path: &str) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.path_and_query.starts_with(path))
        .filter_map(|r| r.path_and_query.split("min_id=").nth(1))
        .map(|rest| rest.split('&').next().unwrap().to_string())
        .collect()
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| line["payload"]["id"].as_str().unwrap().to_string())
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mastotail-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Drops the connection and lets mastotail reconnect.
fn cut_connection(server: &FakeServer) {
    let before = server.connections().len();
    server.stop_listening();
    std::thread::sleep(Duration::from_millis(50));
    server.resume_listening();
    server.wait_until("a reconnect", WAIT, |s| s.connections().len() > before);
}

#[test]
fn gap_filled_once_in_order_with_fewest_requests() {
    let server = FakeServer::start();
    server.add_items(HOME, statuses(1000..=1000));
    server.add_items(NOTIFICATIONS, notifications(5000..=5000));
    let mut mastotail = start(&server, &[], &["user"]);
    wait_for_baseline(&server, &[HOME, NOTIFICATIONS]);

    server.add_items(HOME, statuses(1001..=1200));
    server.add_items(NOTIFICATIONS, notifications(5001..=5100));
    cut_connection(&server);

    let lines = mastotail.json_lines(300, WAIT);
    assert!(lines.iter().all(|line| line["backfill"] == json!(true)));
    let updates: Vec<Value> = lines
        .iter()
        .filter(|l| l["event"] == "update")
        .cloned()
        .collect();
    let notes: Vec<Value> = lines
        .iter()
        .filter(|l| l["event"] == "notification")
        .cloned()
        .collect();
    let expected_updates: Vec<String> = (1001..=1200).map(|id: u64| id.to_string()).collect();
    let expected_notes: Vec<String> = (5001..=5100).map(|id: u64| id.to_string()).collect();
    assert_eq!(ids(&updates), expected_updates);
    assert_eq!(ids(&notes), expected_notes);
    assert_eq!(lines[0]["stream"], json!(["user"]));
    assert!(mastotail.no_line_within(Duration::from_millis(300)));

    // 200 statuses at 40 a page need five full pages and one that shows the end; 100
    // notifications at 80 a page need two.
    assert_eq!(
        min_ids(&server, HOME),
        ["1000", "1040", "1080", "1120", "1160", "1200"]
    );
    assert_eq!(min_ids(&server, NOTIFICATIONS), ["5000", "5080"]);
    assert!(server
        .requests()
        .iter()
        .filter(|r| r.path_and_query.contains("min_id"))
        .all(|r| r.path_and_query.contains("limit=40") || r.path_and_query.contains("limit=80")));
}

#[test]
fn live_events_wait_for_rate_limited_backfill() {
    let server = FakeServer::start();
    server.add_items(HOME, statuses(1000..=1000));
    let mut mastotail = start(&server, &[], &["user"]);
    wait_for_baseline(&server, &[HOME]);

    server.add_items(HOME, statuses(1001..=1120));
    // The second page is rate limited for about a second; live events arrive meanwhile.
    let reset = SystemTime::now() + Duration::from_millis(1600);
    let reset = mastotail::ratelimit::format_rfc3339(reset).replace('Z', ".000000Z");
    server.push_rest_fault(
        HOME,
        RestFault::Status {
            status: 200,
            headers: vec![],
            body: serde_json::to_string(
                &statuses(1001..=1040).into_iter().rev().collect::<Vec<_>>(),
            )
            .unwrap(),
        },
    );
    server.push_rest_fault(
        HOME,
        RestFault::Status {
            status: 429,
            headers: vec![("X-RateLimit-Reset".to_string(), reset)],
            body: r#"{"error":"Too many requests"}"#.to_string(),
        },
    );
    cut_connection(&server);
    server.wait_until("the rate limit", WAIT, |s| {
        s.requests().iter().any(|r| r.status == 429)
    });
    let connections = server.connections().len();
    server.send(&frame(&["user"], "update", &status("1121")));
    server.send(&frame(&["user"], "update", &status("1050")));
    server.send(&frame(&["user"], "delete", &json!("999")));

    let lines = mastotail.json_lines(122, WAIT);
    let backfilled: Vec<String> = ids(&lines[..120]);
    let expected: Vec<String> = (1001..=1120).map(|id: u64| id.to_string()).collect();
    assert_eq!(backfilled, expected);
    assert_eq!(lines[120]["payload"]["id"], "1121");
    assert!(lines[120].get("backfill").is_none());
    assert_eq!(lines[121]["event"], "delete");
    assert!(
        mastotail.no_line_within(Duration::from_millis(300)),
        "1050 printed twice"
    );
    assert_eq!(
        min_ids(&server, HOME),
        ["1000", "1040", "1040", "1080", "1120"]
    );
    assert_eq!(
        server.connections().len(),
        connections,
        "socket dropped during the wait"
    );
    assert!(
        mastotail.stderr().contains("rate limited"),
        "{}",
        mastotail.stderr()
    );
}

#[test]
fn same_notification_twice_printed_once() {
    let server = FakeServer::start();
    let mut mastotail = start(&server, &[], &["user", "user:notification"]);
    wait_for_baseline(&server, &[NOTIFICATIONS]);
    let note = notification("7000");
    server.send(&frame(&["user"], "notification", &note));
    server.send(&frame(&["user:notification"], "notification", &note));
    server.send(&frame(&["user"], "notification", &notification("7001")));
    let lines = mastotail.json_lines(2, WAIT);
    assert_eq!(ids(&lines), ["7000", "7001"]);
    assert!(mastotail.no_line_within(Duration::from_millis(300)));

    // The same notification again from REST after a reconnect is not printed either.
    server.add_items(
        NOTIFICATIONS,
        vec![note, notification("7001"), notification("7002")],
    );
    cut_connection(&server);
    let lines = mastotail.json_lines(1, WAIT);
    assert_eq!(ids(&lines), ["7002"]);
    assert!(mastotail.no_line_within(Duration::from_millis(300)));
}

#[test]
fn edits_and_deletes_survive_dedupe() {
    let server = FakeServer::start();
    let mut mastotail = start(&server, &["--no-backfill"], &["user"]);
    let mut edited = status("10");
    edited["edited_at"] = json!("2026-12-04T21:00:00.000Z");
    server.send(&frame(&["user"], "update", &status("10")));
    server.send(&frame(&["user"], "status.update", &edited));
    server.send(&frame(&["user"], "status.update", &edited));
    edited["edited_at"] = json!("2026-12-04T21:05:00.000Z");
    server.send(&frame(&["user"], "status.update", &edited));
    server.send(&frame(&["user"], "delete", &json!("10")));
    let lines = mastotail.json_lines(4, WAIT);
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        ["update", "status.update", "status.update", "delete"]
    );
    assert!(mastotail.no_line_within(Duration::from_millis(300)));
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.path_and_query.starts_with(HOME))
    );
}

#[test]
fn restart_after_kill_resumes_from_state() {
    let dir = temp_dir("restart");
    let state = dir.join("state.json");
    let state_arg = state.to_str().unwrap();
    let server = FakeServer::start();
    server.add_items(HOME, statuses(1000..=1000));

    let mut first = start(&server, &["--state", state_arg], &["user"]);
    wait_for_baseline(&server, &[HOME]);
    for id in 1001..=1003 {
        server.add_items(HOME, statuses(id..=id));
        server.send(&frame(&["user"], "update", &status(&id.to_string())));
    }
    assert_eq!(ids(&first.json_lines(3, WAIT)), ["1001", "1002", "1003"]);
    std::thread::sleep(Duration::from_millis(100));
    first.kill();

    let mode = std::fs::metadata(&state).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    server.add_items(HOME, statuses(1004..=1010));
    let mut second = start(&server, &["--state", state_arg], &["user"]);
    let mut printed = Vec::new();
    while printed.last().map(String::as_str) != Some("1010") {
        printed.extend(ids(&second.json_lines(1, WAIT)));
    }
    // At most the last event printed before the kill appears again.
    let expected: Vec<String> = (1004..=1010).map(|id: u64| id.to_string()).collect();
    let again = printed.len() - expected.len();
    assert!(again <= 1, "{printed:?}");
    assert_eq!(printed[again..], expected[..]);
    if again == 1 {
        assert_eq!(printed[0], "1003");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn second_process_on_state_file_rejected() {
    let dir = temp_dir("lock");
    let state = dir.join("state.json");
    let state_arg = state.to_str().unwrap();
    let server = FakeServer::start();
    let _first = start(&server, &["--state", state_arg], &["user"]);
    server.wait_until("first connection", WAIT, |s| !s.connections().is_empty());
    let mut second = start(&server, &["--state", state_arg], &["user"]);
    assert_eq!(second.wait_exit(WAIT), Some(5));
    let stderr = second.stderr();
    assert!(stderr.contains(state_arg), "{stderr}");
    assert!(stderr.contains("locked"), "{stderr}");
    assert_eq!(server.connections().len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn truncated_state_file_stops_with_message() {
    let dir = temp_dir("corrupt");
    let state = dir.join("state.json");
    std::fs::write(&state, r#"{"version":1,"cursors":{"home":"10"#).unwrap();
    let state_arg = state.to_str().unwrap();
    let server = FakeServer::start();
    let mut mastotail = start(&server, &["--state", state_arg], &["user"]);
    assert_eq!(mastotail.wait_exit(WAIT), Some(5));
    let stderr = mastotail.stderr();
    assert!(stderr.contains(state_arg), "{stderr}");
    assert!(stderr.contains("corrupt"), "{stderr}");
    assert!(server.connections().is_empty());
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        r#"{"version":1,"cursors":{"home":"10"#,
        "the damaged file was changed"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn backfill_max_caps_and_warns() {
    let server = FakeServer::start();
    server.add_items(HOME, statuses(1000..=1000));
    let mut mastotail = start(&server, &["--backfill-max", "30"], &["user"]);
    wait_for_baseline(&server, &[HOME]);
    server.add_items(HOME, statuses(1001..=1100));
    cut_connection(&server);
    let lines = mastotail.json_lines(30, WAIT);
    assert_eq!(ids(&lines)[29], "1030");
    assert!(mastotail.no_line_within(Duration::from_millis(300)));
    mastotail.wait_stderr("--backfill-max 30", WAIT);
}

#[test]
fn rest_failures_retried_later() {
    let server = FakeServer::start();
    server.add_items(HOME, statuses(1000..=1000));
    let mut mastotail = start(&server, &[], &["user"]);
    wait_for_baseline(&server, &[HOME]);
    server.add_items(HOME, statuses(1001..=1090));
    server.push_rest_fault(HOME, RestFault::Partial);
    server.push_rest_fault(HOME, RestFault::MalformedBody);
    server.push_rest_fault(
        HOME,
        RestFault::Status {
            status: 503,
            headers: vec![],
            body: "<html>busy</html>".to_string(),
        },
    );
    server.push_rest_fault(HOME, RestFault::Hang(Duration::from_millis(1500)));
    cut_connection(&server);
    let lines = mastotail.json_lines(90, WAIT);
    let expected: Vec<String> = (1001..=1090).map(|id: u64| id.to_string()).collect();
    assert_eq!(ids(&lines), expected);
    assert!(mastotail.no_line_within(Duration::from_millis(300)));
    let stderr = mastotail.stderr();
    assert!(stderr.contains("malformed"), "{stderr}");
    assert!(stderr.contains("HTTP 503"), "{stderr}");
    assert!(stderr.contains("206"), "{stderr}");
}

#[test]
fn catch_up_prints_missed_and_exits() {
    let dir = temp_dir("catchup");
    let state = dir.join("state.json");
    std::fs::write(&state, r#"{"version":1,"cursors":{"home":"1000"}}"#).unwrap();
    let state_arg = state.to_str().unwrap();
    let server = FakeServer::start();
    server.add_items(HOME, statuses(990..=1005));
    server.add_items(NOTIFICATIONS, notifications(5000..=5003));
    let mut mastotail = start(&server, &["--state", state_arg, "--catch-up"], &["user"]);
    assert_eq!(mastotail.wait_exit(WAIT), Some(0));
    let lines: Vec<Value> = mastotail
        .remaining_lines()
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(ids(&lines), ["1001", "1002", "1003", "1004", "1005"]);
    assert!(
        server.connections().is_empty(),
        "catch-up opened a WebSocket"
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["cursors"]["home"], "1005");
    assert_eq!(saved["cursors"]["notifications"], "5003");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn no_backfill_makes_no_rest_requests() {
    let server = FakeServer::start();
    let mut mastotail = start(&server, &["--no-backfill"], &["user"]);
    server.send(&frame(&["user"], "update", &status("1")));
    mastotail.json_lines(1, WAIT);
    cut_connection(&server);
    server.send(&frame(&["user"], "update", &status("2")));
    mastotail.json_lines(1, WAIT);
    let timeline_requests: HashSet<String> = server
        .requests()
        .iter()
        .filter(|r| {
            r.path_and_query.starts_with("/api/v1/timelines")
                || r.path_and_query.starts_with(NOTIFICATIONS)
        })
        .map(|r| r.path_and_query.clone())
        .collect();
    assert!(timeline_requests.is_empty(), "{timeline_requests:?}");
}

#[test]
fn failed_catch_up_exits_nonzero() {
    let dir = temp_dir("catchup-fail");
    let state = dir.join("state.json");
    std::fs::write(&state, r#"{"version":1,"cursors":{"home":"1000"}}"#).unwrap();
    let state_arg = state.to_str().unwrap();

    // A server that keeps failing: exit 6 after the page was tried five times.
    let server = FakeServer::start();
    for _ in 0..5 {
        server.push_rest_fault(
            HOME,
            RestFault::Status {
                status: 503,
                headers: vec![],
                body: String::new(),
            },
        );
    }
    let mut mastotail = start(&server, &["--state", state_arg, "--catch-up"], &["user"]);
    assert_eq!(mastotail.wait_exit(WAIT), Some(6), "{}", mastotail.stderr());
    assert!(mastotail.stderr().contains("run --catch-up again later"));

    // A rejected token: exit 3.
    let server = FakeServer::start();
    server.set_token("another-token");
    let mut mastotail = start(&server, &["--state", state_arg, "--catch-up"], &["user"]);
    assert_eq!(mastotail.wait_exit(WAIT), Some(3), "{}", mastotail.stderr());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn reconcile_finds_events_the_stream_missed() {
    let server = FakeServer::start();
    server.add_items(HOME, statuses(1000..=1000));
    let mut mastotail = start(&server, &["--reconcile", "0.3"], &["user"]);
    wait_for_baseline(&server, &[HOME]);
    // The socket stays healthy but carries no events, as when a server stops routing them.
    server.add_items(HOME, statuses(1001..=1005));
    let lines = mastotail.json_lines(5, WAIT);
    let expected: Vec<String> = (1001..=1005).map(|id: u64| id.to_string()).collect();
    assert_eq!(ids(&lines), expected);
    assert!(lines.iter().all(|line| line["backfill"] == json!(true)));
    mastotail.wait_stderr("the stream missed 5 events", WAIT);
    assert_eq!(server.connections().len(), 1);
    assert!(
        mastotail.no_line_within(Duration::from_millis(700)),
        "printed twice"
    );
}
