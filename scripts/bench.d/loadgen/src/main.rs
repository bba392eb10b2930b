//! Load generator for `scripts/bench`: a fake Mastodon server on 127.0.0.1 and a start-up timer.
//!
//! `serve` serves the REST paths mastotail requests and the streaming WebSocket on one port,
//! in one of three modes:
//!
//! - `firehose`: every WebSocket connection gets `--frames` `update` frames as fast as the
//!   reader takes them, then a close frame.
//! - `idle`: every WebSocket connection gets a ping each `--ping-every` seconds and nothing else.
//! - `half-open`: the first WebSocket connection gets one status and then goes silent without
//!   closing (the server neither reads nor writes it again), and `--gap` newer statuses appear
//!   in `/api/v1/timelines/home`. Later connections behave as in `idle`.
//!
//! The status frames are built from the `update` frames of 2 to 5.5 KB in
//! `tests/captures/user.jsonl` and `public.jsonl`, with a fresh 18-digit id in each.
//!
//! `serve` prints the port on stdout and logs timestamped lines on stderr
//! (`<unix seconds> <event> key=value...`), which `scripts/bench` reads. It exits after
//! `--deadline` seconds.
//!
//! `first-line --runs N -- COMMAND...` runs COMMAND N times and prints the time from spawn to
//! the first line on its stdout. `free-port` prints a TCP port of 127.0.0.1 that was free a
//! moment ago, for the TLS terminator.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tungstenite::protocol::Role;
use tungstenite::{Message, Utf8Bytes, WebSocket};

/// The first status id the server hands out; later ones count up from it. 18 digits like
/// Mastodon's snowflake ids, and newer than every id in the captures.
const BASE_ID: u64 = 200_000_000_000_000_000;

/// Largest HTTP request head read before the connection is dropped.
const MAX_HEAD: usize = 64 * 1024;

/// Mastodon's largest `limit` for the home timeline.
const MAX_PAGE: usize = 40;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Firehose,
    Idle,
    HalfOpen,
}

struct ServeOptions {
    mode: Mode,
    captures: PathBuf,
    frames: usize,
    gap: u64,
    ping_every: Duration,
    deadline: Duration,
}

/// A status frame split around its id, so that a frame with any id is one concatenation.
struct Template {
    /// `{"stream":["user"],"event":"update","payload":"{\"id\":\"`
    frame_prefix: String,
    frame_suffix: String,
    /// The payload as REST returns it: `{"id":"` and the rest after the id.
    status_prefix: String,
    status_suffix: String,
}

impl Template {
    fn frame(&self, id: u64) -> String {
        format!("{}{id}{}", self.frame_prefix, self.frame_suffix)
    }

    fn status(&self, id: u64) -> String {
        format!("{}{id}{}", self.status_prefix, self.status_suffix)
    }
}

struct Server {
    options: ServeOptions,
    port: u16,
    templates: Vec<Template>,
    /// Firehose frames, built once and shared by every connection.
    frames: Vec<Utf8Bytes>,
    frame_bytes: usize,
    websockets: AtomicUsize,
    /// Half-open mode: the gap statuses are in the home timeline.
    gap_published: AtomicBool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => parse_serve(&args[1..]).and_then(serve),
        Some("first-line") => first_line(&args[1..]),
        Some("free-port") => free_port(),
        _ => Err(usage()),
    };
    if let Err(message) = result {
        eprintln!("loadgen: error: {message}");
        std::process::exit(2);
    }
}

fn usage() -> String {
    "usage: loadgen serve --mode firehose|idle|half-open --captures DIR [--frames N] [--gap N] \
     [--ping-every SECS] [--deadline SECS]\n       loadgen first-line --runs N -- COMMAND [ARG...]\n       loadgen free-port"
        .to_string()
}

fn parse_serve(args: &[String]) -> Result<ServeOptions, String> {
    let mut options = ServeOptions {
        mode: Mode::Firehose,
        captures: PathBuf::new(),
        frames: 100_000,
        gap: 1000,
        ping_every: Duration::from_secs(30),
        deadline: Duration::from_secs(1200),
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| format!("missing value after {flag}"))?;
        let number = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| format!("invalid number {value:?} for {flag}"))
        };
        match flag.as_str() {
            "--mode" => {
                options.mode = match value.as_str() {
                    "firehose" => Mode::Firehose,
                    "idle" => Mode::Idle,
                    "half-open" => Mode::HalfOpen,
                    other => return Err(format!("unknown mode {other:?}")),
                }
            }
            "--captures" => options.captures = PathBuf::from(value),
            "--frames" => options.frames = number()? as usize,
            "--gap" => options.gap = number()? as u64,
            "--ping-every" => options.ping_every = Duration::from_secs_f64(number()?),
            "--deadline" => options.deadline = Duration::from_secs_f64(number()?),
            other => return Err(format!("unknown option {other:?}\n{}", usage())),
        }
    }
    if options.captures.as_os_str().is_empty() {
        return Err("missing --captures DIR".to_string());
    }
    Ok(options)
}

fn serve(options: ServeOptions) -> Result<(), String> {
    let templates = load_templates(&options.captures)?;
    let mut frames = Vec::new();
    let mut frame_bytes = 0;
    if options.mode == Mode::Firehose {
        frames.reserve(options.frames);
        for i in 0..options.frames {
            let frame = templates[i % templates.len()].frame(BASE_ID + i as u64);
            frame_bytes += frame.len();
            frames.push(Utf8Bytes::from(frame));
        }
    }

    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind failed: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let server = Arc::new(Server {
        options,
        port,
        templates,
        frames,
        frame_bytes,
        websockets: AtomicUsize::new(0),
        gap_published: AtomicBool::new(false),
    });
    log(
        "ready",
        &format!(
            "port={port} mode={:?} templates={} frames={} frame_bytes={}",
            server.options.mode,
            server.templates.len(),
            server.frames.len(),
            server.frame_bytes
        ),
    );
    println!("{port}");
    io::stdout().flush().map_err(|e| e.to_string())?;

    let deadline = server.options.deadline;
    thread::spawn(move || {
        thread::sleep(deadline);
        log("deadline", "exiting");
        std::process::exit(0);
    });

    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                log("accept-failed", &format!("error={error}"));
                continue;
            }
        };
        let server = Arc::clone(&server);
        thread::spawn(move || {
            if let Err(error) = handle_connection(&server, stream) {
                log("connection-error", &format!("error={error}"));
            }
        });
    }
    Ok(())
}

/// Reads the `update` frames of realistic size from the captures and splits each around its
/// status id.
fn load_templates(captures: &Path) -> Result<Vec<Template>, String> {
    let mut templates = Vec::new();
    for name in ["user.jsonl", "public.jsonl"] {
        let path = captures.join(name);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for line in text.lines() {
            if !(2000..=5500).contains(&line.len()) {
                continue;
            }
            if let Some(template) = split_template(line) {
                templates.push(template);
            }
        }
    }
    if templates.is_empty() {
        return Err(format!(
            "no update frame of 2000 to 5500 bytes in {}",
            captures.display()
        ));
    }
    // Every template must give a frame that parses, with the id where expected.
    for template in &templates {
        let frame: serde_json::Value = serde_json::from_str(&template.frame(BASE_ID))
            .map_err(|e| format!("built frame is not JSON: {e}"))?;
        let payload = frame["payload"].as_str().ok_or("built frame has no payload")?;
        let status: serde_json::Value = serde_json::from_str(payload)
            .map_err(|e| format!("built payload is not JSON: {e}"))?;
        if status["id"] != BASE_ID.to_string() {
            return Err("built status has the wrong id".to_string());
        }
        serde_json::from_str::<serde_json::Value>(&template.status(BASE_ID))
            .map_err(|e| format!("built REST status is not JSON: {e}"))?;
    }
    Ok(templates)
}

/// Splits one captured frame around the status id, keeping the other bytes as captured and
/// renaming the stream to `["user"]`.
fn split_template(line: &str) -> Option<Template> {
    let frame: serde_json::Value = serde_json::from_str(line).ok()?;
    if frame["event"] != "update" {
        return None;
    }
    let payload = frame["payload"].as_str()?;
    let status_prefix = "{\"id\":\"";
    let after_prefix = payload.strip_prefix(status_prefix)?;
    let id_len = after_prefix.find('"')?;
    let status_suffix = after_prefix[id_len..].to_string();

    let event_at = line.find(",\"event\":")?;
    let escaped_prefix = "\"payload\":\"{\\\"id\\\":\\\"";
    let payload_at = line.find(escaped_prefix)? + escaped_prefix.len();
    let frame_prefix = format!("{{\"stream\":[\"user\"]{}", &line[event_at..payload_at]);
    let frame_suffix = line[payload_at + id_len..].to_string();
    Some(Template {
        frame_prefix,
        frame_suffix,
        status_prefix: status_prefix.to_string(),
        status_suffix,
    })
}

/// Serves HTTP requests on one connection until it closes or requests a WebSocket upgrade.
fn handle_connection(server: &Server, mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut buffer = Vec::new();
    loop {
        let Some((head, rest)) = read_head(&mut stream, buffer)? else {
            return Ok(());
        };
        let request = Request::parse(&head)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed request"))?;
        if request
            .header("upgrade")
            .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
        {
            return serve_websocket(server, stream, &request, rest);
        }
        let (status, body) = rest_response(server, &request);
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(reply.as_bytes())?;
        if request
            .header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
        {
            return Ok(());
        }
        buffer = rest;
    }
}

/// Reads one request head. Returns the head and the bytes read past it, or `None` at a clean
/// end of the connection.
fn read_head(stream: &mut TcpStream, mut buffer: Vec<u8>) -> io::Result<Option<(String, Vec<u8>)>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            let head = String::from_utf8_lossy(&buffer).into_owned();
            return Ok(Some((head, rest)));
        }
        if buffer.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too large"));
        }
        let read = match stream.read(&mut chunk) {
            Ok(read) => read,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        if read == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

struct Request {
    path: String,
    query: Vec<(String, String)>,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
}

impl Request {
    fn parse(head: &str) -> Option<Request> {
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next()?.split(' ');
        let _method = request_line.next()?;
        let target = request_line.next()?;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (name.to_string(), value.to_string())
            })
            .collect();
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        Some(Request {
            path: path.to_string(),
            query,
            headers,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

fn rest_response(server: &Server, request: &Request) -> (&'static str, String) {
    let streaming = format!("ws://127.0.0.1:{}", server.port);
    let response = match request.path.as_str() {
        "/api/v2/instance" => (
            "200 OK",
            format!(r#"{{"configuration":{{"urls":{{"streaming":"{streaming}"}}}}}}"#),
        ),
        "/api/v1/instance" => (
            "200 OK",
            format!(r#"{{"urls":{{"streaming_api":"{streaming}"}}}}"#),
        ),
        "/api/v1/timelines/home" => ("200 OK", home_page(server, request)),
        path if path.starts_with("/api/v1/timelines/")
            || path == "/api/v1/notifications"
            || path == "/api/v1/conversations" =>
        {
            ("200 OK", "[]".to_string())
        }
        _ => ("404 Not Found", r#"{"error":"Record not found"}"#.to_string()),
    };
    let query: Vec<String> = request
        .query
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    log(
        "rest",
        &format!(
            "path={} query={} status={}",
            request.path,
            query.join("&"),
            &response.0[..3]
        ),
    );
    response
}

/// Returns a page of the home timeline with Mastodon's paging: newest first, at most 40
/// items; with `min_id`, the `limit` oldest items newer than it.
fn home_page(server: &Server, request: &Request) -> String {
    if server.options.mode != Mode::HalfOpen {
        return "[]".to_string();
    }
    let newest = if server.gap_published.load(Ordering::SeqCst) {
        BASE_ID + server.options.gap
    } else {
        BASE_ID
    };
    let bound = |name: &str| request.query(name).and_then(|value| value.parse::<u64>().ok());
    let limit = request
        .query("limit")
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, MAX_PAGE) as u64;
    let mut low = BASE_ID;
    if let Some(id) = bound("since_id") {
        low = low.max(id + 1);
    }
    let mut high = newest;
    if let Some(id) = bound("max_id") {
        high = high.min(id.saturating_sub(1));
    }
    let ids: Vec<u64> = match bound("min_id") {
        Some(min_id) => {
            let first = low.max(min_id + 1);
            let last = high.min(first.saturating_add(limit - 1));
            (first..=last).rev().collect()
        }
        None => {
            let first = low.max(high.saturating_sub(limit - 1));
            (first..=high).rev().collect()
        }
    };
    let items: Vec<String> = ids
        .iter()
        .map(|&id| server.templates[(id - BASE_ID) as usize % server.templates.len()].status(id))
        .collect();
    format!("[{}]", items.join(","))
}

fn serve_websocket(
    server: &Server,
    mut stream: TcpStream,
    request: &Request,
    rest: Vec<u8>,
) -> io::Result<()> {
    let key = request
        .header("sec-websocket-key")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "missing Sec-WebSocket-Key"))?;
    let mut reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        tungstenite::handshake::derive_accept_key(key.as_bytes())
    );
    // masto.js sends the access token as the subprotocol. Mastodon's server echoes it, and
    // the `ws` client that masto.js uses rejects a 101 reply without one of the offered ones.
    if let Some(protocols) = request.header("sec-websocket-protocol") {
        let first = protocols.split(',').next().unwrap_or("").trim();
        reply.push_str(&format!("Sec-WebSocket-Protocol: {first}\r\n"));
    }
    reply.push_str("\r\n");
    stream.write_all(reply.as_bytes())?;

    let number = server.websockets.fetch_add(1, Ordering::SeqCst) + 1;
    log(
        "ws-open",
        &format!("conn={number} path={}", request.path),
    );
    let ws = WebSocket::from_partially_read(stream, rest, Role::Server, None);
    let result = match server.options.mode {
        Mode::Firehose => firehose(server, ws, number),
        Mode::Idle => idle(server, ws, number),
        Mode::HalfOpen if number == 1 => half_open(server, ws),
        Mode::HalfOpen => idle(server, ws, number),
    };
    match result {
        Ok(()) => Ok(()),
        Err(error) => {
            log("ws-end", &format!("conn={number} error={error}"));
            Ok(())
        }
    }
}

fn firehose(server: &Server, mut ws: WebSocket<TcpStream>, number: usize) -> tungstenite::Result<()> {
    let started = Instant::now();
    for frame in &server.frames {
        ws.write(Message::Text(frame.clone()))?;
    }
    ws.flush()?;
    log(
        "firehose-sent",
        &format!(
            "conn={number} frames={} bytes={} seconds={:.3}",
            server.frames.len(),
            server.frame_bytes,
            started.elapsed().as_secs_f64()
        ),
    );
    ws.close(None)?;
    ws.get_mut().set_read_timeout(Some(Duration::from_secs(5)))?;
    // Read until the reader replies to the close or goes away. The read timeout bounds each wait.
    for _ in 0..10_000 {
        match ws.read() {
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

fn idle(server: &Server, mut ws: WebSocket<TcpStream>, number: usize) -> tungstenite::Result<()> {
    ws.get_mut().set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut last_ping = Instant::now();
    let mut pings_received = 0u64;
    let mut pongs_received = 0u64;
    loop {
        match ws.read() {
            Ok(Message::Ping(_)) => {
                pings_received += 1;
                ws.flush()?;
            }
            Ok(Message::Pong(_)) => pongs_received += 1,
            Ok(Message::Close(_)) => {
                ws.flush().ok();
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(error))
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(error) => {
                log(
                    "ws-end",
                    &format!("conn={number} pings_received={pings_received} pongs_received={pongs_received} error={error}"),
                );
                return Ok(());
            }
        }
        if last_ping.elapsed() >= server.options.ping_every {
            ws.send(Message::Ping(Default::default()))?;
            last_ping = Instant::now();
        }
    }
    log(
        "ws-end",
        &format!("conn={number} pings_received={pings_received} pongs_received={pongs_received} closed"),
    );
    Ok(())
}

/// Sends one status, publishes the gap over REST, and then keeps the socket open without
/// reading or writing until the process ends.
fn half_open(server: &Server, mut ws: WebSocket<TcpStream>) -> tungstenite::Result<()> {
    let frame = server.templates[0].frame(BASE_ID);
    ws.send(Message::text(frame))?;
    log("half-open-sent", &format!("id={BASE_ID}"));
    // Give the reader time to print the status and take its id as the cursor.
    thread::sleep(Duration::from_millis(200));
    server.gap_published.store(true, Ordering::SeqCst);
    log(
        "gap-published",
        &format!("first={} last={}", BASE_ID + 1, BASE_ID + server.options.gap),
    );
    // `ws` stays open here until the deadline thread ends the process.
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

fn log(event: &str, details: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    eprintln!("{now:.6} {event} {details}");
}

/// Runs a command `--runs` times and prints the milliseconds from spawn to its first line of
/// stdout, then the median, minimum and maximum.
fn first_line(args: &[String]) -> Result<(), String> {
    let separator = args
        .iter()
        .position(|arg| arg == "--")
        .ok_or_else(usage)?;
    let mut runs = 20usize;
    let mut flags = args[..separator].iter();
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--runs" => {
                runs = flags
                    .next()
                    .and_then(|value| value.parse().ok())
                    .filter(|&n| n > 0 && n <= 1000)
                    .ok_or("--runs takes a number from 1 to 1000")?
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let command = &args[separator + 1..];
    let (program, command_args) = command.split_first().ok_or_else(usage)?;

    let mut times = Vec::with_capacity(runs);
    for run in 1..=runs {
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(command_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let mut line = String::new();
        let mut reader = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let read = reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let elapsed = started.elapsed();
        // Closing the pipe ends a command that would go on printing.
        drop(reader);
        // Wait at most 10 s for the command to exit by itself.
        let mut exited = false;
        for _ in 0..1000 {
            if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                exited = true;
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        if !exited {
            child.kill().ok();
            child.wait().ok();
        }
        if read == 0 {
            return Err(format!("run {run}: {program} printed no line"));
        }
        let ms = elapsed.as_secs_f64() * 1000.0;
        println!("run={run} ms={ms:.3}");
        times.push(ms);
    }
    times.sort_by(f64::total_cmp);
    let median = if runs % 2 == 1 {
        times[runs / 2]
    } else {
        (times[runs / 2 - 1] + times[runs / 2]) / 2.0
    };
    println!(
        "median_ms={median:.3} min_ms={:.3} max_ms={:.3}",
        times[0],
        times[runs - 1]
    );
    Ok(())
}

/// Prints a port that the kernel assigned on 127.0.0.1 and then released. Another process may
/// take it before the caller binds it, which the caller sees as a failed bind.
fn free_port() -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind failed: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    println!("{port}");
    Ok(())
}
