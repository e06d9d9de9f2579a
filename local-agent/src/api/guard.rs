//! What keeps a browser page from using the loopback API: the API holds the user's private
//! notes, and any web page the user visits can make their browser send requests to
//! `127.0.0.1`. Three checks, before any handler runs:
//!
//! - **`Host`** must name this machine (`localhost`, a loopback address, the address the API
//!   listens on) or a name the user allowed: a page on `evil.example` whose DNS later points at
//!   `127.0.0.1` (DNS rebinding) still sends `Host: evil.example`;
//! - **`Origin`**, when a browser sends one, must be the API's own (`http://<allowed host>:<port>`):
//!   no other site's script may call it, and `Origin: null` (sandboxed frames, files) is refused;
//! - a **POST body** must be `application/json`: the content types an HTML form can send without
//!   a CORS preflight (`text/plain`, form encodings) are refused with 415.
//!
//! Clients that are not browsers (curl, the CLI) send no `Origin` and pass.

use std::net::IpAddr;

use axum::http::{HeaderMap, Method, header};

/// Who may call the API, as far as headers tell.
#[derive(Debug, Clone, Default)]
pub struct BrowserGuard {
    /// Host names allowed besides this machine's (`[server] allowed_hosts`), lower-case.
    allowed_hosts: Vec<String>,
    /// The address the API listens on (a LAN address is allowed when it is bound to one).
    listen_ip: Option<IpAddr>,
    /// The API's port: its own origin is `http://<allowed host>:<port>`.
    port: Option<u16>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A `Host` this API does not answer to.
    Host(String),
    /// A browser request from another origin.
    Origin(String),
    /// A body that is not JSON.
    MediaType(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Host(host) => write!(
                f,
                "Host {host:?} is not this machine; add it to [server] allowed_hosts if you reach the API by that name"
            ),
            Self::Origin(origin) => {
                write!(f, "requests from {origin:?} are not allowed: the API serves this machine only")
            }
            Self::MediaType(kind) => write!(f, "request bodies must be application/json, not {kind:?}"),
        }
    }
}

impl BrowserGuard {
    /// A guard for an API listening on `listen_ip:port`, also answering to `allowed_hosts`.
    pub fn new(allowed_hosts: &[String], listen_ip: Option<IpAddr>, port: Option<u16>) -> Self {
        let allowed_hosts = allowed_hosts.iter().map(|host| host.trim().to_ascii_lowercase()).collect();
        Self { allowed_hosts, listen_ip: listen_ip.filter(|ip| !ip.is_unspecified()), port }
    }

    /// Checks a request's method and headers.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let text = |name: &str| headers.get(name).map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        if let Some(host) = text(header::HOST.as_str())
            && !self.host_allowed(&host)
        {
            return Err(Refusal::Host(host));
        }
        if let Some(origin) = text(header::ORIGIN.as_str())
            && !self.origin_allowed(&origin)
        {
            return Err(Refusal::Origin(origin));
        }
        if text(SEC_FETCH_SITE).is_some_and(|site| site.eq_ignore_ascii_case("cross-site")) {
            return Err(Refusal::Origin("another site (Sec-Fetch-Site: cross-site)".into()));
        }
        if *method == Method::POST && has_body(headers) {
            let kind = text(header::CONTENT_TYPE.as_str()).unwrap_or_default();
            let essence = kind.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            if essence != "application/json" {
                return Err(Refusal::MediaType(kind));
            }
        }
        Ok(())
    }

    /// `Host` (name or address, with or without a port).
    fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host.trim()).to_ascii_lowercase();
        self.name_allowed(&name)
    }

    fn name_allowed(&self, name: &str) -> bool {
        if name == "localhost" || name.ends_with(".localhost") || self.allowed_hosts.iter().any(|host| host == name) {
            return true;
        }
        let address = name.trim_start_matches('[').trim_end_matches(']');
        address.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback() || Some(ip) == self.listen_ip)
    }

    /// `Origin`: `http://<allowed host>[:<our port>]`.
    fn origin_allowed(&self, origin: &str) -> bool {
        let Some(rest) = origin.trim().strip_prefix("http://") else { return false };
        let (name, port) = split_port(rest);
        let port_matches = match (port, self.port) {
            (Some(port), Some(own)) => port == own,
            (None, Some(own)) => own == 80,
            (_, None) => true,
        };
        port_matches && self.name_allowed(&name.to_ascii_lowercase())
    }
}

/// Sent by browsers: `cross-site` when another site's page made the request.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

fn has_body(headers: &HeaderMap) -> bool {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok());
    headers.contains_key(header::TRANSFER_ENCODING) || length.is_some_and(|length| length.trim() != "0")
}

/// `host:port` → `host`, also for `[v6]:port`.
fn strip_port(host: &str) -> &str {
    split_port(host).0
}

fn split_port(host: &str) -> (&str, Option<u16>) {
    if let Some(end) = host.find(']') {
        let port = host[end + 1..].strip_prefix(':').and_then(|port| port.parse().ok());
        return (&host[..=end], port);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn guard() -> BrowserGuard {
        BrowserGuard::new(&["notes.lan".into()], "127.0.0.1".parse().ok(), Some(8001))
    }

    #[test]
    fn hosts_must_be_this_machine_or_allowed() {
        let get = |host: &str| guard().check(&Method::GET, &headers(&[("host", host)]));
        for ok in ["127.0.0.1:8001", "localhost:8001", "LOCALHOST", "[::1]:8001", "127.1.2.3", "notes.lan:8001"] {
            assert_eq!(get(ok), Ok(()), "{ok}");
        }
        for refused in ["evil.example:8001", "127.0.0.1.evil.example", "10.0.0.2:8001", "localhost.evil.example"] {
            assert!(matches!(get(refused), Err(Refusal::Host(_))), "{refused}");
        }
        assert_eq!(guard().check(&Method::GET, &HeaderMap::new()), Ok(()), "no Host: not a browser");
        let lan = BrowserGuard::new(&[], "192.168.1.5".parse().ok(), Some(8001));
        assert_eq!(lan.check(&Method::GET, &headers(&[("host", "192.168.1.5:8001")])), Ok(()));
    }

    #[test]
    fn browsers_may_call_only_from_the_apis_own_origin() {
        let with_origin = |origin: &str| guard().check(&Method::GET, &headers(&[("origin", origin)]));
        assert_eq!(with_origin("http://127.0.0.1:8001"), Ok(()));
        assert_eq!(with_origin("http://localhost:8001"), Ok(()));
        for refused in ["https://evil.example", "http://localhost:3000", "null", "http://127.0.0.1", "file://"] {
            assert!(matches!(with_origin(refused), Err(Refusal::Origin(_))), "{refused}");
        }
        let cross = guard().check(&Method::GET, &headers(&[("sec-fetch-site", "cross-site")]));
        assert!(matches!(cross, Err(Refusal::Origin(_))));
    }

    #[test]
    fn post_bodies_must_be_json() {
        let post = |pairs: &[(&'static str, &str)]| guard().check(&Method::POST, &headers(pairs));
        assert_eq!(post(&[("content-type", "application/json"), ("content-length", "12")]), Ok(()));
        assert_eq!(post(&[("content-type", "Application/JSON; charset=utf-8"), ("content-length", "2")]), Ok(()));
        for kind in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            let refused = post(&[("content-type", kind), ("content-length", "12")]);
            assert!(matches!(refused, Err(Refusal::MediaType(_))), "{kind}");
        }
        assert!(matches!(post(&[("content-length", "3")]), Err(Refusal::MediaType(_))), "no type");
        assert_eq!(post(&[("content-length", "0")]), Ok(()), "an empty POST (cache clear) carries no body");
    }
}
