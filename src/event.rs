//! Events: decoding the streaming server's frames, and writing each event as one JSON line.
//!
//! Mastodon sends `{"stream":[...],"event":"...","payload":"<string>"}` where the payload of
//! statuses, notifications and conversations is JSON encoded a second time inside the string.
//! The payload string is decoded once and validated without building a tree, so output costs
//! little more than a copy.

use std::fmt;
use std::io::{self, Write};

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use tungstenite::Utf8Bytes;

/// One event from a stream or from a backfill page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `stream` array as JSON text, for example `["hashtag","rust"]`; `[]` when absent.
    stream_json: String,
    name: String,
    payload: Payload,
    backfill: bool,
    /// The frame exactly as received, shared with the socket's buffer rather than copied;
    /// `None` for events built from a REST page.
    frame: Option<Utf8Bytes>,
    meta: Meta,
}

/// An event's payload after the one decoding step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// JSON text of an object, an array, a number or a boolean, validated.
    Json(String),
    /// A payload string that does not hold a JSON object or array, such as the status id of a
    /// `delete`. Kept byte for byte.
    Text(String),
    /// No payload, or `null`.
    None,
}

/// Fields read from the payload for deduplication and cursors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Meta {
    id: Option<String>,
    /// `edited_at` of a status or `updated_at` of an announcement: a new version of an item
    /// with an id already seen is a new event.
    version: Option<String>,
    notification_type: Option<String>,
    /// `last_status.id` of a conversation, which is what conversations are paged by.
    last_status_id: Option<String>,
}

/// A decoded text frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Event(Event),
    /// `{"error":"...","status":N}`: the server rejected a subscription or had a problem.
    Error {
        message: String,
        status: Option<u16>,
    },
    /// An empty text frame, which some servers send as a heartbeat.
    Empty,
    /// Valid JSON that is neither an event nor an error, such as an event without a name.
    Ignored(String),
    /// Text that is not JSON.
    Invalid(String),
}

impl Event {
    /// Builds an event from a backfilled REST item. `stream_json` is the stream array the live
    /// stream would have used and `item` the item's JSON text, which must already be valid.
    pub(crate) fn from_backfill(stream_json: String, name: &str, item: &RawValue) -> Event {
        let mut event = Event {
            stream_json,
            name: name.to_string(),
            payload: Payload::None,
            backfill: true,
            frame: None,
            meta: Meta::default(),
        };
        event.set_json_payload(item.get().to_string());
        event
    }

    /// Returns the event name, such as `update`, `notification` or `delete`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the `stream` array, such as `["user"]` or `["hashtag","rust"]`.
    pub fn stream(&self) -> Vec<String> {
        serde_json::from_str(&self.stream_json).unwrap_or_default()
    }

    /// Returns the `stream` array as the JSON text it arrived as.
    pub(crate) fn stream_json(&self) -> &str {
        &self.stream_json
    }

    /// Returns the payload after its one decoding step.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// Parses the payload into a `serde_json::Value`: objects and arrays as they are, a text
    /// payload as a JSON string, no payload as `null`.
    pub fn payload_value(&self) -> serde_json::Value {
        match &self.payload {
            Payload::Json(text) => serde_json::from_str(text).unwrap_or_default(),
            Payload::Text(text) => serde_json::Value::String(text.clone()),
            Payload::None => serde_json::Value::Null,
        }
    }

    /// Returns true for events that came from a REST page rather than the live stream.
    pub fn is_backfill(&self) -> bool {
        self.backfill
    }

    /// Returns the frame exactly as the server sent it; `None` for backfilled events.
    pub fn frame(&self) -> Option<&str> {
        self.frame.as_ref().map(Utf8Bytes::as_str)
    }

    /// Returns the id of the status, notification or conversation, or the id a `delete` or
    /// `announcement.delete` names.
    pub fn id(&self) -> Option<&str> {
        self.meta.id.as_deref()
    }

    /// Returns the `type` of a notification, such as `mention`.
    pub fn notification_type(&self) -> Option<&str> {
        self.meta.notification_type.as_deref()
    }

    /// Returns the id a REST cursor for this event's source advances to: the item id, or for a
    /// conversation the id of its last status.
    pub fn cursor_id(&self) -> Option<&str> {
        match self.name.as_str() {
            "conversation" => self.meta.last_status_id.as_deref(),
            _ => self.meta.id.as_deref(),
        }
    }

    /// Returns the key under which two copies of one event are recognized as the same, or
    /// `None` for events that carry no id and are never suppressed.
    pub fn dedupe_key(&self) -> Option<String> {
        let id = self.meta.id.as_deref()?;
        if self.name == "notifications_merged" {
            return None;
        }
        let mut key = format!("{}\u{0}{id}", self.name);
        for part in [&self.meta.version, &self.meta.last_status_id]
            .into_iter()
            .flatten()
        {
            key.push('\u{0}');
            key.push_str(part);
        }
        Some(key)
    }

    /// Writes the event as one JSON object followed by a newline:
    /// `{"stream":[...],"event":"...","payload":...}`, with `"backfill":true` appended for
    /// backfilled events.
    pub fn write_json_line(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(b"{\"stream\":")?;
        out.write_all(self.stream_json.as_bytes())?;
        out.write_all(b",\"event\":")?;
        serde_json::to_writer(&mut *out, &self.name)?;
        out.write_all(b",\"payload\":")?;
        match &self.payload {
            Payload::Json(text) => out.write_all(text.as_bytes())?,
            Payload::Text(text) => serde_json::to_writer(&mut *out, text)?,
            Payload::None => out.write_all(b"null")?,
        }
        if self.backfill {
            out.write_all(b",\"backfill\":true")?;
        }
        out.write_all(b"}\n")
    }

    /// Returns the event as one JSON line, newline included.
    pub fn to_json_line(&self) -> String {
        let mut line = Vec::with_capacity(self.frame().map_or(256, |f| f.len() + 64));
        self.write_json_line(&mut line)
            .expect("writing to a Vec does not fail");
        String::from_utf8(line).expect("JSON output is UTF-8")
    }

    fn set_json_payload(&mut self, text: String) {
        self.meta = read_meta(&text).unwrap_or_default();
        self.payload = Payload::Json(text);
    }
}

/// Decodes one text frame. Never fails: what is not an event comes back as another variant.
pub fn decode_frame(text: &str) -> Frame {
    decode_message(Utf8Bytes::from(text.to_string()), true)
}

/// Decodes a text message as received from tungstenite, keeping it without a copy.
///
/// With `check_payload` off, the payload of `update` and `notification` events is read only
/// as far as its `id` (and `type`), which Mastodon sends first, and is not validated. Only a
/// caller that never prints the decoded payload, such as the raw output format, turns it off.
pub(crate) fn decode_message(message: Utf8Bytes, check_payload: bool) -> Frame {
    let text = message.as_str();
    if text.trim().is_empty() {
        return Frame::Empty;
    }
    let fields = match serde_json::from_str::<Envelope>(text) {
        Ok(fields) => fields,
        Err(_) => match serde_json::from_str::<RawEnvelope>(text) {
            Ok(fields) => fields.0,
            Err(error) => return decode_unusual_frame(text, error),
        },
    };
    if let Some(error) = fields.error {
        let message =
            serde_json::from_str::<String>(error.get()).unwrap_or_else(|_| error.get().to_string());
        let status = fields
            .status
            .and_then(|status| status.get().parse::<u16>().ok());
        return Frame::Error { message, status };
    }
    let Some(name) = fields
        .event
        .and_then(|name| serde_json::from_str::<String>(name.get()).ok())
    else {
        return Frame::Ignored("a frame without an event name".to_string());
    };
    let stream_json = match fields.stream {
        Some(stream) if stream.get().starts_with('[') => stream.get().to_string(),
        Some(stream) if stream.get().starts_with('"') => format!("[{}]", stream.get()),
        _ => "[]".to_string(),
    };
    let mut event = Event {
        stream_json,
        name,
        payload: Payload::None,
        backfill: false,
        frame: None,
        meta: Meta::default(),
    };
    if let Some(payload) = fields.payload {
        decode_payload(&mut event, payload, check_payload);
    }
    event.frame = Some(message.clone());
    Frame::Event(event)
}

/// The top-level fields of a frame, borrowed from its text. Other fields are skipped.
#[derive(Default)]
struct Envelope<'a> {
    stream: Option<&'a RawValue>,
    event: Option<&'a RawValue>,
    payload: Option<PayloadField<'a>>,
    error: Option<&'a RawValue>,
    status: Option<&'a RawValue>,
}

/// A frame's `payload` as read in the envelope's one pass. Mastodon's payload is a string,
/// which is decoded right there; any other value keeps its raw text.
enum PayloadField<'a> {
    String(String),
    Raw(&'a RawValue),
}

impl<'de> de::Deserialize<'de> for PayloadField<'de> {
    /// Reads a string payload in the same pass as the envelope, so the long payload string
    /// is scanned once instead of being skipped first and decoded afterwards.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_string(PayloadVisitor)
    }
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = PayloadField<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<PayloadField<'de>, E> {
        Ok(PayloadField::String(text.to_string()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<PayloadField<'de>, E> {
        Ok(PayloadField::String(text))
    }
}

impl<'de> de::Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor { raw_payload: false })
    }
}

/// An envelope whose payload is kept as raw text whatever its type: the second try for
/// frames whose payload is not a string.
struct RawEnvelope<'a>(Envelope<'a>);

impl<'de> de::Deserialize<'de> for RawEnvelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(EnvelopeVisitor { raw_payload: true })
            .map(RawEnvelope)
    }
}

struct EnvelopeVisitor {
    raw_payload: bool,
}

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    /// Reads keys as borrowed strings, so a key with escapes fails here and the frame
    /// takes the slower path in `decode_unusual_frame`.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut envelope = Envelope::default();
        while let Some(key) = map.next_key::<&str>()? {
            let slot = match key {
                "stream" => &mut envelope.stream,
                "event" => &mut envelope.event,
                "payload" if self.raw_payload => {
                    envelope.payload = Some(PayloadField::Raw(map.next_value()?));
                    continue;
                }
                "payload" => {
                    envelope.payload = map.next_value::<Option<PayloadField>>()?;
                    continue;
                }
                "error" => &mut envelope.error,
                "status" => &mut envelope.status,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(envelope)
    }
}

/// Sets the payload. A string is kept as JSON when it contains a valid JSON object or array,
/// and as a string otherwise. Any other value is kept as it is.
fn decode_payload(event: &mut Event, payload: PayloadField, check: bool) {
    let text = match payload {
        PayloadField::String(text) => text,
        PayloadField::Raw(raw) if raw.get() == "null" => return,
        PayloadField::Raw(raw) => return event.set_json_payload(raw.get().to_string()),
    };
    let trimmed = text.trim_start();
    let needs_type = match event.name.as_str() {
        "update" => Some(false),
        "notification" => Some(true),
        _ => None,
    };
    let meta = match needs_type {
        Some(needs_type) if !check && trimmed.starts_with('{') => {
            read_meta_prefix(&text, needs_type).or_else(|| read_meta(&text))
        }
        _ if trimmed.starts_with('{') || trimmed.starts_with('[') => read_meta(&text),
        _ => None,
    };
    if let Some(meta) = meta {
        event.meta = meta;
        event.payload = Payload::Json(text);
    } else {
        if matches!(event.name.as_str(), "delete" | "announcement.delete") {
            event.meta.id = Some(text.clone());
        }
        event.payload = Payload::Text(text);
    }
}

/// Handles frames the fast path could not read as an object of plain keys: an object whose
/// keys contain escapes, JSON that is not an object, or text that is not JSON at all.
fn decode_unusual_frame(text: &str, error: serde_json::Error) -> Frame {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => {
            // Re-encoding normalizes the escaped keys, so the fast path can read it.
            let normalized = serde_json::Value::Object(map).to_string();
            match decode_frame(&normalized) {
                Frame::Event(mut event) => {
                    event.frame = Some(Utf8Bytes::from(text.to_string()));
                    Frame::Event(event)
                }
                other => other,
            }
        }
        Ok(_) => Frame::Ignored("a frame that is not a JSON object".to_string()),
        Err(_) => Frame::Invalid(format!("frame is not JSON: {error}")),
    }
}

/// Reads the top-level fields that deduplication and cursors need, validating the whole
/// text in the same pass. Returns `None` for text that is not valid JSON; a valid array or
/// scalar gives empty fields.
fn read_meta(text: &str) -> Option<Meta> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return serde_json::from_str::<IgnoredAny>(text)
            .ok()
            .map(|_| Meta::default());
    }
    match serde_json::from_str::<MetaFields>(text) {
        Ok(fields) => Some(fields.0),
        // Keys with escapes cannot be borrowed; such text is rare enough for a tree.
        Err(_) => {
            let value: serde_json::Value = serde_json::from_str(text).ok()?;
            let normalized = value.to_string();
            serde_json::from_str::<MetaFields>(&normalized)
                .ok()
                .map(|fields| fields.0)
        }
    }
}

/// Reads `id`, and `type` when `needs_type`, from the start of an object and stops there,
/// without reading or validating the rest. Returns `None` when they are not found.
fn read_meta_prefix(text: &str, needs_type: bool) -> Option<Meta> {
    let mut meta = Meta::default();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    // The visitor stops the parse with an error once it has what it needs, so the outcome
    // depends on whether the fields were found, not on the result.
    let _ = deserializer.deserialize_map(PrefixVisitor {
        meta: &mut meta,
        needs_type,
    });
    let complete = meta.id.is_some() && (!needs_type || meta.notification_type.is_some());
    complete.then_some(meta)
}

struct PrefixVisitor<'m> {
    meta: &'m mut Meta,
    needs_type: bool,
}

impl<'de> Visitor<'de> for PrefixVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<&str>()? {
            match key {
                "id" => self.meta.id = json_id(map.next_value()?),
                "type" => self.meta.notification_type = json_id(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            let has_type = !self.needs_type || self.meta.notification_type.is_some();
            if self.meta.id.is_some() && has_type {
                return Err(de::Error::custom("found the fields"));
            }
        }
        Ok(())
    }
}

struct MetaFields(Meta);

impl<'de> de::Deserialize<'de> for MetaFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MetaVisitor)
    }
}

struct MetaVisitor;

impl<'de> Visitor<'de> for MetaVisitor {
    type Value = MetaFields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MetaFields, A::Error> {
        let mut meta = Meta::default();
        let mut updated_at = None;
        while let Some(key) = map.next_key::<&str>()? {
            match key {
                "id" => meta.id = json_id(map.next_value()?),
                "edited_at" => meta.version = json_id(map.next_value()?),
                "updated_at" => updated_at = json_id(map.next_value()?),
                "type" => meta.notification_type = json_id(map.next_value()?),
                "last_status" => {
                    let status: Option<MetaFields> = map.next_value()?;
                    meta.last_status_id = status.and_then(|status| status.0.id);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if meta.version.is_none() {
            meta.version = updated_at;
        }
        Ok(MetaFields(meta))
    }
}

/// Returns a JSON string's value, or a number's digits; `None` for null and other values.
fn json_id(value: &RawValue) -> Option<String> {
    let raw = value.get();
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str(raw).ok(),
        Some(b'0'..=b'9') => Some(raw.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(frame: &str) -> Event {
        match decode_frame(frame) {
            Frame::Event(event) => event,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn decodes_string_payload_once() {
        let e = event(
            r#"{"stream":["user"],"event":"update","payload":"{\"id\":\"5\",\"content\":\"a \\\"q\\\"\"}"}"#,
        );
        assert_eq!(e.id(), Some("5"));
        assert_eq!(
            e.to_json_line(),
            "{\"stream\":[\"user\"],\"event\":\"update\",\"payload\":{\"id\":\"5\",\"content\":\"a \\\"q\\\"\"}}\n"
        );
    }

    #[test]
    fn delete_id_stays_a_string() {
        let e = event(r#"{"stream":["public"],"event":"delete","payload":"106692867363994015"}"#);
        assert_eq!(
            e.payload(),
            &Payload::Text("106692867363994015".to_string())
        );
        assert_eq!(
            e.to_json_line(),
            "{\"stream\":[\"public\"],\"event\":\"delete\",\"payload\":\"106692867363994015\"}\n"
        );
        assert_eq!(e.id(), Some("106692867363994015"));
    }

    #[test]
    fn accepts_object_payload() {
        let e = event(r#"{"stream":["user"],"event":"update","payload":{"id":"9"}}"#);
        assert_eq!(e.payload(), &Payload::Json(r#"{"id":"9"}"#.to_string()));
        assert_eq!(e.id(), Some("9"));
    }

    #[test]
    fn missing_payload_and_stream_tolerated() {
        let e = event(r#"{"event":"filters_changed"}"#);
        assert_eq!(e.payload(), &Payload::None);
        assert_eq!(
            e.to_json_line(),
            "{\"stream\":[],\"event\":\"filters_changed\",\"payload\":null}\n"
        );
    }

    #[test]
    fn payload_string_with_broken_json_stays_text() {
        let e = event(r#"{"stream":["user"],"event":"x","payload":"{not json"}"#);
        assert_eq!(e.payload(), &Payload::Text("{not json".to_string()));
    }

    #[test]
    fn error_frames() {
        assert_eq!(
            decode_frame(r#"{"error":"Unknown stream type","status":400}"#),
            Frame::Error {
                message: "Unknown stream type".to_string(),
                status: Some(400)
            }
        );
        assert_eq!(
            decode_frame(r#"{"error":"Error unsubscribing from channel"}"#),
            Frame::Error {
                message: "Error unsubscribing from channel".to_string(),
                status: None
            }
        );
    }

    #[test]
    fn empty_and_invalid_frames() {
        assert_eq!(decode_frame(""), Frame::Empty);
        assert!(matches!(decode_frame("nope"), Frame::Invalid(_)));
        assert!(matches!(decode_frame("[1]"), Frame::Ignored(_)));
        assert!(matches!(
            decode_frame(r#"{"stream":["user"]}"#),
            Frame::Ignored(_)
        ));
    }

    #[test]
    fn escaped_keys_still_decode() {
        let e = event(r#"{"str\u0065am":["user"],"event":"update","payload":"{\"id\":\"1\"}"}"#);
        assert_eq!(e.stream(), vec!["user".to_string()]);
        assert_eq!(e.id(), Some("1"));
    }

    #[test]
    fn dedupe_keys() {
        let edit = event(
            r#"{"stream":["user"],"event":"status.update","payload":"{\"id\":\"1\",\"edited_at\":\"2026-01-01T00:00:00Z\"}"}"#,
        );
        assert_eq!(
            edit.dedupe_key().unwrap(),
            "status.update\u{0}1\u{0}2026-01-01T00:00:00Z"
        );
        let merged = event(r#"{"stream":["user"],"event":"notifications_merged","payload":"1"}"#);
        assert_eq!(merged.dedupe_key(), None);
        let conversation = event(
            r#"{"stream":["direct"],"event":"conversation","payload":"{\"id\":\"501\",\"last_status\":{\"id\":\"77\"}}"}"#,
        );
        assert_eq!(conversation.cursor_id(), Some("77"));
        assert_eq!(
            conversation.dedupe_key().unwrap(),
            "conversation\u{0}501\u{0}77"
        );
    }

    #[test]
    fn unchecked_payload_reads_leading_fields() {
        let text = r#"{"stream":["user"],"event":"notification","payload":"{\"id\":\"9\",\"type\":\"mention\",\"status\":{\"id\":\"1\"}}"}"#;
        let Frame::Event(event) = decode_message(Utf8Bytes::from(text.to_string()), false) else {
            panic!("not an event");
        };
        assert_eq!(event.id(), Some("9"));
        assert_eq!(event.notification_type(), Some("mention"));
        assert_eq!(event.frame(), Some(text));
    }

    #[test]
    fn backfill_flag_in_output() {
        let item: Box<RawValue> = serde_json::from_str(r#"{"id":"3"}"#).unwrap();
        let e = Event::from_backfill("[\"user\"]".to_string(), "update", &item);
        assert_eq!(
            e.to_json_line(),
            "{\"stream\":[\"user\"],\"event\":\"update\",\"payload\":{\"id\":\"3\"},\"backfill\":true}\n"
        );
    }
}
