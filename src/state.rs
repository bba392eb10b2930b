//! The state file: per-source cursors kept across restarts, its lock and its atomic saves.
//!
//! The file is a JSON object such as
//! `{"version":1,"cursors":{"home":"113600000000000101"}}`, where each cursor
//! is the id of the newest item delivered from that source.

use std::collections::BTreeMap;
use std::error::Error;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The only state file format version this code reads and writes.
const FORMAT_VERSION: u64 = 1;

/// File mode for the state file, its temporary file and its lock file.
const FILE_MODE: u32 = 0o600;

/// Error from opening, reading or saving the state file.
#[derive(Debug)]
pub enum StateError {
    /// Another open `StateFile`, usually in another process, holds the lock.
    Locked { path: PathBuf },
    /// The file exists but its content is not a valid state file.
    Corrupt { path: PathBuf, reason: String },
    /// An I/O operation failed on `path`, which is the state file, its lock
    /// file, its temporary file or its directory.
    Io { path: PathBuf, source: io::Error },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Locked { path } => write!(
                f,
                "state file {} is locked by another mastotail process; \
                 stop that process or use another --state file",
                path.display()
            ),
            StateError::Corrupt { path, reason } => write!(
                f,
                "state file {} is corrupt ({reason}); fix or remove it, \
                 but removing it makes mastotail start from the newest events \
                 and lose the events since its last run",
                path.display()
            ),
            StateError::Io { path, source } => write!(
                f,
                "state file I/O failed on {}: {source}; \
                 check that the --state path is a writable file in an existing directory",
                path.display()
            ),
        }
    }
}

impl Error for StateError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            StateError::Io { source, .. } => Some(source),
            StateError::Locked { .. } | StateError::Corrupt { .. } => None,
        }
    }
}

/// An open, locked state file and the cursors it holds in memory.
///
/// The lock is held until the value is dropped.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// Open handle to `<path>.lock`, kept only to hold its exclusive lock until drop.
    _lock: File,
    cursors: BTreeMap<String, String>,
    /// True when `cursors` differs from what was last read or saved.
    changed: bool,
}

impl StateFile {
    /// Locks and reads the state file at `path`.
    ///
    /// The lock is an exclusive advisory lock on `<path>.lock`, which is
    /// created with mode 0600 if missing. A missing state file gives empty
    /// cursors. A file that exists but is not a valid state file gives
    /// [`StateError::Corrupt`] and is never treated as empty.
    pub fn open(path: &Path) -> Result<StateFile, StateError> {
        let lock = acquire_lock(path)?;

        let cursors = match fs::read(path) {
            Ok(bytes) => parse_state(&bytes).map_err(|reason| StateError::Corrupt {
                path: path.to_path_buf(),
                reason,
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                log::debug!(
                    "state file {} does not exist yet, starting without cursors",
                    path.display()
                );
                BTreeMap::new()
            }
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };

        log::debug!(
            "state file {} opened with {} cursors",
            path.display(),
            cursors.len()
        );
        Ok(StateFile {
            path: path.to_path_buf(),
            _lock: lock,
            cursors,
            changed: false,
        })
    }

    /// Returns the path of the state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns all cursors, keyed by source.
    pub fn cursors(&self) -> &BTreeMap<String, String> {
        &self.cursors
    }

    /// Returns the cursor for `source`, if one is stored.
    pub fn cursor(&self, source: &str) -> Option<&str> {
        self.cursors.get(source).map(String::as_str)
    }

    /// Sets the cursor for `source` in memory. [`StateFile::save`] writes it out.
    ///
    /// An empty `id` is ignored, because the file format requires non-empty ids.
    pub fn set_cursor(&mut self, source: &str, id: &str) {
        if id.is_empty() {
            log::debug!("ignoring empty cursor id for source {source}");
            return;
        }
        if self.cursor(source) == Some(id) {
            return;
        }
        self.cursors.insert(source.to_owned(), id.to_owned());
        self.changed = true;
    }

    /// Writes the cursors to disk atomically, unless nothing changed since the last read or save.
    ///
    /// The content goes to `<name>.tmp.<pid>` in the same directory, created
    /// with mode 0600, and is synced and then renamed over the state file.
    /// The directory is synced last so that the rename survives a crash. On
    /// error the cursors stay marked as changed, so the next call tries again.
    pub fn save(&mut self) -> Result<(), StateError> {
        if !self.changed {
            log::trace!("state file {} unchanged, not saving", self.path.display());
            return Ok(());
        }

        let content = serialize_state(&self.cursors);
        let temp_path = temp_path_for(&self.path);
        if let Err(source) = write_new_file(&temp_path, &content) {
            let _ = fs::remove_file(&temp_path);
            return Err(StateError::Io {
                path: temp_path,
                source,
            });
        }
        if let Err(source) = fs::rename(&temp_path, &self.path) {
            let _ = fs::remove_file(&temp_path);
            return Err(StateError::Io {
                path: self.path.clone(),
                source,
            });
        }

        let directory = parent_directory(&self.path);
        File::open(directory)
            .and_then(|handle| handle.sync_all())
            .map_err(|source| StateError::Io {
                path: directory.to_path_buf(),
                source,
            })?;

        self.changed = false;
        log::debug!(
            "state file {} saved with {} cursors",
            self.path.display(),
            self.cursors.len()
        );
        Ok(())
    }
}

/// Opens `<path>.lock` and takes an exclusive lock on it without waiting.
fn acquire_lock(path: &Path) -> Result<File, StateError> {
    let lock_path = with_suffix(path, ".lock");
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&lock_path)
        .map_err(|source| StateError::Io {
            path: lock_path.clone(),
            source,
        })?;

    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(StateError::Locked {
            path: path.to_path_buf(),
        }),
        Err(TryLockError::Error(source)) => Err(StateError::Io {
            path: lock_path,
            source,
        }),
    }
}

/// Parses state file content into cursors, or returns what is wrong with it.
fn parse_state(bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the file is empty".to_owned());
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|error| format!("not valid JSON: {error}"))?;
    let Value::Object(object) = value else {
        return Err("the top level is not a JSON object".to_owned());
    };

    match object.get("version") {
        None => return Err("the \"version\" field is missing".to_owned()),
        Some(version) if version.as_u64() == Some(FORMAT_VERSION) => {}
        Some(version) => {
            return Err(format!(
                "unsupported version {version}, this mastotail reads version {FORMAT_VERSION}"
            ));
        }
    }

    if let Some(key) = object
        .keys()
        .find(|key| !matches!(key.as_str(), "version" | "cursors"))
    {
        return Err(format!("unexpected field {key:?}"));
    }

    let Some(cursor_values) = object.get("cursors") else {
        return Err("the \"cursors\" field is missing".to_owned());
    };
    let Value::Object(cursor_values) = cursor_values else {
        return Err("\"cursors\" is not a JSON object".to_owned());
    };

    let mut cursors = BTreeMap::new();
    for (source, id) in cursor_values {
        match id {
            Value::String(id) if !id.is_empty() => {
                cursors.insert(source.clone(), id.clone());
            }
            Value::String(_) => return Err(format!("the cursor for {source:?} is empty")),
            other => {
                return Err(format!(
                    "the cursor for {source:?} is {other}, expected a string id"
                ));
            }
        }
    }
    Ok(cursors)
}

fn serialize_state(cursors: &BTreeMap<String, String>) -> Vec<u8> {
    let cursor_values: Map<String, Value> = cursors
        .iter()
        .map(|(source, id)| (source.clone(), Value::String(id.clone())))
        .collect();
    let mut object = Map::new();
    object.insert("version".to_owned(), Value::from(FORMAT_VERSION));
    object.insert("cursors".to_owned(), Value::Object(cursor_values));

    let mut content = Value::Object(object).to_string().into_bytes();
    content.push(b'\n');
    content
}

/// Creates `path` with mode 0600, writes `content` and syncs it to disk.
///
/// A file left at `path` by an earlier failed save is removed first, so the
/// new file never inherits its mode.
fn write_new_file(path: &Path, content: &[u8]) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => log::debug!("removed stale temporary file {}", path.display()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }

    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

fn temp_path_for(path: &Path) -> PathBuf {
    with_suffix(path, &format!(".tmp.{}", std::process::id()))
}

/// Appends `suffix` to the last component of `path`, so "a/state.json" becomes "a/state.json.lock".
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Returns the directory containing `path`, or "." for a bare file name.
fn parent_directory(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

    /// Directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let number = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "mastotail-state-test-{}-{number}",
                std::process::id()
            ));
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }

        fn entries(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn expect_corrupt(content: &str) -> String {
        let dir = TempDir::new();
        let path = dir.file("state.json");
        fs::write(&path, content).unwrap();
        match StateFile::open(&path) {
            Err(StateError::Corrupt {
                path: error_path,
                reason,
            }) => {
                assert_eq!(error_path, path);
                reason
            }
            other => panic!("expected Corrupt for {content:?}, got {other:?}"),
        }
    }

    #[test]
    fn round_trip() {
        let dir = TempDir::new();
        let path = dir.file("state.json");
        {
            let mut state = StateFile::open(&path).unwrap();
            state.set_cursor("home", "113600000000000101");
            state.set_cursor("notifications", "68739215");
            state.set_cursor("tag:rust", "01BX5ZZKBKACTAV9WEVGEMMVRZ");
            state.save().unwrap();
        }

        let state = StateFile::open(&path).unwrap();
        assert_eq!(state.cursor("home"), Some("113600000000000101"));
        assert_eq!(state.cursor("notifications"), Some("68739215"));
        assert_eq!(state.cursor("tag:rust"), Some("01BX5ZZKBKACTAV9WEVGEMMVRZ"));
        assert_eq!(state.cursor("list:12"), None);
        assert_eq!(state.cursors().len(), 3);

        let text = fs::read_to_string(&path).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["version"], 1);
        assert_eq!(value["cursors"]["home"], "113600000000000101");
    }

    #[test]
    fn reads_documented_format() {
        let dir = TempDir::new();
        let path = dir.file("state.json");
        fs::write(
            &path,
            r#"{"version":1,"cursors":{"home":"113600000000000101","notifications":"68739215"}}"#,
        )
        .unwrap();
        let state = StateFile::open(&path).unwrap();
        assert_eq!(state.cursor("home"), Some("113600000000000101"));
        assert_eq!(state.cursor("notifications"), Some("68739215"));
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = TempDir::new();
        let path = dir.file("state.json");
        let state = StateFile::open(&path).unwrap();
        assert!(state.cursors().is_empty());
        assert!(!path.exists());
    }

    #[test]
    fn empty_file_is_corrupt() {
        assert!(expect_corrupt("").contains("empty"));
        assert!(expect_corrupt(" \n").contains("empty"));
    }

    #[test]
    fn truncated_file_is_corrupt() {
        let full = r#"{"version":1,"cursors":{"home":"113600000000000101"}}"#;
        let reason = expect_corrupt(&full[..30]);
        assert!(reason.contains("not valid JSON"), "{reason}");
    }

    #[test]
    fn wrong_shapes_are_corrupt() {
        let cases = [
            ("not json", "not valid JSON"),
            ("[1,2]", "not a JSON object"),
            (r#"{"cursors":{}}"#, "version"),
            (r#"{"version":2,"cursors":{}}"#, "unsupported version 2"),
            (r#"{"version":"1","cursors":{}}"#, "unsupported version"),
            (r#"{"version":1}"#, "\"cursors\" field is missing"),
            (r#"{"version":1,"cursors":[]}"#, "not a JSON object"),
            (
                r#"{"version":1,"cursors":{"home":12}}"#,
                "expected a string",
            ),
            (
                r#"{"version":1,"cursors":{"home":null}}"#,
                "expected a string",
            ),
            (r#"{"version":1,"cursors":{"home":""}}"#, "is empty"),
            (
                r#"{"version":1,"cursors":{},"extra":true}"#,
                "unexpected field",
            ),
        ];
        for (content, expected) in cases {
            let reason = expect_corrupt(content);
            assert!(
                reason.contains(expected),
                "{content}: {reason:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn corrupt_message_names_file() {
        let dir = TempDir::new();
        let path = dir.file("state.json");
        fs::write(&path, r#"{"version":9,"cursors":{}}"#).unwrap();
        let message = StateFile::open(&path).unwrap_err().to_string();
        assert!(message.starts_with("state file "), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("unsupported version 9"), "{message}");
    }

    #[test]
    fn directory_path_is_io_error() {
        let dir = TempDir::new();
        let path = dir.file("state.json");
        fs::create_dir(&path).unwrap();
        let error = StateFile::open(&path).unwrap_err();
        match &error {
            StateError::Io {
                path: error_path, ..
            } => assert_eq!(error_path, &path),
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(error.source().is_some());
    }

    #[test]
    fn save_sets_mode_0600() {
        let dir = TempDir::new();
        let path = dir.file("state.json");
        fs::write(&path, r#"{"version":1,"cursors":{}}"#).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

        let mut state = StateFile::open(&path).unwrap();
        state.set_cursor("home", "1");
        state.save().unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(&with_suffix(&path, ".lock")), 0o600);
    }

    #[test]
    fn second_open_is_locked() {
        let dir = TempDir::new();
        let path = dir.file("state.json");
        let first = StateFile::open(&path).unwrap();

        match StateFile::open(&path) {
            Err(StateError::Locked { path: error_path }) => assert_eq!(error_path, path),
            other => panic!("expected Locked, got {other:?}"),
        }

        drop(first);
        assert!(StateFile::open(&path).is_ok());
    }

    #[test]
    fn locked_message_names_file() {
        let error = StateError::Locked {
            path: PathBuf::from("/x/y"),
        };
        let message = error.to_string();
        assert!(
            message.starts_with("state file /x/y is locked"),
            "{message}"
        );
        assert!(message.contains("--state"), "{message}");
        assert!(error.source().is_none());
    }

    #[test]
    fn save_leaves_no_temp_file() {
        let dir = TempDir::new();
        let path = dir.file("state.json");
        let mut state = StateFile::open(&path).unwrap();
        state.set_cursor("home", "5");
        state.save().unwrap();
        state.set_cursor("home", "6");
        state.save().unwrap();
        assert_eq!(dir.entries(), ["state.json", "state.json.lock"]);
    }

    #[test]
    fn save_skipped_when_unchanged() {
        let dir = TempDir::new();
        let path = dir.file("state.json");

        // Nothing set since open, so no file is created.
        let mut state = StateFile::open(&path).unwrap();
        state.save().unwrap();
        assert!(!path.exists());

        state.set_cursor("home", "7");
        state.save().unwrap();
        assert_eq!(state.cursor("home"), Some("7"));

        // A replaced file stays untouched by saves with no change, including
        // one that sets a cursor to its current value.
        fs::write(&path, "sentinel").unwrap();
        state.save().unwrap();
        state.set_cursor("home", "7");
        state.save().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "sentinel");

        state.set_cursor("home", "8");
        state.save().unwrap();
        assert_ne!(fs::read_to_string(&path).unwrap(), "sentinel");
    }

    #[test]
    fn empty_cursor_id_ignored() {
        let dir = TempDir::new();
        let path = dir.file("state.json");
        let mut state = StateFile::open(&path).unwrap();
        state.set_cursor("home", "");
        assert_eq!(state.cursor("home"), None);
        state.save().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn save_replaces_stale_temp_file() {
        let dir = TempDir::new();
        let path = dir.file("state.json");
        let temp_path = temp_path_for(&path);
        fs::write(&temp_path, "left over").unwrap();
        fs::set_permissions(&temp_path, fs::Permissions::from_mode(0o644)).unwrap();

        let mut state = StateFile::open(&path).unwrap();
        state.set_cursor("home", "9");
        state.save().unwrap();
        assert!(!temp_path.exists());
        assert_eq!(mode_of(&path), 0o600);

        drop(state);
        let reopened = StateFile::open(&path).unwrap();
        assert_eq!(reopened.cursor("home"), Some("9"));
    }
}
