//! Settings of a run, with their defaults, and the access token wrapper that never prints.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::stream::Stream;

/// An access token. `Debug` and `Display` print `[redacted]`, so the token cannot reach a log
/// line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token, trimming surrounding white space such as a token file's final newline.
    pub fn new(token: &str) -> Token {
        Token(token.trim().to_string())
    }

    /// Returns the token for the `Authorization` header. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Returns true when the token is empty or contains characters that cannot be sent in an
    /// HTTP header.
    pub fn is_invalid(&self) -> bool {
        self.0.is_empty() || self.0.bytes().any(|b| !(0x21..0x7f).contains(&b))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Everything a run needs. Build one with [`Config::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Mastodon server for REST calls and discovery.
    pub server: Endpoint,
    pub token: Token,
    /// The streams to subscribe to, all on one WebSocket.
    pub streams: Vec<Stream>,
    /// The streaming base URL; `None` discovers it from the instance endpoints.
    pub streaming_url: Option<Endpoint>,
    /// Allow the token over plain `ws://` and `http://` to a non-loopback host.
    pub allow_insecure: bool,
    /// Also send the token as the `access_token` query parameter of the WebSocket URL, for
    /// servers that ignore the `Authorization` header (Pleroma, Akkoma, Iceshrimp). Query
    /// strings end up in server logs, so this is off by default.
    pub token_in_query: bool,
    /// Extra trusted root certificates (PEM), for servers with a private certificate authority.
    pub ca_file: Option<PathBuf>,
    /// Time allowed for each TCP connect attempt, per resolved address. Default 10 s.
    pub connect_timeout: Duration,
    /// Time allowed for the TLS and WebSocket handshakes together. Default 10 s.
    pub handshake_timeout: Duration,
    /// Time allowed for one REST request, well under Mastodon's 30 s ping interval so that the
    /// socket is read again in time. Default 10 s.
    pub request_timeout: Duration,
    /// Time allowed for a blocked write to the socket before the connection counts as dead.
    /// Default 10 s.
    pub write_timeout: Duration,
    /// Interval between the pings mastotail sends; zero sends none. Default 15 s.
    pub ping_interval: Duration,
    /// Time without any frame from the server after which the connection counts as dead.
    /// With pings every 15 s, a healthy server sends a pong well within it. Default 45 s.
    pub silence_timeout: Duration,
    /// First reconnect delay ceiling. Default 1 s.
    pub backoff_initial: Duration,
    /// Growth factor of the delay ceiling per failed attempt. Default 2.
    pub backoff_factor: f64,
    /// Largest reconnect delay ceiling. Default 60 s.
    pub backoff_max: Duration,
    /// Seed for the reconnect jitter, for reproducible tests; `None` seeds from the clock.
    pub backoff_seed: Option<u64>,
    /// Largest WebSocket message accepted. Default 16 MiB; Mastodon's largest statuses are
    /// well under 1 MiB.
    pub max_message_size: usize,
    /// State file that keeps the cursors across restarts.
    pub state_file: Option<PathBuf>,
    /// Fill gaps over REST after reconnects and restarts. Default on.
    pub backfill: bool,
    /// Most items one catch-up of one source prints. Default 800, the size of Mastodon's home
    /// feed.
    pub backfill_max: usize,
    /// Number of recent event keys remembered for deduplication. Default 10,000.
    pub dedupe_capacity: usize,
    /// Most events waiting for a slow consumer. Past it, live events that a catch-up can
    /// fetch again are dropped, and their sources catch up from their cursors once the
    /// consumer has taken the queue down to half, so memory stays bounded. Default 2,000.
    pub max_queue: usize,
    /// Interval of catch-ups over REST while the stream is open, which find events a server
    /// that stopped routing them never sent. `None` runs catch-ups only after reconnects.
    pub reconcile_interval: Option<Duration>,
    /// Decode and validate every payload. A program that only prints the frames as received
    /// may turn this off: `update` and `notification` payloads are then read only as far as
    /// their `id` and `type`, which saved about a quarter of the CPU time per event in the
    /// firehose benchmark. Default on.
    pub check_payloads: bool,
    /// Stop after the catch-up from the state file instead of following the stream.
    pub catch_up_only: bool,
}

impl Config {
    /// Creates a configuration with the defaults documented on each field.
    pub fn new(server: Endpoint, token: Token, streams: Vec<Stream>) -> Config {
        Config {
            server,
            token,
            streams,
            streaming_url: None,
            allow_insecure: false,
            token_in_query: false,
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            silence_timeout: Duration::from_secs(45),
            backoff_initial: Duration::from_secs(1),
            backoff_factor: 2.0,
            backoff_max: Duration::from_secs(60),
            backoff_seed: None,
            max_message_size: 16 << 20,
            state_file: None,
            backfill: true,
            backfill_max: 800,
            dedupe_capacity: 10_000,
            max_queue: 2_000,
            reconcile_interval: None,
            check_payloads: true,
            catch_up_only: false,
        }
    }

    /// Checks the settings that can be checked without the network.
    pub fn validate(&self) -> Result<(), Error> {
        if self.streams.is_empty() {
            return Err(Error::Config(
                "no stream given; name at least one, for example: user".to_string(),
            ));
        }
        if self.token.is_invalid() {
            return Err(Error::Config(
                "the access token is empty or contains characters other than printable ASCII"
                    .to_string(),
            ));
        }
        self.server
            .check_token_transport(self.allow_insecure)
            .map_err(Error::Config)?;
        if let Some(url) = &self.streaming_url {
            url.check_token_transport(self.allow_insecure)
                .map_err(Error::Config)?;
        }
        if self.silence_timeout.is_zero() {
            return Err(Error::Config(
                "--silence-timeout must be greater than zero".to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_prints() {
        let token = Token::new("secret-value\n");
        assert_eq!(token.expose(), "secret-value");
        assert_eq!(format!("{token} {token:?}"), "[redacted] [redacted]");
        let config = Config::new(
            Endpoint::parse("mastodon.example").unwrap(),
            token,
            vec![Stream::User],
        );
        assert!(!format!("{config:?}").contains("secret-value"));
    }

    #[test]
    fn rejects_token_with_spaces() {
        assert!(Token::new("a b").is_invalid());
        assert!(Token::new("").is_invalid());
        assert!(!Token::new("abc-DEF_123").is_invalid());
    }
}
