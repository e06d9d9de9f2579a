//! Where documents come from: a folder of notes ([`folder`]), a Notion knowledge database
//! ([`notion_sync`]), and the watching that re-indexes folders while serving ([`watch`]). Every
//! source is a [`Source`]: the indexer lists it, reads what changed, and knows it in the
//! manifest by its root.

pub mod folder;
pub mod notion_sync;
pub mod watch;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use self::folder::Document;
pub use self::folder::FolderSource;
use crate::error::Result;

/// Which source documents come from: the key the manifest knows a source by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceId {
    /// A folder of notes, by its absolute path.
    Folder(PathBuf),
    /// A Notion knowledge database, by its id.
    Notion(String),
}

impl SourceId {
    /// The folder's path, for a folder.
    pub fn folder(&self) -> Option<&Path> {
        match self {
            Self::Folder(path) => Some(path),
            Self::Notion(_) => None,
        }
    }

    /// A root as format-1 manifests wrote it: a folder's path, or `notion://<database id>`.
    pub fn from_legacy(root: &Path) -> Self {
        match root.to_str().and_then(|text| text.strip_prefix("notion://")) {
            Some(database) => Self::Notion(database.to_owned()),
            None => Self::Folder(root.to_owned()),
        }
    }
}

/// A folder's path, or `notion://<database id>`: how people (and `status`) see a source.
impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Folder(path) => write!(f, "{}", path.display()),
            Self::Notion(database) => write!(f, "notion://{database}"),
        }
    }
}

/// Reads `{"folder": …}` / `{"notion": …}`, and the plain strings of format-1 manifests.
impl<'de> Deserialize<'de> for SourceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Tagged {
            Folder(PathBuf),
            Notion(String),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Tagged(Tagged),
            Legacy(PathBuf),
        }
        Ok(match Written::deserialize(deserializer)? {
            Written::Tagged(Tagged::Folder(path)) => Self::Folder(path),
            Written::Tagged(Tagged::Notion(database)) => Self::Notion(database),
            Written::Legacy(root) => Self::from_legacy(&root),
        })
    }
}

/// What tells whether a document changed since it was indexed, without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stamp {
    /// A file: its size and modification time (ns since the epoch).
    File {
        /// Bytes.
        size: u64,
        /// Modification time.
        modified_ns: u128,
    },
    /// A page: when it was last edited (ns since the epoch), and whether that is settled.
    /// Notion gives edit times to the minute, so a page edited again within the same minute
    /// keeps its stamp: until the settle time has passed, an unsettled stamp makes the indexer
    /// look again (and compare the content) once it settles.
    Edited {
        /// Last edit.
        at_ns: u128,
        /// Whether the settle time has passed since.
        settled: bool,
    },
}

/// A document as a source lists it, before it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceItem {
    /// Its id within the source (a path relative to the folder, `/`-separated; a page id).
    pub id: String,
    /// What says whether it changed.
    pub stamp: Stamp,
}

/// Where documents come from.
pub trait Source: Sync {
    /// The source's key in the manifest.
    fn root(&self) -> &SourceId;

    /// The documents there now, with the stamps (size, modification time) that tell whether
    /// one changed since it was indexed.
    fn scan(&self) -> Result<Listing>;

    /// Reads one listed document.
    fn read(&self, item: &SourceItem) -> Result<ReadDocument>;
}

/// What a source lists.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The documents, by id.
    pub files: Vec<SourceItem>,
    /// Whether these are all of the source's documents; a partial listing (an incremental
    /// query) removes nothing it does not mention.
    pub complete: bool,
}

/// A document as read from its source.
#[derive(Debug, Clone)]
pub struct ReadDocument {
    /// The exact text whose hash says whether the content changed.
    pub raw: String,
    /// The parsed document.
    pub document: Document,
    /// Where a reader opens it (a Notion page's URL); results name the id otherwise.
    pub url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ids_are_tagged_and_format_1_roots_still_read() {
        let folder = SourceId::Folder("/home/me/notes".into());
        let notion = SourceId::Notion("db1".into());
        assert_eq!(serde_json::to_string(&folder).unwrap(), r#"{"folder":"/home/me/notes"}"#);
        assert_eq!(serde_json::to_string(&notion).unwrap(), r#"{"notion":"db1"}"#);
        for id in [&folder, &notion] {
            let written = serde_json::to_string(id).unwrap();
            assert_eq!(&serde_json::from_str::<SourceId>(&written).unwrap(), id);
        }
        assert_eq!(serde_json::from_str::<SourceId>(r#""/home/me/notes""#).unwrap(), folder);
        assert_eq!(serde_json::from_str::<SourceId>(r#""notion://db1""#).unwrap(), notion);
        assert_eq!(notion.to_string(), "notion://db1");
        assert_eq!(folder.folder(), Some(Path::new("/home/me/notes")));
        assert_eq!(notion.folder(), None);
    }
}
