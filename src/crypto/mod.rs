//! Encryption at rest (feature `encryption`, issue 13): the store's key,
//! where it comes from, and the authenticated cipher that seals journal
//! records and layout files with it.
//!
//! This module is the only one that sees key bytes (ARCHITECTURE.md). The
//! rest of the crate holds a [`Key`] (whose `Debug` shows its id, never its
//! bytes) and asks a `FileKey` (one file's subkey) to seal and open.
//!
//! The construction (`docs/encryption.md`, "The cipher"): each file (a
//! journal segment, a layout file) gets a random 128-bit salt, from which
//! HKDF-SHA256 derives the file's own 256-bit subkey. A layout file is one
//! message under a random nonce; a segment's records are sealed under a
//! counter held by the journal that made the segment (its subkey is new
//! with the file). No nonce is derived from a sequence number, an offset
//! or a segment id, which a crash can make repeat.

mod convert;
pub mod fs;
pub(crate) mod journal;
mod key;
pub(crate) mod rotate;

#[cfg(feature = "sim")]
pub use convert::convert_with_fs;
pub(crate) use convert::finish_at_open;
pub use convert::{ConvertReport, decrypt, encrypt};
pub use key::{KEY_ENV, KEY_FILE_ENV, Key, KeyId, KeySource};
#[cfg(feature = "sim")]
pub use rotate::rekey_with_fs;
pub use rotate::{RekeyReport, rekey};

use crate::error::{Error, ErrorKind, Result};

/// The authenticated ciphers a store can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// XChaCha20-Poly1305 with random 192-bit nonces: the default.
    #[default]
    XChaCha20Poly1305,
    /// AES-256-GCM with random 96-bit nonces under a per-file subkey, for
    /// users who need a FIPS-approved algorithm. The algorithm is approved;
    /// the RustCrypto implementation is not a FIPS-validated module.
    Aes256Gcm,
}

impl Algorithm {
    /// Both, in code order.
    pub const ALL: [Algorithm; 2] = [Algorithm::XChaCha20Poly1305, Algorithm::Aes256Gcm];

    /// Its code in a segment header or file envelope (0 means "not
    /// encrypted").
    pub fn code(self) -> u8 {
        match self {
            Algorithm::XChaCha20Poly1305 => 1,
            Algorithm::Aes256Gcm => 2,
        }
    }

    /// The algorithm of `code`; `None` for 0 and for codes this build
    /// does not know.
    pub fn from_code(code: u8) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.code() == code)
    }

    /// Its name in options, messages and `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::XChaCha20Poly1305 => "xchacha20poly1305",
            Algorithm::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// The nonce length in bytes.
    pub fn nonce_len(self) -> usize {
        match self {
            Algorithm::XChaCha20Poly1305 => 24,
            Algorithm::Aes256Gcm => 12,
        }
    }

    /// What sealing adds to a message: the nonce and the 16-byte tag.
    pub fn overhead(self) -> usize {
        self.nonce_len() + TAG_LEN
    }
}

impl std::str::FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("unknown cipher {s:?}: expected xchacha20poly1305 or aes-256-gcm"),
                )
            })
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Poly1305 and GHASH tag length.
pub const TAG_LEN: usize = 16;
/// The length of a file's salt.
pub const SALT_LEN: usize = 16;

/// What a file's subkey is for; part of the HKDF info, so that a segment's
/// subkey and a layout file's never coincide even under one salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A journal segment's records.
    Segment,
    /// A whole layout file (`state.json`, `tasks/<id>.json`, ...).
    File,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Segment => b"segment",
            Purpose::File => b"file",
        }
    }
}

/// A cipher keyed with one file's subkey, its key schedule made once.
enum Aead {
    XChaCha(Box<chacha20poly1305::XChaCha20Poly1305>),
    Aes(Box<aes_gcm::Aes256Gcm>),
}

/// One file's subkey: what seals and opens its messages.
pub(crate) struct FileKey {
    algorithm: Algorithm,
    key_id: KeyId,
    salt: [u8; SALT_LEN],
    aead: Aead,
    /// The next nonce of [`FileKey::seal_next`].
    counter: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKey")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl FileKey {
    /// The subkey of a new file: a fresh random salt.
    pub(crate) fn new(key: &Key, algorithm: Algorithm, purpose: Purpose) -> Result<FileKey> {
        let mut salt = [0u8; SALT_LEN];
        fill_random(&mut salt)?;
        Ok(FileKey::with_salt(key, algorithm, purpose, salt))
    }

    /// The subkey of an existing file, from the salt in its header.
    pub(crate) fn with_salt(
        key: &Key,
        algorithm: Algorithm,
        purpose: Purpose,
        salt: [u8; SALT_LEN],
    ) -> FileKey {
        use aes_gcm::aead::KeyInit;
        let mut info = Vec::with_capacity(48);
        info.extend_from_slice(b"statewal v2 ");
        info.extend_from_slice(purpose.label());
        info.push(b' ');
        info.extend_from_slice(algorithm.as_str().as_bytes());
        let subkey = key.derive(&salt, &info);
        let aead = match algorithm {
            Algorithm::XChaCha20Poly1305 => Aead::XChaCha(Box::new(
                chacha20poly1305::XChaCha20Poly1305::new_from_slice(subkey.as_ref())
                    .expect("a 256-bit key"),
            )),
            Algorithm::Aes256Gcm => Aead::Aes(Box::new(
                aes_gcm::Aes256Gcm::new_from_slice(subkey.as_ref()).expect("a 256-bit key"),
            )),
        };
        FileKey {
            algorithm,
            key_id: key.id(),
            salt,
            aead,
            counter: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(crate) fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub(crate) fn salt(&self) -> [u8; SALT_LEN] {
        self.salt
    }

    /// Seals `msg`, bound to `aad`, under a fresh random nonce: the nonce,
    /// then the ciphertext and its tag. For a file sealed whole (one
    /// message per subkey).
    pub(crate) fn seal(&self, msg: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 24];
        let nonce = &mut nonce[..self.algorithm.nonce_len()];
        fill_random(nonce)?;
        self.seal_with(nonce, msg, aad)
    }

    /// Seals `msg` under the next nonce of this subkey's counter (0, 1, 2,
    /// ... as little-endian bytes): for the records of one segment, whose
    /// subkey is new (a fresh salt) whenever a segment file is made, so a
    /// counter held in memory never repeats under it, power loss included
    /// (`docs/encryption.md`). No system call per record.
    pub(crate) fn seal_next(&self, msg: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut nonce = [0u8; 24];
        nonce[..8].copy_from_slice(&n.to_le_bytes());
        self.seal_with(&nonce[..self.algorithm.nonce_len()], msg, aad)
    }

    fn seal_with(&self, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        use aes_gcm::aead::AeadInOut;
        let mut out = Vec::with_capacity(nonce.len() + msg.len() + TAG_LEN);
        out.extend_from_slice(nonce);
        out.extend_from_slice(msg);
        let (nonce, body) = out.split_at_mut(nonce.len());
        let tag = match &self.aead {
            Aead::XChaCha(c) => c
                .encrypt_inout_detached(
                    &nonce_of::<chacha20poly1305::XChaCha20Poly1305>(nonce),
                    aad,
                    body.into(),
                )
                .map(|t| t.to_vec()),
            Aead::Aes(c) => c
                .encrypt_inout_detached(&nonce_of::<aes_gcm::Aes256Gcm>(nonce), aad, body.into())
                .map(|t| t.to_vec()),
        }
        .map_err(|_| {
            Error::new(
                ErrorKind::TooLarge,
                format!("a message of {} bytes is too large to seal", msg.len()),
            )
        })?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens what [`FileKey::seal`] or [`FileKey::seal_next`] made with the
    /// same `aad`; `None` when it does not authenticate (altered, or sealed
    /// under another key or for another place).
    pub(crate) fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        use aes_gcm::aead::Aead as _;
        use aes_gcm::aead::Payload;
        let n = self.algorithm.nonce_len();
        if sealed.len() < n + TAG_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(n);
        let payload = Payload { msg: body, aad };
        match &self.aead {
            Aead::XChaCha(c) => c
                .decrypt(
                    &nonce_of::<chacha20poly1305::XChaCha20Poly1305>(nonce),
                    payload,
                )
                .ok(),
            Aead::Aes(c) => c
                .decrypt(&nonce_of::<aes_gcm::Aes256Gcm>(nonce), payload)
                .ok(),
        }
    }
}

/// `bytes` as cipher `C`'s nonce (their length is the cipher's).
fn nonce_of<C: aes_gcm::aead::AeadCore>(bytes: &[u8]) -> aes_gcm::aead::Nonce<C> {
    aes_gcm::aead::Nonce::<C>::try_from(bytes).expect("the cipher's nonce length")
}

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("the operating system's random number generator failed: {e}"),
        )
    })
}

#[cfg(test)]
mod tests;
