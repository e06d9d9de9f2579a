//! [`Secret`]: the credentials both programs hold (the agent token, API keys), and the one way
//! both read a presented credential off a request ([`bearer_token`]).

use std::fmt;

use serde::Deserialize;

/// A secret string whose `Debug` output hides it, so configurations can be logged, and whose
/// comparison takes the same time wherever the strings differ.
///
/// It has no `PartialEq`: `==` on strings stops at the first differing byte, and a derived
/// `==` would be one careless comparison away from a timing leak. Compare with [`Secret::matches`].
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with a presented candidate in constant time (BLAKE3 hashes compare in constant
    /// time, and hashing hides where the strings differ).
    pub fn matches(&self, candidate: &str) -> bool {
        blake3::hash(self.0.as_bytes()) == blake3::hash(candidate.as_bytes())
    }

    /// Whether `candidate` is one of `secrets`. Every secret is compared, so the time taken
    /// does not tell which one (or how much of one) matched; an empty list admits nobody.
    pub fn matches_any(secrets: &[Secret], candidate: &str) -> bool {
        secrets.iter().fold(false, |found, secret| secret.matches(candidate) | found)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The credential of an `Authorization: Bearer <token>` header value (the scheme is
/// case-insensitive, as RFC 9110 says), trimmed; `None` for any other scheme or an empty token.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_and_matches_compares() {
        let secret = Secret::new("hunter2-long");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert!(secret.matches("hunter2-long"));
        assert!(!secret.matches("hunter2-lonG"));
        assert!(!secret.matches(""));
        let keys = [Secret::new("a-key"), Secret::new("b-key")];
        assert!(Secret::matches_any(&keys, "b-key"));
        assert!(!Secret::matches_any(&keys, "c-key"));
        assert!(!Secret::matches_any(&[], "anything"), "no secrets admit nobody");
    }

    #[test]
    fn bearer_tokens_are_read_whatever_the_scheme_case() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer   "), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
