//! The last retrieval requests, in memory, for the status page and `/stats`: their rate, their
//! latency percentiles and the newest few with their queries. Bounded (a fixed number of
//! entries) and never written anywhere: queries can be as private as the notes.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::stats::{Activity, Percentiles, RecentQuery};

/// Requests kept, for the percentiles and the rate.
const KEPT: usize = 200;
/// Requests shown, newest first.
const SHOWN: usize = 20;
/// Longest query shown, in characters.
const QUERY_CHARS: usize = 200;
/// The window of the rate.
const RATE_WINDOW_SECS: u64 = 300;

/// The last [`KEPT`] retrieval requests.
#[derive(Debug, Default)]
pub struct RecentRequests {
    entries: Mutex<VecDeque<RecentQuery>>,
}

impl RecentRequests {
    /// Records one answered (or refused) request.
    pub fn record(&self, endpoint: &str, query: &str, results: usize, elapsed: Duration, status: u16) {
        let entry = RecentQuery {
            at: now(),
            endpoint: endpoint.to_owned(),
            query: shorten(query),
            results: results as u64,
            ms: elapsed.as_secs_f64() * 1e3,
            status,
        };
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() == KEPT {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// Rate, percentiles of the successful ones, and the newest entries.
    pub fn summary(&self) -> Activity {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let since = now().saturating_sub(RATE_WINDOW_SECS);
        let in_window = entries.iter().filter(|entry| entry.at >= since).count();
        let mut answered: Vec<f64> =
            entries.iter().filter(|entry| (200..300).contains(&entry.status)).map(|entry| entry.ms).collect();
        answered.sort_by(f64::total_cmp);
        Activity {
            per_minute: in_window as f64 * 60.0 / RATE_WINDOW_SECS as f64,
            latency_ms: Percentiles {
                p50: percentile(&answered, 0.50),
                p95: percentile(&answered, 0.95),
                p99: percentile(&answered, 0.99),
            },
            recent: entries.iter().rev().take(SHOWN).cloned().collect(),
        }
    }
}

/// The nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[f64], quantile: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn shorten(query: &str) -> String {
    let mut characters = query.chars();
    let mut short: String = characters.by_ref().take(QUERY_CHARS).collect();
    if characters.next().is_some() {
        short.push('…');
    }
    short
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_rate_and_the_newest_first() {
        let recent = RecentRequests::default();
        assert_eq!(recent.summary().latency_ms.p50, None);
        for millis in 1..=100 {
            recent.record("/search", &format!("query {millis}"), 3, Duration::from_millis(millis), 200);
        }
        recent.record("/search", "refused", 0, Duration::from_secs(9), 503);
        let summary = recent.summary();
        assert_eq!(summary.latency_ms.p50, Some(50.0));
        assert_eq!(summary.latency_ms.p99, Some(99.0), "refusals do not count as latency");
        assert!((summary.per_minute - 101.0 / 5.0).abs() < 1e-9);
        assert_eq!(summary.recent.len(), SHOWN);
        assert_eq!(summary.recent[0].query, "refused");
        assert_eq!(summary.recent[1].query, "query 100");
    }

    #[test]
    fn memory_and_queries_are_bounded() {
        let recent = RecentRequests::default();
        for _ in 0..(KEPT + 50) {
            recent.record("/search", &"长".repeat(500), 1, Duration::from_millis(1), 200);
        }
        assert_eq!(recent.entries.lock().unwrap().len(), KEPT);
        let query = &recent.summary().recent[0].query;
        assert_eq!(query.chars().count(), QUERY_CHARS + 1);
        assert!(query.ends_with('…'));
    }
}
