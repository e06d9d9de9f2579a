//! Planning a run: which documents to keep, read or drop, from the live generation and the
//! sources' listings alone (pure: no I/O, so every rule is a unit test).

use std::collections::{HashMap, HashSet};

use super::generations::DocumentEntry;
use crate::sources::{Listing, SourceItem};

/// What a run must do, decided from the live generation and the sources' listings alone.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Plan {
    /// Entries carried over as they are.
    pub(super) kept: Vec<DocumentEntry>,
    /// Items to read: new ones, and changed ones with their previous entry.
    pub(super) to_read: Vec<(u32, SourceItem, Option<DocumentEntry>)>,
    /// Chunks of documents that are gone (those of changed ones are added once they are read).
    pub(super) deleted_chunks: Vec<u64>,
    /// Documents whose stamps did not change.
    pub(super) unchanged: usize,
    /// Documents that leave the index.
    pub(super) removed: usize,
}

/// Compares `listings` (by source position) with the live generation's documents (by source
/// position and id). An unchanged stamp keeps a document; a changed or new one is read. A
/// complete listing removes what it no longer lists; a partial one (an incremental Notion
/// query) and a source not listed at all leave their documents as they are — except on a
/// `rebuild`, which keeps nothing it does not read again.
pub(super) fn plan<'a>(
    previous: &HashMap<(u32, &'a str), &'a DocumentEntry>,
    listings: Vec<(u32, Listing)>,
    rebuild: bool,
) -> Plan {
    let mut plan = Plan::default();
    let mut seen: HashSet<(u32, String)> = HashSet::new();
    let mut complete: HashSet<u32> = HashSet::new();
    for (position, listing) in listings {
        if listing.complete {
            complete.insert(position);
        }
        for item in listing.files {
            seen.insert((position, item.id.clone()));
            match previous.get(&(position, item.id.as_str())).copied() {
                Some(entry) if !rebuild && entry.stamp == item.stamp => {
                    plan.unchanged += 1;
                    plan.kept.push(DocumentEntry { root: position, ..entry.clone() });
                }
                before => plan.to_read.push((position, item, before.cloned())),
            }
        }
    }
    for (&(position, id), entry) in previous {
        let listed = seen.contains(&(position, id.to_owned()));
        if !complete.contains(&position) && !listed {
            // Its source was not read, or listed only in part without it: unchanged as far as
            // this run knows. A rebuild cannot carry chunks over from the old generation.
            if rebuild {
                plan.removed += 1;
            } else {
                plan.kept.push(DocumentEntry { root: position, ..(*entry).clone() });
            }
        } else if !listed {
            plan.removed += 1;
            plan.deleted_chunks.extend(entry.chunks.iter().map(|c| c.id));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::generations::ChunkEntry;
    use crate::sources::Stamp;

    fn entry(root: u32, id: &str, modified_ns: u128, chunks: &[u64]) -> DocumentEntry {
        DocumentEntry {
            root,
            id: id.into(),
            title: id.into(),
            tags: Vec::new(),
            stamp: Stamp::File { size: 1, modified_ns },
            content_hash: "h".into(),
            url: None,
            chunks: chunks.iter().map(|&id| ChunkEntry { id, hash: [0; 16] }).collect(),
        }
    }

    fn item(id: &str, modified_ns: u128) -> SourceItem {
        SourceItem { id: id.into(), stamp: Stamp::File { size: 1, modified_ns } }
    }

    fn listing(complete: bool, items: Vec<SourceItem>) -> Listing {
        Listing { files: items, complete }
    }

    #[test]
    fn a_plan_keeps_what_did_not_change_and_reads_the_rest() {
        let (same, edited, gone) =
            (entry(0, "same.md", 1, &[1]), entry(0, "edited.md", 1, &[2, 3]), entry(0, "gone.md", 1, &[4]));
        let previous = HashMap::from([((0, "same.md"), &same), ((0, "edited.md"), &edited), ((0, "gone.md"), &gone)]);
        let folder = listing(true, vec![item("same.md", 1), item("edited.md", 2), item("new.md", 1)]);
        let mut plan = plan(&previous, vec![(0, folder)], false);
        plan.to_read.sort_by(|a, b| a.1.id.cmp(&b.1.id));
        assert_eq!((plan.unchanged, plan.removed), (1, 1));
        assert_eq!(plan.kept, std::slice::from_ref(&same));
        assert_eq!(plan.deleted_chunks, [4], "a gone document's chunks go; a changed one's once it is read");
        let reads: Vec<(&str, bool)> =
            plan.to_read.iter().map(|(_, item, before)| (item.id.as_str(), before.is_some())).collect();
        assert_eq!(reads, [("edited.md", true), ("new.md", false)]);
    }

    #[test]
    fn partial_listings_and_unlisted_sources_remove_nothing_but_a_rebuild_keeps_only_what_it_reads() {
        let (page, other_page, note) = (entry(1, "p1", 1, &[1]), entry(1, "p2", 1, &[2]), entry(0, "n.md", 1, &[3]));
        let previous = HashMap::from([((1, "p1"), &page), ((1, "p2"), &other_page), ((0, "n.md"), &note)]);
        // An incremental Notion query lists p1 only; the folder is not listed at all.
        let partial = plan(&previous, vec![(1, listing(false, vec![item("p1", 1)]))], false);
        assert_eq!((partial.unchanged, partial.removed, partial.kept.len()), (1, 0, 3));
        assert!(partial.to_read.is_empty() && partial.deleted_chunks.is_empty());

        let rebuild = plan(&previous, vec![(0, listing(true, vec![item("n.md", 1)]))], true);
        assert_eq!(rebuild.removed, 2, "the pages it cannot read again leave");
        assert_eq!(rebuild.to_read.len(), 1, "a rebuild reads even what did not change");
        assert!(rebuild.kept.is_empty());
    }
}
