//! The REST client: one ureq agent with timeouts, native-tls, and a name cache that keeps DNS
//! lookups out of the moments when a healthy stream is being served.

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ureq::http::Uri;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::config::{Config, Token};
use crate::endpoint::Endpoint;
use crate::error::{Error, Phase};
use crate::ratelimit;

/// Largest REST response body read, far above a page of 80 notifications.
const MAX_BODY: u64 = 64 << 20;

pub(crate) const USER_AGENT: &str = concat!("mastotail/", env!("CARGO_PKG_VERSION"));

/// A REST response: status, the headers mastotail reads, and the body.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub body: String,
    /// The wait the server asked for in `Retry-After` or `X-RateLimit-Reset`, if any.
    pub wait: Option<Duration>,
    /// `retry=` of the `Mastodon-Async-Refresh` header, sent with 206 while a home feed
    /// is rebuilt.
    pub refresh_retry: Option<Duration>,
}

/// The REST client of one run.
#[derive(Debug, Clone)]
pub(crate) struct Rest {
    agent: ureq::Agent,
    names: NameCache,
}

impl Rest {
    pub(crate) fn new(config: &Config) -> Result<Rest, Error> {
        let root_certs = match &config.ca_file {
            Some(path) => RootCerts::new_with_certs(&read_pem_certificates(path)?),
            None => RootCerts::PlatformVerifier,
        };
        let tls = TlsConfig::builder()
            .provider(TlsProvider::NativeTls)
            .root_certs(root_certs)
            .build();
        let agent_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .proxy(None)
            .user_agent(USER_AGENT)
            .timeout_global(Some(config.request_timeout))
            .max_redirects(3)
            .max_idle_connections_per_host(2)
            .build();
        let names = NameCache::default();
        let agent =
            ureq::Agent::with_parts(agent_config, DefaultConnector::default(), names.clone());
        Ok(Rest { agent, names })
    }

    /// Looks up `endpoint`'s host again and caches the addresses for later requests. Called
    /// while reconnecting, when no healthy stream can be stalled by a slow lookup.
    pub(crate) fn refresh_name(&self, endpoint: &Endpoint) -> Result<(), Error> {
        self.names.refresh(&endpoint.authority())
    }

    /// Sends a GET request; `token` adds `Authorization: Bearer`.
    pub(crate) fn get(&self, url: &str, token: Option<&Token>) -> Result<Response, Error> {
        let mut request = self.agent.get(url).header("Accept", "application/json");
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {}", token.expose()));
        }
        let mut response = request.call().map_err(request_error)?;
        let status = response.status().as_u16();
        let wait = server_wait(response.headers());
        let refresh_retry = header_text(response.headers(), "mastodon-async-refresh")
            .and_then(|value| parse_refresh(&value));
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(request_error)?;
        Ok(Response {
            status,
            body,
            wait,
            refresh_retry,
        })
    }
}

/// Returns a header's value as text, or `None` when it is missing or not visible ASCII.
pub(crate) fn header_text(headers: &ureq::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

/// Returns the wait a response requests: `Retry-After` (seconds or an HTTP date), else
/// Mastodon's `X-RateLimit-Reset` (an ISO 8601 time).
pub(crate) fn server_wait(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    let now = SystemTime::now();
    header_text(headers, "retry-after")
        .and_then(|value| ratelimit::parse_retry_after(&value, now))
        .or_else(|| {
            header_text(headers, "x-ratelimit-reset")
                .and_then(|value| ratelimit::parse_rate_limit_reset(&value, now))
        })
}

/// Reads the `retry=<seconds>` attribute of a `Mastodon-Async-Refresh` header.
fn parse_refresh(value: &str) -> Option<Duration> {
    value.split(',').find_map(|part| {
        let seconds = part.trim().strip_prefix("retry=")?;
        seconds
            .trim_matches('"')
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    })
}

fn request_error(error: ureq::Error) -> Error {
    match error {
        ureq::Error::Timeout(_) => Error::Timeout(Phase::Request),
        ureq::Error::Io(source) => Error::network(Phase::Request, source),
        ureq::Error::HostNotFound => Error::Network {
            phase: Phase::Resolve,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "host not found"),
        },
        other => Error::Protocol(format!("REST request failed: {other}")),
    }
}

/// Reads the PEM certificates of `--ca-file`.
pub(crate) fn read_pem_certificates(
    path: &std::path::Path,
) -> Result<Vec<Certificate<'static>>, Error> {
    let pem = fs::read(path).map_err(|error| {
        Error::Config(format!("cannot read --ca-file {}: {error}", path.display()))
    })?;
    let certificates: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(certificate)) => Some(certificate.to_owned()),
            _ => None,
        })
        .collect();
    if certificates.is_empty() {
        return Err(Error::Config(format!(
            "--ca-file {} contains no PEM certificate",
            path.display()
        )));
    }
    Ok(certificates)
}

/// A name resolver for ureq that returns addresses from a cache filled while reconnecting.
///
/// ureq's own resolver runs each lookup on a new thread when a timeout is set; this one runs
/// on the calling thread, so mastotail stays one thread. A name missing from the cache is
/// looked up on the spot, with no timeout, because std offers none.
#[derive(Debug, Clone, Default)]
struct NameCache {
    addresses: Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>,
}

impl NameCache {
    fn refresh(&self, authority: &str) -> Result<(), Error> {
        let addresses = crate::connection::resolve(authority)?;
        self.lock().insert(authority.to_string(), addresses);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<SocketAddr>>> {
        self.addresses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Resolver for NameCache {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let authority = uri.authority().ok_or(ureq::Error::HostNotFound)?;
        let port = authority
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        let host = authority.host();
        let key = if host.starts_with('[') || !host.contains(':') {
            format!("{host}:{port}")
        } else {
            format!("[{host}]:{port}")
        };
        if !self.lock().contains_key(&key) {
            self.refresh(&key).map_err(|_| ureq::Error::HostNotFound)?;
        }
        let mut resolved = self.empty();
        for address in self.lock().get(&key).into_iter().flatten().take(16) {
            resolved.push(*address);
        }
        if resolved.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_async_refresh_retry() {
        assert_eq!(
            parse_refresh(r#"id="abc", retry=5, result_count=3"#),
            Some(Duration::from_secs(5))
        );
        assert_eq!(parse_refresh("id=\"abc\""), None);
    }
}
