//! Catch-ups over REST: for each source, a walk forward from the cursor with `min_id`, one
//! page per step, so that the run loop reads the socket between requests.
//!
//! `min_id` returns the items right after the cursor (newest first within the page), so
//! walking page by page leaves no hole, unlike `since_id`, which returns the newest items and
//! skips the middle of a long gap.

use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use crate::config::Token;
use crate::dedupe::compare_ids;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::event::Event;
use crate::rest::Rest;
use crate::stream::{Source, percent_encode};

/// Failed requests of one page after which a walk gives up and lets live events through.
pub(crate) const MAX_PAGE_FAILURES: u32 = 5;

/// A running catch-up of one source.
#[derive(Debug)]
pub(crate) struct Walk {
    /// `min_id` of the next request: the newest id delivered or fetched so far.
    pub from: String,
    /// No earlier request has been made: the first page fixes a baseline when there is no
    /// cursor yet.
    pub baseline: bool,
    pub fetched: usize,
    pub requests: usize,
    pub due: Instant,
    pub failures: u32,
    /// The walk checks, on a timer, whether the open stream missed anything.
    pub reconcile: bool,
}

/// The result of one page request.
#[derive(Debug)]
pub(crate) enum PageOutcome {
    /// Events in delivery order (oldest first); `done` when this was the last page.
    Page {
        events: Vec<Event>,
        newest: Option<String>,
        done: bool,
    },
    /// Wait and request the same page again.
    RetryAfter { wait: Duration, reason: String },
    /// Stop this walk; the reason is worth a warning. `status` is the HTTP status that
    /// caused it, if any.
    GiveUp { reason: String, status: Option<u16> },
}

impl Walk {
    pub(crate) fn new(from: Option<String>, now: Instant) -> Walk {
        Walk {
            baseline: from.is_none(),
            from: from.unwrap_or_default(),
            fetched: 0,
            requests: 0,
            due: now,
            failures: 0,
            reconcile: false,
        }
    }
}

/// Requests the next page of `walk` and turns it into events. A walk without a cursor
/// requests the newest item only, to fix where later catch-ups start.
pub(crate) fn fetch_page(
    rest: &Rest,
    server: &Endpoint,
    token: &Token,
    source: &Source,
    stream_json: &str,
    walk: &Walk,
    retry_delay: Duration,
) -> PageOutcome {
    let (path, fixed_query) = source.endpoint();
    let limit = if walk.baseline {
        1
    } else {
        source.page_limit()
    };
    let mut query: Vec<String> = fixed_query
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    if !walk.baseline {
        query.push(format!("min_id={}", percent_encode(&walk.from)));
    }
    query.push(format!("limit={limit}"));
    let url = format!("{}?{}", server.join(&path), query.join("&"));

    let response = match rest.get(&url, Some(token)) {
        Ok(response) => response,
        Err(error @ (Error::Timeout(_) | Error::Network { .. } | Error::Protocol(_))) => {
            return PageOutcome::RetryAfter {
                wait: retry_delay,
                reason: error.to_string(),
            };
        }
        Err(error) => {
            return PageOutcome::GiveUp {
                reason: error.to_string(),
                status: None,
            };
        }
    };
    match response.status {
        200 => {}
        206 => {
            return PageOutcome::RetryAfter {
                wait: response.refresh_retry.unwrap_or(Duration::from_secs(5)),
                reason: format!("{path} is being rebuilt by the server (HTTP 206)"),
            };
        }
        429 => {
            return PageOutcome::RetryAfter {
                wait: response.wait.unwrap_or(retry_delay),
                reason: format!("{path} is rate limited (HTTP 429)"),
            };
        }
        status if status >= 500 => {
            return PageOutcome::RetryAfter {
                wait: retry_delay,
                reason: format!("{path} failed with HTTP {status}"),
            };
        }
        status => {
            return PageOutcome::GiveUp {
                reason: format!(
                    "{path} returned HTTP {status}; check that the token has the read scope \
                     for it"
                ),
                status: Some(status),
            };
        }
    }

    let items: Vec<&RawValue> = match serde_json::from_str(&response.body) {
        Ok(items) => items,
        Err(error) => {
            return PageOutcome::RetryAfter {
                wait: retry_delay,
                reason: format!("{path} returned a malformed page ({error})"),
            };
        }
    };
    page_events(source, stream_json, &items, walk.baseline, limit)
}

/// Turns a newest-first page into events in delivery order.
fn page_events(
    source: &Source,
    stream_json: &str,
    items: &[&RawValue],
    baseline: bool,
    limit: usize,
) -> PageOutcome {
    let mut events = Vec::with_capacity(items.len());
    let mut newest: Option<String> = None;
    for item in items.iter().rev() {
        let event = Event::from_backfill(stream_json.to_string(), source.event_name(), item);
        let Some(id) = event.cursor_id().map(str::to_string) else {
            return PageOutcome::RetryAfter {
                wait: Duration::from_secs(5),
                reason: format!("{} returned an item without an id", source.key()),
            };
        };
        if newest
            .as_deref()
            .is_none_or(|newest| compare_ids(&id, newest).is_gt())
        {
            newest = Some(id);
        }
        events.push(event);
    }
    if baseline {
        events.clear();
    }
    PageOutcome::Page {
        events,
        newest,
        done: baseline || items.len() < limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_reversed_and_newest_found() {
        let items: Vec<Box<RawValue>> = ["3", "2", "1"]
            .iter()
            .map(|id| RawValue::from_string(format!(r#"{{"id":"{id}"}}"#)).unwrap())
            .collect();
        let items: Vec<&RawValue> = items.iter().map(|item| item.as_ref()).collect();
        match page_events(&Source::Home, "[\"user\"]", &items, false, 40) {
            PageOutcome::Page {
                events,
                newest,
                done,
            } => {
                let ids: Vec<&str> = events.iter().map(|e| e.id().unwrap()).collect();
                assert_eq!(ids, vec!["1", "2", "3"]);
                assert_eq!(newest.as_deref(), Some("3"));
                assert!(done);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn conversations_use_last_status_id() {
        let item =
            RawValue::from_string(r#"{"id":"501","last_status":{"id":"90"}}"#.to_string()).unwrap();
        match page_events(&Source::Conversations, "[\"direct\"]", &[&item], false, 1) {
            PageOutcome::Page { newest, done, .. } => {
                assert_eq!(newest.as_deref(), Some("90"));
                assert!(!done);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
