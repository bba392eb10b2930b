//! mastotail follows a Mastodon account's streaming API over one WebSocket and hands every
//! event over exactly once: it notices dead connections, reconnects with backoff, fills the
//! gaps over REST, drops duplicates, and can keep its place in a state file across restarts.
//!
//! Everything runs on the calling thread, on blocking sockets with timeouts.
//!
//! ```no_run
//! use mastotail::{Config, Endpoint, Stream, Tail, Token};
//!
//! let server = Endpoint::parse("mastodon.example")?;
//! let token = Token::new(&std::env::var("MASTODON_TOKEN")?);
//! let config = Config::new(server, token, vec![Stream::User, "hashtag:rust".parse()?]);
//! for event in Tail::new(config)? {
//!     let event = event?;
//!     if event.name() == "notification" && event.notification_type() == Some("mention") {
//!         println!("mentioned: {}", event.payload_value()["status"]["url"]);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Tail`] is the iterator; [`Config`] holds the settings with their defaults; [`Event`]
//! gives the event name, the stream, the payload and the JSON line mastotail prints.

mod backfill;
mod backoff;
mod config;
mod connection;
pub mod dedupe;
mod discovery;
mod endpoint;
mod error;
mod event;
pub mod hook;
mod notice;
pub mod ratelimit;
mod rest;
pub mod state;
mod stream;
mod tail;
pub mod text;

pub use config::{Config, Token};
pub use endpoint::Endpoint;
pub use error::{Disposition, Error, Phase, exit};
pub use event::{Event, Frame, Payload, decode_frame};
pub use notice::Notice;
pub use stream::{PublicScope, Source, Stream, UnknownStream};
pub use tail::{Poll, Tail};
