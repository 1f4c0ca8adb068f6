//! The sealed filesystem: a layer over any [`Fs`] that seals every layout
//! file (everything outside `journal/`) into one envelope as it is
//! written, and opens it as it is read (`docs/encryption.md`, "Layout
//! files"). The layers above see plain files; the journal's segments pass
//! through untouched (their records are sealed one by one by the journal).

use super::{Algorithm, FileKey, Key, KeyId, Purpose, SALT_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::fs::{Bytes, FileStat, Fs, FsFile, FsMap, Listing, OpenMode};
use std::sync::Arc;

/// The first 8 bytes of a sealed file.
pub const MAGIC: [u8; 8] = crate::layout::SEALED_MAGIC;
/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u8 = crate::layout::SEALED_VERSION;
/// The envelope header's length; the sealed body follows.
pub const HEADER_LEN: usize = crate::layout::SEALED_HEADER_LEN;
/// The bytes the associated data and the checksum's first part cover.
const AAD_LEN: usize = 32;

/// What an envelope's header says, readable without the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    /// The cipher that sealed it.
    pub algorithm: Algorithm,
    /// The id of the key that sealed it.
    pub key_id: KeyId,
    /// The file's salt.
    pub salt: [u8; SALT_LEN],
}

/// Whether `bytes` begin as a sealed file does.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Reads and checks an envelope's header and checksum, without the key:
/// what `verify` can say of a sealed file. `None` when `bytes` are not an
/// envelope at all (no magic); an error string when they are a damaged one.
pub fn inspect(bytes: &[u8]) -> Option<std::result::Result<Envelope, String>> {
    if !is_sealed(bytes) {
        return None;
    }
    Some(check_envelope(bytes))
}

fn check_envelope(bytes: &[u8]) -> std::result::Result<Envelope, String> {
    let (code, key_id) = crate::layout::check_sealed(bytes)?;
    let algorithm =
        Algorithm::from_code(code).ok_or_else(|| format!("unknown cipher code {code}"))?;
    if bytes.len() < HEADER_LEN + algorithm.overhead() {
        return Err("sealed body shorter than its nonce and tag".into());
    }
    let salt: [u8; SALT_LEN] = bytes[16..32].try_into().expect("16 bytes");
    Ok(Envelope {
        algorithm,
        key_id: KeyId(key_id),
        salt,
    })
}

/// CRC-32 of the header's first 32 bytes and of the body.
fn checksum(bytes: &[u8]) -> u32 {
    crate::layout::sealed_checksum(bytes)
}

/// The name a layout file's seal binds (its associated data): the path
/// of the file in the store, relative to its root, as the store reads it.
/// A temp file (`.X.tmp`, `.X.sealed.tmp`) binds the name it is renamed
/// to, a backup of `state.json` (`state.backup.<stamp>.json`) binds
/// `state.json` (checkpoints rename one into the other), and a file set
/// aside as `X.edited-<ms>` binds `X`. So an authentic file moved under
/// another name of the store does not open (docs/encryption.md).
pub(crate) fn bound_name(rel: &str) -> String {
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let name = name
        .strip_prefix('.')
        .and_then(|n| {
            n.strip_suffix(".sealed.tmp")
                .or_else(|| n.strip_suffix(".tmp"))
        })
        .filter(|n| !n.is_empty())
        .unwrap_or(name);
    let name = match name.rsplit_once(".edited-") {
        Some((base, ms)) if !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    };
    if dir.is_empty() && crate::layout::is_backup_name(name) {
        return crate::layout::STATE_FILE.to_string();
    }
    crate::fs::join(dir, name)
}

/// The associated data of a sealed file: its header's first 32 bytes,
/// then the name it binds.
fn file_aad(header: &[u8], bound: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LEN + bound.len());
    aad.extend_from_slice(&header[..AAD_LEN]);
    aad.extend_from_slice(bound.as_bytes());
    aad
}

/// Seals a whole file's bytes under `key` with a fresh salt and nonce,
/// bound to `bound` (a [`bound_name`]).
pub(crate) fn seal_file(
    key: &Key,
    algorithm: Algorithm,
    plain: &[u8],
    bound: &str,
) -> Result<Vec<u8>> {
    let fk = FileKey::new(key, algorithm, Purpose::File)?;
    let mut out = Vec::with_capacity(HEADER_LEN + algorithm.overhead() + plain.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[ENVELOPE_VERSION, algorithm.code(), 0, 0]);
    out.extend_from_slice(&key.id().0.to_le_bytes());
    out.extend_from_slice(&fk.salt());
    out.extend_from_slice(&[0; 4]);
    let sealed = fk.seal(plain, &file_aad(&out, bound))?;
    out.extend_from_slice(&sealed);
    let crc = checksum(&out);
    out[32..36].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Opens a sealed file, bound to `bound`, with whichever of `keys` sealed
/// it. `shown` names the file in errors. A file sealed by a key not among
/// them is [`ErrorKind::Key`], naming the key id it needs; one that does
/// not authenticate under its own key (altered, or sealed under another
/// name) is [`ErrorKind::Corrupt`].
pub(crate) fn open_file(keys: &[Key], bytes: &[u8], bound: &str, shown: &str) -> Result<Vec<u8>> {
    let env = check_envelope(bytes)
        .map_err(|why| Error::new(ErrorKind::Corrupt, format!("{shown}: {why}")))?;
    let Some(key) = keys.iter().find(|k| k.id() == env.key_id) else {
        return Err(wrong_key(shown, env.key_id, keys));
    };
    let fk = FileKey::with_salt(key, env.algorithm, Purpose::File, env.salt);
    fk.open(&bytes[HEADER_LEN..], &file_aad(bytes, bound))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{shown}: does not authenticate under key {} as {bound}: it was altered \
                     after it was sealed, or moved from another name",
                    env.key_id
                ),
            )
        })
}

/// The error for data sealed by key `needed` when `keys` are what was
/// given (none: no key at all).
pub(crate) fn wrong_key(shown: &str, needed: KeyId, keys: &[Key]) -> Error {
    let given: Vec<String> = keys.iter().map(|k| k.id().to_string()).collect();
    Error::new(
        ErrorKind::Key,
        match given.is_empty() {
            true => format!(
                "{shown} is encrypted with key id {needed}: a key is needed to read it \
                 (--key-file, --key-command or STATEWAL_KEY)"
            ),
            false => format!(
                "{shown} is encrypted with key id {needed}, but the key given has id {}: \
                 give the key it was written with",
                given.join(", ")
            ),
        },
    )
}

/// The keys a sealed filesystem uses: the one it seals with, and older
/// ones it still opens with (during a key rotation).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// Seals every file written; opens too. First in `all`.
    pub(crate) current: Key,
    /// Every key files may be sealed with, the current one first.
    pub(crate) all: Vec<Key>,
    /// The cipher new files are sealed with.
    pub(crate) algorithm: Algorithm,
}

impl Keys {
    pub(crate) fn new(current: Key, older: Vec<Key>, algorithm: Algorithm) -> Keys {
        let mut all = vec![current.clone()];
        all.extend(older.into_iter().filter(|k| k.id() != current.id()));
        Keys {
            current,
            all,
            algorithm,
        }
    }
}

/// Whether `rel` is a layout file (sealed whole) rather than part of the
/// journal (sealed record by record, and passed through here).
fn sealed_path(rel: &str) -> bool {
    let journal = crate::journal::JOURNAL_DIR;
    !(rel == journal
        || rel
            .strip_prefix(journal)
            .is_some_and(|r| r.starts_with('/')))
}

/// An [`Fs`] that seals layout files over another one.
pub(crate) struct SealedFs {
    inner: Arc<dyn Fs>,
    keys: Arc<Keys>,
}

impl SealedFs {
    #[cfg(test)]
    pub(crate) fn new(inner: Arc<dyn Fs>, keys: Keys) -> SealedFs {
        SealedFs::with_keys(inner, Arc::new(keys))
    }

    pub(crate) fn with_keys(inner: Arc<dyn Fs>, keys: Arc<Keys>) -> SealedFs {
        SealedFs { inner, keys }
    }

    /// The plain bytes of a sealed file's raw bytes. A file without the
    /// envelope's magic is refused: in an encrypted store every layout
    /// file is sealed, and a plain one was put there by something else.
    fn open_bytes(&self, rel: &str, raw: &[u8]) -> Result<Vec<u8>> {
        let shown = self.inner.describe(rel);
        if !is_sealed(raw) {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{shown} is not encrypted, in an encrypted store: it was not written by \
                     this store (move it away, or `statewal encrypt` a plain store)"
                ),
            ));
        }
        open_file(&self.keys.all, raw, &bound_name(rel), &shown)
    }
}

impl SealedFs {
    /// Renames damaged file `rel` to a free `<rel>.damaged-<ms>`, synced,
    /// and warns, saying why.
    fn set_aside(&self, rel: &str, why: &Error) -> Result<()> {
        let (dir, _) = rel.rsplit_once('/').unwrap_or(("", rel));
        let mut ms = self
            .inner
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let to = loop {
            let to = format!("{rel}.damaged-{ms}");
            if self.inner.file_len(&to)?.is_none() {
                break to;
            }
            ms += 1;
        };
        self.inner.rename(rel, &to)?;
        self.inner.sync_dir(dir)?;
        tracing::warn!(file = rel, now = %to, error = %why, "a sealed file does not open; set aside, and started again");
        Ok(())
    }
}

/// The largest sealed file read whole for a part of it: a sealed file
/// authenticates only whole, so a caller that bounds its read (a task file
/// at most twice a record, so that a planted file the size of a disk is
/// never read whole) gets [`ErrorKind::TooLarge`] past this instead.
const PARTIAL_READ_WHOLE_MAX: u64 = 256 << 20;

impl SealedFs {
    /// Refuses a read of `len` bytes at `offset` of sealed file `rel` that
    /// would read more than [`PARTIAL_READ_WHOLE_MAX`] bytes beyond it.
    fn check_part(&self, rel: &str, offset: u64, len: u64) -> Result<()> {
        let asked = offset
            .saturating_add(len)
            .saturating_add((HEADER_LEN + Algorithm::XChaCha20Poly1305.overhead()) as u64);
        match self.inner.file_len(rel)? {
            Some(raw) if raw > asked && raw > PARTIAL_READ_WHOLE_MAX => Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{} is a sealed file of {raw} bytes: a sealed file is read whole to \
                     authenticate it, and a read of part of one is refused past \
                     {PARTIAL_READ_WHOLE_MAX} bytes",
                    self.inner.describe(rel)
                ),
            )
            .with_path(rel)),
            _ => Ok(()),
        }
    }
}

impl Fs for SealedFs {
    fn describe(&self, rel: &str) -> String {
        self.inner.describe(rel)
    }

    fn create_dir(&self, rel: &str) -> Result<()> {
        self.inner.create_dir(rel)
    }

    fn open(&self, rel: &str, mode: OpenMode) -> Result<Box<dyn FsFile>> {
        if !sealed_path(rel) {
            return self.inner.open(rel, mode);
        }
        let plain = match mode {
            OpenMode::CreateNew => Vec::new(),
            OpenMode::CreateOrOpen | OpenMode::Existing => match self.read_unmapped(rel) {
                Ok(Some(plain)) => plain,
                Ok(None) if mode == OpenMode::Existing => {
                    // The inner open says it as it would without the layer.
                    return self.inner.open(rel, mode);
                }
                Ok(None) => Vec::new(),
                // A file extended in place (a session log, an archive) that
                // does not open: its content is lost either way. It is set
                // aside, as it is, and the file starts again from nothing
                // (what is written at an offset past its start leaves
                // zeros before it), so that it never stops a checkpoint.
                Err(e) if e.kind() == ErrorKind::Corrupt && mode == OpenMode::CreateOrOpen => {
                    self.set_aside(rel, &e)?;
                    Vec::new()
                }
                Err(e) => return Err(e),
            },
        };
        let mut file = SealedFile {
            inner: self.inner.clone(),
            keys: self.keys.clone(),
            rel: rel.to_string(),
            handle: None,
            plain,
            dirty: false,
        };
        if mode == OpenMode::CreateNew {
            // Created now, as the caller expects (and with its error if it
            // exists), holding a sealed empty file from the start.
            file.handle = Some(self.inner.open(rel, OpenMode::CreateNew)?);
            file.write_through()?;
        }
        Ok(Box::new(file))
    }

    fn read(&self, rel: &str) -> Result<Option<Bytes>> {
        Ok(self.read_unmapped(rel)?.map(Bytes::Owned))
    }

    fn read_unmapped(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        if !sealed_path(rel) {
            return self.inner.read_unmapped(rel);
        }
        match self.inner.read_unmapped(rel)? {
            // A derived file (a cache) is written without a sync: power
            // loss may tear it, which its reader would find and rebuild it
            // from the store. Torn here means it does not open, so it reads
            // as missing, with the same effect; any other file's failure
            // to open is an error.
            Some(raw) if crate::derived::DERIVED_FILES.contains(&rel) => {
                match self.open_bytes(rel, &raw) {
                    Ok(plain) => Ok(Some(plain)),
                    Err(e) if e.kind() == ErrorKind::Corrupt => {
                        tracing::debug!(file = rel, error = %e, "a derived file does not open; rebuilt");
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
            Some(raw) => self.open_bytes(rel, &raw).map(Some),
            None => Ok(None),
        }
    }

    fn read_raw(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read_unmapped(rel)
    }

    fn unseal<'a>(&self, rel: &str, raw: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>> {
        match sealed_path(rel) {
            true => self.open_bytes(rel, raw).map(std::borrow::Cow::Owned),
            false => Ok(std::borrow::Cow::Borrowed(raw)),
        }
    }

    fn read_at(&self, rel: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        if !sealed_path(rel) {
            return self.inner.read_at(rel, offset, len);
        }
        self.check_part(rel, offset, len)?;
        Ok(self
            .read_unmapped(rel)?
            .map(|plain| slice(plain, offset, len)))
    }

    fn read_at_stat(
        &self,
        rel: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<(Vec<u8>, Option<FileStat>)>> {
        if !sealed_path(rel) {
            return self.inner.read_at_stat(rel, offset, len);
        }
        self.check_part(rel, offset, len)?;
        // The stat first, as the inner one takes it: a write after it shows
        // in a later stat, never in bytes it vouches for.
        let stat = self.inner.stat(rel)?;
        Ok(self
            .read_unmapped(rel)?
            .map(|plain| (slice(plain, offset, len), stat)))
    }

    fn is_dir(&self, rel: &str) -> Result<bool> {
        self.inner.is_dir(rel)
    }

    /// A sealed file's plain length, from its header and size without
    /// opening it; any other file's own length (what `metrics` counts).
    fn file_len(&self, rel: &str) -> Result<Option<u64>> {
        let Some(raw) = self.inner.file_len(rel)? else {
            return Ok(None);
        };
        if !sealed_path(rel) {
            return Ok(Some(raw));
        }
        let head = self.inner.read_at(rel, 0, 10)?.unwrap_or_default();
        let algorithm = (head.len() == 10 && is_sealed(&head))
            .then(|| Algorithm::from_code(head[9]))
            .flatten();
        Ok(Some(match algorithm {
            Some(a) => raw.saturating_sub((HEADER_LEN + a.overhead()) as u64),
            None => raw,
        }))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inner.rename(from, to)
    }

    fn remove(&self, rel: &str) -> Result<()> {
        self.inner.remove(rel)
    }

    fn sync_dir(&self, rel: &str) -> Result<()> {
        self.inner.sync_dir(rel)
    }

    fn list(&self, rel: &str) -> Result<Vec<String>> {
        self.inner.list(rel)
    }

    fn list_dirs(&self, rel: &str) -> Result<Vec<String>> {
        self.inner.list_dirs(rel)
    }

    fn lock(&self) -> Result<Box<dyn Send + Sync>> {
        self.inner.lock()
    }

    fn boot_id(&self) -> Option<[u8; 16]> {
        self.inner.boot_id()
    }

    fn sync_files(&self, rels: &[String]) -> Result<()> {
        self.inner.sync_files(rels)
    }

    fn stat(&self, rel: &str) -> Result<Option<FileStat>> {
        self.inner.stat(rel)
    }

    fn stat_in(&self, dir: &str, names: &[&str]) -> Result<Vec<Option<FileStat>>> {
        self.inner.stat_in(dir, names)
    }

    fn list_all(&self, rel: &str) -> Result<Option<Vec<String>>> {
        self.inner.list_all(rel)
    }

    fn list_typed(&self, rel: &str) -> Result<Option<Listing>> {
        self.inner.list_typed(rel)
    }

    fn now(&self) -> std::time::SystemTime {
        self.inner.now()
    }

    fn batch_threads(&self) -> usize {
        self.inner.batch_threads()
    }
}

fn slice(mut plain: Vec<u8>, offset: u64, len: u64) -> Vec<u8> {
    let start = (offset.min(plain.len() as u64)) as usize;
    let end = (offset.saturating_add(len).min(plain.len() as u64)) as usize;
    plain.truncate(end);
    plain.drain(..start);
    plain
}

/// A layout file open for writing through the sealed layer. Its plain
/// bytes are held whole. A new file (`CreateNew`: a temp file the caller
/// renames) is sealed again and written through at every write. A file
/// updated in place (`CreateOrOpen`, `Existing`: a session log, an
/// archive) is sealed into a temp file and renamed over the old one at
/// [`FsFile::sync_data`], so power loss never leaves half of a sealed file.
struct SealedFile {
    inner: Arc<dyn Fs>,
    keys: Arc<Keys>,
    rel: String,
    /// The inner file, for a new one.
    handle: Option<Box<dyn FsFile>>,
    plain: Vec<u8>,
    /// Changed since it was last written out (in-place files only).
    dirty: bool,
}

impl SealedFile {
    fn sealed(&self) -> Result<Vec<u8>> {
        seal_file(
            &self.keys.current,
            self.keys.algorithm,
            &self.plain,
            &bound_name(&self.rel),
        )
    }

    /// Writes the sealed bytes over the new file's whole content.
    fn write_through(&mut self) -> Result<()> {
        let sealed = self.sealed()?;
        let handle = self.handle.as_mut().expect("a new file has a handle");
        handle.write_all_at(0, &sealed)?;
        handle.set_len(sealed.len() as u64)
    }

    /// Replaces the in-place file by temp file and rename; `sync` syncs the
    /// temp file's data first, and the directory after.
    fn replace(&mut self, sync: bool) -> Result<()> {
        let sealed = self.sealed()?;
        let (dir, name) = match self.rel.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => ("", self.rel.as_str()),
        };
        let tmp = crate::fs::join(dir, &format!(".{name}.sealed.tmp"));
        self.inner.remove(&tmp)?;
        let mut file = self.inner.open(&tmp, OpenMode::CreateNew)?;
        file.write_all_at(0, &sealed)?;
        if sync {
            file.sync_data()?;
        }
        drop(file);
        self.inner.rename(&tmp, &self.rel)?;
        if sync {
            self.inner.sync_dir(dir)?;
        }
        self.dirty = false;
        Ok(())
    }

    fn changed(&mut self) -> Result<()> {
        match self.handle.is_some() {
            true => self.write_through(),
            false => {
                self.dirty = true;
                Ok(())
            }
        }
    }
}

impl FsFile for SealedFile {
    fn write_all_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let at = usize::try_from(offset).map_err(|_| {
            Error::new(ErrorKind::TooLarge, format!("offset {offset} is too large"))
        })?;
        let end = at + data.len();
        if self.plain.len() < end {
            self.plain.resize(end, 0);
        }
        self.plain[at..end].copy_from_slice(data);
        self.changed()
    }

    fn sync_data(&mut self) -> Result<()> {
        match self.handle.as_mut() {
            Some(handle) => handle.sync_data(),
            None if self.dirty => self.replace(true),
            None => Ok(()),
        }
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        let len = usize::try_from(len)
            .map_err(|_| Error::new(ErrorKind::TooLarge, format!("length {len} is too large")))?;
        self.plain.resize(len, 0);
        self.changed()
    }

    fn len(&self) -> Result<u64> {
        Ok(self.plain.len() as u64)
    }

    fn set_modified(&mut self, time: std::time::SystemTime) -> Result<()> {
        match self.handle.as_mut() {
            Some(handle) => handle.set_modified(time),
            None => Ok(()),
        }
    }

    fn stat(&self) -> Result<Option<FileStat>> {
        match self.handle.as_ref() {
            Some(handle) => handle.stat(),
            None => self.inner.stat(&self.rel),
        }
    }

    fn allocate(&mut self, _len: u64) -> Result<()> {
        // Zeros written ahead would be sealed as content: a sealed file is
        // rewritten whole anyway.
        Ok(())
    }

    fn map(&mut self, _len: u64) -> Result<Option<Box<dyn FsMap>>> {
        Ok(None)
    }
}

impl Drop for SealedFile {
    fn drop(&mut self) {
        // An in-place file changed but never synced: written out unsynced,
        // as the write itself would have been (best effort; the caller
        // asked for no durability).
        if self.dirty {
            let _ = self.replace(false);
        }
    }
}

#[cfg(test)]
mod tests;
