//! A fake Mastodon server on 127.0.0.1 for tests and the `fake-mastodon` example.
//!
//! It serves the instance endpoints, the home, notification, public, tag, list and conversation
//! timelines with Mastodon's paging, and the streaming WebSocket, whose behaviour per connection
//! is given by a script of [`Step`]s. Every request and upgrade attempt is recorded. Each
//! accepted TCP connection gets its own thread, and dropping the [`FakeServer`] stops them all.
//! The WebSocket side lives in `ws_conn.rs`, frames in `ws.rs`, and paging in `rest.rs`.

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::{self, HeadError, Request};
use super::rest::{self, PageQuery};
use super::ws_conn;

/// Token accepted until [`FakeServer::set_token`] changes it.
pub const DEFAULT_TOKEN: &str = "test-token";

/// Interval at which the accept loop checks whether it must stop.
const ACCEPT_POLL: Duration = Duration::from_millis(2);

/// Read timeout of every connection socket, which is how often a connection thread checks for
/// stop requests, queued frames and the ping timer.
pub(super) const SOCKET_POLL: Duration = Duration::from_millis(5);

/// Write timeout of every connection socket, so a client that stops reading cannot block a
/// connection thread forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Time [`FakeServer::resume_listening`] keeps retrying to bind the old port.
const REBIND_LIMIT: Duration = Duration::from_secs(2);

/// Time [`Drop`] waits for connection threads to finish.
const STOP_LIMIT: Duration = Duration::from_secs(2);

/// A running fake server. Dropping it closes the listener and every open connection.
pub struct FakeServer {
    shared: Arc<Shared>,
    listener: Mutex<Option<AcceptLoop>>,
}

/// One WebSocket upgrade attempt and what happened on that connection.
#[derive(Clone, Debug, Default)]
pub struct ConnRecord {
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    /// Every text frame the client sent, parsed as JSON. Text that is not JSON is kept as a
    /// JSON string.
    pub subscriptions: Vec<Value>,
    pub pings_received: usize,
    pub pongs_received: usize,
    /// `Some(code)` once the client sent a close frame. The inner `None` is a close frame
    /// without a status code.
    pub closed_by_client: Option<Option<u16>>,
    pub binary_frames: usize,
    /// Status of the handshake response: 101 when accepted, 0 while or when none was sent.
    pub status: u16,
    /// Whether the server is still serving this connection.
    pub open: bool,
}

/// One HTTP request, REST or WebSocket upgrade.
#[derive(Clone, Debug, Default)]
pub struct RequestRecord {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    /// Response status, or 0 when no response was sent (yet).
    pub status: u16,
    /// The request body as text, empty when there was none.
    pub body: String,
}

/// One step of a WebSocket connection's script. [`FakeServer::push_script`] describes what
/// happens before `Accept` and after the last step.
#[derive(Clone, Debug)]
pub enum Step {
    /// Responds to the upgrade request with this HTTP response, then closes the connection.
    Reject {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Reads the upgrade request and never responds. The socket stays open until the client
    /// closes it or the server stops.
    Hang,
    /// Responds 101 when the token matches, else 401 with `X-Error-Message` as Mastodon does.
    Accept,
    /// Like `Accept`, but responds with this recorded 101 reply, byte for byte except for the
    /// `Sec-WebSocket-Accept` value, which is computed for the request's key.
    AcceptRecorded(String),
    /// Waits (at most 5 s) until the client has sent this many `"type":"subscribe"` messages
    /// on this connection, answering pings meanwhile.
    WaitSubscriptions(usize),
    Text(String),
    /// Sends raw bytes. Before `Accept` they replace the handshake response.
    Raw(Vec<u8>),
    /// Sends one text frame `chunk` bytes at a time with `delay` between chunks.
    Dribble {
        frame: String,
        chunk: usize,
        delay: Duration,
    },
    Ping(Vec<u8>),
    /// Waits, reading client frames and answering pings meanwhile.
    Sleep(Duration),
    /// Neither reads nor writes for the duration, like a half-open connection, then goes on.
    Silence(Duration),
    /// Sends a close frame (`None`: empty payload, as Mastodon does when a token is revoked),
    /// waits up to 5 s for the client's close frame or EOF, then closes with FIN.
    Close(Option<u16>),
    /// Closes the TCP connection with FIN and no close frame.
    Eof,
    /// Closes the socket while client bytes sit unread in its receive buffer, so Linux sends
    /// RST. Before `Accept` the unread bytes are the upgrade request. After it the server sends
    /// a ping and waits up to 2 s for the pong to arrive. A client that never sends anything
    /// gets FIN instead.
    Reset,
    /// Sends frames queued by [`FakeServer::send`] and [`FakeServer::send_raw`] and answers
    /// pings until the client disconnects or the server stops.
    Live,
}

/// A fault served once in place of a REST response.
#[derive(Clone, Debug)]
pub enum RestFault {
    /// This response. `Content-Type` defaults to HTML when the body starts with `<` and to
    /// JSON otherwise, unless `headers` set it.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// 206 Partial Content with `[]`, as the home timeline returns while the feed regenerates.
    Partial,
    /// 200 with a JSON content type and a body that is not JSON.
    MalformedBody,
    /// Reads the request, sends nothing for the duration, then closes the connection.
    Hang(Duration),
}

/// A frame queued by [`FakeServer::send`] or [`FakeServer::send_raw`].
#[derive(Clone, Debug)]
pub(super) enum Outgoing {
    Text(String),
    Raw(Vec<u8>),
}

/// State shared by the handle, the accept loop and the connection threads.
pub(super) struct Shared {
    pub(super) port: u16,
    state: Mutex<State>,
    /// Connection threads still running.
    active_threads: AtomicUsize,
    next_socket_id: AtomicU64,
    next_request_id: AtomicU64,
}

struct State {
    token: String,
    streaming_v2: Option<String>,
    streaming_v1: Option<String>,
    scripts: VecDeque<Vec<Step>>,
    default_script: Vec<Step>,
    /// Frames sent while no connection was live, for the next connection that goes live.
    pending: Vec<Outgoing>,
    live: Vec<LiveQueue>,
    connections: Vec<ConnRecord>,
    requests: Vec<RequestRecord>,
    ping_interval: Option<Duration>,
    timelines: HashMap<String, Vec<Value>>,
    faults: HashMap<String, VecDeque<RestFault>>,
    page_max: HashMap<String, usize>,
    sockets: Vec<OpenSocket>,
}

struct LiveQueue {
    connection: usize,
    frames: VecDeque<Outgoing>,
}

/// A clone of an accepted socket, so that stopping the server can shut it down.
struct OpenSocket {
    id: u64,
    stream: TcpStream,
    killed: Arc<AtomicBool>,
}

struct AcceptLoop {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// What the REST side does with a request.
enum Reply {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    Hang(Duration),
}

impl FakeServer {
    /// Starts a server on 127.0.0.1 with a port chosen by the OS. Panics if binding fails.
    pub fn start() -> FakeServer {
        FakeServer::start_on_port(0)
            .unwrap_or_else(|error| panic!("fake server: binding 127.0.0.1:0 failed: {error}"))
    }

    /// Starts a server on 127.0.0.1 and `port` (0 lets the OS choose).
    pub fn start_on_port(port: u16) -> io::Result<FakeServer> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let ws_url = format!("ws://127.0.0.1:{port}");
        let state = State {
            token: DEFAULT_TOKEN.to_string(),
            streaming_v2: Some(ws_url.clone()),
            streaming_v1: Some(ws_url),
            scripts: VecDeque::new(),
            default_script: vec![Step::Live],
            pending: Vec::new(),
            live: Vec::new(),
            connections: Vec::new(),
            requests: Vec::new(),
            ping_interval: None,
            timelines: HashMap::new(),
            faults: HashMap::new(),
            page_max: HashMap::new(),
            sockets: Vec::new(),
        };
        let shared = Arc::new(Shared {
            port,
            state: Mutex::new(state),
            active_threads: AtomicUsize::new(0),
            next_socket_id: AtomicU64::new(0),
            next_request_id: AtomicU64::new(0),
        });
        let accept_loop = spawn_accept_loop(&shared, listener)?;
        Ok(FakeServer {
            shared,
            listener: Mutex::new(Some(accept_loop)),
        })
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// Returns `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.shared.port)
    }

    /// Returns `ws://127.0.0.1:PORT`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.shared.port)
    }

    /// Sets the one access token that REST and WebSocket requests must carry.
    pub fn set_token(&self, token: &str) {
        self.shared.lock().token = token.to_string();
    }

    /// Sets the streaming URL returned by `/api/v2/instance` (`configuration.urls.streaming`)
    /// and `/api/v1/instance` (`urls.streaming_api`). `None` makes that endpoint return 404.
    pub fn set_streaming_url(&self, v2: Option<String>, v1: Option<String>) {
        let mut state = self.shared.lock();
        state.streaming_v2 = v2;
        state.streaming_v1 = v1;
    }

    /// Queues a script for the next WebSocket upgrade request. Scripts are used in FIFO order,
    /// and a connection finding the queue empty runs the default script (`[Step::Live]`
    /// unless [`FakeServer::set_default_script`] changed it).
    ///
    /// A step that needs an open WebSocket (`WaitSubscriptions`, `Text`, `Dribble`, `Ping`,
    /// `Close`, `Live`) runs `Accept` first if no `Accept` ran yet. A script that ends without
    /// closing keeps an accepted connection open, answering pings but receiving nothing from
    /// `send`, until the client disconnects or the server stops. A script that ends before
    /// any response closes the connection.
    pub fn push_script(&self, script: Vec<Step>) {
        self.shared.lock().scripts.push_back(script);
    }

    /// Sets the script for connections that find the script queue empty.
    pub fn set_default_script(&self, script: Vec<Step>) {
        self.shared.lock().default_script = script;
    }

    /// Queues a text frame for every connection in [`Step::Live`], or keeps it for the next
    /// connection that goes live when none is. A frame queued for a connection that closes
    /// before sending it is lost, as on a real server.
    pub fn send(&self, frame: &str) {
        self.shared
            .queue_outgoing(Outgoing::Text(frame.to_string()));
    }

    /// Queues raw bytes like [`FakeServer::send`] queues a frame.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.shared.queue_outgoing(Outgoing::Raw(bytes.to_vec()));
    }

    /// Returns how many connections are in [`Step::Live`] now.
    pub fn live_connections(&self) -> usize {
        self.shared.lock().live.len()
    }

    /// Returns every WebSocket upgrade attempt so far, in order.
    pub fn connections(&self) -> Vec<ConnRecord> {
        self.shared.lock().connections.clone()
    }

    /// Returns every HTTP request so far, REST and upgrade, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Polls `pred` every 5 ms and panics naming `what` if it is still false after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, pred: impl Fn(&FakeServer) -> bool) {
        let deadline = Instant::now() + timeout;
        while !pred(self) {
            if Instant::now() >= deadline {
                panic!("fake server: timed out after {timeout:?} waiting for {what}");
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Closes the listener, so new connections get ECONNREFUSED, and shuts every open
    /// connection down with FIN and no close frame, as a restarting Mastodon does.
    pub fn stop_listening(&self) {
        let accept_loop = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(accept_loop) = accept_loop {
            accept_loop.stop.store(true, Ordering::SeqCst);
            let _ = accept_loop.thread.join();
        }
        self.shared.kill_all_sockets();
    }

    /// Listens on the same port again, retrying the bind for up to 2 s. Does nothing while
    /// listening. Panics if the port stays taken.
    pub fn resume_listening(&self) {
        let mut slot = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return;
        }
        let deadline = Instant::now() + REBIND_LIMIT;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.shared.port)) {
                Ok(listener) => break listener,
                Err(error) if Instant::now() >= deadline => {
                    panic!(
                        "fake server: binding 127.0.0.1:{} again failed: {error}",
                        self.shared.port
                    )
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        };
        let accept_loop = spawn_accept_loop(&self.shared, listener)
            .unwrap_or_else(|error| panic!("fake server: listening again failed: {error}"));
        *slot = Some(accept_loop);
    }

    /// Sets Mastodon's heartbeat: every `interval` each accepted WebSocket connection that has
    /// not answered the previous ping is closed with FIN and no close frame, and every other
    /// one gets an empty ping. `None` (the default) sends no pings. Connections in
    /// [`Step::Silence`] or in a `Dribble` are skipped until the step ends.
    pub fn set_ping_interval(&self, interval: Option<Duration>) {
        self.shared.lock().ping_interval = interval;
    }

    /// Adds items, each with a string `id` (for conversations a `last_status.id`), to the
    /// timeline at `path`, e.g. `/api/v1/timelines/home`. Items are kept ordered by id, so
    /// the order of the calls does not matter. Panics on an item without an id.
    pub fn add_items(&self, path: &str, items: Vec<Value>) {
        let mut state = self.shared.lock();
        let timeline = state.timelines.entry(path.to_string()).or_default();
        rest::insert_items(path, timeline, items);
    }

    /// Queues a fault for the next request to `path` (without query). Faults for one path are
    /// served in FIFO order, one per request.
    pub fn push_rest_fault(&self, path: &str, fault: RestFault) {
        let mut state = self.shared.lock();
        state
            .faults
            .entry(path.to_string())
            .or_default()
            .push_back(fault);
    }

    /// Sets the max `limit` honoured at `path` (default 40, notifications 80).
    pub fn set_page_max(&self, path: &str, max: usize) {
        self.shared.lock().page_max.insert(path.to_string(), max);
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop_listening();
        let deadline = Instant::now() + STOP_LIMIT;
        while self.shared.active_threads.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Shared {
    /// Locks the state. A connection thread that panicked must not break the whole server, so
    /// a poisoned lock is used anyway.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn token(&self) -> String {
        self.lock().token.clone()
    }

    pub(super) fn ping_interval(&self) -> Option<Duration> {
        self.lock().ping_interval
    }

    /// Returns an `X-Request-Id` value shaped like the UUIDs Mastodon sends.
    pub(super) fn next_request_id(&self) -> String {
        let n = self.next_request_id.fetch_add(1, Ordering::SeqCst);
        format!("00000000-0000-4000-8000-{n:012}")
    }

    /// Records an upgrade attempt and takes its script. Returns the connection index, the
    /// request index and the script.
    pub(super) fn begin_upgrade(&self, request: &Request) -> (usize, usize, Vec<Step>) {
        let mut state = self.lock();
        state.connections.push(ConnRecord {
            path_and_query: request.path_and_query.clone(),
            headers: request.headers.clone(),
            open: true,
            ..ConnRecord::default()
        });
        let connection = state.connections.len() - 1;
        let request_index = record_request(&mut state, request);
        let script = match state.scripts.pop_front() {
            Some(script) => script,
            None => state.default_script.clone(),
        };
        (connection, request_index, script)
    }

    /// Sets the response status of an upgrade attempt in both records.
    pub(super) fn set_upgrade_status(&self, connection: usize, request_index: usize, status: u16) {
        let mut state = self.lock();
        state.connections[connection].status = status;
        state.requests[request_index].status = status;
    }

    pub(super) fn update_connection(
        &self,
        connection: usize,
        update: impl FnOnce(&mut ConnRecord),
    ) {
        update(&mut self.lock().connections[connection]);
    }

    /// Marks a connection live and hands it the frames sent while none was.
    pub(super) fn enter_live(&self, connection: usize) {
        let mut state = self.lock();
        let frames = std::mem::take(&mut state.pending).into();
        state.live.push(LiveQueue { connection, frames });
    }

    pub(super) fn leave_live(&self, connection: usize) {
        self.lock()
            .live
            .retain(|queue| queue.connection != connection);
    }

    /// Takes the frames queued for a live connection.
    pub(super) fn take_live_frames(&self, connection: usize) -> Vec<Outgoing> {
        let mut state = self.lock();
        match state
            .live
            .iter_mut()
            .find(|queue| queue.connection == connection)
        {
            Some(queue) => queue.frames.drain(..).collect(),
            None => Vec::new(),
        }
    }

    fn queue_outgoing(&self, outgoing: Outgoing) {
        let mut state = self.lock();
        if state.live.is_empty() {
            state.pending.push(outgoing);
        } else {
            for queue in &mut state.live {
                queue.frames.push_back(outgoing.clone());
            }
        }
    }

    fn kill_all_sockets(&self) {
        let state = self.lock();
        for socket in &state.sockets {
            socket.killed.store(true, Ordering::SeqCst);
            let _ = socket.stream.shutdown(Shutdown::Both);
        }
    }
}

fn record_request(state: &mut State, request: &Request) -> usize {
    state.requests.push(RequestRecord {
        method: request.method.clone(),
        path_and_query: request.path_and_query.clone(),
        headers: request.headers.clone(),
        status: 0,
        body: String::new(),
    });
    state.requests.len() - 1
}

fn spawn_accept_loop(shared: &Arc<Shared>, listener: TcpListener) -> io::Result<AcceptLoop> {
    // A non-blocking listener lets the loop notice `stop` within ACCEPT_POLL.
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    let thread_shared = Arc::clone(shared);
    let thread = thread::Builder::new()
        .name("fake-mastodon-accept".to_string())
        .spawn(move || accept_connections(&thread_shared, &listener, &thread_stop))?;
    Ok(AcceptLoop { stop, thread })
}

/// Accepts connections until `stop` is set, then drops the listener with the thread.
fn accept_connections(shared: &Arc<Shared>, listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(error) = spawn_connection(shared, stream) {
                    log::debug!("fake server: starting a connection thread failed: {error}");
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(error) => {
                log::debug!("fake server: accept failed: {error}");
                thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// Unregisters a connection's socket and counts its thread as finished, also on panic.
struct ConnectionGuard {
    shared: Arc<Shared>,
    socket_id: u64,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.shared
            .lock()
            .sockets
            .retain(|socket| socket.id != self.socket_id);
        self.shared.active_threads.fetch_sub(1, Ordering::SeqCst);
    }
}

fn spawn_connection(shared: &Arc<Shared>, stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(SOCKET_POLL))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;

    let killed = Arc::new(AtomicBool::new(false));
    let socket_id = shared.next_socket_id.fetch_add(1, Ordering::SeqCst);
    shared.lock().sockets.push(OpenSocket {
        id: socket_id,
        stream: stream.try_clone()?,
        killed: Arc::clone(&killed),
    });
    shared.active_threads.fetch_add(1, Ordering::SeqCst);
    let guard = ConnectionGuard {
        shared: Arc::clone(shared),
        socket_id,
    };

    let thread_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("fake-mastodon-connection".to_string())
        .spawn(move || {
            let _guard = guard;
            serve_connection(&thread_shared, stream, &killed);
        });
    // On failure the closure, and with it the guard, is dropped, which undoes the registration.
    spawned.map(|_| ())
}

/// Serves HTTP requests on one connection until it closes or is upgraded to a WebSocket.
fn serve_connection(shared: &Arc<Shared>, mut stream: TcpStream, killed: &AtomicBool) {
    loop {
        let (request, head_len) = match http::peek_request(&stream, killed) {
            Ok(parsed) => parsed,
            Err(HeadError::Closed) => return,
            Err(HeadError::TooLarge) => {
                respond_error_and_close(&mut stream, 431, "Request header too large");
                return;
            }
            Err(HeadError::Malformed) => {
                respond_error_and_close(&mut stream, 400, "Malformed request");
                return;
            }
        };

        if is_websocket_upgrade(&request) {
            ws_conn::serve_upgrade(shared, stream, request, head_len, killed);
            return;
        }

        if http::consume(&mut stream, head_len).is_err() {
            return;
        }
        let close = request.wants_close();
        let body = match read_body(&mut stream, &request) {
            Ok(body) => body,
            Err(status) => {
                respond_error_and_close(&mut stream, status, "Request body not supported");
                return;
            }
        };

        let request_index = record_request(&mut shared.lock(), &request);
        shared.lock().requests[request_index].body = String::from_utf8_lossy(&body).into_owned();
        match answer_rest(shared, &request) {
            Reply::Respond {
                status,
                headers,
                body,
            } => {
                shared.lock().requests[request_index].status = status;
                if http::write_response(&mut stream, status, &headers, &body, close).is_err() {
                    return;
                }
                if close {
                    http::close_with_fin(&mut stream);
                    return;
                }
            }
            Reply::Hang(duration) => {
                sleep_unless_killed(duration, killed);
                http::close_with_fin(&mut stream);
                return;
            }
        }
    }
}

/// Returns whether a request is a WebSocket upgrade on Mastodon's streaming path.
fn is_websocket_upgrade(request: &Request) -> bool {
    let upgrade = request.header("upgrade").unwrap_or("");
    upgrade.eq_ignore_ascii_case("websocket") && request.path().starts_with("/api/v1/streaming")
}

/// Reads a `Content-Length` body. Returns the error status when the body cannot be handled:
/// 400 for an invalid `Content-Length`, 411 for chunked bodies, 413 for large or unreadable
/// ones.
fn read_body(stream: &mut TcpStream, request: &Request) -> Result<Vec<u8>, u16> {
    if request.header("transfer-encoding").is_some() {
        return Err(411);
    }
    let len = match request.header("content-length") {
        None => 0,
        Some(value) => value.parse::<usize>().map_err(|_| 400u16)?,
    };
    if len > http::MAX_BODY_BYTES {
        return Err(413);
    }
    let mut body = vec![0; len];
    std::io::Read::read_exact(stream, &mut body).map_err(|_| 413u16)?;
    Ok(body)
}

fn respond_error_and_close(stream: &mut TcpStream, status: u16, message: &str) {
    let body = json!({ "error": message }).to_string();
    let _ = http::write_response(stream, status, &json_headers(), body.as_bytes(), true);
    http::close_with_fin(stream);
}

/// Sleeps for `duration` in short slices. Returns false if the connection was killed meanwhile.
pub(super) fn sleep_unless_killed(duration: Duration, killed: &AtomicBool) -> bool {
    let deadline = Instant::now() + duration;
    loop {
        if killed.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep((deadline - now).min(SOCKET_POLL));
    }
}

fn json_headers() -> Vec<(String, String)> {
    vec![(
        "Content-Type".to_string(),
        "application/json; charset=utf-8".to_string(),
    )]
}

fn json_reply(status: u16, body: &Value) -> Reply {
    Reply::Respond {
        status,
        headers: json_headers(),
        body: body.to_string().into_bytes(),
    }
}

fn not_found() -> Reply {
    json_reply(404, &json!({ "error": "Record not found" }))
}

/// Routes a REST request. Queued faults come first, before any other check.
fn answer_rest(shared: &Shared, request: &Request) -> Reply {
    let path = request.path();
    let fault = shared
        .lock()
        .faults
        .get_mut(path)
        .and_then(VecDeque::pop_front);
    if let Some(fault) = fault {
        return fault_reply(fault);
    }

    let is_timeline =
        rest::is_standard_timeline(path) || shared.lock().timelines.contains_key(path);
    let is_known = is_timeline
        || matches!(
            path,
            "/api/v1/instance"
                | "/api/v2/instance"
                | "/api/v1/streaming/health"
                | "/api/v1/accounts/verify_credentials"
                | "/api/v1/statuses"
        );
    if !is_known {
        return not_found();
    }
    if path == "/api/v1/statuses" && request.method == "POST" {
        if !has_valid_bearer(shared, request) {
            return json_reply(401, &json!({ "error": "The access token is invalid" }));
        }
        return json_reply(200, &json!({ "id": "900000", "content": "<p>posted</p>" }));
    }
    if request.method != "GET" {
        return json_reply(405, &json!({ "error": "Method not allowed" }));
    }

    match path {
        "/api/v2/instance" => instance_v2(shared),
        "/api/v1/instance" => instance_v1(shared),
        "/api/v1/streaming/health" => Reply::Respond {
            status: 200,
            headers: vec![("Content-Type".to_string(), "text/plain".to_string())],
            body: b"OK".to_vec(),
        },
        _ if !has_valid_bearer(shared, request) => {
            json_reply(401, &json!({ "error": "The access token is invalid" }))
        }
        "/api/v1/accounts/verify_credentials" => json_reply(
            200,
            &json!({ "id": "1", "username": "demo", "acct": "demo", "display_name": "Demo" }),
        ),
        _ => timeline_page(shared, request),
    }
}

fn has_valid_bearer(shared: &Shared, request: &Request) -> bool {
    let expected = format!("Bearer {}", shared.token());
    request.header("authorization") == Some(expected.as_str())
}

fn instance_v2(shared: &Shared) -> Reply {
    let Some(streaming) = shared.lock().streaming_v2.clone() else {
        return not_found();
    };
    let domain = format!("127.0.0.1:{}", shared.port);
    json_reply(
        200,
        &json!({
            "domain": domain,
            "title": "Fake Mastodon",
            "version": "4.5.0",
            "description": "A fake Mastodon server for tests",
            "configuration": { "urls": { "streaming": streaming } },
        }),
    )
}

fn instance_v1(shared: &Shared) -> Reply {
    let Some(streaming) = shared.lock().streaming_v1.clone() else {
        return not_found();
    };
    let domain = format!("127.0.0.1:{}", shared.port);
    json_reply(
        200,
        &json!({
            "uri": domain,
            "title": "Fake Mastodon",
            "version": "4.5.0",
            "description": "A fake Mastodon server for tests",
            "urls": { "streaming_api": streaming },
        }),
    )
}

fn timeline_page(shared: &Shared, request: &Request) -> Reply {
    let path = request.path();
    let state = shared.lock();
    let page_max = state
        .page_max
        .get(path)
        .copied()
        .unwrap_or_else(|| rest::default_page_max(path));
    let query = PageQuery {
        limit: rest::parse_limit(request.query("limit").as_deref(), page_max),
        max_id: request.query("max_id").filter(|id| !id.is_empty()),
        since_id: request.query("since_id").filter(|id| !id.is_empty()),
        min_id: request.query("min_id").filter(|id| !id.is_empty()),
    };
    let timeline = state.timelines.get(path).map(Vec::as_slice).unwrap_or(&[]);
    let page = rest::select_page(path, timeline, &query);
    drop(state);

    let mut headers = json_headers();
    let base_url = format!("http://127.0.0.1:{}", shared.port);
    if let Some(link) =
        rest::link_header(&base_url, path, &request.query_pairs(), &page, query.limit)
    {
        headers.push(("Link".to_string(), link));
    }
    Reply::Respond {
        status: 200,
        headers,
        body: Value::Array(page).to_string().into_bytes(),
    }
}

fn fault_reply(fault: RestFault) -> Reply {
    match fault {
        RestFault::Status {
            status,
            mut headers,
            body,
        } => {
            let has_type = headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
            if !has_type {
                let content_type = if body.trim_start().starts_with('<') {
                    "text/html; charset=utf-8"
                } else {
                    "application/json; charset=utf-8"
                };
                headers.push(("Content-Type".to_string(), content_type.to_string()));
            }
            Reply::Respond {
                status,
                headers,
                body: body.into_bytes(),
            }
        }
        RestFault::Partial => Reply::Respond {
            status: 206,
            headers: json_headers(),
            body: b"[]".to_vec(),
        },
        RestFault::MalformedBody => Reply::Respond {
            status: 200,
            headers: json_headers(),
            body: b"<html><body>this is not JSON".to_vec(),
        },
        RestFault::Hang(duration) => Reply::Hang(duration),
    }
}
