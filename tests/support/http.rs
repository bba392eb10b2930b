//! HTTP/1.1 for the fake server: reading a request head from a socket and writing responses.
//!
//! Only what the fake server needs is supported: a request head, an optional `Content-Length`
//! body (read and dropped), and responses that always carry `Content-Length`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Max size of a request head. A larger head gets a 431 response.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Max request body that is read and dropped. A larger body gets a 413 response.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Time a client may take to finish a request head once it has started sending it.
const HEAD_STALL_LIMIT: Duration = Duration::from_secs(10);

/// Time spent waiting for the client's EOF after the server half-closes a connection.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// A parsed request head.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent, e.g. `/api/v1/timelines/home?limit=40`.
    pub path_and_query: String,
    pub version: String,
    /// Header names keep the client's spelling. Look them up with [`Request::header`].
    pub headers: Vec<(String, String)>,
}

/// Reasons why no request could be read.
#[derive(Debug)]
pub enum HeadError {
    /// The client closed the connection, the server is stopping, or the socket failed.
    Closed,
    /// The head did not end within [`MAX_HEAD_BYTES`].
    TooLarge,
    /// The request line or a header line is not valid HTTP/1.x.
    Malformed,
}

impl Request {
    /// Returns the first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Returns the path without the query string.
    pub fn path(&self) -> &str {
        match self.path_and_query.split_once('?') {
            Some((path, _)) => path,
            None => &self.path_and_query,
        }
    }

    /// Returns the decoded query parameters in request order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let Some((_, query)) = self.path_and_query.split_once('?') else {
            return Vec::new();
        };
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((key, value)) => (percent_decode(key), percent_decode(value)),
                None => (percent_decode(pair), String::new()),
            })
            .collect()
    }

    /// Returns the value of the first query parameter with this name.
    pub fn query(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Returns whether the connection must close after the response, following HTTP/1.1
    /// persistence rules: HTTP/1.0 closes unless it requests keep-alive, HTTP/1.1 stays open
    /// unless it sends `Connection: close`.
    pub fn wants_close(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.version == "HTTP/1.0" {
            !connection.contains("keep-alive")
        } else {
            connection.contains("close")
        }
    }
}

/// Waits until a whole request head is in the socket's receive buffer and parses it.
///
/// The head is only peeked, not consumed, so the caller can still close the socket with the
/// request unread (Linux then sends RST instead of FIN). Returns the request and the head's
/// length in bytes, which the caller consumes with [`consume`]. The stream must have a short
/// read timeout so that `killed` is checked regularly.
pub fn peek_request(
    stream: &TcpStream,
    killed: &AtomicBool,
) -> Result<(Request, usize), HeadError> {
    let mut buffer = vec![0u8; MAX_HEAD_BYTES];
    let mut seen = 0;
    let mut last_growth = Instant::now();
    loop {
        if killed.load(Ordering::SeqCst) {
            return Err(HeadError::Closed);
        }
        match stream.peek(&mut buffer) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => {
                if let Some(end) = find_head_end(&buffer[..n]) {
                    let request = parse_head(&buffer[..end])?;
                    return Ok((request, end));
                }
                if n == MAX_HEAD_BYTES {
                    return Err(HeadError::TooLarge);
                }
                // peek returns at once while any byte is buffered, so wait for more bytes here.
                if n == seen {
                    if last_growth.elapsed() > HEAD_STALL_LIMIT {
                        return Err(HeadError::Closed);
                    }
                    thread::sleep(Duration::from_millis(2));
                } else {
                    seen = n;
                    last_growth = Instant::now();
                }
            }
            Err(error) if is_timeout(&error) => {}
            Err(_) => return Err(HeadError::Closed),
        }
    }
}

/// Reads and drops `len` bytes that were already peeked.
pub fn consume(stream: &mut TcpStream, len: usize) -> io::Result<()> {
    let mut remaining = len;
    let mut chunk = [0u8; 4096];
    while remaining > 0 {
        let wanted = remaining.min(chunk.len());
        match stream.read(&mut chunk[..wanted]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => remaining -= n,
            Err(error) if is_timeout(&error) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Returns whether an I/O error is a read or write timeout rather than a failure.
pub fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Writes a complete response. `Content-Length` is added unless `headers` contain one, and
/// `Connection: close` is added when `close` is set and `headers` contain no `Connection`.
pub fn write_response(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    let has = |name: &str| {
        headers
            .iter()
            .any(|(key, _)| key.eq_ignore_ascii_case(name))
    };
    if close && !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has("content-length") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");

    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Closes a connection with FIN: half-closes the sending side, reads and drops whatever the
/// client still sends until its EOF or for at most [`DRAIN_LIMIT`], then shuts down both sides.
///
/// Draining first matters because closing a socket with unread bytes makes Linux send RST, and
/// a client that sees RST reports a reset rather than EOF.
pub fn close_with_fin(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if is_timeout(&error) => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Returns the standard reason phrase for the status codes the fake server uses.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Percent-encodes a query value, keeping only RFC 3986 unreserved characters.
pub fn percent_encode(value: &str) -> String {
    let mut encoded = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Decodes `%XX` escapes and `+` (a space in form encoding). Invalid escapes are kept as-is.
pub fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = if bytes[i] == b'%' && i + 2 < bytes.len() {
            std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        } else {
            None
        };
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                decoded.push(byte);
                i += 3;
            }
            (None, b'+') => {
                decoded.push(b' ');
                i += 1;
            }
            (None, byte) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Returns the length of the head including its terminating blank line, if it is complete.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|start| start + 4)
}

fn parse_head(bytes: &[u8]) -> Result<Request, HeadError> {
    let text = std::str::from_utf8(bytes).map_err(|_| HeadError::Malformed)?;
    let mut lines = text.split("\r\n");

    let request_line = lines.next().ok_or(HeadError::Malformed)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(HeadError::Malformed);
    }

    let mut headers = Vec::new();
    for line in lines.filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(HeadError::Malformed)?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        path_and_query: target.to_string(),
        version: version.to_string(),
        headers,
    })
}
