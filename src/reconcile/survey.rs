//! What kind of directory an open meets: statewal's history, a foreign
//! state file, both, or neither. Reads only.

use crate::error::{ErrorKind, Result};
use crate::fs::Fs;
use crate::journal::{JOURNAL_DIR, parse_segment_name};
use crate::layout::{self, STATE_FILE};

/// What a state file (`state.json` or a backup) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Not there.
    Missing,
    /// Empty, cut short, not JSON, not a regular file, or an unversioned
    /// file that does not migrate: why.
    Unusable(String),
    /// Written by statewal: it has a `version` first or statewal's seal
    /// (and usually `journal_seq`, `store_id`). Whether it loads, damaged
    /// or not, is recovery's question.
    Sealed,
    /// Written by the original server (or by hand): no `version`, and it
    /// migrates in memory.
    Unversioned,
}

/// The foreign state file an open must reconcile.
#[derive(Debug, Clone)]
pub(crate) struct ForeignFile {
    /// `state.json`, or the backup used because `state.json` was unusable.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// `state.json`'s own bytes when it was there but unusable (the base is
    /// then a backup): kept as the pre-migration backup, so a rollback puts
    /// back exactly what was there.
    pub unusable_state: Option<Vec<u8>>,
}

/// What [`survey`] found.
#[derive(Debug, Clone)]
pub(crate) struct Survey {
    /// statewal has written here: journal segments, or a sealed state file.
    pub history: bool,
    /// A state file written by the original server that statewal has not
    /// taken in yet: an unversioned `state.json`, or, when `state.json` is
    /// missing or unusable, an unversioned newest valid backup (newer than
    /// every sealed one).
    pub foreign: Option<ForeignFile>,
}

impl Survey {
    /// A foreign state file and no statewal history: migrate (part 1).
    pub fn needs_migration(&self) -> bool {
        self.foreign.is_some() && !self.history
    }

    /// A foreign state file over statewal history: merge (part 3).
    pub fn needs_merge(&self) -> bool {
        self.foreign.is_some() && self.history
    }
}

/// Looks at the journal and the state files. Reads `state.json` and, only
/// when it is not sealed, backups newest first until one is usable (and,
/// with no journal, peeks at the rest for a sealed one).
pub(crate) fn survey(fs: &dyn Fs) -> Result<Survey> {
    let segments = fs
        .list(JOURNAL_DIR)?
        .iter()
        .any(|n| parse_segment_name(n).is_some());
    let state = read(fs, STATE_FILE)?;
    // A damaged state.json that statewal wrote is `Sealed` too: statewal
    // wrote last, and every backup is older than this file, so none of them
    // is foreign news. Recovery falls back as usual.
    let state_kind = classify(state.as_deref());
    let mut history = segments || state_kind == Kind::Sealed;
    let backups = layout::list_backups(fs)?;
    let foreign = match state_kind {
        Kind::Sealed => None,
        Kind::Unversioned => Some(ForeignFile {
            name: STATE_FILE.into(),
            bytes: state
                .as_deref()
                .expect("an unversioned file was read")
                .to_vec(),
            unusable_state: None,
        }),
        Kind::Missing | Kind::Unusable(_) => {
            let mut found = None;
            for name in &backups {
                let bytes = read(fs, name)?;
                match classify(bytes.as_deref()) {
                    // The newest usable backup is statewal's: recovery loads
                    // it, and the foreign side has nothing newer.
                    Kind::Sealed
                        if bytes
                            .as_deref()
                            .is_some_and(|b| layout::parse_state(b).is_ok()) =>
                    {
                        history = true;
                        break;
                    }
                    Kind::Unversioned => {
                        found = Some(ForeignFile {
                            name: name.clone(),
                            bytes: bytes
                                .as_deref()
                                .expect("an unversioned file was read")
                                .to_vec(),
                            unusable_state: state.as_deref().map(<[u8]>::to_vec),
                        });
                        break;
                    }
                    _ => {}
                }
            }
            found
        }
    };
    if !history {
        for name in &backups {
            if read(fs, name)?.is_some_and(|b| has_version(&b) == Some(true)) {
                history = true;
                break;
            }
        }
    }
    Ok(Survey { history, foreign })
}

/// A state file's bytes (mapped when large: most opens only glance at
/// them); `None` when missing. A FIFO or other non-regular file in its
/// place reads as empty bytes: unusable, like a 0-byte file.
fn read(fs: &dyn Fs, name: &str) -> Result<Option<crate::fs::Bytes>> {
    match fs.read(name) {
        Ok(b) => Ok(b),
        // Not a regular file; or, in an encrypted store, one that does not
        // open: either way nothing of it is read.
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Corrupt) => {
            Ok(Some(crate::fs::Bytes::Owned(Vec::new())))
        }
        Err(e) => Err(e),
    }
}

/// What a state file's bytes are.
pub(crate) fn classify(bytes: Option<&[u8]>) -> Kind {
    let Some(bytes) = bytes else {
        return Kind::Missing;
    };
    // statewal's seal (or its `version` first) says statewal wrote it, even
    // when a flipped bit hid the `version` key: never the original server's.
    if crate::layout::written_by_statewal(bytes) {
        return Kind::Sealed;
    }
    match has_version(bytes) {
        None if bytes.is_empty() => Kind::Unusable("empty".into()),
        None => Kind::Unusable("not a JSON object".into()),
        Some(true) => Kind::Sealed,
        Some(false) if matches!(crate::migrate::migrate_in_memory(bytes), Ok(Some(_))) => {
            Kind::Unversioned
        }
        Some(false) => Kind::Unusable("written without a version, and it does not migrate".into()),
    }
}

/// Whether a JSON object has a `version` member; `None` when the bytes are
/// not a JSON object. statewal writes `version` first, so that case costs a
/// glance; anything else is parsed (without keeping the values).
pub(crate) fn has_version(bytes: &[u8]) -> Option<bool> {
    let text = bytes.trim_ascii_start();
    if let Some(rest) = text.strip_prefix(b"{")
        && rest.trim_ascii_start().starts_with(b"\"version\"")
        && bytes.trim_ascii_end().ends_with(b"}")
    {
        return Some(true);
    }
    // A map of ignored values, not a derived struct: a derived struct also
    // accepts a JSON array, and took `[1]` for an object with a `version`.
    serde_json::from_slice::<std::collections::HashMap<String, serde::de::IgnoredAny>>(bytes)
        .ok()
        .map(|m| m.contains_key("version"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(classify(None), Kind::Missing);
        assert!(matches!(classify(Some(b"")), Kind::Unusable(_)));
        assert!(matches!(
            classify(Some(b"{\"tasks\": [")),
            Kind::Unusable(_)
        ));
        assert_eq!(classify(Some(b"{\"tasks\": []}")), Kind::Unversioned);
        assert_eq!(
            classify(Some(b"{\n  \"version\": \"1.0.0\", \"tasks\": []\n}\n")),
            Kind::Sealed
        );
        assert_eq!(
            classify(Some(b"{\"tasks\": [], \"version\": \"1.0.0\"}")),
            Kind::Sealed
        );
        assert!(matches!(
            classify(Some(
                b"{\"tasks\": [{\"id\": \"a\", \"status\": \"exploded\"}]}"
            )),
            Kind::Unusable(_)
        ));
        // Not an object: never statewal's, never the original server's.
        for array in [&b"[1]"[..], b"[\"1.0.0\"]", b"[{\"tasks\": []}]", b"[null]"] {
            assert_eq!(has_version(array), None);
            assert!(matches!(classify(Some(array)), Kind::Unusable(_)));
        }
    }
}
