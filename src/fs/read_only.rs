//! [`ReadOnlyFs`]: the state directory as a read-only store sees it.
//!
//! **Invariant:** a [`ReadOnlyFs`] passes no write to the filesystem under
//! it: creating, opening for writing, renaming, removing, syncing and
//! locking are refused with [`ErrorKind::ReadOnly`], whatever calls them.
//! It reads without memory maps, so a writer beside it that truncates a
//! journal segment cannot fault this process. (An older `state.json` is
//! migrated in memory by recovery, which knows whether statewal has history
//! there: a file without a version must then be merged, not loaded.)

use super::{Bytes, Fs, FsFile, OpenMode};
use crate::error::{Error, ErrorKind, Result};
use std::sync::Arc;

/// A filesystem that reads through another one and refuses every write.
#[allow(missing_debug_implementations)] // Internal; reached only through `__internal`.
pub struct ReadOnlyFs {
    inner: Arc<dyn Fs>,
}

impl ReadOnlyFs {
    /// Reads through `inner`; writes nothing to it.
    pub fn new(inner: Arc<dyn Fs>) -> ReadOnlyFs {
        ReadOnlyFs { inner }
    }

    fn refuse<T>(&self, what: &str, rel: &str) -> Result<T> {
        Err(Error::new(
            ErrorKind::ReadOnly,
            format!(
                "refusing to {what} {}: the store is open read-only",
                self.inner.describe(rel)
            ),
        )
        .with_path(rel))
    }
}

impl Fs for ReadOnlyFs {
    fn describe(&self, rel: &str) -> String {
        self.inner.describe(rel)
    }

    fn create_dir(&self, rel: &str) -> Result<()> {
        self.refuse("create the directory", rel)
    }

    fn open(&self, rel: &str, _mode: OpenMode) -> Result<Box<dyn FsFile>> {
        self.refuse("open for writing", rel)
    }

    fn read(&self, rel: &str) -> Result<Option<Bytes>> {
        Ok(self.read_unmapped(rel)?.map(Bytes::Owned))
    }

    fn read_unmapped(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read_unmapped(rel)
    }

    fn read_at(&self, rel: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        self.inner.read_at(rel, offset, len)
    }

    fn read_raw(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read_raw(rel)
    }

    fn unseal<'a>(&self, rel: &str, raw: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>> {
        self.inner.unseal(rel, raw)
    }

    fn is_dir(&self, rel: &str) -> Result<bool> {
        self.inner.is_dir(rel)
    }

    fn file_len(&self, rel: &str) -> Result<Option<u64>> {
        self.inner.file_len(rel)
    }

    fn stat(&self, rel: &str) -> Result<Option<super::FileStat>> {
        self.inner.stat(rel)
    }

    fn read_at_stat(
        &self,
        rel: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<(Vec<u8>, Option<super::FileStat>)>> {
        self.inner.read_at_stat(rel, offset, len)
    }

    fn list_all(&self, rel: &str) -> Result<Option<Vec<String>>> {
        self.inner.list_all(rel)
    }

    fn list_typed(&self, rel: &str) -> Result<Option<super::Listing>> {
        self.inner.list_typed(rel)
    }

    fn stat_in(&self, dir: &str, names: &[&str]) -> Result<Vec<Option<super::FileStat>>> {
        self.inner.stat_in(dir, names)
    }

    fn now(&self) -> std::time::SystemTime {
        self.inner.now()
    }

    fn rename(&self, from: &str, _to: &str) -> Result<()> {
        self.refuse("rename", from)
    }

    fn remove(&self, rel: &str) -> Result<()> {
        self.refuse("remove", rel)
    }

    fn sync_dir(&self, rel: &str) -> Result<()> {
        self.refuse("sync the directory", rel)
    }

    fn list(&self, rel: &str) -> Result<Vec<String>> {
        self.inner.list(rel)
    }

    fn list_dirs(&self, rel: &str) -> Result<Vec<String>> {
        self.inner.list_dirs(rel)
    }

    fn lock(&self) -> Result<Box<dyn Send + Sync>> {
        self.refuse("lock", crate::layout::LOCK_FILE)
    }

    fn sync_files(&self, rels: &[String]) -> Result<()> {
        match rels.first() {
            Some(rel) => self.refuse("sync", rel),
            None => Ok(()),
        }
    }
}
