//! Test support shared by the integration tests: a fake Mastodon server and a test deadline.
//!
//! Each test crate includes this module with `mod support;` and uses only part of it.
#![allow(dead_code)]

pub mod deadline;
pub mod fake_mastodon;
mod http;
mod rest;
mod ws;
mod ws_conn;

// Not every test crate uses every item.
#[allow(unused_imports)]
pub use deadline::with_deadline;
#[allow(unused_imports)]
pub use fake_mastodon::{ConnRecord, FakeServer, RequestRecord, RestFault, Step};
