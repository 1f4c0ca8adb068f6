//! `statewal rekey`: changing an encrypted store's key while it stays in
//! use (`docs/encryption.md`, "The key's life").
//!
//! The change begins with one durable file, the keyring
//! (`.statewal-keyring`): the old key, sealed under the new one. From then
//! on the store opens only with the new key, which opens the keyring and
//! so holds both: everything it writes is sealed under the new key at
//! once, and what is still sealed under the old one stays readable. After
//! each checkpoint, files still sealed under the old key are sealed again
//! under the new one ([`Rotation`]); journal segments are never rewritten,
//! and go when checkpoints no longer need them. Once no file and no
//! segment is sealed under the old key, the keyring is removed and the
//! change is finished. `health` reports a change under way.
//!
//! Power loss at any point leaves the keyring durable or absent: absent,
//! the store is as it was under the old key; present, every file is sealed
//! under one of the two keys, both of which the new key reaches.

use super::fs::{Keys, SealedFs, open_file, seal_file, wrong_key};
use super::{Algorithm, Key, KeyId};
use crate::checkpoint::AfterCheckpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::fs::{self, Fs};
use crate::layout;
use crate::{Options, Store};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) use crate::layout::KEYRING;

/// Files sealed again after one checkpoint, at most: a checkpoint's pause
/// stays bounded, and the following ones do the rest.
const FILES_PER_CHECKPOINT: usize = 4096;

/// The key id the keyring is sealed under (the new key's), if there is a
/// keyring.
pub(crate) fn keyring_key(fs: &dyn Fs) -> Result<Option<KeyId>> {
    let Some(raw) = fs.read_unmapped(KEYRING)? else {
        return Ok(None);
    };
    match layout::check_sealed(&raw) {
        Ok((_, id)) => Ok(Some(KeyId(id))),
        Err(why) => Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{}: {why}: the key change it records cannot go on; run `statewal rekey` \
                 again with the old key (--key-file) and the new one (--new-key-file), which \
                 writes it again",
                fs.describe(KEYRING)
            ),
        )),
    }
}

/// What the keyring holds, sealed under the new key.
pub(crate) struct Ring {
    /// The old key.
    pub(crate) old: Key,
    /// Segments sealed under the old key all have ids below this one (the
    /// journal's next id when the change began): a segment past it sealed
    /// under the old key was not written by this store, and is refused.
    pub(crate) segments_below: u64,
    /// Every layout file was sealed again under the new key: from then on,
    /// a layout file under the old key is refused, as any other key's.
    pub(crate) files_done: bool,
}

/// Writes the keyring for a change from `old` to `new`, synced.
fn write_ring(fs: &dyn Fs, new: &Key, cipher: Algorithm, ring: &Ring) -> Result<()> {
    use std::fmt::Write as _;
    let line = ring.old.to_line();
    // Room for all of it from the start: no reallocation leaves a copy of
    // the key behind.
    let mut body = zeroize::Zeroizing::new(String::with_capacity(160));
    write!(
        body,
        r#"{{"key":"{}","segments_below":{},"files_done":{}}}"#,
        line.trim(),
        ring.segments_below,
        ring.files_done
    )
    .expect("a String takes any write");
    let sealed = seal_file(new, cipher, body.as_bytes(), KEYRING)?;
    fs::write_atomic(fs, "", KEYRING, &sealed)
}

/// The keyring, opened with `key`, when a key change is under way. An open
/// with any key but the keyring's (the old key, after the change began) is
/// a key error naming the new one. `fs` is the store's own (not sealed).
pub(crate) fn keys_at_open(fs: &dyn Fs, key: &Key, dir: &Path) -> Result<Option<Ring>> {
    let Some(id) = keyring_key(fs)? else {
        return Ok(None);
    };
    if id != key.id() {
        return Err(Error::new(
            ErrorKind::Key,
            format!(
                "{} is changing its key to key id {id} (statewal rekey), and key id {} was \
                 given: it opens only with the new key",
                dir.display(),
                key.id()
            ),
        ));
    }
    read_ring(fs, key).map(Some)
}

fn read_ring(fs: &dyn Fs, key: &Key) -> Result<Ring> {
    #[derive(serde::Deserialize)]
    struct Body {
        key: String,
        segments_below: u64,
        files_done: bool,
    }
    let shown = fs.describe(KEYRING);
    let raw = fs
        .read_unmapped(KEYRING)?
        .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("{shown} vanished")))?;
    let plain =
        zeroize::Zeroizing::new(open_file(std::slice::from_ref(key), &raw, KEYRING, &shown)?);
    let body: Body = serde_json::from_slice(&plain)
        .map_err(|e| Error::new(ErrorKind::Corrupt, format!("{shown}: does not parse: {e}")))?;
    let text = zeroize::Zeroizing::new(body.key);
    Ok(Ring {
        old: Key::parse(&text, &shown)?,
        segments_below: body.segments_below,
        files_done: body.files_done,
    })
}

/// Writes, under the store's lock, the keyring that begins a change from
/// `old` to `new`: every segment there is now may be under the old key,
/// and no layout file is sealed again yet.
fn begin_ring(fs: &dyn Fs, old: &Key, new: &Key, cipher: Algorithm) -> Result<()> {
    let _lock = fs.lock()?;
    let ring = Ring {
        old: old.clone(),
        segments_below: next_segment_id(fs)?,
        files_done: false,
    };
    write_ring(fs, new, cipher, &ring)
}

/// The journal's next segment id: every segment there is has a lower one.
fn next_segment_id(fs: &dyn Fs) -> Result<u64> {
    Ok(fs
        .list(crate::journal::JOURNAL_DIR)?
        .iter()
        .filter_map(|n| crate::journal::parse_segment_name(n))
        .max()
        .map_or(1, |id| id + 1))
}

/// What one pass of a key change found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Pass {
    /// Files sealed again under the new key.
    pub(crate) files: usize,
    /// Files still sealed under another key (past the pass's budget, or
    /// damaged).
    pub(crate) files_left: usize,
    /// Journal segments still sealed under another key.
    pub(crate) segments_left: usize,
    /// Whether the change finished (the keyring is gone).
    pub(crate) finished: bool,
    /// Files under the old key that do not authenticate: damage the store
    /// passes over (recovery) or sets aside (reconcile), which the old key
    /// could not recover either. Left as they are, and not waited for.
    pub(crate) damaged: Vec<String>,
}

/// Seals again under `current` up to `budget` layout files sealed under
/// another key, through `sealed` (the store's sealed filesystem over
/// `raw`), and counts what is left: files, and journal segments. The
/// caller holds the checkpoint's lock or the store's: nothing else writes
/// layout files meanwhile.
fn pass(sealed: &dyn Fs, raw: &dyn Fs, current: KeyId, budget: usize) -> Result<Pass> {
    walk(Some(sealed), raw, current, budget)
}

/// The layout files sealed under a key other than `current`.
fn count_old(raw: &dyn Fs, current: KeyId) -> Result<usize> {
    Ok(walk(None, raw, current, 0)?.files_left)
}

/// [`pass`], or with no `sealed` filesystem only the count (nothing is
/// written, and the keyring stays).
fn walk(sealed: Option<&dyn Fs>, raw: &dyn Fs, current: KeyId, budget: usize) -> Result<Pass> {
    let mut out = Pass::default();
    // The caller stops asking for files once they are all done (the
    // keyring's `files_done`); segments are counted every time.
    for (dir, name) in layout::sealable_files(raw)? {
        let rel = fs::join(dir, &name);
        // No file is read whole to learn that it is done.
        if layout::file_key_id(raw, &rel)?.is_none_or(|id| id == current.0) {
            continue;
        }
        let Some(sealed) = sealed.filter(|_| out.files < budget) else {
            out.files_left += 1;
            continue;
        };
        let plain = match sealed.read_unmapped(&rel) {
            Ok(Some(plain)) => plain,
            Ok(None) => continue,
            // Damaged: sealed again it would be a valid file holding
            // nothing true. Left for the store's own handling (recovery
            // passes over it, reconcile sets it aside), and named; the
            // change does not wait for it (the old key cannot recover it).
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                tracing::warn!(error = %e, "key change: a damaged file is left as it is");
                out.damaged.push(rel);
                continue;
            }
            Err(e) => return Err(e),
        };
        fs::write_atomic(sealed, dir, &name, &plain)?;
        out.files += 1;
    }
    out.segments_left = layout::segments_sealed_otherwise(raw, current.0)?;
    Ok(out)
}

/// Removes the keyring: the change is finished.
fn finish(raw: &dyn Fs, current: KeyId) -> Result<()> {
    raw.remove(KEYRING)?;
    raw.sync_dir("")?;
    tracing::info!(key_id = %current, "key change finished: the old key is no longer kept");
    Ok(())
}

/// The key change's part in every checkpoint of a store that found the
/// keyring at its open: until every layout file is sealed again, a pass
/// over them (then the keyring says so, and only segments are counted);
/// once nothing is under the old key, the keyring goes.
pub(crate) struct Rotation {
    raw: Arc<dyn Fs>,
    new: Key,
    cipher: Algorithm,
    ring: parking_lot::Mutex<Ring>,
    finished: AtomicBool,
}

impl Rotation {
    pub(crate) fn new(raw: Arc<dyn Fs>, new: Key, cipher: Algorithm, ring: Ring) -> Rotation {
        Rotation {
            raw,
            new,
            cipher,
            ring: parking_lot::Mutex::new(ring),
            finished: AtomicBool::new(false),
        }
    }
}

impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation")
            .field("to", &self.new.id())
            .field("finished", &self.finished)
            .finish()
    }
}

impl AfterCheckpoint for Rotation {
    fn after(&self, fs: &dyn Fs) -> Result<()> {
        if self.finished.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut ring = self.ring.lock();
        let current = self.new.id();
        let left = match ring.files_done {
            true => Pass {
                segments_left: layout::segments_sealed_otherwise(&*self.raw, current.0)?,
                ..Pass::default()
            },
            false => {
                let done = pass(fs, &*self.raw, current, FILES_PER_CHECKPOINT)?;
                if done.files_left == 0 {
                    ring.files_done = true;
                    write_ring(&*self.raw, &self.new, self.cipher, &ring)?;
                }
                done
            }
        };
        if left.files_left == 0 && left.segments_left == 0 {
            finish(&*self.raw, current)?;
            self.finished.store(true, Ordering::Release);
        }
        Ok(())
    }
}

/// What a key change did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RekeyReport {
    /// The new key's id, as 8 hex digits.
    pub key_id: String,
    /// The old key's id.
    pub old_key_id: String,
    /// Layout files sealed again under the new key.
    pub files: usize,
    /// Journal segments still sealed under the old key: checkpoints remove
    /// them once no backup needs them, and the change finishes with the
    /// last. Meanwhile the old key stays in the keyring.
    pub segments_left: usize,
    /// Whether the change finished: no file is sealed under the old key,
    /// and the keyring is gone.
    pub finished: bool,
    /// Whether it went on with a change begun earlier.
    pub resumed: bool,
    /// Files under the old key that did not authenticate (damaged before
    /// the change): left as they are, and not waited for.
    pub damaged: Vec<String>,
}

/// Changes the key of the encrypted store `opts` names (whose current key
/// `opts` holds) to `new_key`, and returns once every layout file is
/// sealed under it. From the moment it begins, the store opens only with
/// `new_key`, which keeps the old one in the keyring until the journal's
/// last segment sealed under it is gone (`RekeyReport::finished`). Run
/// again with the old key given, it goes on with a change it began.
pub fn rekey(opts: Options, new_key: Key) -> Result<RekeyReport> {
    let fs: Arc<dyn Fs> = Arc::new(fs::RealFs::existing(opts.dir.clone())?);
    rekey_on(opts, fs, new_key)
}

/// [`rekey`] on any filesystem, such as a [`crate::sim::SimFs`].
#[cfg(feature = "sim")]
pub fn rekey_with_fs(opts: Options, fs: Arc<dyn Fs>, new_key: Key) -> Result<RekeyReport> {
    rekey_on(opts, fs, new_key)
}

fn rekey_on(opts: Options, fs: Arc<dyn Fs>, new_key: Key) -> Result<RekeyReport> {
    let Some(old_key) = opts.encryption_key.clone() else {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "the store's current key is needed (--key-file, --key-command or STATEWAL_KEY); \
             nothing was done",
        ));
    };
    if old_key.id() == new_key.id() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "the new key is the key the store has; nothing was done",
        ));
    }
    if opts.database_url().is_some() || opts.read_only {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "rekey changes the key of a state directory, opened for writing",
        ));
    }
    if !layout::holds_store(&*fs)? {
        return Err(layout::no_store(&opts.dir));
    }
    if let Some(id) = super::convert::marker_key(&*fs)? {
        return Err(super::convert::interrupted(&opts.dir, id));
    }
    let cipher = opts.cipher.unwrap_or(match layout::store_sealing(&*fs)? {
        layout::Sealing::Sealed(_, code) => Algorithm::from_code(code).unwrap_or_default(),
        _ => Default::default(),
    });
    let ring_key = match keyring_key(&*fs) {
        // Damaged: written again from the two keys given, which the change
        // needs and the keyring held (every file is under one of them).
        Err(e) if e.kind() == ErrorKind::Corrupt => {
            tracing::warn!(error = %e, "rekey: writing the keyring again");
            begin_ring(&*fs, &old_key, &new_key, cipher)?;
            Some(new_key.id())
        }
        other => other?,
    };
    let resumed = match ring_key {
        Some(id) if id == new_key.id() => true,
        Some(id) => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} is changing its key to key id {id} already: open it with that key, \
                     which finishes the change (nothing was done)",
                    opts.dir.display()
                ),
            ));
        }
        None => {
            match layout::sealed_state(&*fs)? {
                Some(id) if id == old_key.id().0 => {}
                Some(id) => {
                    return Err(wrong_key(
                        &opts.dir.display().to_string(),
                        KeyId(id),
                        std::slice::from_ref(&old_key),
                    ));
                }
                None => {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "{} is not encrypted: `statewal encrypt` encrypts it (nothing was \
                             done)",
                            opts.dir.display()
                        ),
                    ));
                }
            }
            super::convert::refuse_superseded(&opts, &*fs, true)?;
            // The old key proves itself first: the store opens with it.
            drop(Store::open_on(
                opts.clone().checkpoint_interval(None),
                fs.clone(),
                None,
            )?);
            // The change begins with the keyring, durable, before anything
            // is sealed under the new key.
            begin_ring(&*fs, &old_key, &new_key, cipher)?;
            false
        }
    };
    // A checkpoint under the new key (state.json, and the segments it
    // covers removed as far as the backups allow), then, under the lock,
    // every layout file still sealed under the old key.
    let old_files = count_old(&*fs, new_key.id())?;
    let opened = opts
        .clone()
        .encryption_key(new_key.clone())
        .cipher(cipher)
        .checkpoint_interval(None);
    let store = Store::open_on(opened, fs.clone(), None)?;
    store.checkpoint()?;
    drop(store);
    let _lock = fs.lock()?;
    if keyring_key(&*fs)?.is_none() {
        // The store's own checkpoints (the close's) found nothing left
        // under the old key, and finished the change.
        return Ok(RekeyReport {
            key_id: new_key.id().to_string(),
            old_key_id: old_key.id().to_string(),
            files: old_files,
            segments_left: 0,
            finished: true,
            resumed,
            damaged: Vec::new(),
        });
    }
    let mut ring = read_ring(&*fs, &new_key)?;
    let keys = Keys::new(new_key.clone(), vec![old_key.clone()], cipher);
    let sealed = SealedFs::with_keys(fs.clone(), Arc::new(keys));
    let done = pass(&sealed, &*fs, new_key.id(), usize::MAX)?;
    // Every layout file is under the new key now (but the damaged ones):
    // from here on, one under the old key is refused.
    ring.files_done = true;
    let finished = done.segments_left == 0;
    match finished {
        true => finish(&*fs, new_key.id())?,
        false => write_ring(&*fs, &new_key, cipher, &ring)?,
    }
    Ok(RekeyReport {
        key_id: new_key.id().to_string(),
        old_key_id: old_key.id().to_string(),
        files: old_files,
        segments_left: done.segments_left,
        finished,
        resumed,
        damaged: done.damaged,
    })
}
