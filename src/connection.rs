//! Opening the WebSocket: DNS, a TCP connect with a timeout for each address, TLS with
//! certificate checks, and the handshake with `Authorization: Bearer`, each phase bounded.
//!
//! `tungstenite::connect` is not used because it has no connect timeout.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use log::{debug, trace};
use tungstenite::WebSocket;
use tungstenite::client::ClientRequestBuilder;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::Uri;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;

use crate::config::Config;
use crate::endpoint::Endpoint;
use crate::error::{Error, Phase};

/// An open WebSocket over TCP, with or without TLS.
pub(crate) type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// Path of the multiplexed WebSocket endpoint below the streaming base URL.
const STREAMING_PATH: &str = "/api/v1/streaming";

/// Maximum length of an error response body quoted in a message, in characters.
const MAX_QUOTED_BODY: usize = 200;

/// Builds the TLS connector once per run. `--ca-file` replaces the system's roots.
pub(crate) fn tls_connector(config: &Config) -> Result<native_tls::TlsConnector, Error> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = &config.ca_file {
        builder.disable_built_in_roots(true);
        for certificate in crate::rest::read_pem_certificates(path)? {
            let certificate =
                native_tls::Certificate::from_der(certificate.der()).map_err(|error| {
                    Error::Config(format!("invalid certificate in --ca-file: {error}"))
                })?;
            builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|error| Error::Tls(format!("cannot set up TLS: {error}")))
}

/// Opens the WebSocket at `base` and completes the handshake. `tls` is required for a `wss`
/// base and unused for `ws`.
pub(crate) fn open(
    base: &Endpoint,
    config: &Config,
    tls: Option<&native_tls::TlsConnector>,
) -> Result<Socket, Error> {
    base.check_token_transport(config.allow_insecure)
        .map_err(Error::Config)?;
    let addresses = resolve(&base.authority())?;
    let tcp = connect_any(&addresses, config.connect_timeout)?;
    let deadline = Instant::now() + config.handshake_timeout;
    tcp.set_nodelay(true)
        .map_err(|source| Error::network(Phase::Connect, source))?;
    tcp.set_write_timeout(Some(config.write_timeout))
        .map_err(|source| Error::network(Phase::Connect, source))?;

    let stream = match tls {
        Some(tls) if base.is_secure() => {
            MaybeTlsStream::NativeTls(tls_handshake(tls, &base.host, tcp, deadline)?)
        }
        _ => MaybeTlsStream::Plain(tcp),
    };
    websocket_handshake(base, config, stream, deadline)
}

/// Sets the read timeout of the socket under the WebSocket. A zero duration is raised to one
/// millisecond, because std treats zero as an error.
pub(crate) fn set_read_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    let timeout = Some(timeout.max(Duration::from_millis(1)));
    tcp_of(socket.get_ref()).set_read_timeout(timeout)
}

fn tcp_of(stream: &MaybeTlsStream<TcpStream>) -> &TcpStream {
    match stream {
        MaybeTlsStream::Plain(tcp) => tcp,
        MaybeTlsStream::NativeTls(tls) => tls.get_ref(),
        _ => unreachable!("only plain and native-tls streams are built"),
    }
}

/// Looks `authority` (`host:port`) up. NOTE: std's lookup has no timeout, so a hanging
/// resolver delays a reconnect. Lookups run only while no connection is open, and REST
/// requests reuse the addresses found then, so no healthy stream waits for one.
pub(crate) fn resolve(authority: &str) -> Result<Vec<SocketAddr>, Error> {
    let addresses: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|source| Error::network(Phase::Resolve, source))?
        .collect();
    if addresses.is_empty() {
        return Err(Error::Network {
            phase: Phase::Resolve,
            source: io::Error::new(io::ErrorKind::NotFound, "no address found"),
        });
    }
    Ok(addresses)
}

/// Tries each address in turn with its own timeout and returns the first connection.
fn connect_any(addresses: &[SocketAddr], timeout: Duration) -> Result<TcpStream, Error> {
    let mut last_error = None;
    for address in addresses {
        trace!("connecting to {address}");
        match TcpStream::connect_timeout(address, timeout) {
            Ok(tcp) => return Ok(tcp),
            Err(error) => {
                debug!("connect to {address} failed: {error}");
                last_error = Some(error);
            }
        }
    }
    let source = last_error.unwrap_or_else(|| io::Error::other("no address to connect to"));
    Err(Error::network(Phase::Connect, source))
}

fn tls_handshake(
    tls: &native_tls::TlsConnector,
    host: &str,
    tcp: TcpStream,
    deadline: Instant,
) -> Result<native_tls::TlsStream<TcpStream>, Error> {
    set_timeout_until(&tcp, deadline, Phase::Tls)?;
    let mut attempt = tls.connect(host, tcp);
    loop {
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(native_tls::HandshakeError::Failure(error)) => {
                return Err(Error::Tls(error.to_string()));
            }
            Err(native_tls::HandshakeError::WouldBlock(partial)) => {
                set_timeout_until(partial.get_ref(), deadline, Phase::Tls)?;
                attempt = partial.handshake();
            }
        }
    }
}

fn websocket_handshake(
    base: &Endpoint,
    config: &Config,
    stream: MaybeTlsStream<TcpStream>,
    deadline: Instant,
) -> Result<Socket, Error> {
    let mut target = base.join(STREAMING_PATH);
    if let Some(first) = config.streams.first() {
        target.push('?');
        target.push_str(&first.query());
    }
    if config.token_in_query {
        target.push_str(if config.streams.is_empty() { "?" } else { "&" });
        target.push_str("access_token=");
        target.push_str(&crate::stream::percent_encode(config.token.expose()));
    }
    // The message names the base only: the target may contain the token.
    let uri: Uri = target
        .parse()
        .map_err(|_| Error::Config(format!("invalid streaming URL {base}")))?;
    let request = ClientRequestBuilder::new(uri)
        .with_header("Authorization", format!("Bearer {}", config.token.expose()))
        .with_header("User-Agent", crate::rest::USER_AGENT);
    let websocket_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));

    set_timeout_until(tcp_of(&stream), deadline, Phase::Handshake)?;
    let mut attempt =
        tungstenite::client::client_with_config(request, stream, Some(websocket_config));
    loop {
        match attempt {
            Ok((socket, response)) => {
                let request_id = response
                    .headers()
                    .get("x-request-id")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("none");
                debug!("handshake done, X-Request-Id {request_id}");
                return Ok(socket);
            }
            Err(HandshakeError::Interrupted(partial)) => {
                set_timeout_until(
                    tcp_of(partial.get_ref().get_ref()),
                    deadline,
                    Phase::Handshake,
                )?;
                attempt = partial.handshake();
            }
            Err(HandshakeError::Failure(error)) => return Err(handshake_failure(error)),
        }
    }
}

/// Sets the read timeout to the time left until `deadline`, or fails when it has passed.
fn set_timeout_until(tcp: &TcpStream, deadline: Instant, phase: Phase) -> Result<(), Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Timeout(phase));
    }
    tcp.set_read_timeout(Some(left))
        .map_err(|source| Error::network(phase, source))
}

/// Maps a failed handshake to an error. The token is never part of what the server returns
/// here: it travels in a request header, which servers do not echo.
fn handshake_failure(error: tungstenite::Error) -> Error {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let header = |name: &str| crate::rest::header_text(response.headers(), name);
            let message = header("x-error-message").or_else(|| {
                let body = response.body().as_deref().unwrap_or_default();
                quote_body(body)
            });
            match status {
                300..=399 => {
                    let location = header("location").map(|location| redact_token(&location));
                    Error::HandshakeStatus {
                        status,
                        message: Some(match location {
                            Some(location) => format!(
                                "redirected to {location}; mastotail does not follow \
                                 redirects with the token, so set --streaming-url if that \
                                 is the streaming server"
                            ),
                            None => "redirected without a Location".to_string(),
                        }),
                    }
                }
                401 | 403 => Error::Unauthorized { status, message },
                429 => Error::RateLimited {
                    wait: crate::rest::server_wait(response.headers()),
                },
                _ => Error::HandshakeStatus { status, message },
            }
        }
        tungstenite::Error::Io(source) => Error::network(Phase::Handshake, source),
        tungstenite::Error::Tls(error) => Error::Tls(error.to_string()),
        other => Error::Protocol(format!("WebSocket handshake failed: {other}")),
    }
}

/// Replaces the value of an `access_token` query parameter with `REDACTED`.
fn redact_token(url: &str) -> String {
    let Some((head, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|part| match part.split_once('=') {
            Some(("access_token", _)) => "access_token=REDACTED".to_string(),
            _ => part.to_string(),
        })
        .collect();
    format!("{head}?{}", parts.join("&"))
}

/// Returns the start of an error body as one printable line, or `None` when it is empty.
/// An HTML page from a proxy is reduced to its text.
fn quote_body(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let mut plain = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                plain.push(' ');
            }
            _ if in_tag => {}
            c if c.is_control() => plain.push(' '),
            c => plain.push(c),
        }
    }
    let words: Vec<&str> = plain.split_whitespace().collect();
    let line: String = words.join(" ").chars().take(MAX_QUOTED_BODY).collect();
    (!line.is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_token_in_urls() {
        assert_eq!(
            redact_token("wss://h/api/v1/streaming?stream=user&access_token=secret"),
            "wss://h/api/v1/streaming?stream=user&access_token=REDACTED"
        );
        assert_eq!(redact_token("wss://h/x"), "wss://h/x");
    }

    #[test]
    fn quotes_html_body_as_text() {
        let body =
            b"<html><head><title>502 Bad Gateway</title></head>\r\n<body>nginx</body></html>";
        assert_eq!(quote_body(body).unwrap(), "502 Bad Gateway nginx");
        assert_eq!(quote_body(b""), None);
        assert_eq!(quote_body(&[b'a'; 500]).unwrap().len(), MAX_QUOTED_BODY);
    }
}
