//! When a URL may carry secrets without TLS: both programs send tokens (the agent token, the
//! Notion and OpenRouter keys) in headers, so `http://` and `ws://` are allowed only to this
//! machine, or where a person said that something else encrypts the path (`allow_insecure`).

use url::{Host, Url};

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CleartextError {
    /// Not a URL.
    #[error("{url:?} is not a URL: {reason}")]
    Unparseable {
        /// What was given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A scheme this connection does not speak.
    #[error("{url:?}: use {expected}")]
    Scheme {
        /// What was given.
        url: String,
        /// The schemes that would work, e.g. `https://`.
        expected: &'static str,
    },
    /// Clear text to another machine.
    #[error(
        "{url:?} would send credentials unencrypted to {host}; use {secure}, or set allow_insecure if a tunnel \
         or VPN encrypts the path"
    )]
    Cleartext {
        /// What was given.
        url: String,
        /// The remote host.
        host: String,
        /// The TLS scheme to use instead.
        secure: &'static str,
    },
}

/// The kind of connection a URL is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `https://`, or `http://` in clear text.
    Http,
    /// `wss://`, or `ws://` in clear text.
    WebSocket,
}

impl Transport {
    fn schemes(self) -> (&'static str, &'static str) {
        match self {
            Self::Http => ("https", "http"),
            Self::WebSocket => ("wss", "ws"),
        }
    }
}

/// Checks that `url` is a `transport` URL that encrypts, or goes to a loopback host, unless
/// `allow_insecure`.
pub fn check_url(url: &str, transport: Transport, allow_insecure: bool) -> Result<(), CleartextError> {
    let (secure, plain) = transport.schemes();
    let parsed = Url::parse(url)
        .map_err(|error| CleartextError::Unparseable { url: url.to_owned(), reason: error.to_string() })?;
    let expected = match transport {
        Transport::Http => "https:// (or http:// to this machine)",
        Transport::WebSocket => "wss:// (or ws:// to this machine)",
    };
    if parsed.scheme() == secure {
        return Ok(());
    }
    if parsed.scheme() != plain {
        return Err(CleartextError::Scheme { url: url.to_owned(), expected });
    }
    let loopback = match parsed.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost") || name.ends_with(".localhost"),
        Some(Host::Ipv4(address)) => address.is_loopback(),
        Some(Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    };
    if loopback || allow_insecure {
        return Ok(());
    }
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let secure = match transport {
        Transport::Http => "https://",
        Transport::WebSocket => "wss://",
    };
    Err(CleartextError::Cleartext { url: url.to_owned(), host, secure })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_text_goes_only_to_this_machine_unless_allowed() {
        let ok = |url, transport| check_url(url, transport, false).is_ok();
        assert!(ok("https://api.notion.com", Transport::Http));
        assert!(ok("http://127.0.0.1:8080", Transport::Http));
        assert!(ok("http://localhost:1/v1", Transport::Http));
        assert!(ok("http://[::1]:9/", Transport::Http));
        assert!(ok("wss://x.execute-api.eu-west-1.amazonaws.com/agents", Transport::WebSocket));
        assert!(ok("ws://127.0.0.1:9/agent", Transport::WebSocket));
        assert!(!ok("http://api.notion.com", Transport::Http));
        assert!(!ok("http://10.0.0.5:8080", Transport::Http));
        assert!(!ok("ws://cloud.example.com/agent", Transport::WebSocket));
        assert!(!ok("http://127.0.0.1.example.com/", Transport::Http), "a name is not an address");
        assert!(!ok("wss://x/agent", Transport::Http), "a WebSocket URL is not an HTTP one");
        assert!(!ok("ftp://localhost/", Transport::Http));
        assert!(!ok("not a url", Transport::Http));
        assert!(check_url("ws://cloud.example.com/agent", Transport::WebSocket, true).is_ok(), "allowed");
        let refused = check_url("http://api.example.com", Transport::Http, false).unwrap_err();
        assert!(refused.to_string().contains("allow_insecure"), "{refused}");
    }
}
