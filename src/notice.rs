//! Notices: what the run loop reports about its connection and its catch-ups, for the program
//! that embeds it to show. The library itself logs only at debug and trace level.

use std::fmt;
use std::time::Duration;

/// Something worth telling a person about, reported through [`crate::Tail::on_notice`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Notice {
    /// The WebSocket is open and every subscription was sent.
    Connected { url: String, streams: usize },
    /// An open connection was lost, or an attempt to open one failed; a new attempt follows
    /// after `delay`.
    Retrying {
        reason: String,
        delay: Duration,
        /// Failed attempts since the last healthy connection, from 1.
        attempt: u32,
        was_connected: bool,
    },
    /// Something went wrong that the run survives, such as an error frame from the server or
    /// a malformed REST page.
    Warning(String),
    /// A catch-up of one source over REST finished.
    BackfillDone {
        source: String,
        events: usize,
        requests: usize,
    },
}

impl Notice {
    /// Returns true for notices that report a problem rather than progress.
    pub fn is_warning(&self) -> bool {
        matches!(self, Notice::Retrying { .. } | Notice::Warning(_))
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Connected { url, streams } => {
                let plural = if *streams == 1 { "" } else { "s" };
                write!(
                    f,
                    "connected to {url}, subscribed to {streams} stream{plural}"
                )
            }
            Notice::Retrying {
                reason,
                delay,
                attempt,
                was_connected,
            } => {
                let what = if *was_connected {
                    "disconnected"
                } else {
                    "connection failed"
                };
                write!(
                    f,
                    "{what}: {reason}; reconnecting in {:.2} s (attempt {attempt})",
                    delay.as_secs_f64()
                )
            }
            Notice::Warning(message) => f.write_str(message),
            Notice::BackfillDone {
                source,
                events,
                requests,
            } => {
                let plural = |n: &usize| if *n == 1 { "" } else { "s" };
                write!(
                    f,
                    "caught up on {source}: {events} missed event{} in {requests} request{}",
                    plural(events),
                    plural(requests)
                )
            }
        }
    }
}
