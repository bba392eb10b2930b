//! The error type, and the one function that decides what each failure leads to:
//! a retry after a backoff, a wait until a time the server named, or the end of the run.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::state::StateError;

/// A failure of configuration, connection, protocol or local I/O.
///
/// Each variant's documentation says whether the run loop retries it; [`Error::disposition`]
/// is where that decision is made.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable: a bad server URL, no stream, an unknown stream name.
    /// Fatal before any network access.
    Config(String),
    /// The server rejected the access token with HTTP 401 or 403 on the WebSocket handshake,
    /// twice in a row. Fatal. `message` is the server's `X-Error-Message` header, if any.
    Unauthorized {
        status: u16,
        message: Option<String>,
    },
    /// The server rejected a subscription made at start with an error frame whose status is
    /// 4xx, for example a hashtag without a name or a list the token may not read. Fatal.
    SubscriptionRejected {
        stream: String,
        status: u16,
        message: String,
    },
    /// The server asked the client to slow down (HTTP 429). Retried after the wait it named,
    /// or after the normal backoff when it named none.
    RateLimited { wait: Option<Duration> },
    /// The handshake got an HTTP status other than 101 that is worth retrying (5xx, 404 from
    /// a proxy during a deploy, ...). Retried.
    HandshakeStatus {
        status: u16,
        message: Option<String>,
    },
    /// A phase did not finish in time: connect, TLS, handshake, a write, or the silence limit
    /// on an open connection. Retried.
    Timeout(Phase),
    /// The network failed: DNS, refused, reset, EOF, TLS. Retried.
    Network { phase: Phase, source: io::Error },
    /// The TLS library failed to set up or complete a session. Retried, because an expired
    /// certificate or a proxy in the way may be fixed by the operator.
    Tls(String),
    /// The WebSocket protocol failed: a close frame, invalid UTF-8, an oversized message, a
    /// protocol violation. Retried.
    Protocol(String),
    /// The state file is locked by another process, unreadable or corrupt. Fatal.
    State(StateError),
    /// Writing the events failed (other than a closed stdout, which ends the run quietly).
    /// Fatal.
    Output(io::Error),
    /// A `--catch-up` run could not fetch every missed item. Fatal, so that a cron job
    /// notices. The cursors of what was printed are saved, so the next run resumes there.
    CatchUpIncomplete(String),
}

/// The step that was running when a network failure or a timeout happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Resolve,
    Connect,
    Tls,
    Handshake,
    Read,
    Write,
    Silence,
    Request,
}

/// The run loop's next step after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Reconnect after the next backoff delay.
    Retry,
    /// Reconnect after this wait, which the server named.
    RetryAfter(Duration),
    /// Reconnect once more to confirm; stop if the same rejection comes again.
    Confirm,
    /// Stop the run with this error.
    Fatal,
}

/// Exit statuses of the `mastotail` command. They are an interface for shell scripts and are
/// kept stable.
pub mod exit {
    /// The run ended normally: stdout was closed, `--count` was reached, or a catch-up finished.
    pub const OK: i32 = 0;
    /// An unexpected local failure, such as a failed write to stdout.
    pub const FAILURE: i32 = 1;
    /// A command-line error: unknown flag, missing server or token, unknown stream name.
    pub const USAGE: i32 = 2;
    /// The server rejected the access token (HTTP 401 or 403).
    pub const UNAUTHORIZED: i32 = 3;
    /// The server rejected a subscription made at start (an error frame with a 4xx status).
    pub const SUBSCRIPTION_REJECTED: i32 = 4;
    /// The state file is locked by another process, unreadable or corrupt.
    pub const STATE: i32 = 5;
    /// A `--catch-up` could not fetch everything that was missed; run it again later.
    pub const CATCH_UP_INCOMPLETE: i32 = 6;
}

impl Error {
    /// Decides what the run loop does after this error.
    pub fn disposition(&self) -> Disposition {
        match self {
            Error::Config(_)
            | Error::SubscriptionRejected { .. }
            | Error::State(_)
            | Error::Output(_)
            | Error::CatchUpIncomplete(_) => Disposition::Fatal,
            Error::Unauthorized { .. } => Disposition::Confirm,
            Error::RateLimited { wait: Some(wait) } => Disposition::RetryAfter(*wait),
            Error::RateLimited { wait: None }
            | Error::HandshakeStatus { .. }
            | Error::Timeout(_)
            | Error::Network { .. }
            | Error::Tls(_)
            | Error::Protocol(_) => Disposition::Retry,
        }
    }

    /// Returns the `mastotail` exit status for this error when it ends the run.
    pub fn exit_status(&self) -> i32 {
        match self {
            Error::Config(_) => exit::USAGE,
            Error::Unauthorized { .. } => exit::UNAUTHORIZED,
            Error::SubscriptionRejected { .. } => exit::SUBSCRIPTION_REJECTED,
            Error::State(_) => exit::STATE,
            Error::CatchUpIncomplete(_) => exit::CATCH_UP_INCOMPLETE,
            _ => exit::FAILURE,
        }
    }

    pub(crate) fn network(phase: Phase, source: io::Error) -> Error {
        if matches!(
            source.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            Error::Timeout(phase)
        } else {
            Error::Network { phase, source }
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Resolve => "DNS lookup",
            Phase::Connect => "TCP connect",
            Phase::Tls => "TLS handshake",
            Phase::Handshake => "WebSocket handshake",
            Phase::Read => "read",
            Phase::Write => "write",
            Phase::Silence => "silence limit",
            Phase::Request => "REST request",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(message) => f.write_str(message),
            Error::Unauthorized { status, message } => {
                write!(f, "the server rejected the access token (HTTP {status}")?;
                if let Some(message) = message {
                    write!(f, ": {message:?}")?;
                }
                f.write_str("); check MASTODON_TOKEN or --token-file and the token's scopes")
            }
            Error::SubscriptionRejected {
                stream,
                status,
                message,
            } => write!(
                f,
                "the server rejected the subscription to {stream:?} (status {status}): {message:?}"
            ),
            Error::RateLimited { wait: Some(wait) } => {
                write!(
                    f,
                    "rate limited by the server for {:.1} s",
                    wait.as_secs_f64()
                )
            }
            Error::RateLimited { wait: None } => f.write_str("rate limited by the server"),
            Error::HandshakeStatus { status, message } => {
                write!(f, "WebSocket handshake failed with HTTP {status}")?;
                match message {
                    Some(message) => write!(f, ": {message:?}"),
                    None => Ok(()),
                }
            }
            Error::Timeout(Phase::Silence) => {
                f.write_str("no frame from the server within --silence-timeout")
            }
            Error::Timeout(phase) => write!(f, "{phase} timed out"),
            Error::Network { phase, source } => write!(f, "{phase} failed: {source}"),
            Error::Tls(message) => write!(f, "TLS failed: {message}"),
            Error::Protocol(message) => f.write_str(message),
            Error::State(error) => error.fmt(f),
            Error::Output(error) => write!(f, "writing events failed: {error}"),
            Error::CatchUpIncomplete(message) => {
                write!(f, "{message}; run --catch-up again later")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Network { source, .. } => Some(source),
            Error::State(error) => Some(error),
            Error::Output(error) => Some(error),
            _ => None,
        }
    }
}

impl From<StateError> for Error {
    fn from(error: StateError) -> Error {
        Error::State(error)
    }
}
