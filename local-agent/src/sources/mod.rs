//! Where documents come from: a folder of notes ([`folder`]), a Notion knowledge database
//! ([`notion_sync`]), and the watching that re-indexes folders while serving ([`watch`]). Every
//! source is a [`Source`]: the indexer lists it, reads what changed, and knows it in the
//! manifest by its root.

pub mod folder;
pub mod notion_sync;
pub mod watch;

use std::path::Path;

use self::folder::{Document, SourceFile};
pub use self::folder::{FolderSource, is_folder_root};
use crate::error::Result;

/// Where documents come from.
pub trait Source: Sync {
    /// The source's key in the manifest (a folder's absolute path, `notion://<database id>`).
    fn root(&self) -> &Path;

    /// The documents there now, with the stamps (size, modification time) that tell whether
    /// one changed since it was indexed.
    fn scan(&self) -> Result<Listing>;

    /// Reads one listed document.
    fn read(&self, file: &SourceFile) -> Result<ReadDocument>;
}

/// What a source lists.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The documents, by id.
    pub files: Vec<SourceFile>,
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
