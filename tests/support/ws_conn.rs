//! One WebSocket connection of the fake server: the handshake, running its script of
//! [`Step`]s, and responding to client frames the way Mastodon's streaming server does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::handshake::derive_accept_key;

use super::fake_mastodon::{Outgoing, Shared, Step, sleep_unless_killed};
use super::http::{self, Request};
use super::ws::{self, DecodeError, Frame};

/// Max payload of a client frame or message; larger ones are closed with 1009.
const MAX_CLIENT_PAYLOAD: usize = 1024 * 1024;

/// Max wait of [`Step::WaitSubscriptions`] for subscriptions and of [`Step::Close`] for the
/// client's close frame.
const STEP_WAIT_LIMIT: Duration = Duration::from_secs(5);

/// Max wait of [`Step::Reset`] for the client's pong.
const RESET_WAIT_LIMIT: Duration = Duration::from_secs(2);

/// Close reason Mastodon's streaming server sends with code 1003 when a client sends binary.
const BINARY_CLOSE_REASON: &str = "The mastodon streaming server does not support binary messages";

/// Whether the script goes on after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// The connection is over; the socket was closed or must be dropped as it is.
    End,
}

struct Connection<'a> {
    shared: &'a Arc<Shared>,
    stream: TcpStream,
    killed: &'a AtomicBool,
    request: Request,
    /// Index into the connection records.
    index: usize,
    request_index: usize,
    /// Bytes of the upgrade request still unread in the socket's receive buffer.
    unread_head: usize,
    accepted: bool,
    close_sent: bool,
    /// Bytes read from the client and not yet decoded.
    buffer: Vec<u8>,
    /// Opcode and payload of a fragmented client message being reassembled.
    fragments: Option<(u8, Vec<u8>)>,
    subscribe_count: usize,
    ping_timer: PingTimer,
}

/// Mastodon's heartbeat state for one connection.
#[derive(Default)]
struct PingTimer {
    interval: Option<Duration>,
    next_tick: Option<Instant>,
    awaiting_pong: bool,
}

/// Runs the script of one upgrade request on `stream`.
pub(super) fn serve_upgrade(
    shared: &Arc<Shared>,
    stream: TcpStream,
    request: Request,
    head_len: usize,
    killed: &AtomicBool,
) {
    let (index, request_index, script) = shared.begin_upgrade(&request);
    let mut connection = Connection {
        shared,
        stream,
        killed,
        request,
        index,
        request_index,
        unread_head: head_len,
        accepted: false,
        close_sent: false,
        buffer: Vec::new(),
        fragments: None,
        subscribe_count: 0,
        ping_timer: PingTimer::default(),
    };

    let mut flow = Flow::Continue;
    for step in script {
        flow = connection.run_step(step);
        if flow == Flow::End {
            break;
        }
    }
    if flow == Flow::Continue {
        if connection.accepted {
            while connection.pump(false) == Flow::Continue {}
        } else if connection.consume_head() {
            http::close_with_fin(&mut connection.stream);
        }
    }
    shared.update_connection(index, |record| record.open = false);
}

impl Connection<'_> {
    fn run_step(&mut self, step: Step) -> Flow {
        let needs_websocket = matches!(
            step,
            Step::WaitSubscriptions(_)
                | Step::Text(_)
                | Step::Dribble { .. }
                | Step::Ping(_)
                | Step::Close(_)
                | Step::Live
        );
        if needs_websocket && !self.accepted && self.accept(None) == Flow::End {
            return Flow::End;
        }

        match step {
            Step::Reject {
                status,
                headers,
                body,
            } => self.reject(status, headers, body),
            Step::Hang => self.hang(),
            Step::Accept => self.accept(None),
            Step::AcceptRecorded(reply) => self.accept(Some(reply)),
            Step::WaitSubscriptions(count) => self.wait_subscriptions(count),
            Step::Text(text) => self.write(&ws::encode_frame(ws::OPCODE_TEXT, text.as_bytes())),
            Step::Raw(bytes) => {
                if !self.consume_head() {
                    return Flow::End;
                }
                self.write(&bytes)
            }
            Step::Dribble {
                frame,
                chunk,
                delay,
            } => self.dribble(&frame, chunk, delay),
            Step::Ping(payload) => self.write(&ws::encode_frame(ws::OPCODE_PING, &payload)),
            Step::Sleep(duration) => self.sleep(duration),
            Step::Silence(duration) => {
                if sleep_unless_killed(duration, self.killed) {
                    Flow::Continue
                } else {
                    Flow::End
                }
            }
            Step::Close(code) => self.close(code),
            Step::Eof => {
                if self.consume_head() {
                    http::close_with_fin(&mut self.stream);
                }
                Flow::End
            }
            Step::Reset => self.reset(),
            Step::Live => self.live(),
        }
    }

    /// Reads the upgrade request out of the socket. Returns false if the socket failed.
    fn consume_head(&mut self) -> bool {
        if self.unread_head == 0 {
            return true;
        }
        let len = std::mem::take(&mut self.unread_head);
        http::consume(&mut self.stream, len).is_ok()
    }

    fn set_status(&self, status: u16) {
        self.shared
            .set_upgrade_status(self.index, self.request_index, status);
    }

    fn reject(&mut self, status: u16, headers: Vec<(String, String)>, body: String) -> Flow {
        if self.accepted {
            log::debug!("fake server: Step::Reject after Accept is ignored");
            return Flow::Continue;
        }
        self.respond_and_close(status, &headers, body.as_bytes());
        Flow::End
    }

    fn respond_and_close(&mut self, status: u16, headers: &[(String, String)], body: &[u8]) {
        if !self.consume_head() {
            return;
        }
        self.set_status(status);
        if http::write_response(&mut self.stream, status, headers, body, true).is_ok() {
            http::close_with_fin(&mut self.stream);
        }
    }

    /// Keeps the socket open without responding until the client closes it or the server stops.
    fn hang(&mut self) -> Flow {
        if !self.consume_head() {
            return Flow::End;
        }
        let mut chunk = [0u8; 4096];
        while !self.killed.load(Ordering::SeqCst) {
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if http::is_timeout(&error) => {}
                Err(_) => break,
            }
        }
        Flow::End
    }

    /// Answers the handshake: 401 for a missing or wrong token, 400 for a bad WebSocket
    /// request, else 101. The token is checked first, as Mastodon does. A `recorded` 101
    /// reply is sent byte for byte except for its `Sec-WebSocket-Accept` value, which must
    /// match this request's key.
    fn accept(&mut self, recorded: Option<String>) -> Flow {
        if self.accepted {
            return Flow::Continue;
        }
        let request_id = self.shared.next_request_id();
        let echoed_protocol = match check_token(&self.request, &self.shared.token()) {
            Ok(protocol) => protocol,
            Err(message) => {
                let headers = vec![
                    ("Content-Type".to_string(), "text/plain".to_string()),
                    ("X-Request-Id".to_string(), request_id),
                    ("X-Error-Message".to_string(), message.to_string()),
                ];
                self.respond_and_close(401, &headers, b"");
                return Flow::End;
            }
        };

        if self.request.header("sec-websocket-version") != Some("13") {
            let headers = vec![
                ("Content-Type".to_string(), "text/html".to_string()),
                ("Sec-WebSocket-Version".to_string(), "13, 8".to_string()),
            ];
            let body = b"Missing or invalid Sec-WebSocket-Version header";
            self.respond_and_close(400, &headers, body);
            return Flow::End;
        }
        let Some(key) = self.request.header("sec-websocket-key").map(str::to_string) else {
            let headers = vec![("Content-Type".to_string(), "text/html".to_string())];
            self.respond_and_close(
                400,
                &headers,
                b"Missing or invalid Sec-WebSocket-Key header",
            );
            return Flow::End;
        };

        if !self.consume_head() {
            return Flow::End;
        }
        let accept_key = derive_accept_key(key.as_bytes());
        let head = match recorded {
            Some(reply) => reply
                .split("\r\n")
                .map(|line| match line.split_once(": ") {
                    Some((name, _)) if name.eq_ignore_ascii_case("sec-websocket-accept") => {
                        format!("{name}: {accept_key}")
                    }
                    _ => line.to_string(),
                })
                .collect::<Vec<String>>()
                .join("\r\n"),
            None => {
                let mut head = String::from("HTTP/1.1 101 Switching Protocols\r\n");
                head.push_str("Upgrade: websocket\r\nConnection: Upgrade\r\n");
                head.push_str(&format!("Sec-WebSocket-Accept: {accept_key}\r\n"));
                if let Some(protocol) = echoed_protocol {
                    head.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
                }
                head.push_str(&format!("X-Request-Id: {request_id}\r\n\r\n"));
                head
            }
        };
        if self.write(head.as_bytes()) == Flow::End {
            return Flow::End;
        }
        self.set_status(101);
        self.accepted = true;
        Flow::Continue
    }

    fn wait_subscriptions(&mut self, count: usize) -> Flow {
        let deadline = Instant::now() + STEP_WAIT_LIMIT;
        while self.subscribe_count < count {
            if Instant::now() >= deadline {
                log::debug!(
                    "fake server: timed out waiting for {count} subscriptions, got {}",
                    self.subscribe_count
                );
                return Flow::Continue;
            }
            if self.pump(false) == Flow::End {
                return Flow::End;
            }
        }
        Flow::Continue
    }

    fn dribble(&mut self, frame: &str, chunk: usize, delay: Duration) -> Flow {
        let bytes = ws::encode_frame(ws::OPCODE_TEXT, frame.as_bytes());
        let mut chunks = bytes.chunks(chunk.max(1)).peekable();
        while let Some(piece) = chunks.next() {
            if self.write(piece) == Flow::End {
                return Flow::End;
            }
            if chunks.peek().is_some() && !sleep_unless_killed(delay, self.killed) {
                return Flow::End;
            }
        }
        Flow::Continue
    }

    fn sleep(&mut self, duration: Duration) -> Flow {
        if !self.accepted {
            return match sleep_unless_killed(duration, self.killed) {
                true => Flow::Continue,
                false => Flow::End,
            };
        }
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline {
            if self.pump(false) == Flow::End {
                return Flow::End;
            }
        }
        Flow::Continue
    }

    fn close(&mut self, code: Option<u16>) -> Flow {
        let payload = ws::close_payload(code, "");
        if self.write(&ws::encode_frame(ws::OPCODE_CLOSE, &payload)) == Flow::End {
            return Flow::End;
        }
        self.close_sent = true;
        let deadline = Instant::now() + STEP_WAIT_LIMIT;
        while Instant::now() < deadline {
            if self.pump(false) == Flow::End {
                return Flow::End;
            }
        }
        http::close_with_fin(&mut self.stream);
        Flow::End
    }

    /// Drops the socket with client bytes unread, so that Linux answers with RST.
    fn reset(&mut self) -> Flow {
        if self.unread_head > 0 {
            return Flow::End;
        }
        // A ping makes a reading client send a pong, which then sits unread.
        let ping = ws::encode_frame(ws::OPCODE_PING, b"");
        if self.accepted && self.write(&ping) == Flow::End {
            return Flow::End;
        }
        let deadline = Instant::now() + RESET_WAIT_LIMIT;
        let mut probe = [0u8; 1];
        while Instant::now() < deadline && !self.killed.load(Ordering::SeqCst) {
            match self.stream.peek(&mut probe) {
                Ok(_) => break,
                Err(error) if http::is_timeout(&error) => {}
                Err(_) => break,
            }
        }
        // NOTE: with no unread byte (the client sent nothing within RESET_WAIT_LIMIT) the
        // drop below closes with FIN, and the client sees EOF instead of a reset.
        Flow::End
    }

    fn live(&mut self) -> Flow {
        self.shared.enter_live(self.index);
        while self.pump(true) == Flow::Continue {}
        self.shared.leave_live(self.index);
        Flow::End
    }

    fn write(&mut self, bytes: &[u8]) -> Flow {
        match self
            .stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
        {
            Ok(()) => Flow::Continue,
            Err(error) => {
                log::debug!(
                    "fake server: write to connection {} failed: {error}",
                    self.index
                );
                Flow::End
            }
        }
    }

    /// Does one round of connection upkeep: sends queued frames when `live`, runs the ping
    /// timer, reads for up to the socket's read timeout, and handles every complete client frame.
    fn pump(&mut self, live: bool) -> Flow {
        if self.killed.load(Ordering::SeqCst) {
            return Flow::End;
        }
        if live {
            for outgoing in self.shared.take_live_frames(self.index) {
                let bytes = match outgoing {
                    Outgoing::Text(text) => ws::encode_frame(ws::OPCODE_TEXT, text.as_bytes()),
                    Outgoing::Raw(bytes) => bytes,
                };
                if self.write(&bytes) == Flow::End {
                    return Flow::End;
                }
            }
        }
        if self.tick_ping_timer() == Flow::End {
            return Flow::End;
        }

        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => return Flow::End,
            Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            Err(error) if http::is_timeout(&error) => {}
            Err(_) => return Flow::End,
        }
        self.handle_buffered_frames()
    }

    /// Sends Mastodon's heartbeat ping, or closes the connection if the last one is unanswered.
    fn tick_ping_timer(&mut self) -> Flow {
        let interval = self.shared.ping_interval();
        let now = Instant::now();
        if interval != self.ping_timer.interval {
            self.ping_timer = PingTimer {
                interval,
                next_tick: interval.map(|interval| now + interval),
                awaiting_pong: false,
            };
        }
        let (Some(interval), Some(next_tick)) = (interval, self.ping_timer.next_tick) else {
            return Flow::Continue;
        };
        if now < next_tick {
            return Flow::Continue;
        }
        if self.ping_timer.awaiting_pong {
            log::debug!(
                "fake server: connection {} missed a pong, closing it",
                self.index
            );
            http::close_with_fin(&mut self.stream);
            return Flow::End;
        }
        self.ping_timer.awaiting_pong = true;
        self.ping_timer.next_tick = Some(now + interval);
        self.write(&ws::encode_frame(ws::OPCODE_PING, b""))
    }

    fn handle_buffered_frames(&mut self) -> Flow {
        loop {
            match ws::decode_frame(&self.buffer, MAX_CLIENT_PAYLOAD) {
                Ok(None) => return Flow::Continue,
                Ok(Some((frame, used))) => {
                    self.buffer.drain(..used);
                    if self.handle_frame(frame) == Flow::End {
                        return Flow::End;
                    }
                }
                Err(DecodeError::TooLarge(len)) => {
                    log::debug!("fake server: client frame of {len} bytes is too large");
                    return self.close_with_code(1009, "");
                }
                Err(DecodeError::Protocol) => return self.close_with_code(1002, ""),
            }
        }
    }

    fn handle_frame(&mut self, frame: Frame) -> Flow {
        if !frame.masked {
            return self.close_with_code(1002, "client frames must be masked");
        }
        match frame.opcode {
            ws::OPCODE_TEXT | ws::OPCODE_BINARY if self.fragments.is_some() => {
                self.close_with_code(1002, "")
            }
            ws::OPCODE_BINARY => {
                self.shared
                    .update_connection(self.index, |record| record.binary_frames += 1);
                self.close_with_code(1003, BINARY_CLOSE_REASON)
            }
            ws::OPCODE_TEXT if frame.fin => {
                self.record_text(&frame.payload);
                Flow::Continue
            }
            ws::OPCODE_TEXT => {
                self.fragments = Some((frame.opcode, frame.payload));
                Flow::Continue
            }
            ws::OPCODE_CONTINUATION => self.continue_message(frame),
            ws::OPCODE_CLOSE => self.answer_close(&frame.payload),
            ws::OPCODE_PING => {
                self.shared
                    .update_connection(self.index, |record| record.pings_received += 1);
                self.write(&ws::encode_frame(ws::OPCODE_PONG, &frame.payload))
            }
            ws::OPCODE_PONG => {
                self.ping_timer.awaiting_pong = false;
                self.shared
                    .update_connection(self.index, |record| record.pongs_received += 1);
                Flow::Continue
            }
            _ => self.close_with_code(1002, ""),
        }
    }

    fn continue_message(&mut self, frame: Frame) -> Flow {
        let Some((opcode, mut payload)) = self.fragments.take() else {
            return self.close_with_code(1002, "");
        };
        payload.extend_from_slice(&frame.payload);
        if payload.len() > MAX_CLIENT_PAYLOAD {
            return self.close_with_code(1009, "");
        }
        if !frame.fin {
            self.fragments = Some((opcode, payload));
        } else if opcode == ws::OPCODE_TEXT {
            self.record_text(&payload);
        }
        Flow::Continue
    }

    /// Records a client text message and counts it when it is a subscribe request.
    fn record_text(&mut self, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload);
        let message = serde_json::from_str::<Value>(&text)
            .unwrap_or_else(|_| Value::String(text.into_owned()));
        if message.get("type").and_then(Value::as_str) == Some("subscribe") {
            self.subscribe_count += 1;
        }
        self.shared
            .update_connection(self.index, |record| record.subscriptions.push(message));
    }

    /// Records the client's close frame, echoes it unless the server closed first, and closes.
    fn answer_close(&mut self, payload: &[u8]) -> Flow {
        let code = ws::close_code(payload);
        self.shared
            .update_connection(self.index, |record| record.closed_by_client = Some(code));
        if !self.close_sent {
            let echo = ws::close_payload(code, "");
            let _ = self.write(&ws::encode_frame(ws::OPCODE_CLOSE, &echo));
            self.close_sent = true;
        }
        http::close_with_fin(&mut self.stream);
        Flow::End
    }

    /// Sends a close frame with `code` and `reason`, then closes with FIN without waiting.
    fn close_with_code(&mut self, code: u16, reason: &str) -> Flow {
        if !self.close_sent {
            let payload = ws::close_payload(Some(code), reason);
            let _ = self.write(&ws::encode_frame(ws::OPCODE_CLOSE, &payload));
            self.close_sent = true;
        }
        http::close_with_fin(&mut self.stream);
        Flow::End
    }
}

/// Finds the token like Mastodon's `accountFromRequest`: the `Authorization: Bearer` header,
/// else the `access_token` query parameter, else the whole `Sec-WebSocket-Protocol` value.
/// Returns the protocol to echo in the 101 response, or the `X-Error-Message` text.
fn check_token(request: &Request, expected: &str) -> Result<Option<String>, &'static str> {
    let (token, protocol) = if let Some(authorization) = request.header("authorization") {
        // Mastodon strips only the exact prefix "Bearer "; anything else stays in the token.
        let token = authorization
            .strip_prefix("Bearer ")
            .unwrap_or(authorization);
        (token.to_string(), None)
    } else if let Some(token) = request.query("access_token") {
        (token, None)
    } else if let Some(protocol) = request.header("sec-websocket-protocol") {
        (protocol.to_string(), Some(protocol.to_string()))
    } else {
        (String::new(), None)
    };
    if token.is_empty() {
        Err("Missing access token")
    } else if token != expected {
        Err("Invalid access token")
    } else {
        Ok(protocol)
    }
}
