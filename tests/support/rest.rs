//! Timelines of the fake REST API: which paths are timelines, and Mastodon-style paging with
//! `limit`, `max_id`, `since_id`, `min_id` and the `Link` header.

use std::cmp::Ordering;

use serde_json::Value;

use super::http::percent_encode;

pub const HOME_PATH: &str = "/api/v1/timelines/home";
pub const NOTIFICATIONS_PATH: &str = "/api/v1/notifications";
pub const CONVERSATIONS_PATH: &str = "/api/v1/conversations";

/// Default `limit` when the request has none, as on Mastodon's timeline endpoints.
pub const DEFAULT_LIMIT: usize = 20;

/// Query parameters copied into the `Link` URLs. Mastodon keeps an allow-list of parameters
/// such as `limit` and `local` there. Others, such as `types[]`, are left out here.
const KEPT_LINK_PARAMS: [&str; 4] = ["limit", "local", "only_media", "remote"];

/// Returns whether `path` is served as a timeline even when no items were added to it.
pub fn is_standard_timeline(path: &str) -> bool {
    let has_name = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|name| !name.is_empty() && !name.contains('/'))
    };
    matches!(
        path,
        HOME_PATH | NOTIFICATIONS_PATH | CONVERSATIONS_PATH | "/api/v1/timelines/public"
    ) || has_name("/api/v1/timelines/tag/")
        || has_name("/api/v1/timelines/list/")
}

/// Returns the max `limit` honoured by default: 80 for notifications, 40 elsewhere.
pub fn default_page_max(path: &str) -> usize {
    if path == NOTIFICATIONS_PATH { 80 } else { 40 }
}

/// Returns the paging cursor of an item: `last_status.id` for conversations, `id` elsewhere.
pub fn cursor_of<'a>(path: &str, item: &'a Value) -> Option<&'a str> {
    if path == CONVERSATIONS_PATH {
        item.get("last_status")?.get("id")?.as_str()
    } else {
        item.get("id")?.as_str()
    }
}

/// Orders Mastodon ids: numeric strings of different lengths compare by length first.
pub fn compare_ids(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Inserts items into a timeline kept oldest first. An item whose cursor equals an existing
/// one goes after it. Panics when an item has no string cursor, naming the item.
pub fn insert_items(path: &str, timeline: &mut Vec<Value>, items: Vec<Value>) {
    for item in items {
        let Some(cursor) = cursor_of(path, &item).map(str::to_string) else {
            panic!(
                "fake server: item for {path} has no string cursor (id or last_status.id): {item}"
            );
        };
        let position = timeline.partition_point(|existing| {
            let existing_cursor = cursor_of(path, existing).unwrap_or_default();
            compare_ids(existing_cursor, &cursor) != Ordering::Greater
        });
        timeline.insert(position, item);
    }
}

/// Parses `limit`: absent means the default, otherwise the leading integer of the value (0
/// when there is none), made positive and capped at `max`.
pub fn parse_limit(raw: Option<&str>, max: usize) -> usize {
    let Some(raw) = raw else {
        return DEFAULT_LIMIT.min(max);
    };
    let digits: String = raw
        .trim_start_matches(['+', '-'])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse::<usize>().unwrap_or(0).min(max)
}

/// A page request's cursors.
#[derive(Clone, Debug, Default)]
pub struct PageQuery {
    pub limit: usize,
    pub max_id: Option<String>,
    pub since_id: Option<String>,
    pub min_id: Option<String>,
}

/// Selects a page from a timeline kept oldest first, and returns it newest first.
///
/// Every given cursor bounds the page (`max_id` exclusive from above, `since_id` and `min_id`
/// exclusive from below). With `min_id`, the page is the `limit` items right after it;
/// otherwise it is the newest `limit` items within the bounds.
pub fn select_page(path: &str, timeline: &[Value], query: &PageQuery) -> Vec<Value> {
    let within_bounds = |item: &&Value| {
        let cursor = cursor_of(path, item).unwrap_or_default();
        let below = |bound: &Option<String>| {
            bound
                .as_deref()
                .is_none_or(|bound| compare_ids(cursor, bound) == Ordering::Less)
        };
        let above = |bound: &Option<String>| {
            bound
                .as_deref()
                .is_none_or(|bound| compare_ids(cursor, bound) == Ordering::Greater)
        };
        below(&query.max_id) && above(&query.since_id) && above(&query.min_id)
    };

    let matching: Vec<&Value> = timeline.iter().filter(within_bounds).collect();
    let selected: Vec<&Value> = if query.min_id.is_some() {
        matching.into_iter().take(query.limit).collect()
    } else {
        let skip = matching.len().saturating_sub(query.limit);
        matching.into_iter().skip(skip).collect()
    };
    selected.into_iter().rev().cloned().collect()
}

/// Builds the `Link` header for a non-empty page, or `None` for an empty one.
///
/// `next` points below the oldest item (`max_id`) and `prev` above the newest (`min_id`). For
/// conversations `next` is only given when the page is full, as Mastodon does.
pub fn link_header(
    base_url: &str,
    path: &str,
    request_query: &[(String, String)],
    page: &[Value],
    limit: usize,
) -> Option<String> {
    let newest = cursor_of(path, page.first()?)?;
    let oldest = cursor_of(path, page.last()?)?;
    let kept: Vec<(String, String)> = request_query
        .iter()
        .filter(|(key, _)| KEPT_LINK_PARAMS.contains(&key.as_str()))
        .cloned()
        .collect();
    let url = |cursor_name: &str, cursor: &str| {
        let mut params = kept.clone();
        params.push((cursor_name.to_string(), cursor.to_string()));
        // NOTE: sorting by name assumes Rails URL helpers sort query parameters, which was
        // not checked against a live server.
        params.sort();
        let query: Vec<String> = params
            .iter()
            .map(|(key, value)| format!("{}={}", percent_encode(key), percent_encode(value)))
            .collect();
        format!("{base_url}{path}?{}", query.join("&"))
    };

    let prev = format!("<{}>; rel=\"prev\"", url("min_id", newest));
    let has_next = path != CONVERSATIONS_PATH || page.len() >= limit;
    if has_next {
        let next = format!("<{}>; rel=\"next\"", url("max_id", oldest));
        Some(format!("{next}, {prev}"))
    } else {
        Some(prev)
    }
}
