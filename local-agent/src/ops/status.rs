//! What `local-agent status` and `service status` say about the data dir: the live index and
//! the last Notion sync, read from disk (so it works whether or not the agent runs).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::api::client::human_duration;
use crate::index::generations::IndexDir;
use crate::index::snapshot::Snapshot;
use crate::sources::notion_sync;

/// Lines describing the live index of `data_dir`: its size, age and sources, the last Notion
/// sync, and whether it opens.
pub fn describe_index(data_dir: &Path) -> Vec<String> {
    let index_dir = IndexDir::new(data_dir);
    let manifest = match index_dir.current() {
        Ok(Some(generation)) => index_dir.read_manifest(generation).map(|manifest| (generation, manifest)),
        Ok(None) => return vec!["index:         none yet; run `local-agent index <FOLDER>`".into()],
        Err(error) => Err(error),
    };
    let (generation, manifest) = match manifest {
        Ok(found) => found,
        Err(error) => return vec![format!("index:         UNREADABLE: {error}")],
    };
    let size = dir_size(&index_dir.generation_dir(generation));
    let mut lines = vec![format!(
        "index:         generation {generation}, {}, {}, {:.1} MB on disk, model {}",
        protocol::console::count(manifest.documents.len() as u64, "document"),
        protocol::console::count(manifest.chunk_count() as u64, "chunk"),
        size as f64 / 1e6,
        manifest.model_id
    )];
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |now| now.as_secs());
    lines.push(format!("last indexed:  {} ago", human_duration(now.saturating_sub(manifest.created_at))));
    lines.extend(manifest.roots.iter().map(|root| format!("source:        {root}")));
    lines.push(format!("Notion sync:   {}", describe_last_sync(data_dir)));
    // Opening the index proves it is readable, not just present.
    lines.push(match Snapshot::open_current(&index_dir, &manifest.model_id) {
        Ok(_) => "index check:   ok".into(),
        Err(error) => format!("index check:   FAILED: {error}"),
    });
    lines
}

/// A tag and how many indexed documents carry it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TagCount {
    /// As the first note carrying it spells it (tags match whatever their case).
    pub tag: String,
    /// Documents carrying it.
    pub documents: usize,
}

/// The tags of the live index, the most used first; empty when nothing is indexed. Read from
/// the manifest alone: no model is loaded.
pub fn tags(data_dir: &Path) -> crate::Result<Vec<TagCount>> {
    let index_dir = IndexDir::new(data_dir);
    let Some(generation) = index_dir.current()? else { return Ok(Vec::new()) };
    let manifest = index_dir.read_manifest(generation)?;
    let mut counts: Vec<TagCount> = Vec::new();
    let mut positions = std::collections::HashMap::new();
    for document in &manifest.documents {
        let mut seen = std::collections::HashSet::new();
        for tag in &document.tags {
            let key = tag.to_lowercase();
            if !seen.insert(key.clone()) {
                continue;
            }
            let at = *positions.entry(key).or_insert_with(|| {
                counts.push(TagCount { tag: tag.clone(), documents: 0 });
                counts.len() - 1
            });
            counts[at].documents += 1;
        }
    }
    counts.sort_by(|a, b| b.documents.cmp(&a.documents).then_with(|| a.tag.cmp(&b.tag)));
    Ok(counts)
}

/// The asked-for tags that no indexed note carries (compared as search compares them).
pub fn unknown_tags<'a>(asked: &'a [String], known: &[TagCount]) -> Vec<&'a str> {
    asked
        .iter()
        .map(|tag| tag.trim())
        .filter(|tag| !tag.is_empty() && !known.iter().any(|known| known.tag.to_lowercase() == tag.to_lowercase()))
        .collect()
}

/// "3 min ago: 120 pages listed, 2 updated…", or why there is nothing to say.
pub fn describe_last_sync(data_dir: &Path) -> String {
    match notion_sync::last_sync(data_dir) {
        None => "never (see `local-agent sync`)".into(),
        Some((at, report)) => {
            let age = chrono::Utc::now().signed_duration_since(at).num_seconds().max(0) as u64;
            format!(
                "{} ago: {} listed, {} added, {} updated, {} removed, {} unreadable",
                human_duration(age),
                protocol::console::count(report.listed as u64, "page"),
                report.added,
                report.updated,
                report.removed,
                report.unreadable
            )
        }
    }
}

/// Bytes in `path` and below.
fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| match entry.file_type() {
                    Ok(kind) if kind.is_dir() => dir_size(&entry.path()),
                    _ => entry.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_data_dir_says_how_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let lines = describe_index(dir.path());
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("local-agent index"), "{lines:?}");
        assert!(describe_last_sync(dir.path()).starts_with("never"));
    }
}
