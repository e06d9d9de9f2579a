//! [`Secret`]: the credentials both programs hold (the agent token, API keys).

use std::fmt;

use serde::Deserialize;

/// A secret string whose `Debug` output hides it, so configurations can be logged, and whose
/// comparison takes the same time wherever the strings differ.
#[derive(Clone, Deserialize, PartialEq, Eq)]
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
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
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
    }
}
