//! Atomic file and directory writes: the one helper every ltre component uses to put files in
//! place, so that a reader (or a process killed half-way) sees the old contents or the new ones,
//! never a mix.
//!
//! - [`write_atomic`]: one file, through a unique temporary sibling, `fsync` and a rename.
//! - [`replace_dir_atomically`]: a whole directory, filled in a unique temporary sibling and
//!   renamed into place once complete (an existing directory is swapped out only then).
//! - [`unique_sibling`]: the temporary names both use (`.<name>.<tag>-<pid>-<nanos>`), unique
//!   per process and call so that concurrent writers never share a temporary file.
//!
//! ```
//! # fn main() -> ltre_core::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let out = dir.path().join("model");
//! ltre_core::fsutil::replace_dir_atomically(&out, |tmp| {
//!     ltre_core::fsutil::write_atomic(&tmp.join("a.txt"), b"hello")
//! })?;
//! assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"hello");
//! # Ok(())
//! # }
//! ```
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// A fresh sibling path of `path`: `.<name>.<tag>-<pid>-<nanos>-<n>`, hidden, unique within
/// this process (a counter) and across processes (the pid).
pub fn unique_sibling(path: &Path, tag: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{tag}-{}-{nanos}-{n}", std::process::id()))
}

/// Whether `name` is one of [`unique_sibling`]'s temporary names for `tag` (for clean-up of
/// leftovers of killed processes).
pub fn is_temporary_name(name: &str, tag: &str) -> bool {
    name.starts_with('.') && name.contains(&format!(".{tag}-"))
}

/// Removes the temporary siblings of `path` (from [`unique_sibling`]) left by processes that no
/// longer run (killed mid-write), so they do not accumulate. Best effort: on systems without
/// `/proc` nothing is removed, and a sibling of a live process is never touched. If `path`
/// itself is missing (a kill between the two renames of [`replace_dir_atomically`]), the old
/// version is restored instead of removed.
pub fn remove_stale_siblings(path: &Path) {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    if !Path::new("/proc/self").exists() {
        return;
    }
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        // rest = "<tag>-<pid>-<nanos>-<n>"
        let mut parts = rest.splitn(3, '-');
        let (Some(tag), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let stale = entry.path();
        // A writer killed between moving the old directory aside and moving the new one in
        // left `path` missing: put the old one back rather than lose it.
        if tag == "old" && !path.exists() && std::fs::rename(&stale, path).is_ok() {
            continue;
        }
        let _ = if stale.is_dir() {
            std::fs::remove_dir_all(&stale)
        } else {
            std::fs::remove_file(&stale)
        };
    }
}

/// Writes `bytes` to `path` through a unique temporary sibling file, `fsync` and a rename, so
/// readers see either the old or the new contents, an interrupted write leaves no truncated
/// file behind, and concurrent writers never clobber each other's temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = unique_sibling(path, "tmp");
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        sync_parent(path);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Best-effort `fsync` of `path`'s directory, so that a rename survives a power loss.
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
}

/// Fills a fresh temporary sibling directory of `out` with `fill` and renames it to `out`,
/// replacing an existing `out` only once the new one is complete. On error (or a kill) `out`
/// is untouched; the temporary directory is removed on error, and a killed process leaves only
/// a hidden `.<name>.tmp-*` sibling (see [`is_temporary_name`]).
///
/// Callers that must not replace arbitrary directories check `out` first.
pub fn replace_dir_atomically<T>(out: &Path, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let out = if out.is_relative() {
        std::env::current_dir()
            .map_err(|e| Error::io(out, e))?
            .join(out)
    } else {
        out.to_path_buf()
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = unique_sibling(&out, "tmp");
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let value = match fill(&tmp) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if out.exists() {
        let old = unique_sibling(&out, "old");
        if let Err(e) = std::fs::rename(&out, &old) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(Error::io(&out, e));
        }
        if let Err(e) = std::fs::rename(&tmp, &out) {
            let _ = std::fs::rename(&old, &out);
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(Error::io(&out, e));
        }
        let _ = std::fs::remove_dir_all(&old);
    } else if let Err(e) = std::fs::rename(&tmp, &out) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(Error::io(&out, e));
    }
    sync_parent(&out);
    Ok(value)
}

/// Copies the regular files and subdirectories of `from` into `to` (created).
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| Error::io(&source, e))?;
        if kind.is_dir() {
            copy_dir(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).map_err(|e| Error::io(&source, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_keeps_old_contents_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x");
        replace_dir_atomically(&out, |t| write_atomic(&t.join("f"), b"1")).unwrap();
        let err = replace_dir_atomically(&out, |t| {
            write_atomic(&t.join("f"), b"2")?;
            Err::<(), _>(Error::Invalid("boom".into()))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(out.join("f")).unwrap(), b"1");
        replace_dir_atomically(&out, |t| write_atomic(&t.join("g"), b"3")).unwrap();
        assert!(!out.join("f").exists() && out.join("g").exists());
        // No temporary directory or file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn stale_siblings_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model");
        // pid 0 is never a user process: a leftover of a killed writer.
        let dead = dir.path().join(".model.tmp-0-123-0");
        std::fs::create_dir(&dead).unwrap();
        let live = unique_sibling(&out, "tmp");
        std::fs::create_dir(&live).unwrap();
        let unrelated = dir.path().join(".other.tmp-0-1-0");
        std::fs::create_dir(&unrelated).unwrap();
        remove_stale_siblings(&out);
        if Path::new("/proc/self").exists() {
            assert!(!dead.exists());
        }
        assert!(live.exists() && unrelated.exists());
    }

    #[test]
    fn temporary_names_are_unique_and_recognised() {
        let p = Path::new("/a/ACTIVE");
        let (a, b) = (unique_sibling(p, "tmp"), unique_sibling(p, "tmp"));
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(is_temporary_name(name, "tmp"));
        assert!(!is_temporary_name("ACTIVE", "tmp"));
    }
}
