//! Hooks, output formats and filters: a program per event that never stalls the stream,
//! hostile server text that stays inert, and the example bot.

mod harness;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::{FAST, Mastotail, TOKEN, frame, notification, status};
use serde_json::{Value, json};
use support::FakeServer;

const WAIT: Duration = Duration::from_secs(15);
const HOME: &str = "/api/v1/timelines/home";

fn start(server: &FakeServer, extra: &[&str], streams: &[&str]) -> Mastotail {
    let url = server.http_url();
    let ws = server.ws_url();
    let mut args = vec!["--server", url.as_str(), "--streaming-url", ws.as_str()];
    args.extend_from_slice(FAST);
    args.extend_from_slice(streams);
    args.extend_from_slice(extra);
    Mastotail::start(&args)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mastotail-hooks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes an executable shell script and returns its path.
fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&path, permissions).unwrap();
    path.to_str().unwrap().to_string()
}

/// Waits until `path` has `lines` lines and returns them.
fn wait_lines(path: &Path, lines: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found: Vec<String> = text.lines().map(str::to_string).collect();
        if found.len() >= lines {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} has {} of {lines} lines",
            path.display(),
            found.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn hostile_status_text_stays_inert() {
    let dir = temp_dir("hostile");
    let marker = dir.join("pwned");
    let hook = script(
        &dir,
        "hook.sh",
        &format!("cat >> '{}/events'", dir.display()),
    );
    let server = FakeServer::start();
    let _mastotail = start(&server, &["--no-backfill", "--exec", &hook], &["user"]);
    let mut hostile = status("1");
    hostile["content"] = json!(format!(
        "$(touch {}) `touch {}` '; rm -rf ~",
        marker.display(),
        marker.display()
    ));
    server.send(&frame(&["user"], "update", &hostile));
    let lines = wait_lines(&dir.join("events"), 1);
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["payload"]["content"], hostile["content"]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!marker.exists(), "the status text was run");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn hook_gets_event_env_and_never_the_token() {
    let dir = temp_dir("env");
    let hook = script(
        &dir,
        "hook.sh",
        &format!(
            "cat > /dev/null; env >> '{}/env'; echo END >> '{}/env'",
            dir.display(),
            dir.display()
        ),
    );
    let server = FakeServer::start();
    let _mastotail = start(&server, &["--no-backfill", "--exec", &hook], &["user"]);
    server.send(&frame(&["user"], "notification", &notification("77")));
    let env = wait_lines(&dir.join("env"), 1);
    while !env.iter().any(|line| line == "END") {
        std::thread::sleep(Duration::from_millis(10));
    }
    let env = std::fs::read_to_string(dir.join("env")).unwrap();
    assert!(env.contains("MASTOTAIL_EVENT=notification"), "{env}");
    assert!(env.contains("MASTOTAIL_ID=77"), "{env}");
    assert!(env.contains("MASTOTAIL_NOTIFICATION_TYPE=mention"), "{env}");
    assert!(env.contains("MASTOTAIL_STREAM=user"), "{env}");
    assert!(!env.contains("MASTODON_TOKEN"), "{env}");
    assert!(!env.contains(TOKEN), "{env}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn slow_hook_keeps_connection_alive() {
    // The server drops a client that misses one pong, every 100 ms; each hook takes 600 ms.
    let dir = temp_dir("slow");
    let hook = script(
        &dir,
        "hook.sh",
        &format!(
            "cat > /dev/null; sleep 0.6; echo \"$MASTOTAIL_ID\" >> '{}/done'",
            dir.display()
        ),
    );
    let server = FakeServer::start();
    server.set_ping_interval(Some(Duration::from_millis(100)));
    let mastotail = start(&server, &["--no-backfill", "--exec", &hook], &["user"]);
    for id in ["1", "2", "3"] {
        server.send(&frame(&["user"], "delete", &json!(id)));
    }
    let done = wait_lines(&dir.join("done"), 3);
    assert_eq!(done, ["1", "2", "3"], "hooks ran out of order");
    assert_eq!(
        server.connections().len(),
        1,
        "stderr: {}",
        mastotail.stderr()
    );
    assert!(server.connections()[0].pongs_received >= 10);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn megabyte_payload_to_hook_that_never_reads() {
    let dir = temp_dir("big");
    let hook = script(
        &dir,
        "hook.sh",
        &format!(
            "if [ \"$MASTOTAIL_ID\" = big ]; then sleep 0.3; else wc -c >> '{}/sizes'; fi",
            dir.display()
        ),
    );
    let server = FakeServer::start();
    server.set_ping_interval(Some(Duration::from_millis(100)));
    let _mastotail = start(&server, &["--no-backfill", "--exec", &hook], &["user"]);
    let mut big = status("big");
    big["content"] = json!("x".repeat(1 << 20));
    server.send(&frame(&["user"], "update", &big));
    server.send(&frame(&["user"], "update", &status("small")));
    let sizes = wait_lines(&dir.join("sizes"), 1);
    assert!(sizes[0].trim().parse::<usize>().unwrap() > 100);
    assert_eq!(server.connections().len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn failing_and_hanging_hooks_logged_and_skipped() {
    let dir = temp_dir("fail");
    let hook = script(
        &dir,
        "hook.sh",
        &format!(
            "cat > /dev/null; case \"$MASTOTAIL_ID\" in 1) exit 3;; 2) sleep 10;; esac; echo \"$MASTOTAIL_ID\" >> '{}/done'",
            dir.display()
        ),
    );
    let server = FakeServer::start();
    let mastotail = start(
        &server,
        &["--no-backfill", "--exec-timeout", "0.3", "--exec", &hook],
        &["user"],
    );
    for id in ["1", "2", "3"] {
        server.send(&frame(&["user"], "delete", &json!(id)));
    }
    assert_eq!(wait_lines(&dir.join("done"), 1), ["3"]);
    mastotail.wait_stderr("exit status: 3", WAIT);
    mastotail.wait_stderr("timed out", WAIT);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn crash_between_hooks_reruns_unfinished_one() {
    let dir = temp_dir("crash");
    let state = dir.join("state.json");
    let state_arg = state.to_str().unwrap().to_string();
    let second_run = dir.join("second-run");
    let hook = script(
        &dir,
        "hook.sh",
        &format!(
            "cat > /dev/null; if [ \"$MASTOTAIL_ID\" = 1002 ] && [ ! -e '{}' ]; then sleep 3; exit 0; fi; echo \"$MASTOTAIL_ID\" >> '{}/done'",
            second_run.display(),
            dir.display()
        ),
    );
    let server = FakeServer::start();
    server.add_items(HOME, vec![status("1000")]);
    let mut first = start(
        &server,
        &["--state", &state_arg, "--exec", &hook],
        &["user"],
    );
    server.wait_until("the baseline request", WAIT, |s| {
        s.requests()
            .iter()
            .any(|r| r.path_and_query.starts_with(HOME) && r.status == 200)
    });
    std::thread::sleep(Duration::from_millis(100));
    for id in ["1001", "1002"] {
        server.add_items(HOME, vec![status(id)]);
        server.send(&frame(&["user"], "update", &status(id)));
    }
    assert_eq!(wait_lines(&dir.join("done"), 1), ["1001"]);
    std::thread::sleep(Duration::from_millis(200));
    first.kill();

    std::fs::write(&second_run, "").unwrap();
    let _second = start(
        &server,
        &["--state", &state_arg, "--exec", &hook],
        &["user"],
    );
    assert_eq!(wait_lines(&dir.join("done"), 2), ["1001", "1002"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        wait_lines(&dir.join("done"), 2).len(),
        2,
        "a finished hook ran again"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn text_format_strips_escape_sequences() {
    let server = FakeServer::start();
    let mut mastotail = start(&server, &["--no-backfill", "--format", "text"], &["user"]);
    let mut hostile = status("5");
    hostile["content"] =
        json!("<p>red \u{1b}[31malert\u{1b}[0m &amp;lt;b&amp;gt; \u{1b}]0;title\u{7}\u{9b}2J</p>");
    hostile["account"]["acct"] = json!("evil\u{1b}[2J");
    server.send(&frame(&["user"], "update", &hostile));
    let line = mastotail.line(WAIT);
    assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
    assert!(line.contains("update"), "{line}");
    assert!(
        line.contains("&lt;b&gt;"),
        "entities decoded more than once: {line}"
    );
    assert!(line.contains("https://social.example/@bob/5"), "{line}");
}

#[test]
fn raw_format_prints_frames_as_received() {
    let server = FakeServer::start();
    let mut mastotail = start(&server, &["--no-backfill", "--format", "raw"], &["user"]);
    let sent = frame(&["user"], "update", &status("9"));
    server.send(&sent);
    assert_eq!(mastotail.line(WAIT), sent);

    // Raw output reads only the ids of payloads, which is still enough to drop copies.
    let note = frame(&["user"], "notification", &notification("10"));
    server.send(&note);
    server.send(&note);
    server.send(&sent);
    let last = frame(&["user"], "delete", &json!("11"));
    server.send(&last);
    assert_eq!(mastotail.line(WAIT), note);
    assert_eq!(mastotail.line(WAIT), last);
    assert!(mastotail.no_line_within(Duration::from_millis(200)));
}

#[test]
fn filters_keep_selected_events() {
    let server = FakeServer::start();
    let mut mastotail = start(
        &server,
        &[
            "--no-backfill",
            "--event",
            "notification,delete",
            "--notification-type",
            "mention",
        ],
        &["user"],
    );
    let mut favourite = notification("2");
    favourite["type"] = json!("favourite");
    server.send(&frame(&["user"], "update", &status("1")));
    server.send(&frame(&["user"], "notification", &favourite));
    server.send(&frame(&["user"], "notification", &notification("3")));
    server.send(&frame(&["user"], "delete", &json!("4")));
    let lines = mastotail.json_lines(2, WAIT);
    assert_eq!(lines[0]["payload"]["id"], "3");
    assert_eq!(lines[1]["payload"], "4");
    assert!(mastotail.no_line_within(Duration::from_millis(200)));
}

#[test]
fn reply_bot_example_answers_direct_message() {
    let dir = temp_dir("bot");
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let bot = format!(
        "{}/scripts/examples/reply-bot.sh",
        env!("CARGO_MANIFEST_DIR")
    );
    let server = FakeServer::start();
    let url = server.http_url();
    let ws = server.ws_url();
    let mut args = vec![
        "--server",
        url.as_str(),
        "--streaming-url",
        ws.as_str(),
        "--no-backfill",
    ];
    args.extend_from_slice(FAST);
    args.extend([
        "--exec-env",
        "MASTODON_SERVER",
        "--exec-env",
        "MASTODON_TOKEN_FILE",
        "--exec-env",
        "BOT_ACCOUNT",
        "direct",
        "--exec",
        bot.as_str(),
    ]);
    let token_path = token_file.to_str().unwrap();
    let _mastotail = Mastotail::start_with(
        &args,
        &[
            ("MASTODON_TOKEN", TOKEN),
            ("MASTODON_SERVER", url.as_str()),
            ("MASTODON_TOKEN_FILE", token_path),
            ("BOT_ACCOUNT", "demobot"),
        ],
    );
    // The bot's own reply, as the newest status of a conversation, gets no answer.
    let own = json!({
        "id": "500",
        "accounts": [{"id": "2", "acct": "bob"}],
        "last_status": {"id": "776", "account": {"id": "9", "acct": "demobot"}},
    });
    server.send(&frame(&["direct"], "conversation", &own));
    let conversation = json!({
        "id": "501",
        "unread": true,
        "accounts": [{"id": "2", "acct": "bob"}],
        "last_status": {"id": "777", "account": {"id": "2", "acct": "bob"}, "content": "<p>hi $(id)</p>"},
    });
    server.send(&frame(&["direct"], "conversation", &conversation));
    server.wait_until("the bot's reply", WAIT, |s| {
        s.requests()
            .iter()
            .any(|r| r.method == "POST" && r.status == 200)
    });
    let reply = server
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(reply.path_and_query, "/api/v1/statuses");
    assert!(reply.body.contains("in_reply_to_id=777"), "{}", reply.body);
    assert!(reply.body.contains("visibility=direct"), "{}", reply.body);
    assert!(reply.body.contains("%40bob"), "{}", reply.body);
    std::thread::sleep(Duration::from_millis(300));
    let posts = server
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 1, "the bot answered its own status");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn hooks_far_behind_lose_nothing() {
    let dir = temp_dir("behind");
    let hook = script(
        &dir,
        "hook.sh",
        &format!(
            "cat > /dev/null; [ \"$MASTOTAIL_ID\" = 1001 ] && sleep 1; echo \"$MASTOTAIL_ID\" >> '{}/done'",
            dir.display()
        ),
    );
    let server = FakeServer::start();
    server.add_items(HOME, vec![status("1000")]);
    let mastotail = start(&server, &["--queue-max", "20", "--exec", &hook], &["user"]);
    server.wait_until("the baseline request", WAIT, |s| {
        s.requests()
            .iter()
            .any(|r| r.path_and_query.starts_with(HOME) && r.status == 200)
    });
    std::thread::sleep(Duration::from_millis(100));
    for id in 1001..=1150 {
        let id = id.to_string();
        server.add_items(HOME, vec![status(&id)]);
        server.send(&frame(&["user"], "update", &status(&id)));
    }
    let done = wait_lines(&dir.join("done"), 150);
    let expected: Vec<String> = (1001..=1150).map(|id: u64| id.to_string()).collect();
    assert_eq!(done, expected);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        wait_lines(&dir.join("done"), 150).len(),
        150,
        "a hook ran twice"
    );
    assert!(
        mastotail.stderr().contains("fell 20 events behind"),
        "{}",
        mastotail.stderr()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn catch_up_runs_hooks_then_exits() {
    let dir = temp_dir("catchup");
    let state = dir.join("state.json");
    std::fs::write(&state, r#"{"version":1,"cursors":{"home":"1000"}}"#).unwrap();
    let state_arg = state.to_str().unwrap().to_string();
    let hook = script(
        &dir,
        "hook.sh",
        &format!(
            "cat > /dev/null; echo \"$MASTOTAIL_ID $MASTOTAIL_BACKFILL\" >> '{}/done'",
            dir.display()
        ),
    );
    let server = FakeServer::start();
    server.add_items(
        HOME,
        (999..=1003).map(|id| status(&id.to_string())).collect(),
    );
    let mut mastotail = start(
        &server,
        &["--state", &state_arg, "--catch-up", "--exec", &hook],
        &["user"],
    );
    assert_eq!(mastotail.wait_exit(WAIT), Some(0), "{}", mastotail.stderr());
    let done = std::fs::read_to_string(dir.join("done")).unwrap();
    assert_eq!(done, "1001 1\n1002 1\n1003 1\n");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["cursors"]["home"], "1003");
    assert!(server.connections().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unknown_notification_types_pass_and_filter() {
    let server = FakeServer::start();
    let mut mastotail = start(
        &server,
        &["--no-backfill", "--notification-type", "mention"],
        &["user"],
    );
    let mut severed = notification("500001");
    severed["type"] = json!("severed_relationships");
    severed["relationship_severance_event"] = json!({"id": "1", "type": "domain_block"});
    severed["status"] = Value::Null;
    let mut future = notification("500003");
    future["type"] = json!("some_future_type");
    future["nested"] = json!({"deep": [1, {"x": null}]});
    server.send(&frame(&["user"], "notification", &severed));
    server.send(&frame(&["user"], "notification", &future));
    server.send(&frame(&["user"], "notification", &notification("500004")));
    let lines = mastotail.json_lines(1, WAIT);
    assert_eq!(lines[0]["payload"]["id"], "500004");
    assert!(mastotail.no_line_within(Duration::from_millis(200)));

    let server = FakeServer::start();
    let mut mastotail = start(&server, &["--no-backfill"], &["user"]);
    server.send(&frame(&["user"], "notification", &severed));
    server.send(&frame(&["user"], "notification", &future));
    let lines = mastotail.json_lines(2, WAIT);
    assert_eq!(lines[0]["payload"], severed);
    assert_eq!(lines[1]["payload"], future);
}

#[test]
fn copies_never_move_cursor_past_unfinished_hook() {
    let dir = temp_dir("copies");
    let state = dir.join("state.json");
    std::fs::write(&state, r#"{"version":1,"cursors":{"home":"1001"}}"#).unwrap();
    let state_arg = state.to_str().unwrap().to_string();
    let release = dir.join("release");
    let hook = script(
        &dir,
        "hook.sh",
        &format!(
            "cat > /dev/null; if [ \"$MASTOTAIL_ID\" = 1003 ]; then n=0; while [ ! -e '{}' ] && [ $n -lt 300 ]; do sleep 0.05; n=$((n+1)); done; fi; echo \"$MASTOTAIL_ID\" >> '{}/done'",
            release.display(),
            dir.display()
        ),
    );
    let server = FakeServer::start();
    server.add_items(
        HOME,
        (1001..=1003).map(|id| status(&id.to_string())).collect(),
    );
    // The stream sends copies of the events the catch-up fetches, as a server replaying
    // recent events would.
    for id in ["1002", "1003"] {
        server.send(&frame(&["user"], "update", &status(id)));
    }
    let mut first = start(
        &server,
        &["--state", &state_arg, "--exec", &hook],
        &["user"],
    );
    assert_eq!(wait_lines(&dir.join("done"), 1), ["1002"]);
    std::thread::sleep(Duration::from_millis(300));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        saved["cursors"]["home"], "1002",
        "the cursor passed a hook still running"
    );
    first.kill();
    // kill -9 leaves the running hook behind, as it would after a real crash; end it so
    // that only the second run's hook writes 1003.
    let _ = std::process::Command::new("pkill")
        .args(["-f", &hook])
        .status();

    // After the crash the unfinished event runs again.
    std::fs::write(&release, "").unwrap();
    let _second = start(
        &server,
        &["--state", &state_arg, "--exec", &hook],
        &["user"],
    );
    let done = wait_lines(&dir.join("done"), 2);
    assert_eq!(done, ["1002", "1003"]);
    let _ = std::fs::remove_dir_all(dir);
}
