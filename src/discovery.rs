//! Discovery of the streaming base URL, which Mastodon may serve from another host than the
//! web interface (mastodon.social streams from a `streaming.` host).

use log::debug;

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::rest::Rest;

/// Finds the streaming base URL: `configuration.urls.streaming` of `/api/v2/instance`
/// (Mastodon 4.0 and later), else `urls.streaming_api` of `/api/v1/instance`, else the server
/// itself. The result is a `ws` or `wss` endpoint.
///
/// The instance endpoints need no token, so none is sent. A network failure is returned for
/// a retry, and a response without a usable URL falls through to the next choice.
pub(crate) fn discover_streaming_url(rest: &Rest, server: &Endpoint) -> Result<Endpoint, Error> {
    let lookups: [(&str, &[&str]); 2] = [
        ("/api/v2/instance", &["configuration", "urls", "streaming"]),
        ("/api/v1/instance", &["urls", "streaming_api"]),
    ];
    for (path, pointer) in lookups {
        let url = server.join(path);
        let response = rest.get(&url, None)?;
        if response.status == 429 {
            return Err(Error::RateLimited {
                wait: response.wait,
            });
        }
        if response.status >= 500 {
            return Err(Error::HandshakeStatus {
                status: response.status,
                message: Some(format!("{path} returned HTTP {}", response.status)),
            });
        }
        if response.status != 200 {
            debug!("{path} returned HTTP {}", response.status);
            continue;
        }
        match streaming_url_from(&response.body, pointer) {
            Some(endpoint) => return Ok(endpoint),
            None => debug!("{path} has no usable streaming URL"),
        }
    }
    Ok(server.to_websocket())
}

fn streaming_url_from(body: &str, pointer: &[&str]) -> Option<Endpoint> {
    let document: serde_json::Value = serde_json::from_str(body).ok()?;
    let value = pointer
        .iter()
        .try_fold(&document, |value, key| value.get(key))?
        .as_str()?;
    let endpoint = Endpoint::parse(value).ok()?;
    Some(endpoint.to_websocket())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v2_and_converts_scheme() {
        let body = r#"{"configuration":{"urls":{"streaming":"https://streaming.example"}}}"#;
        let endpoint = streaming_url_from(body, &["configuration", "urls", "streaming"]).unwrap();
        assert_eq!(endpoint.scheme, "wss");
        assert_eq!(endpoint.host, "streaming.example");
    }

    #[test]
    fn ignores_missing_or_invalid_values() {
        let pointer = ["urls", "streaming_api"];
        assert!(streaming_url_from(r#"{"urls":{}}"#, &pointer).is_none());
        assert!(streaming_url_from(r#"{"urls":{"streaming_api":5}}"#, &pointer).is_none());
        assert!(streaming_url_from("<html>", &pointer).is_none());
        assert!(streaming_url_from(r#"{"urls":{"streaming_api":"ftp://x"}}"#, &pointer).is_none());
    }
}
