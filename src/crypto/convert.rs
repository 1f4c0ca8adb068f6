//! `statewal encrypt` and `statewal decrypt`: converting a store in place,
//! crash-safely (`docs/encryption.md`, "Converting a store").
//!
//! A conversion first checkpoints the store in its old form, so that
//! `state.json` covers every journal record. It then writes a marker,
//! `.statewal.converting`, synced, naming the target and the key. From
//! then on every file is converted one at a time by temp file and rename,
//! and the journal's segments (all covered by the checkpoint) are removed;
//! the marker goes last. Power loss anywhere leaves either the old store
//! (no marker yet) or a marker, and any open given the marker's key
//! finishes the conversion before it loads anything. Each step is
//! idempotent: a file already converted is left as it is.

use super::fs::{Keys, bound_name, is_sealed, open_file, seal_file};
use super::{Key, KeyId};
use crate::error::{Error, ErrorKind, Result};
use crate::fs::{self, Fs};
use crate::journal::JOURNAL_DIR;
use crate::journal::reader::{Piece, scan_segment};
use crate::journal::record::SegmentHeader;
use crate::layout::{self, CONVERT_MARKER};
use crate::{Options, Store};
use std::sync::Arc;

/// What a conversion did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ConvertReport {
    /// `"encrypted"` or `"plain"`: what the store is now.
    pub to: String,
    /// The id of the key, as 8 hex digits.
    pub key_id: String,
    /// Layout files converted.
    pub files: usize,
    /// Journal segments removed (every record in them was in the
    /// checkpoint taken first).
    pub segments_removed: usize,
    /// Whether it finished a conversion an earlier run left unfinished.
    pub resumed: bool,
}

/// The marker's content: where the conversion goes, and with which key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Marker {
    /// `"encrypted"` or `"plain"`.
    pub(crate) to: String,
    /// The key id, 8 hex digits.
    pub(crate) key_id: String,
    /// The cipher new files are sealed with.
    pub(crate) cipher: String,
}

impl Marker {
    fn encrypting(&self) -> bool {
        self.to != "plain"
    }

    fn command(&self) -> String {
        match self.to.as_str() {
            "encrypted" => "`statewal encrypt`",
            _ => "`statewal decrypt`",
        }
        .to_string()
    }
}

/// The key id the marker is sealed with, if there is a marker. The marker
/// is sealed under the key it names, so only that key's holder can have
/// written it: a marker planted by someone without the key (to make an
/// open decrypt the store, or seal planted files) never authenticates.
pub(crate) fn marker_key(fs: &dyn Fs) -> Result<Option<KeyId>> {
    let Some(raw) = fs.read_unmapped(CONVERT_MARKER)? else {
        return Ok(None);
    };
    match layout::check_sealed(&raw) {
        Ok((_, id)) => Ok(Some(KeyId(id))),
        Err(why) => Err(Error::new(
            ErrorKind::Corrupt,
            format!("{}: {why}", fs.describe(CONVERT_MARKER)),
        )),
    }
}

/// The marker, opened with `key` (whose id it names).
fn open_marker(fs: &dyn Fs, key: &Key) -> Result<Marker> {
    let shown = fs.describe(CONVERT_MARKER);
    let raw = fs
        .read_unmapped(CONVERT_MARKER)?
        .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("{shown} vanished")))?;
    let plain = open_file(std::slice::from_ref(key), &raw, CONVERT_MARKER, &shown)?;
    serde_json::from_slice(&plain)
        .map_err(|e| Error::new(ErrorKind::Corrupt, format!("{shown}: does not parse: {e}")))
}

/// Writes the marker sealed under `key` (the one it names), synced.
fn write_marker(fs: &dyn Fs, key: &Key, marker: &Marker) -> Result<()> {
    let body = serde_json::to_vec(marker).expect("a marker serializes");
    let sealed = seal_file(key, parse_cipher(&marker.cipher), &body, CONVERT_MARKER)?;
    fs::write_atomic(fs, "", CONVERT_MARKER, &sealed)
}

fn parse_cipher(name: &str) -> super::Algorithm {
    name.parse().unwrap_or_default()
}

/// The marker that is there, if any: opened when `key` is the one it
/// names, else only its key id is known.
fn existing_marker(fs: &dyn Fs, key: &Key) -> Result<Option<std::result::Result<Marker, KeyId>>> {
    Ok(match marker_key(fs)? {
        None => None,
        Some(id) if id == key.id() => Some(Ok(open_marker(fs, key)?)),
        Some(id) => Some(Err(id)),
    })
}

/// Refuses, before anything is written, a journal holding records past
/// the checkpoint `state.json` holds: a conversion removes the segments,
/// and would lose them.
fn check_covered(fs: &dyn Fs, keys: &Keys) -> Result<u64> {
    let covered = covered_seq(fs, keys)?;
    for name in fs.list(JOURNAL_DIR)? {
        if crate::journal::parse_segment_name(&name).is_none() {
            continue;
        }
        let rel = fs::join(JOURNAL_DIR, &name);
        let Some(bytes) = fs.read_unmapped(&rel)? else {
            continue;
        };
        if let Some(last) = records_past(&bytes, covered) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{} holds record {last}, past the checkpoint's {covered}: another process \
                     wrote to the store during the conversion's checkpoint; run it again \
                     (nothing was converted)",
                    fs.describe(&rel)
                ),
            ));
        }
    }
    Ok(covered)
}

/// Encrypts the plain store `opts` names with `opts`' key and cipher.
pub fn encrypt(opts: Options) -> Result<ConvertReport> {
    let fs: Arc<dyn Fs> = Arc::new(fs::RealFs::existing(opts.dir.clone())?);
    convert(opts, fs, true)
}

/// Decrypts the encrypted store `opts` names, which `opts`' key opens.
pub fn decrypt(opts: Options) -> Result<ConvertReport> {
    let fs: Arc<dyn Fs> = Arc::new(fs::RealFs::existing(opts.dir.clone())?);
    convert(opts, fs, false)
}

/// What `encrypt` and `decrypt` share: resume a conversion to
/// `target` that is under way, or begin one (checks, and a checkpoint in
/// the old form); then, under the store's lock, check that the checkpoint
/// covers every record, write the marker, and finish.
struct Run<'a> {
    opts: &'a Options,
    fs: &'a dyn Fs,
    /// The key the marker is sealed under: the one it names.
    marker_key: &'a Key,
    target: Marker,
    /// What the store is sealed with before the conversion.
    old_keys: Keys,
    /// What the conversion reads and writes with.
    keys: Keys,
}

impl Run<'_> {
    fn go(self, begin: impl FnOnce() -> Result<()>) -> Result<ConvertReport> {
        let dir = &self.opts.dir;
        let resumed = match existing_marker(self.fs, self.marker_key)? {
            Some(Ok(m)) if m.to == self.target.to => true,
            Some(Ok(m)) => return Err(other_conversion(dir, &m.command(), &m.key_id)),
            Some(Err(id)) => return Err(other_conversion(dir, "a conversion", &id.to_string())),
            None => {
                begin()?;
                false
            }
        };
        let _lock = self.fs.lock()?;
        if !resumed {
            check_covered(self.fs, &self.old_keys)?;
            // Synced before any file is converted: from here on, an open
            // finishes the conversion rather than finding a mix.
            write_marker(self.fs, self.marker_key, &self.target)?;
        }
        let mut report = finish(self.fs, &self.keys, &self.target)?;
        report.resumed = resumed;
        Ok(report)
    }
}

/// The error for a conversion asked while another is unfinished.
fn other_conversion(dir: &std::path::Path, what: &str, key_id: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!(
            "{} is in the middle of {what} to key id {key_id}: finish that first, by opening \
             the store with that key (nothing was done)",
            dir.display()
        ),
    )
}

/// [`encrypt`] or [`decrypt`] on any filesystem, such as a
/// [`crate::sim::SimFs`] (feature `sim`).
#[cfg(feature = "sim")]
pub fn convert_with_fs(opts: Options, fs: Arc<dyn Fs>, encrypt: bool) -> Result<ConvertReport> {
    convert(opts, fs, encrypt)
}

fn convert(opts: Options, fs: Arc<dyn Fs>, encrypt: bool) -> Result<ConvertReport> {
    let Some(key) = opts.encryption_key.clone() else {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "a key is needed (--key-file, --key-command or STATEWAL_KEY); nothing was done",
        ));
    };
    if opts.database_url().is_some() || opts.read_only {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "encrypt and decrypt convert a state directory, opened for writing",
        ));
    }
    if !layout::holds_store(&*fs)? {
        return Err(layout::no_store(&opts.dir));
    }
    if let Some(id) = super::rotate::keyring_key(&*fs)? {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is changing its key to key id {id} (statewal rekey): that change finishes \
                 first, at the checkpoints of a store opened with that key (nothing was done)",
                opts.dir.display()
            ),
        ));
    }
    let cipher = opts.cipher.unwrap_or_default();
    let keys = Keys::new(key.clone(), Vec::new(), cipher);
    let target = Marker {
        to: if encrypt { "encrypted" } else { "plain" }.into(),
        key_id: key.id().to_string(),
        cipher: cipher.to_string(),
    };
    let run = Run {
        opts: &opts,
        fs: &*fs,
        marker_key: &key,
        target,
        old_keys: keys,
        keys: Keys::new(key.clone(), Vec::new(), cipher),
    };
    run.go(|| begin(&opts, &fs, encrypt))
}

/// Checks the store is in the old form, and checkpoints it there so
/// `state.json` covers every record.
fn begin(opts: &Options, fs: &Arc<dyn Fs>, encrypt: bool) -> Result<()> {
    let sealed = layout::sealed_state(&**fs)?.is_some();
    if sealed == encrypt {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is already {}: nothing was done",
                opts.dir.display(),
                if encrypt { "encrypted" } else { "plain" }
            ),
        ));
    }
    refuse_superseded(opts, &**fs, encrypt)?;
    let mut old = opts.clone().checkpoint_interval(None);
    if encrypt {
        old.encryption_key = None;
    }
    let store = Store::open_on(old, fs.clone(), None)?;
    store.checkpoint()?;
    // Closed (its lock released) before the conversion takes the lock.
    drop(store);
    Ok(())
}

/// Refuses a store with journal segments a merge set aside: a conversion
/// would leave them in their old form.
pub(crate) fn refuse_superseded(opts: &Options, fs: &dyn Fs, sealing: bool) -> Result<()> {
    let superseded = fs
        .list_dirs(JOURNAL_DIR)?
        .into_iter()
        .any(|d| d.starts_with(crate::reconcile::SUPERSEDED_PREFIX));
    if superseded {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} keeps journal segments set aside by a merge (journal/superseded-*): they \
                 would stay {}; move them out of the store first (nothing was done)",
                opts.dir.display(),
                if sealing { "as they are" } else { "encrypted" }
            ),
        ));
    }
    Ok(())
}

/// Converts every file not yet converted, removes the journal's old
/// segments, then the marker. Idempotent.
pub(crate) fn finish(fs: &dyn Fs, keys: &Keys, marker: &Marker) -> Result<ConvertReport> {
    let encrypting = marker.encrypting();
    // Before anything is converted: a record the checkpoint lacks stops
    // the conversion with the store as it was.
    let covered = check_covered(fs, keys)?;
    let mut report = ConvertReport {
        to: marker.to.clone(),
        key_id: marker.key_id.clone(),
        ..ConvertReport::default()
    };
    for dir in std::iter::once("").chain(layout::DIRS) {
        if dir == JOURNAL_DIR {
            continue;
        }
        for name in fs.list(dir)? {
            // Not the lock, the marker or a temp file; caches (dot files)
            // are converted like the rest.
            if [layout::LOCK_FILE, CONVERT_MARKER].contains(&name.as_str()) {
                continue;
            }
            let rel = fs::join(dir, &name);
            if name.ends_with(".tmp") {
                // A crash's leftover, never needed: it would keep its
                // content in its old form.
                fs.remove(&rel)?;
                continue;
            }
            let Some(raw) = fs.read_unmapped(&rel)? else {
                continue;
            };
            let bound = bound_name(&rel);
            let sealed = is_sealed(&raw);
            let open = || open_file(&keys.all, &raw, &bound, &fs.describe(&rel));
            // Each file is opened once: to tell whether it is done
            // (encrypting), or to convert it (the others).
            let (done, opened) = match marker.to.as_str() {
                // Sealed means it opens: plain content that merely begins
                // with the magic (log text from outside) is still plain.
                "encrypted" => match sealed.then(open) {
                    Some(Ok(_)) => (true, None),
                    _ => (false, Some(Ok(raw.clone()))),
                },
                _ => (!sealed, None),
            };
            if done {
                continue;
            }
            let opened = match opened {
                Some(plain) => plain,
                None => open(),
            };
            let plain = match opened {
                Ok(plain) => plain,
                // A cache torn by power loss (written unsynced): gone, and
                // rebuilt by the next checkpoint.
                Err(e)
                    if e.kind() == ErrorKind::Corrupt
                        && crate::derived::DERIVED_FILES.contains(&rel.as_str()) =>
                {
                    fs.remove(&rel)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let new = match encrypting {
                true => seal_file(&keys.current, keys.algorithm, &plain, &bound)?,
                false => plain,
            };
            fs::write_atomic(fs, dir, &name, &new)?;
            report.files += 1;
        }
    }
    for name in fs.list(JOURNAL_DIR)? {
        if crate::journal::parse_segment_name(&name).is_none() {
            continue;
        }
        let rel = fs::join(JOURNAL_DIR, &name);
        let Some(bytes) = fs.read_unmapped(&rel)? else {
            continue;
        };
        if records_past(&bytes, covered).is_some() {
            // Checked before anything was converted; written since only by
            // a process that ignored the lock.
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("{} changed during the conversion", fs.describe(&rel)),
            ));
        }
        fs.remove(&rel)?;
        report.segments_removed += 1;
    }
    fs.sync_dir(JOURNAL_DIR)?;
    fs.remove(CONVERT_MARKER)?;
    fs.sync_dir("")?;
    Ok(report)
}

/// The `journal_seq` of `state.json`, plain or sealed.
fn covered_seq(fs: &dyn Fs, keys: &Keys) -> Result<u64> {
    let shown = fs.describe(layout::STATE_FILE);
    let Some(raw) = fs.read_unmapped(layout::STATE_FILE)? else {
        return Ok(0);
    };
    let plain = match is_sealed(&raw) {
        true => open_file(&keys.all, &raw, layout::STATE_FILE, &shown)?,
        false => raw,
    };
    layout::parse_state(&plain)
        .map(|s| s.journal_seq)
        .map_err(|why| Error::new(ErrorKind::Corrupt, format!("{shown}: {why}")))
}

/// The highest record past `covered` in a segment's bytes, if any.
fn records_past(bytes: &[u8], covered: u64) -> Option<u64> {
    if SegmentHeader::decode(bytes).is_err() {
        return None; // Damage only: nothing recovery would replay.
    }
    scan_segment(bytes)
        .pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Record { record, .. } if record.seq > covered => Some(record.seq),
            _ => None,
        })
        .max()
}

/// What an open does on finding the marker: finish with the marker's key,
/// or say which key finishes it. Returns whether the store is now sealed,
/// and its cipher. The caller holds the store's lock.
pub(crate) fn finish_at_open(
    fs: &dyn Fs,
    key: Option<&Key>,
    dir: &std::path::Path,
) -> Result<Option<(bool, super::Algorithm)>> {
    let Some(id) = marker_key(fs)? else {
        return Ok(None);
    };
    let Some(k) = key.filter(|k| k.id() == id) else {
        return Err(interrupted(dir, id));
    };
    let marker = open_marker(fs, k)?;
    let cipher = parse_cipher(&marker.cipher);
    let keys = Keys::new(k.clone(), Vec::new(), cipher);
    finish(fs, &keys, &marker)?;
    tracing::warn!(conversion = %marker.command(), "finished an interrupted conversion");
    Ok(Some((marker.encrypting(), cipher)))
}

/// The error for an open that finds a conversion it cannot finish.
pub(crate) fn interrupted(dir: &std::path::Path, id: KeyId) -> Error {
    Error::new(
        ErrorKind::Key,
        format!(
            "{} was being converted (statewal encrypt or decrypt, to key id {id}) when \
             it stopped: open it for writing with that key to finish",
            dir.display()
        ),
    )
}
