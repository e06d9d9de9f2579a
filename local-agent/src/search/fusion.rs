//! Reciprocal-rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): each list gives an item
//! `weight / (k + rank)`, and items are ordered by the sum. Ranks, not scores, are combined,
//! so BM25 scores and cosines need no common scale. A list's weight says how much it is to be
//! trusted for this query; a weight of zero silences a list entirely, so fusing in a retriever
//! that cannot read the query never does worse than leaving it out.

use std::collections::HashMap;
use std::hash::Hash;

/// One ranked list and its weight.
#[derive(Debug, Clone, Copy)]
pub struct RankedList<'a, K> {
    /// How much this list counts (≥ 0).
    pub weight: f32,
    /// Items, best first; an item should appear at most once.
    pub items: &'a [K],
}

/// The constant of the original paper; larger values flatten the rank curve.
pub const DEFAULT_K: f32 = 60.0;

/// Fuses `lists`; returns items with their fused score, best first. Ties keep the order in
/// which items were first met (earlier lists first), so results are deterministic.
pub fn reciprocal_rank_fusion<K: Eq + Hash + Copy>(lists: &[RankedList<'_, K>], k: f32) -> Vec<(K, f32)> {
    let mut scores: HashMap<K, (f32, usize)> = HashMap::new();
    let mut order = 0;
    for list in lists.iter().filter(|list| list.weight > 0.0) {
        for (rank, item) in list.items.iter().enumerate() {
            let entry = scores.entry(*item).or_insert_with(|| {
                order += 1;
                (0.0, order)
            });
            entry.0 += list.weight / (k + rank as f32 + 1.0);
        }
    }
    let mut fused: Vec<(K, f32, usize)> =
        scores.into_iter().map(|(item, (score, first))| (item, score, first)).collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    fused.into_iter().map(|(item, score, _)| (item, score)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(fused: &[(u32, f32)]) -> Vec<u32> {
        fused.iter().map(|(id, _)| *id).collect()
    }

    #[test]
    fn items_found_by_both_lists_rise() {
        let keyword = [1, 2, 3];
        let semantic = [3, 4, 1];
        let fused = reciprocal_rank_fusion(
            &[RankedList { weight: 1.0, items: &keyword }, RankedList { weight: 1.0, items: &semantic }],
            DEFAULT_K,
        );
        assert_eq!(ids(&fused), [1, 3, 2, 4]);
        assert!((fused[0].1 - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-6);
    }

    #[test]
    fn empty_inputs_and_zero_weights() {
        assert!(reciprocal_rank_fusion::<u32>(&[], DEFAULT_K).is_empty());
        let empty: [u32; 0] = [];
        let only = [7, 8];
        let fused = reciprocal_rank_fusion(
            &[RankedList { weight: 1.0, items: &empty }, RankedList { weight: 1.0, items: &only }],
            DEFAULT_K,
        );
        assert_eq!(ids(&fused), [7, 8]);
        // A silenced list changes nothing: fusion equals its other input.
        let noise = [9, 8, 7];
        let fused = reciprocal_rank_fusion(
            &[RankedList { weight: 1.0, items: &only }, RankedList { weight: 0.0, items: &noise }],
            DEFAULT_K,
        );
        assert_eq!(ids(&fused), [7, 8]);
    }

    #[test]
    fn weights_tip_the_balance_and_ties_are_deterministic() {
        let a = [1, 2];
        let b = [2, 1];
        let fused = reciprocal_rank_fusion(
            &[RankedList { weight: 1.0, items: &a }, RankedList { weight: 1.0, items: &b }],
            60.0,
        );
        assert_eq!(ids(&fused), [1, 2], "equal scores keep first-met order");
        let fused = reciprocal_rank_fusion(
            &[RankedList { weight: 1.0, items: &a }, RankedList { weight: 2.0, items: &b }],
            60.0,
        );
        assert_eq!(ids(&fused), [2, 1]);
    }
}
