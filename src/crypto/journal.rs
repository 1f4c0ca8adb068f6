//! The journal's record sealing ([`crate::journal::Sealing`]): each
//! segment gets its own subkey (a fresh salt in its header), and each
//! record's payload is sealed under it, bound to the record's sequence
//! number and kind.

use super::fs::{Keys, wrong_key};
use super::{Algorithm, FileKey, KeyId, Purpose};
use crate::error::{Error, ErrorKind, Result};
use crate::journal::record::SegmentCipher;
use crate::journal::{RecordSeal, Sealing};
use std::sync::Arc;

/// The sealing of an encrypted store's journal.
pub(crate) struct JournalSealing {
    keys: Arc<Keys>,
    /// During a key change, segments sealed under an older key are opened
    /// only if their id is below this one (the keyring's bound): one past
    /// it was not written by this store under that key.
    older_below: u64,
}

impl JournalSealing {
    pub(crate) fn new(keys: Arc<Keys>, older_below: u64) -> JournalSealing {
        JournalSealing { keys, older_below }
    }
}

impl Sealing for JournalSealing {
    fn new_segment(&self) -> Result<(SegmentCipher, Arc<dyn RecordSeal>)> {
        let fk = FileKey::new(&self.keys.current, self.keys.algorithm, Purpose::Segment)?;
        let cipher = SegmentCipher {
            code: fk.algorithm().code(),
            key_id: fk.key_id().0,
            salt: fk.salt(),
        };
        Ok((cipher, Arc::new(SegmentSeal(fk))))
    }

    fn segment(&self, id: u64, cipher: &SegmentCipher, shown: &str) -> Result<Arc<dyn RecordSeal>> {
        let Some(algorithm) = Algorithm::from_code(cipher.code) else {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("{shown}: unknown cipher code {}", cipher.code),
            ));
        };
        let needed = KeyId(cipher.key_id);
        let usable = |k: &&super::Key| {
            k.id() == needed && (k.id() == self.keys.current.id() || id < self.older_below)
        };
        let Some(key) = self.keys.all.iter().find(usable) else {
            return Err(wrong_key(
                shown,
                needed,
                std::slice::from_ref(&self.keys.current),
            ));
        };
        let fk = FileKey::with_salt(key, algorithm, Purpose::Segment, cipher.salt);
        Ok(Arc::new(SegmentSeal(fk)))
    }
}

/// One segment's subkey.
struct SegmentSeal(FileKey);

/// The associated data of record `seq` of `kind`.
fn aad(seq: u64, kind: u8) -> [u8; 9] {
    let mut a = [0u8; 9];
    a[..8].copy_from_slice(&seq.to_le_bytes());
    a[8] = kind;
    a
}

impl RecordSeal for SegmentSeal {
    fn seal(&self, seq: u64, kind: u8, payload: &[u8]) -> Result<Vec<u8>> {
        // A counter nonce: this subkey is the segment's own, made with the
        // segment file (docs/encryption.md).
        self.0.seal_next(payload, &aad(seq, kind))
    }

    fn open(&self, seq: u64, kind: u8, sealed: &[u8]) -> Option<Vec<u8>> {
        self.0.open(sealed, &aad(seq, kind))
    }
}
