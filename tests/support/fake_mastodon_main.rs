//! `cargo run --example fake-mastodon [-- --port N]`: a fake Mastodon server for trying
//! mastotail offline.
//!
//! It listens on 127.0.0.1 (port 0 lets the OS choose), prints `http://127.0.0.1:PORT` as the
//! only line on stdout, and logs each request to stderr. Every WebSocket connection gets the
//! frames of `tests/captures/user.jsonl`, one every 500 ms, and then Mastodon's 30 s pings.
//! The home timeline and notifications hold a few items from the same capture. The access
//! token is `demo`. It runs until killed.

#[path = "mod.rs"]
mod support;

use std::io::Write;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::{FakeServer, Step};

/// Frames recorded from a real Mastodon `user` stream, one JSON frame per line.
const USER_STREAM_CAPTURE: &str = include_str!("../captures/user.jsonl");

const DEMO_TOKEN: &str = "demo";
const FRAME_INTERVAL: Duration = Duration::from_millis(500);
const PING_INTERVAL: Duration = Duration::from_secs(30);

/// Items of each kind copied from the capture into the REST timelines.
const REST_ITEMS_PER_TIMELINE: usize = 3;

const USAGE: &str = "usage: fake-mastodon [--port N]

Serves a fake Mastodon API on 127.0.0.1 until killed.
  --port N   port to listen on (default 0: chosen by the OS)";

fn main() -> ExitCode {
    let port = match parse_port(std::env::args().skip(1).collect()) {
        Ok(port) => port,
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server = match FakeServer::start_on_port(port) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("fake-mastodon: binding 127.0.0.1:{port} failed: {error}");
            return ExitCode::FAILURE;
        }
    };

    let frames: Vec<&str> = USER_STREAM_CAPTURE
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    server.set_token(DEMO_TOKEN);
    server.set_ping_interval(Some(PING_INTERVAL));
    server.set_default_script(replay_script(&frames));
    server.add_items("/api/v1/timelines/home", payloads_of(&frames, "update"));
    server.add_items(
        "/api/v1/notifications",
        payloads_of(&frames, "notification"),
    );

    println!("{}", server.http_url());
    let _ = std::io::stdout().flush();
    eprintln!(
        "fake-mastodon: try `MASTODON_TOKEN={DEMO_TOKEN} mastotail --server {} user`",
        server.http_url()
    );
    log_requests_forever(&server)
}

/// Returns the port given with `--port`, or 0.
fn parse_port(args: Vec<String>) -> Result<u16, String> {
    match args.as_slice() {
        [] => Ok(0),
        [flag, value] if flag == "--port" => value
            .parse()
            .map_err(|_| format!("invalid --port value {value:?}: expected a number 0-65535")),
        _ => Err(format!("unexpected arguments: {}", args.join(" "))),
    }
}

/// Builds the script every connection runs: the captured frames, then Mastodon's pings.
fn replay_script(frames: &[&str]) -> Vec<Step> {
    let mut script = vec![Step::Accept];
    for frame in frames {
        script.push(Step::Sleep(FRAME_INTERVAL));
        script.push(Step::Text(frame.to_string()));
    }
    script.push(Step::Live);
    script
}

/// Returns the parsed payloads of the first few frames with this event name.
fn payloads_of(frames: &[&str], event: &str) -> Vec<Value> {
    frames
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|frame| frame["event"] == event)
        .filter_map(|frame| serde_json::from_str(frame["payload"].as_str()?).ok())
        .take(REST_ITEMS_PER_TIMELINE)
        .collect()
}

/// Prints each new request to stderr, polling every 200 ms, until the process is killed.
fn log_requests_forever(server: &FakeServer) -> ExitCode {
    let mut logged = 0;
    loop {
        thread::sleep(Duration::from_millis(200));
        let requests = server.requests();
        for request in requests.iter().skip(logged) {
            let status = match request.status {
                0 => "no response yet".to_string(),
                status => status.to_string(),
            };
            eprintln!(
                "fake-mastodon: {} {} -> {status}",
                request.method, request.path_and_query
            );
        }
        logged = requests.len();
    }
}
