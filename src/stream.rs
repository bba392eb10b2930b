//! Stream names as Mastodon spells them, the subscribe messages sent for them, and the REST
//! sources that can fill a gap in each.

use std::fmt;
use std::str::FromStr;

use serde_json::json;

/// One subscription on the streaming API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stream {
    /// `user`: the home timeline and the notifications of the token's account.
    User,
    /// `user:notification`: the notifications only.
    UserNotification,
    /// `public`, `public:local`, `public:remote` and their `:media` variants.
    Public {
        scope: PublicScope,
        media_only: bool,
    },
    /// `direct`: conversations (direct messages).
    Direct,
    /// `hashtag:TAG` or `hashtag:local:TAG`.
    Hashtag { tag: String, local: bool },
    /// `list:ID`.
    List { id: String },
}

/// The part of the federated timeline a public stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublicScope {
    All,
    Local,
    Remote,
}

/// A REST endpoint that returns the items a stream delivers, used to fill gaps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Home,
    Notifications,
    Public { scope: String, media_only: bool },
    Hashtag { tag: String, local: bool },
    List { id: String },
    Conversations,
}

/// The error for a stream name that is not one of Mastodon's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStream(pub String);

impl Stream {
    /// Returns the channel name Mastodon uses in `stream` fields and subscribe messages.
    pub fn channel(&self) -> &'static str {
        match self {
            Stream::User => "user",
            Stream::UserNotification => "user:notification",
            Stream::Public { scope, media_only } => match (scope, media_only) {
                (PublicScope::All, false) => "public",
                (PublicScope::All, true) => "public:media",
                (PublicScope::Local, false) => "public:local",
                (PublicScope::Local, true) => "public:local:media",
                (PublicScope::Remote, false) => "public:remote",
                (PublicScope::Remote, true) => "public:remote:media",
            },
            Stream::Direct => "direct",
            Stream::Hashtag { local: false, .. } => "hashtag",
            Stream::Hashtag { local: true, .. } => "hashtag:local",
            Stream::List { .. } => "list",
        }
    }

    /// Builds the text of the WebSocket message that subscribes to this stream.
    pub fn subscribe_message(&self) -> String {
        let mut message = json!({"type": "subscribe", "stream": self.channel()});
        match self {
            Stream::Hashtag { tag, .. } => message["tag"] = json!(tag),
            Stream::List { id } => message["list"] = json!(id),
            _ => {}
        }
        message.to_string()
    }

    /// Returns the query that names this stream in the WebSocket URL, for example
    /// `stream=hashtag&tag=rust`, percent-encoded. Servers that ignore some subscribe messages
    /// (GoToSocial takes hashtags only from the URL) still get the first stream this way.
    pub fn query(&self) -> String {
        let mut query = format!("stream={}", percent_encode(self.channel()));
        match self {
            Stream::Hashtag { tag, .. } => query.push_str(&format!("&tag={}", percent_encode(tag))),
            Stream::List { id } => query.push_str(&format!("&list={}", percent_encode(id))),
            _ => {}
        }
        query
    }

    /// Returns true when a frame's `stream` array belongs to this subscription. Mastodon sends
    /// `["hashtag","<tag as subscribed>"]` and `["list","<id>"]`; tags are compared without
    /// regard to case because the server folds them.
    pub fn matches(&self, names: &[String]) -> bool {
        let Some(first) = names.first() else {
            return false;
        };
        if first != self.channel() {
            return false;
        }
        match self {
            Stream::Hashtag { tag, .. } => names
                .get(1)
                .is_none_or(|name| name.to_lowercase() == tag.to_lowercase()),
            Stream::List { id } => names.get(1).is_none_or(|name| name == id),
            _ => true,
        }
    }

    /// Returns the REST sources that hold what this stream delivers.
    pub fn sources(&self) -> Vec<Source> {
        match self {
            Stream::User => vec![Source::Home, Source::Notifications],
            Stream::UserNotification => vec![Source::Notifications],
            Stream::Public { scope, media_only } => vec![Source::Public {
                scope: match scope {
                    PublicScope::All => "all",
                    PublicScope::Local => "local",
                    PublicScope::Remote => "remote",
                }
                .to_string(),
                media_only: *media_only,
            }],
            Stream::Direct => vec![Source::Conversations],
            Stream::Hashtag { tag, local } => vec![Source::Hashtag {
                tag: tag.to_lowercase(),
                local: *local,
            }],
            Stream::List { id } => vec![Source::List { id: id.clone() }],
        }
    }

    /// Returns the REST source that an event of this stream came from, if one can backfill it.
    /// `update` and `notification` on `user` come from the home timeline and the notifications;
    /// `conversation` from conversations; `update` on public, hashtag and list streams from
    /// their timelines. Other events (deletes, edits, announcements) have no REST history.
    pub fn source_of(&self, event: &str) -> Option<Source> {
        let sources = self.sources();
        match (self, event) {
            (Stream::User, "update") => Some(Source::Home),
            (Stream::User | Stream::UserNotification, "notification") => {
                Some(Source::Notifications)
            }
            (Stream::Direct, "conversation") => Some(Source::Conversations),
            (Stream::Public { .. } | Stream::Hashtag { .. } | Stream::List { .. }, "update") => {
                sources.into_iter().next()
            }
            _ => None,
        }
    }
}

impl FromStr for Stream {
    type Err = UnknownStream;

    /// Parses a stream name as Mastodon spells it: `user`, `user:notification`, `public`,
    /// `public:local`, `public:remote` (each also with `:media`), `direct`, `hashtag:TAG`,
    /// `hashtag:local:TAG` and `list:ID`. A leading `#` on a tag is dropped.
    fn from_str(name: &str) -> Result<Stream, UnknownStream> {
        let unknown = || UnknownStream(name.to_string());
        let public = |scope, media_only| Stream::Public { scope, media_only };
        let stream = match name {
            "user" => Stream::User,
            "user:notification" => Stream::UserNotification,
            "public" => public(PublicScope::All, false),
            "public:media" => public(PublicScope::All, true),
            "public:local" => public(PublicScope::Local, false),
            "public:local:media" => public(PublicScope::Local, true),
            "public:remote" => public(PublicScope::Remote, false),
            "public:remote:media" => public(PublicScope::Remote, true),
            "direct" => Stream::Direct,
            _ => {
                if let Some(tag) = name.strip_prefix("hashtag:local:") {
                    Stream::Hashtag {
                        tag: parse_tag(tag).ok_or_else(unknown)?,
                        local: true,
                    }
                } else if let Some(tag) = name.strip_prefix("hashtag:") {
                    Stream::Hashtag {
                        tag: parse_tag(tag).ok_or_else(unknown)?,
                        local: false,
                    }
                } else if let Some(id) = name.strip_prefix("list:") {
                    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c == '/') {
                        return Err(unknown());
                    }
                    Stream::List { id: id.to_string() }
                } else {
                    return Err(unknown());
                }
            }
        };
        Ok(stream)
    }
}

/// Accepts any tag without white space or control characters, with at most one leading `#`
/// dropped. The server normalizes tags itself, so the text is sent exactly as given.
fn parse_tag(tag: &str) -> Option<String> {
    let tag = tag.strip_prefix('#').unwrap_or(tag);
    let valid = !tag.is_empty() && !tag.chars().any(|c| c.is_whitespace() || c.is_control());
    valid.then(|| tag.to_string())
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stream::Hashtag { tag, .. } => write!(f, "{}:{tag}", self.channel()),
            Stream::List { id } => write!(f, "list:{id}"),
            _ => f.write_str(self.channel()),
        }
    }
}

impl fmt::Display for UnknownStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown stream {:?}; expected user, user:notification, public, public:local, \
             public:remote (each also with :media), direct, hashtag:TAG, hashtag:local:TAG or list:ID",
            self.0
        )
    }
}

impl std::error::Error for UnknownStream {}

impl Source {
    /// Returns the key that names this source in the state file, for example `home`,
    /// `tag:rust`, `tag:local:rust` or `list:12`.
    pub fn key(&self) -> String {
        match self {
            Source::Home => "home".to_string(),
            Source::Notifications => "notifications".to_string(),
            Source::Public { scope, media_only } => {
                let media = if *media_only { ":media" } else { "" };
                format!("public:{scope}{media}")
            }
            Source::Hashtag { tag, local: false } => format!("tag:{tag}"),
            Source::Hashtag { tag, local: true } => format!("tag:local:{tag}"),
            Source::List { id } => format!("list:{id}"),
            Source::Conversations => "conversations".to_string(),
        }
    }

    /// Returns the REST path and fixed query parameters of this source.
    pub fn endpoint(&self) -> (String, Vec<(&'static str, &'static str)>) {
        match self {
            Source::Home => ("/api/v1/timelines/home".to_string(), vec![]),
            Source::Notifications => ("/api/v1/notifications".to_string(), vec![]),
            Source::Public { scope, media_only } => {
                let mut query = Vec::new();
                match scope.as_str() {
                    "local" => query.push(("local", "true")),
                    "remote" => query.push(("remote", "true")),
                    _ => {}
                }
                if *media_only {
                    query.push(("only_media", "true"));
                }
                ("/api/v1/timelines/public".to_string(), query)
            }
            Source::Hashtag { tag, local } => {
                let query = if *local {
                    vec![("local", "true")]
                } else {
                    vec![]
                };
                (
                    format!("/api/v1/timelines/tag/{}", percent_encode(tag)),
                    query,
                )
            }
            Source::List { id } => (
                format!("/api/v1/timelines/list/{}", percent_encode(id)),
                vec![],
            ),
            Source::Conversations => ("/api/v1/conversations".to_string(), vec![]),
        }
    }

    /// Returns the largest `limit` the endpoint honours: 80 for notifications, 40 for the rest.
    pub fn page_limit(&self) -> usize {
        match self {
            Source::Notifications => 80,
            _ => 40,
        }
    }

    /// Returns the event name a stream would have used for items of this source.
    pub fn event_name(&self) -> &'static str {
        match self {
            Source::Notifications => "notification",
            Source::Conversations => "conversation",
            _ => "update",
        }
    }
}

/// Percent-encodes everything outside RFC 3986's unreserved set, byte by byte in UTF-8.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_stream_name() {
        let names = [
            "user",
            "user:notification",
            "public",
            "public:media",
            "public:local",
            "public:local:media",
            "public:remote",
            "public:remote:media",
            "direct",
            "hashtag:rust",
            "hashtag:local:rust",
            "list:12",
        ];
        for name in names {
            let stream: Stream = name.parse().unwrap();
            assert_eq!(stream.to_string(), name);
        }
    }

    #[test]
    fn rejects_unknown_names() {
        for name in [
            "",
            "users",
            "hashtag",
            "hashtag:",
            "list:",
            "public:foo",
            "list:a b",
        ] {
            assert!(name.parse::<Stream>().is_err(), "{name:?} was accepted");
        }
    }

    #[test]
    fn hashtag_accepts_leading_hash_and_unicode() {
        let stream: Stream = "hashtag:#café".parse().unwrap();
        assert_eq!(
            stream,
            Stream::Hashtag {
                tag: "café".to_string(),
                local: false
            }
        );
        let stream: Stream = "hashtag:local:日本語".parse().unwrap();
        assert_eq!(
            stream.subscribe_message(),
            r#"{"stream":"hashtag:local","tag":"日本語","type":"subscribe"}"#
        );
    }

    #[test]
    fn query_is_percent_encoded() {
        let tag: Stream = "hashtag:local:c++".parse().unwrap();
        assert_eq!(tag.query(), "stream=hashtag%3Alocal&tag=c%2B%2B");
        let tag: Stream = "hashtag:日本語".parse().unwrap();
        assert_eq!(
            tag.query(),
            "stream=hashtag&tag=%E6%97%A5%E6%9C%AC%E8%AA%9E"
        );
        assert_eq!(Stream::User.query(), "stream=user");
    }

    #[test]
    fn subscribe_message_for_list() {
        let stream: Stream = "list:7".parse().unwrap();
        assert_eq!(
            stream.subscribe_message(),
            r#"{"list":"7","stream":"list","type":"subscribe"}"#
        );
    }

    #[test]
    fn matches_stream_arrays() {
        let tag: Stream = "hashtag:Rust".parse().unwrap();
        assert!(tag.matches(&["hashtag".into(), "rust".into()]));
        assert!(!tag.matches(&["hashtag".into(), "go".into()]));
        assert!(!tag.matches(&["hashtag:local".into(), "rust".into()]));
        let user: Stream = "user".parse().unwrap();
        assert!(user.matches(&["user".into()]));
        assert!(!user.matches(&["user:notification".into()]));
        assert!(!user.matches(&[]));
    }

    #[test]
    fn source_endpoints() {
        let tag: Stream = "hashtag:local:café".parse().unwrap();
        let (path, query) = tag.sources()[0].endpoint();
        assert_eq!(path, "/api/v1/timelines/tag/caf%C3%A9");
        assert_eq!(query, vec![("local", "true")]);
        let media: Stream = "public:remote:media".parse().unwrap();
        let (path, query) = media.sources()[0].endpoint();
        assert_eq!(path, "/api/v1/timelines/public");
        assert_eq!(query, vec![("remote", "true"), ("only_media", "true")]);
        assert_eq!(media.sources()[0].key(), "public:remote:media");
    }

    #[test]
    fn source_of_events() {
        let user = Stream::User;
        assert_eq!(user.source_of("update"), Some(Source::Home));
        assert_eq!(user.source_of("notification"), Some(Source::Notifications));
        assert_eq!(user.source_of("delete"), None);
        assert_eq!(
            Stream::Direct.source_of("conversation"),
            Some(Source::Conversations)
        );
    }
}
