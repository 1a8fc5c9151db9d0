//! CouchDB-style layered ini configuration.
//!
//! Files are read in order and later files win (`default.ini`,
//! `default.d/*.ini`, `local.ini`, `local.d/*.ini`); a directory in the list
//! stands for its `*.ini` files in alphabetical order. The persist file (the
//! last file of CouchDB's chain) is read last and receives every persistent
//! `set`/`delete`, rewritten in place so that its other lines and comments
//! survive, via a temp file + fsync + rename.
//!
//! The ini dialect is CouchDB's (`config:parse_ini/1`): `[section]` headers,
//! `key = value` lines split at the first `" = "` (or else at the first
//! `'='`), both sides trimmed; a line whose trimmed text starts with `;` is a
//! comment, and `" ;"` / `"\t;"` starts a trailing comment; lines before the
//! first section, malformed headers and lines without a key or value are
//! skipped with a warning. All values are strings.
//!
//! The `[admins]` section never holds clear-text passwords: `set` hashes
//! them (`[chttpd_auth] iterations`, default 600000), and `load` hashes any
//! clear-text admin found in the files and persists the hash, like
//! CouchDB's `couch_password_hasher` does at start-up.
//!
//! In memory there are three layers, highest first: runtime overrides
//! (`set(.., persist = false)`, [`ConfigStore::set_in_memory`]), the persist
//! file, and the other files. As in CouchDB, deleting a key reveals the value
//! the files still define for it, if any.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::auth::password::{hash_admin_password, is_hashed, DEFAULT_ITERATIONS};

/// One config section: key -> value.
pub type Section = BTreeMap<String, String>;

/// Whole configuration: section -> key -> value.
pub type ConfigMap = BTreeMap<String, Section>;

/// Errors of the configuration store.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading or writing a config file failed.
    #[error("config file {}: {source}", path.display())]
    Io {
        /// The file (or directory) concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Section name is empty, contains `[`, `]`, a control character or a
    /// comment marker.
    #[error("Invalid configuration section")]
    InvalidSection,
    /// Key is empty, contains `[`, `]`, a control character, `" = "` or a
    /// comment marker, starts with `;` or has surrounding whitespace.
    #[error("Invalid configuration key")]
    InvalidKey,
    /// Value contains a control character other than tab.
    #[error("Invalid configuration value")]
    InvalidValue,
}

fn io_err(path: &Path, source: std::io::Error) -> ConfigError {
    ConfigError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// What one ini line means.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// Empty or comment only.
    Blank,
    /// A valid `[name]` header.
    Section(String),
    /// A `key = value` pair.
    KeyValue(String, String),
    /// Anything else (ignored, with a warning when read).
    Invalid,
}

/// Splits text into lines at `\r\n`, `\n`, `\r` and `\x1a`, like CouchDB.
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                lines.push(&text[start..i]);
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            b'\n' | 0x1a => {
                lines.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    lines.push(&text[start..]);
    lines
}

/// `config:remove_comments/1` followed by a trim.
fn strip_comment(line: &str) -> &str {
    let t = line.trim();
    if t.starts_with(';') {
        return "";
    }
    let cut = [t.find(" ;"), t.find("\t;")].into_iter().flatten().min();
    match cut {
        Some(i) => t[..i].trim(),
        None => t,
    }
}

fn classify(raw: &str) -> Line {
    let line = strip_comment(raw);
    if line.is_empty() {
        return Line::Blank;
    }
    if let Some(rest) = line.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((name, "")) if !name.is_empty() => Line::Section(name.to_string()),
            _ => Line::Invalid,
        };
    }
    if let Some((k, v)) = line.split_once(" = ") {
        let (k, v) = (k.trim(), v.trim());
        if !k.is_empty() && !v.is_empty() {
            return Line::KeyValue(k.to_string(), v.to_string());
        }
        return Line::Invalid;
    }
    match line.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
            Line::KeyValue(k.trim().to_string(), v.trim().to_string())
        }
        _ => Line::Invalid,
    }
}

fn parse_with_origin(text: &str, origin: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    for (n, raw) in split_lines(text).into_iter().enumerate() {
        match classify(raw) {
            Line::Blank => {}
            Line::Section(name) => section = Some(name),
            Line::KeyValue(k, v) => match &section {
                Some(s) => out.push((s.clone(), k, v)),
                None => tracing::warn!(
                    file = origin,
                    line = n + 1,
                    "config line outside of any section ignored"
                ),
            },
            Line::Invalid => {
                tracing::warn!(file = origin, line = n + 1, "malformed config line ignored")
            }
        }
    }
    out
}

/// Parses CouchDB ini text into `(section, key, value)` triples in file
/// order (later duplicates win when collected into a map).
pub fn parse_ini(text: &str) -> Vec<(String, String, String)> {
    parse_with_origin(text, "<string>")
}

/// Parses CouchDB ini text into a map (later duplicates win).
pub fn parse_ini_map(text: &str) -> ConfigMap {
    let mut map = ConfigMap::new();
    for (s, k, v) in parse_ini(text) {
        map.entry(s).or_default().insert(k, v);
    }
    map
}

fn merge_into(dst: &mut ConfigMap, src: &ConfigMap) {
    for (s, kvs) in src {
        let sec = dst.entry(s.clone()).or_default();
        for (k, v) in kvs {
            sec.insert(k.clone(), v.clone());
        }
    }
}

// ---------------------------------------------------------------------------
// Rewriting
// ---------------------------------------------------------------------------

/// Applies one change to the lines of an ini file: `Some(v)` replaces the
/// key's first line in `section` (dropping later duplicates), or appends it
/// to the section, or appends a new section; `None` removes the key's lines.
fn apply_update(lines: &mut Vec<String>, section: &str, key: &str, value: Option<&str>) {
    let mut current: Option<String> = None;
    let mut matches = Vec::new();
    // Index after the last non-blank line of the first block of `section`.
    let mut insert_at: Option<usize> = None;
    let mut in_first_block = false;
    for (i, raw) in lines.iter().enumerate() {
        match classify(raw) {
            Line::Section(name) => {
                in_first_block = insert_at.is_none() && name == section;
                if in_first_block {
                    insert_at = Some(i + 1);
                }
                current = Some(name);
            }
            Line::KeyValue(k, _) => {
                if current.as_deref() == Some(section) && k == key {
                    matches.push(i);
                }
                if in_first_block {
                    insert_at = Some(i + 1);
                }
            }
            Line::Invalid => {
                if in_first_block {
                    insert_at = Some(i + 1);
                }
            }
            Line::Blank => {
                if in_first_block && !raw.trim().is_empty() {
                    // Comment lines belong to the block's content.
                    insert_at = Some(i + 1);
                }
            }
        }
    }
    match value {
        Some(v) => {
            let new_line = format!("{key} = {v}");
            if let Some((&first, rest)) = matches.split_first() {
                for &i in rest.iter().rev() {
                    lines.remove(i);
                }
                if let Some(line) = lines.get_mut(first) {
                    *line = new_line;
                }
            } else if let Some(at) = insert_at {
                lines.insert(at.min(lines.len()), new_line);
            } else {
                while lines.last().is_some_and(|l| l.trim().is_empty()) {
                    lines.pop();
                }
                if !lines.is_empty() {
                    lines.push(String::new());
                }
                lines.push(format!("[{section}]"));
                lines.push(new_line);
            }
        }
        None => {
            for &i in matches.iter().rev() {
                lines.remove(i);
            }
        }
    }
}

/// Rewrites ini text applying `updates` (`(section, key, Some(value))` to
/// set, `None` to delete), preserving every other line. The result uses
/// `\n` line ends and ends with exactly one newline.
fn rewrite_ini(text: &str, updates: &[(String, String, Option<String>)]) -> String {
    let mut lines: Vec<String> = split_lines(text).into_iter().map(String::from).collect();
    for (s, k, v) in updates {
        apply_update(&mut lines, s, k, v.as_deref());
    }
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` by `contents` atomically: temp file in the same
/// directory, fsync, rename, then a best-effort fsync of the directory.
/// A symlinked persist file is followed; permissions of an existing file
/// are kept (new files get 0600 on unix).
fn atomic_write(path: &Path, contents: &str) -> Result<(), ConfigError> {
    let target = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(|e| io_err(path, e))?
        }
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.ini".to_string());
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let existing_perms = fs::metadata(&target).ok().map(|m| m.permissions());

    let result = (|| -> std::io::Result<()> {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        if let Some(perms) = existing_perms {
            f.set_permissions(perms)?;
        }
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &target)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&target, e));
    }
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a file; `Ok(None)` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Expands directories into their `*.ini` files (sorted by name).
fn expand_files(files: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    for f in files {
        if f.is_dir() {
            let mut inis: Vec<PathBuf> = fs::read_dir(f)
                .map_err(|e| io_err(f, e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "ini") && !p.is_dir())
                .collect();
            inis.sort();
            out.extend(inis);
        } else {
            out.push(f.clone());
        }
    }
    Ok(out)
}

fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

fn has_comment_marker(s: &str) -> bool {
    s.contains(" ;") || s.contains("\t;")
}

fn validate(section: &str, key: &str, value: &str) -> Result<(), ConfigError> {
    let bad_name = |s: &str| {
        s.is_empty()
            || s.chars().any(|c| c == '[' || c == ']' || c.is_control())
            || has_comment_marker(s)
    };
    if bad_name(section) {
        return Err(ConfigError::InvalidSection);
    }
    if bad_name(key) || key.starts_with(';') || key.trim() != key || key.contains(" = ") {
        return Err(ConfigError::InvalidKey);
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ConfigError::InvalidValue);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------

struct Inner {
    /// Files (and directories) as given to `load`, persist file excluded.
    files: Vec<PathBuf>,
    persist_file: PathBuf,
    /// Merged contents of `files`.
    base: ConfigMap,
    /// Contents of the persist file.
    persisted: ConfigMap,
    /// Runtime-only values.
    overrides: ConfigMap,
}

impl Inner {
    fn get(&self, section: &str, key: &str) -> Option<&String> {
        [&self.overrides, &self.persisted, &self.base]
            .into_iter()
            .find_map(|layer| layer.get(section).and_then(|s| s.get(key)))
    }

    fn section(&self, name: &str) -> Section {
        let mut out = Section::new();
        for layer in [&self.base, &self.persisted, &self.overrides] {
            if let Some(s) = layer.get(name) {
                out.extend(s.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        out
    }

    fn all(&self) -> ConfigMap {
        let mut out = self.base.clone();
        merge_into(&mut out, &self.persisted);
        merge_into(&mut out, &self.overrides);
        out
    }

    fn admin_iterations(&self) -> u32 {
        ["chttpd_auth", "couch_httpd_auth"]
            .iter()
            .find_map(|s| self.get(s, "iterations"))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_ITERATIONS)
    }

    /// Re-reads every file from disk (overrides are kept).
    fn read_disk(&mut self) -> Result<(), ConfigError> {
        let mut base = ConfigMap::new();
        for file in expand_files(&self.files)? {
            if same_file(&file, &self.persist_file) {
                continue;
            }
            match read_optional(&file)? {
                Some(text) => {
                    let origin = file.display().to_string();
                    for (s, k, v) in parse_with_origin(&text, &origin) {
                        base.entry(s).or_default().insert(k, v);
                    }
                }
                None => tracing::debug!(file = %file.display(), "config file not found, skipped"),
            }
        }
        let mut persisted = ConfigMap::new();
        if let Some(text) = read_optional(&self.persist_file)? {
            let origin = self.persist_file.display().to_string();
            for (s, k, v) in parse_with_origin(&text, &origin) {
                persisted.entry(s).or_default().insert(k, v);
            }
        }
        self.base = base;
        self.persisted = persisted;
        Ok(())
    }

    /// Hashes clear-text `[admins]` entries of the file layers and writes
    /// the hashes to the persist file (kept in memory if that fails).
    fn hash_plain_admins(&mut self) {
        let iterations = self.admin_iterations();
        let mut admins = self.base.get("admins").cloned().unwrap_or_default();
        if let Some(p) = self.persisted.get("admins") {
            admins.extend(p.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let updates: Vec<(String, String, Option<String>)> = admins
            .into_iter()
            .filter(|(_, v)| !is_hashed(v))
            .map(|(user, clear)| {
                let hashed = hash_admin_password(&clear, iterations);
                ("admins".to_string(), user, Some(hashed))
            })
            .collect();
        if updates.is_empty() {
            return;
        }
        match self.write_persist(&updates) {
            Ok(()) => {
                for (s, k, v) in updates {
                    if let Some(v) = v {
                        self.persisted.entry(s).or_default().insert(k, v);
                    }
                }
                tracing::info!(file = %self.persist_file.display(), "hashed clear-text admin passwords");
            }
            Err(e) => {
                tracing::error!(error = %e, "could not persist hashed admin passwords; keeping them in memory only");
                for (s, k, v) in updates {
                    if let Some(v) = v {
                        self.overrides.entry(s).or_default().insert(k, v);
                    }
                }
            }
        }
    }

    fn write_persist(
        &self,
        updates: &[(String, String, Option<String>)],
    ) -> Result<(), ConfigError> {
        let text = read_optional(&self.persist_file)?.unwrap_or_default();
        atomic_write(&self.persist_file, &rewrite_ini(&text, updates))
    }
}

fn remove_from(map: &mut ConfigMap, section: &str, key: &str) {
    if let Some(s) = map.get_mut(section) {
        s.remove(key);
        if s.is_empty() {
            map.remove(section);
        }
    }
}

/// Thread-safe layered CouchDB configuration (share it as `Arc<ConfigStore>`).
pub struct ConfigStore {
    inner: RwLock<Inner>,
}

impl std::fmt::Debug for ConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.read();
        f.debug_struct("ConfigStore")
            .field("files", &inner.files)
            .field("persist_file", &inner.persist_file)
            .finish_non_exhaustive()
    }
}

impl ConfigStore {
    /// Reads `files` in order (later wins; directories mean their `*.ini`
    /// files; missing files are skipped), then `persist_file` if it exists.
    /// Clear-text `[admins]` passwords are hashed and written to
    /// `persist_file`. Fails only on an unreadable (not missing) file.
    pub fn load(files: &[PathBuf], persist_file: PathBuf) -> Result<Self, ConfigError> {
        let mut inner = Inner {
            files: files.to_vec(),
            persist_file,
            base: ConfigMap::new(),
            persisted: ConfigMap::new(),
            overrides: ConfigMap::new(),
        };
        inner.read_disk()?;
        inner.hash_plain_admins();
        Ok(ConfigStore {
            inner: RwLock::new(inner),
        })
    }

    /// A store with no files behind it whose persistent writes go to
    /// `persist_file` (which is not read).
    pub fn empty(persist_file: PathBuf) -> Self {
        ConfigStore {
            inner: RwLock::new(Inner {
                files: Vec::new(),
                persist_file,
                base: ConfigMap::new(),
                persisted: ConfigMap::new(),
                overrides: ConfigMap::new(),
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads all files from disk, keeping runtime overrides, and hashes
    /// any clear-text admin password found.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let mut inner = self.write();
        inner.read_disk()?;
        inner.hash_plain_admins();
        Ok(())
    }

    /// The file persistent changes are written to.
    pub fn persist_file(&self) -> PathBuf {
        self.read().persist_file.clone()
    }

    /// The current value of `[section] key`.
    pub fn get(&self, section: &str, key: &str) -> Option<String> {
        self.read().get(section, key).cloned()
    }

    /// The current value of `[section] key`, or `default`.
    pub fn get_or(&self, section: &str, key: &str, default: &str) -> String {
        self.get(section, key)
            .unwrap_or_else(|| default.to_string())
    }

    /// `[section] key` as a boolean (`true` / `false`, as CouchDB's
    /// `config:get_boolean`); `default` when missing or anything else.
    pub fn get_bool(&self, section: &str, key: &str, default: bool) -> bool {
        match self.get(section, key).as_deref().map(str::trim) {
            Some("true") => true,
            Some("false") => false,
            _ => default,
        }
    }

    /// `[section] key` parsed as `T` (trimmed); `default` when missing or
    /// unparsable.
    pub fn get_parsed<T: std::str::FromStr>(&self, section: &str, key: &str, default: T) -> T {
        self.get(section, key)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }

    /// All current keys of a section (empty if none).
    pub fn section(&self, name: &str) -> BTreeMap<String, String> {
        self.read().section(name)
    }

    /// The whole current configuration.
    pub fn all(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.read().all()
    }

    /// Hashes `[admins]` values that are not hashed yet; other sections
    /// are returned unchanged.
    fn prepare_value(&self, section: &str, value: &str) -> String {
        if section == "admins" && !is_hashed(value) {
            let iterations = self.read().admin_iterations();
            hash_admin_password(value, iterations)
        } else {
            value.to_string()
        }
    }

    /// Sets `[section] key = value` and returns the previous value. With
    /// `persist` the persist file is rewritten first (nothing changes if
    /// that fails); otherwise the value only lives in memory. `[admins]`
    /// values that are not hashed yet are stored hashed.
    pub fn set(
        &self,
        section: &str,
        key: &str,
        value: &str,
        persist: bool,
    ) -> Result<Option<String>, ConfigError> {
        validate(section, key, value)?;
        // Hash outside the lock: PBKDF2 is slow on purpose.
        let value = self.prepare_value(section, value);
        let mut inner = self.write();
        let old = inner.get(section, key).cloned();
        if persist {
            inner.write_persist(&[(section.to_string(), key.to_string(), Some(value.clone()))])?;
            remove_from(&mut inner.overrides, section, key);
            inner
                .persisted
                .entry(section.to_string())
                .or_default()
                .insert(key.to_string(), value);
        } else {
            inner
                .overrides
                .entry(section.to_string())
                .or_default()
                .insert(key.to_string(), value);
        }
        Ok(old)
    }

    /// Deletes `[section] key` and returns the value it had (`None`: it was
    /// not set). With `persist` the key's lines are removed from the persist
    /// file. As in CouchDB, a value still defined by the files (the other
    /// files, or the persist file when `persist` is false) becomes current
    /// again.
    pub fn delete(
        &self,
        section: &str,
        key: &str,
        persist: bool,
    ) -> Result<Option<String>, ConfigError> {
        let mut inner = self.write();
        let old = inner.get(section, key).cloned();
        if persist {
            let in_file = inner
                .persisted
                .get(section)
                .is_some_and(|s| s.contains_key(key));
            if in_file {
                inner.write_persist(&[(section.to_string(), key.to_string(), None)])?;
                remove_from(&mut inner.persisted, section, key);
            }
        }
        remove_from(&mut inner.overrides, section, key);
        Ok(old)
    }

    /// Sets a runtime-only value (e.g. a command-line override) that is
    /// never written to disk. `[admins]` values are hashed as in [`set`];
    /// invalid names are stored anyway since nothing is persisted.
    ///
    /// [`set`]: ConfigStore::set
    pub fn set_in_memory(&self, section: &str, key: &str, value: &str) {
        let value = self.prepare_value(section, value);
        self.write()
            .overrides
            .entry(section.to_string())
            .or_default()
            .insert(key.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::verify_admin_password;

    fn tmpdir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    fn write(path: &Path, text: &str) {
        if let Err(e) = fs::write(path, text) {
            panic!("write {}: {e}", path.display());
        }
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_default()
    }

    fn triples(text: &str) -> Vec<(String, String, String)> {
        parse_ini(text)
    }

    fn t(s: &str, k: &str, v: &str) -> (String, String, String) {
        (s.into(), k.into(), v.into())
    }

    #[test]
    fn parse_basic_and_comments() {
        let text = "; top comment\n\
                    orphan = ignored\n\
                    [couchdb]\n\
                    database_dir = ./data\n\
                    \x20 uuid=abc  \n\
                    ;commented = 1\n\
                    \x20  ; indented comment\n\
                    max_document_size = 8000000 ; inline comment\n\
                    tabbed = x\t; tab comment\n\
                    semi = a;b\n\
                    [cors:http://example.com:5984]\n\
                    origins = http://a.com, http://b.com\n\
                    key:with:colons = v=1 = 2\n\
                    a=b=c\n";
        assert_eq!(
            triples(text),
            vec![
                t("couchdb", "database_dir", "./data"),
                t("couchdb", "uuid", "abc"),
                t("couchdb", "max_document_size", "8000000"),
                t("couchdb", "tabbed", "x"),
                t("couchdb", "semi", "a;b"),
                t(
                    "cors:http://example.com:5984",
                    "origins",
                    "http://a.com, http://b.com"
                ),
                t("cors:http://example.com:5984", "key:with:colons", "v=1 = 2"),
                t("cors:http://example.com:5984", "a", "b=c"),
            ]
        );
    }

    #[test]
    fn parse_edge_cases() {
        let text = "[s]\r\n\
                    empty = \r\n\
                    empty2=\r\n\
                    =novalue\r\n\
                    \x20= x\r\n\
                    noequals\r\n\
                    [bad\r\n\
                    still = s\r\n\
                    []\r\n\
                    also = s\r\n\
                    [x] trailing\r\n\
                    more = s\r\n\
                    [ spaced ]\r\n\
                    k = v\r\
                    [t]\x1ak2 = v2\n\
                    dup = 1\n\
                    dup = 2\n\
                    unicode = h\u{e9}llo \u{1F600}\n\
                    path = /a b/c ;x";
        assert_eq!(
            triples(text),
            vec![
                t("s", "still", "s"),
                t("s", "also", "s"),
                t("s", "more", "s"),
                t(" spaced ", "k", "v"),
                t("t", "k2", "v2"),
                t("t", "dup", "1"),
                t("t", "dup", "2"),
                t("t", "unicode", "h\u{e9}llo \u{1F600}"),
                t("t", "path", "/a b/c"),
            ]
        );
        let map = parse_ini_map(text);
        assert_eq!(map["t"]["dup"], "2");
        assert!(parse_ini("").is_empty());
        assert!(parse_ini("\n\n;;\n[").is_empty());
    }

    #[test]
    fn rewrite_preserves_other_lines() {
        let text = "; my config\n[couchdb]\n; keep me\nuuid = 1\n\n[admins]\n;admin = old\nadmin = x\n\n[log]\nlevel = info\n";
        let set = |t: &str, s: &str, k: &str, v: Option<&str>| {
            rewrite_ini(t, &[(s.into(), k.into(), v.map(String::from))])
        };
        // Replace in place.
        assert_eq!(
            set(text, "couchdb", "uuid", Some("2")),
            "; my config\n[couchdb]\n; keep me\nuuid = 2\n\n[admins]\n;admin = old\nadmin = x\n\n[log]\nlevel = info\n"
        );
        // Append to an existing section (before the blank line).
        assert_eq!(
            set(text, "couchdb", "new", Some("v")),
            "; my config\n[couchdb]\n; keep me\nuuid = 1\nnew = v\n\n[admins]\n;admin = old\nadmin = x\n\n[log]\nlevel = info\n"
        );
        // New section at the end.
        assert_eq!(
            set(text, "chttpd", "port", Some("5984")),
            format!("{text}\n[chttpd]\nport = 5984\n")
        );
        // Delete; commented line untouched.
        assert_eq!(
            set(text, "admins", "admin", None),
            "; my config\n[couchdb]\n; keep me\nuuid = 1\n\n[admins]\n;admin = old\n\n[log]\nlevel = info\n"
        );
        // Same key in another section untouched; duplicates collapsed.
        let dup = "[a]\nk = 1\n[b]\nk = 1\n[a]\nk=2\n";
        assert_eq!(
            set(dup, "a", "k", Some("3")),
            "[a]\nk = 3\n[b]\nk = 1\n[a]\n"
        );
        assert_eq!(set(dup, "a", "k", None), "[a]\n[b]\nk = 1\n[a]\n");
        // Empty file, CRLF input.
        assert_eq!(set("", "s", "k", Some("v")), "[s]\nk = v\n");
        assert_eq!(set("[s]\r\nk = 1\r\n", "s", "k", Some("v")), "[s]\nk = v\n");
        // Key is matched by its parsed form, not as a prefix.
        assert_eq!(
            set("[s]\nkey2 = 1\n  key = 1\n", "s", "key", Some("v")),
            "[s]\nkey2 = 1\nkey = v\n"
        );
        // The written file parses back to the intended values.
        let out = set(text, "cors:http://x.org", "a:b", Some("c = d"));
        assert_eq!(parse_ini_map(&out)["cors:http://x.org"]["a:b"], "c = d");
    }

    #[test]
    fn layering_order() {
        let dir = tmpdir();
        let d = dir.path();
        write(
            &d.join("default.ini"),
            "[couchdb]\na = default\nb = default\nc = default\n[chttpd]\nport = 5984\n",
        );
        fs::create_dir_all(d.join("local.d")).ok();
        write(&d.join("local.d/20-b.ini"), "[couchdb]\nb = 20\nc = 20\n");
        write(&d.join("local.d/10-a.ini"), "[couchdb]\nb = 10\nc = 10\n");
        write(&d.join("local.d/ignored.txt"), "[couchdb]\nc = txt\n");
        write(&d.join("local.ini"), "[couchdb]\nc = local\n[new]\nx = 1\n");
        let files = vec![
            d.join("default.ini"),
            d.join("missing.ini"),
            d.join("local.d"),
            d.join("local.ini"),
        ];
        let store = match ConfigStore::load(&files, d.join("local.ini")) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(store.get("couchdb", "a").as_deref(), Some("default"));
        assert_eq!(store.get("couchdb", "b").as_deref(), Some("20"));
        assert_eq!(store.get("couchdb", "c").as_deref(), Some("local"));
        assert_eq!(store.get("new", "x").as_deref(), Some("1"));
        assert_eq!(store.get("nope", "x"), None);
        assert_eq!(store.get_or("nope", "x", "dflt"), "dflt");
        assert_eq!(store.get_parsed("chttpd", "port", 0u16), 5984);
        assert_eq!(store.get_parsed("chttpd", "nope", 7u16), 7);
        assert!(!store.get_bool("chttpd", "port", false));
        let sec = store.section("couchdb");
        assert_eq!(sec.len(), 3);
        assert_eq!(sec["c"], "local");
        let all = store.all();
        assert_eq!(all.len(), 3);
        assert_eq!(all["chttpd"]["port"], "5984");

        // Runtime override on top, then removed.
        store.set_in_memory("couchdb", "a", "cli");
        assert_eq!(store.get("couchdb", "a").as_deref(), Some("cli"));
        assert_eq!(store.section("couchdb")["a"], "cli");
        assert!(!read(&d.join("local.ini")).contains("cli"));
    }

    #[test]
    fn set_delete_persistence_roundtrip() {
        let dir = tmpdir();
        let d = dir.path();
        let default = d.join("default.ini");
        let local = d.join("local.ini");
        write(
            &default,
            "[couchdb]\nmax_dbs_open = 500\n[log]\nlevel = info\n",
        );
        write(
            &local,
            "; Local settings\n[couchdb]\n; the uuid\nuuid = abc\n\n[log]\n;level = debug\n",
        );
        let files = vec![default.clone(), local.clone()];
        let load = || match ConfigStore::load(&files, local.clone()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let store = load();

        assert_eq!(
            store
                .set("log", "level", "debug", true)
                .ok()
                .flatten()
                .as_deref(),
            Some("info")
        );
        assert_eq!(
            store
                .set("couchdb", "uuid", "def", true)
                .ok()
                .flatten()
                .as_deref(),
            Some("abc")
        );
        assert_eq!(
            store.set("chttpd", "port", "15984", true).ok().flatten(),
            None
        );
        assert_eq!(
            store.set("couchdb", "tmp", "mem", false).ok().flatten(),
            None
        );
        assert_eq!(
            read(&local),
            "; Local settings\n[couchdb]\n; the uuid\nuuid = def\n\n[log]\n;level = debug\nlevel = debug\n\n[chttpd]\nport = 15984\n"
        );
        // No temp files left behind.
        let leftovers: Vec<_> = fs::read_dir(d)
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");

        let store2 = load();
        assert_eq!(store2.get("log", "level").as_deref(), Some("debug"));
        assert_eq!(store2.get("couchdb", "uuid").as_deref(), Some("def"));
        assert_eq!(store2.get("chttpd", "port").as_deref(), Some("15984"));
        assert_eq!(store2.get("couchdb", "tmp"), None);
        assert_eq!(store.get("couchdb", "tmp").as_deref(), Some("mem"));

        // Delete a persisted key that also exists in default.ini: the
        // default value shows through again (CouchDB behaviour).
        assert_eq!(
            store.delete("log", "level", true).ok().flatten().as_deref(),
            Some("debug")
        );
        assert_eq!(store.get("log", "level").as_deref(), Some("info"));
        assert!(!read(&local).contains("\nlevel = debug"));
        assert!(read(&local).contains(";level = debug"));
        // Delete only in memory: the file value comes back.
        assert_eq!(
            store
                .set("couchdb", "uuid", "zzz", false)
                .ok()
                .flatten()
                .as_deref(),
            Some("def")
        );
        assert_eq!(
            store
                .delete("couchdb", "uuid", false)
                .ok()
                .flatten()
                .as_deref(),
            Some("zzz")
        );
        assert_eq!(store.get("couchdb", "uuid").as_deref(), Some("def"));
        // Delete a runtime-only key / a missing key.
        assert_eq!(
            store
                .delete("couchdb", "tmp", true)
                .ok()
                .flatten()
                .as_deref(),
            Some("mem")
        );
        assert_eq!(store.get("couchdb", "tmp"), None);
        assert_eq!(
            store.delete("couchdb", "nothing", true).ok().flatten(),
            None
        );
        // A persistent set replaces a runtime override.
        store.set_in_memory("chttpd", "port", "1");
        assert!(store.set("chttpd", "port", "2", true).is_ok());
        assert_eq!(store.get("chttpd", "port").as_deref(), Some("2"));

        let store3 = load();
        assert_eq!(store3.get("log", "level").as_deref(), Some("info"));
        assert_eq!(store3.get("chttpd", "port").as_deref(), Some("2"));
        assert_eq!(store3.all(), store.all());
    }

    #[test]
    fn persist_file_created_when_missing() {
        let dir = tmpdir();
        let local = dir.path().join("sub/dir/local.ini");
        let store = match ConfigStore::load(&[], local.clone()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(store.all().is_empty());
        assert!(store.set("a", "b", "c", true).is_ok());
        assert_eq!(read(&local), "[a]\nb = c\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&local)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn invalid_names_rejected() {
        let dir = tmpdir();
        let store = ConfigStore::empty(dir.path().join("local.ini"));
        assert!(matches!(
            store.set("", "k", "v", true),
            Err(ConfigError::InvalidSection)
        ));
        assert!(matches!(
            store.set("a]b", "k", "v", true),
            Err(ConfigError::InvalidSection)
        ));
        assert!(matches!(
            store.set("s\n", "k", "v", true),
            Err(ConfigError::InvalidSection)
        ));
        assert!(matches!(
            store.set("s", "", "v", true),
            Err(ConfigError::InvalidKey)
        ));
        assert!(matches!(
            store.set("s", "k[", "v", true),
            Err(ConfigError::InvalidKey)
        ));
        assert!(matches!(
            store.set("s", ";k", "v", true),
            Err(ConfigError::InvalidKey)
        ));
        assert!(matches!(
            store.set("s", " k", "v", true),
            Err(ConfigError::InvalidKey)
        ));
        assert!(matches!(
            store.set("s", "a = b", "v", true),
            Err(ConfigError::InvalidKey)
        ));
        assert!(matches!(
            store.set("s", "k", "v\nx = y", true),
            Err(ConfigError::InvalidValue)
        ));
        assert!(store.set("s", "k", "tab\tok [fine]", true).is_ok());
        assert_eq!(
            read(&dir.path().join("local.ini")),
            "[s]\nk = tab\tok [fine]\n"
        );
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let dir = tmpdir();
        // A directory where the persist file should be cannot be read.
        let p = dir.path().join("local.ini");
        fs::create_dir_all(&p).ok();
        match ConfigStore::load(&[], p.clone()) {
            Err(ConfigError::Io { path, .. }) => assert_eq!(path, p),
            other => panic!("expected Io error, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn admins_hashed_on_load() {
        let dir = tmpdir();
        let d = dir.path();
        let default = d.join("default.ini");
        let local = d.join("local.ini");
        let docker = d.join("docker.ini");
        write(&default, "[chttpd_auth]\niterations = 10\n");
        write(&local, "[admins]\nfromlocal = localpw\n");
        write(
            &docker,
            "; docker\n[admins]\nadmin = s3cr3t ; comment\nold = -hashed-6d3c30241ba0aaa4e16c6ea99224f915687ed8cd,7f4a3e05e0cbc6f48a0035e3508eef90\n",
        );
        let files = vec![default, local.clone()];
        let store = match ConfigStore::load(&files, docker.clone()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let admin = store.get("admins", "admin").unwrap_or_default();
        assert!(admin.starts_with("-pbkdf2:sha256-"), "{admin}");
        assert!(admin.ends_with(",10"));
        assert!(verify_admin_password("s3cr3t", &admin));
        let fromlocal = store.get("admins", "fromlocal").unwrap_or_default();
        assert!(verify_admin_password("localpw", &fromlocal));
        assert!(store
            .get("admins", "old")
            .unwrap_or_default()
            .starts_with("-hashed-"));

        let text = read(&docker);
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.starts_with("; docker\n[admins]\nadmin = -pbkdf2:sha256-"));
        assert!(text.contains(&format!("admin = {admin}\n")));
        assert!(text.contains(&format!("fromlocal = {fromlocal}\n")));
        assert!(text.contains("old = -hashed-"));
        // Other files are left alone (as CouchDB does); the hash overrides them.
        assert_eq!(read(&local), "[admins]\nfromlocal = localpw\n");

        // Reload is stable: nothing left to hash.
        let store2 = match ConfigStore::load(&files, docker.clone()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            store2.get("admins", "admin").as_deref(),
            Some(admin.as_str())
        );
        assert_eq!(read(&docker), text);
    }

    #[test]
    fn admins_hashed_on_set() {
        let dir = tmpdir();
        let local = dir.path().join("local.ini");
        write(&local, "[chttpd_auth]\niterations = 10\n");
        let store = match ConfigStore::load(&[], local.clone()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(store.set("admins", "bob", "pw", true).ok().flatten(), None);
        let stored = store.get("admins", "bob").unwrap_or_default();
        assert!(stored.starts_with("-pbkdf2:sha256-") && stored.ends_with(",10"));
        assert!(verify_admin_password("pw", &stored));
        assert!(!read(&local).contains("= pw"));
        assert!(read(&local).contains(&format!("bob = {stored}")));
        // Already hashed values are stored as given.
        let pre = "-pbkdf2-abc,def,10";
        assert_eq!(
            store.set("admins", "bob", pre, true).ok().flatten(),
            Some(stored)
        );
        assert_eq!(store.get("admins", "bob").as_deref(), Some(pre));
        // In-memory admins are hashed too and never persisted.
        store.set_in_memory("admins", "cli", "clipw");
        let cli = store.get("admins", "cli").unwrap_or_default();
        assert!(verify_admin_password("clipw", &cli));
        assert!(!read(&local).contains("cli"));
        assert!(store.set("admins", "mem", "mempw", false).is_ok());
        assert!(verify_admin_password(
            "mempw",
            &store.get("admins", "mem").unwrap_or_default()
        ));
        assert!(!read(&local).contains("mem"));
        // Other sections are not hashed.
        assert!(store.set("other", "k", "pw", true).is_ok());
        assert_eq!(store.get("other", "k").as_deref(), Some("pw"));
    }

    #[test]
    fn concurrent_sets_are_serialized() {
        let dir = tmpdir();
        let local = dir.path().join("local.ini");
        let store = std::sync::Arc::new(ConfigStore::empty(local.clone()));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for j in 0..10 {
                        let _ = store.set(&format!("s{}", i % 2), &format!("k{i}_{j}"), "v", true);
                    }
                })
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
        let map = parse_ini_map(&read(&local));
        assert_eq!(map.values().map(|s| s.len()).sum::<usize>(), 80);
        assert_eq!(store.all(), map);
    }
}
