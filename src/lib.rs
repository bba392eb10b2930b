//! mastotail: follow a Mastodon streaming connection and hand every event over exactly once.

pub mod dedupe;
pub mod hook;
pub mod ratelimit;
pub mod state;
pub mod text;
