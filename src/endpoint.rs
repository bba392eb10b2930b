//! Server addresses: parsing what the user typed, turning discovered URLs into WebSocket URLs,
//! and deciding whether the token may travel over a plain-text connection.

use std::fmt;
use std::net::IpAddr;

/// A parsed `http`, `https`, `ws` or `wss` URL with an optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http`, `https`, `ws` or `wss`.
    pub scheme: String,
    /// The host name, or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The path without a trailing `/`, empty for the root.
    pub path: String,
}

impl Endpoint {
    /// Parses a server given as a host name (`mastodon.example`, taken as https), a
    /// `host:port`, or a URL with the scheme http, https, ws or wss. A query or fragment is
    /// rejected.
    pub fn parse(input: &str) -> Result<Endpoint, String> {
        let input = input.trim();
        if input.is_empty() {
            return Err("server is empty".to_string());
        }
        let (scheme, rest) = match input.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("https".to_string(), input),
        };
        let default_port = match scheme.as_str() {
            "https" | "wss" => 443,
            "http" | "ws" => 80,
            _ => {
                return Err(format!(
                    "unsupported URL scheme {scheme:?} in {input:?}; use https:// or wss://"
                ));
            }
        };
        if rest.contains(['?', '#', '@']) {
            return Err(format!(
                "invalid server URL {input:?}: give the server without a query, fragment or user"
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(index) => (&rest[..index], rest[index..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(authority, default_port)
            .ok_or_else(|| format!("invalid host or port in {input:?}"))?;
        Ok(Endpoint {
            scheme,
            host,
            port,
            path: path.to_string(),
        })
    }

    /// Returns true for `https` and `wss`.
    pub fn is_secure(&self) -> bool {
        matches!(self.scheme.as_str(), "https" | "wss")
    }

    /// Returns true when the host is `localhost` or a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<IpAddr>()
                .is_ok_and(|address| address.is_loopback())
    }

    /// Returns the same endpoint with `http` and `https` changed to `ws` and `wss`.
    pub fn to_websocket(&self) -> Endpoint {
        let scheme = match self.scheme.as_str() {
            "http" => "ws",
            "https" => "wss",
            other => other,
        };
        Endpoint {
            scheme: scheme.to_string(),
            ..self.clone()
        }
    }

    /// Returns the same endpoint with `ws` and `wss` changed to `http` and `https`.
    pub fn to_http(&self) -> Endpoint {
        let scheme = match self.scheme.as_str() {
            "ws" => "http",
            "wss" => "https",
            other => other,
        };
        Endpoint {
            scheme: scheme.to_string(),
            ..self.clone()
        }
    }

    /// Returns `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Returns the URL of `path` below this endpoint.
    pub fn join(&self, path: &str) -> String {
        format!(
            "{}://{}{}{}",
            self.scheme,
            self.authority(),
            self.path,
            path
        )
    }

    /// Rejects a plain-text endpoint on a non-loopback host unless `allow_insecure` is set, so
    /// that the token never crosses a network unencrypted by accident.
    pub fn check_token_transport(&self, allow_insecure: bool) -> Result<(), String> {
        if self.is_secure() || self.is_loopback() || allow_insecure {
            Ok(())
        } else {
            Err(format!(
                "refusing to send the access token over unencrypted {self}; use https:// or \
                 wss://, or pass --allow-insecure if this network is trusted"
            ))
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.join(""))
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !valid_host {
        return None;
    }
    let port = match port {
        Some(port) => port.parse::<u16>().ok().filter(|port| *port != 0)?,
        None => default_port,
    };
    Some((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_is_https() {
        let endpoint = Endpoint::parse("mastodon.example").unwrap();
        assert_eq!(endpoint.scheme, "https");
        assert_eq!(endpoint.port, 443);
        assert_eq!(endpoint.to_string(), "https://mastodon.example:443");
        assert_eq!(endpoint.to_websocket().scheme, "wss");
    }

    #[test]
    fn url_with_port_and_path() {
        let endpoint = Endpoint::parse("http://127.0.0.1:4000/prefix/").unwrap();
        assert_eq!(endpoint.host, "127.0.0.1");
        assert_eq!(endpoint.port, 4000);
        assert_eq!(endpoint.path, "/prefix");
        assert!(endpoint.is_loopback());
        assert_eq!(
            endpoint.join("/api/v1/instance"),
            "http://127.0.0.1:4000/prefix/api/v1/instance"
        );
    }

    #[test]
    fn ipv6_loopback() {
        let endpoint = Endpoint::parse("ws://[::1]:8080").unwrap();
        assert_eq!(endpoint.host, "::1");
        assert!(endpoint.is_loopback());
        assert_eq!(endpoint.authority(), "[::1]:8080");
    }

    #[test]
    fn rejects_bad_input() {
        for input in [
            "",
            "ftp://x",
            "https://",
            "https://a b",
            "https://x:99999",
            "https://x?q=1",
            "https://u@x",
        ] {
            assert!(Endpoint::parse(input).is_err(), "{input:?} was accepted");
        }
    }

    #[test]
    fn plain_text_token_only_on_loopback() {
        let remote = Endpoint::parse("ws://mastodon.example").unwrap();
        assert!(remote.check_token_transport(false).is_err());
        assert!(remote.check_token_transport(true).is_ok());
        let local = Endpoint::parse("ws://localhost:1234").unwrap();
        assert!(local.check_token_transport(false).is_ok());
        let secure = Endpoint::parse("wss://mastodon.example").unwrap();
        assert!(secure.check_token_transport(false).is_ok());
    }
}
