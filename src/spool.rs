//! Spool: the files in the shared request and response directories.
//!
//! Writes are atomic and durable (dot-temp created exclusively without
//! following symlinks, fsync, rename into place, fsync the directory; the temp
//! is removed on any failure). Reads refuse symlinks, non-regular files and
//! oversized files without opening them in a way that could block.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The dot-temp name a final name is written under first.
pub fn temp_name(final_name: &str) -> String {
    format!(".{final_name}.tmp")
}

/// Writes `bytes` to `dir/name` atomically and durably with file `mode`.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    let tmp = dir.join(temp_name(name));
    let dest = dir.join(name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &dest)?;
        sync_dir(dir)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io::Error::new(
            e.kind(),
            format!("cannot write {}: {e}", dest.display()),
        ));
    }
    Ok(dest)
}

/// Makes a rename or unlink in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes leftovers of killed agents from the request directory: requests
/// (`<uuid>.json`) and dot-temps (`.<uuid>.json.tmp`) last modified more than
/// `max_age` ago. Nothing else is touched. Returns what was removed and the
/// problems met.
pub fn clean_stale(dir: &Path, max_age: std::time::Duration) -> (Vec<PathBuf>, Vec<String>) {
    let mut removed = Vec::new();
    let mut problems = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return (removed, vec![format!("cannot read {}: {e}", dir.display())]),
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let id = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".json.tmp"))
            .or_else(|| name.strip_suffix(".json"));
        if id.is_none_or(|id| uuid::Uuid::parse_str(id).is_err()) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if !old || !(meta.is_file() || meta.file_type().is_symlink()) {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("cannot remove {}: {e}", path.display())),
        }
    }
    if !removed.is_empty() {
        let _ = sync_dir(dir);
    }
    (removed, problems)
}

/// What was found at a response path.
#[derive(Debug, PartialEq, Eq)]
pub enum FileRead {
    Missing,
    /// Present but refused (symlink, not a regular file, too large).
    Refused(String),
    Bytes(Vec<u8>),
}

/// Reads a small regular file without following symlinks or blocking on a
/// FIFO or device: `lstat` first, then `O_NOFOLLOW|O_NONBLOCK`, then `fstat`.
pub fn read_regular(path: &Path, max_bytes: u64) -> io::Result<FileRead> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FileRead::Missing),
        Err(e) => return Err(e),
    };
    if let Some(why) = refusal(&meta.file_type(), meta.len(), max_bytes) {
        return Ok(FileRead::Refused(why));
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FileRead::Missing),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(FileRead::Refused("it is a symbolic link".into()))
        }
        Err(e) => return Err(e),
    };
    // The name may have been swapped between lstat and open: check what we hold.
    let meta = file.metadata()?;
    if let Some(why) = refusal(&meta.file_type(), meta.len(), max_bytes) {
        return Ok(FileRead::Refused(why));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Ok(FileRead::Refused(format!(
            "it is larger than {max_bytes} bytes"
        )));
    }
    Ok(FileRead::Bytes(bytes))
}

fn refusal(ft: &fs::FileType, len: u64, max_bytes: u64) -> Option<String> {
    if ft.is_symlink() {
        Some("it is a symbolic link".into())
    } else if ft.is_dir() {
        Some("it is a directory".into())
    } else if ft.is_fifo() {
        Some("it is a FIFO".into())
    } else if !ft.is_file() {
        Some("it is not a regular file".into())
    } else if len > max_bytes {
        Some(format!("it is {len} bytes, larger than {max_bytes}"))
    } else {
        None
    }
}

#[cfg(test)]
pub(crate) mod testdir {
    use std::path::{Path, PathBuf};

    /// A temporary directory removed on drop (no extra crates for tests).
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "fgr-{tag}-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4()
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testdir::TempDir;
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn atomic_write_leaves_only_the_final_file() {
        let d = TempDir::new("spool");
        let p = write_atomic(d.path(), "a.json", b"{}", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"{}");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }

    #[test]
    fn a_planted_symlink_at_the_temp_name_is_not_followed() {
        let d = TempDir::new("spool");
        let victim = d.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        symlink(&victim, d.path().join(temp_name("a.json"))).unwrap();
        assert!(write_atomic(d.path(), "a.json", b"{}", 0o644).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(!d.path().join("a.json").exists());
    }

    #[test]
    fn a_planted_symlink_at_the_final_name_is_replaced_not_followed() {
        let d = TempDir::new("spool");
        let victim = d.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        symlink(&victim, d.path().join("a.json")).unwrap();
        write_atomic(d.path(), "a.json", b"{}", 0o644).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        let meta = fs::symlink_metadata(d.path().join("a.json")).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(fs::read(d.path().join("a.json")).unwrap(), b"{}");
    }

    #[test]
    fn failure_removes_the_temp() {
        let d = TempDir::new("spool");
        // The destination is a non-empty directory: rename fails after the temp exists.
        fs::create_dir(d.path().join("a.json")).unwrap();
        fs::write(d.path().join("a.json").join("x"), b"").unwrap();
        let err = write_atomic(d.path(), "a.json", b"{}", 0o644).unwrap_err();
        assert!(err.to_string().contains("a.json"));
        assert!(!d.path().join(temp_name("a.json")).exists());
    }

    #[test]
    fn only_old_leftovers_of_ours_are_cleaned() {
        let d = TempDir::new("spool");
        let id = uuid::Uuid::new_v4();
        let young = uuid::Uuid::new_v4();
        for n in [
            format!("{id}.json"),
            format!(".{id}.json.tmp"),
            format!("{young}.json"),
            "notes.json".into(),
            "other.txt".into(),
        ] {
            fs::write(d.path().join(n), b"{}").unwrap();
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for n in [
            format!("{id}.json"),
            format!(".{id}.json.tmp"),
            "notes.json".into(),
        ] {
            let f = File::options().write(true).open(d.path().join(n)).unwrap();
            f.set_modified(old).unwrap();
        }
        let (removed, problems) = clean_stale(d.path(), std::time::Duration::from_secs(3600));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(removed.len(), 2, "{removed:?}");
        let mut left: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want = vec![
            format!("{young}.json"),
            "notes.json".into(),
            "other.txt".into(),
        ];
        want.sort();
        assert_eq!(left, want);
    }

    #[test]
    fn reads_refuse_what_could_hurt() {
        let d = TempDir::new("spool");
        let p = d.path();
        assert_eq!(
            read_regular(&p.join("none"), 10).unwrap(),
            FileRead::Missing
        );
        fs::write(p.join("ok"), b"hello").unwrap();
        assert_eq!(
            read_regular(&p.join("ok"), 10).unwrap(),
            FileRead::Bytes(b"hello".to_vec())
        );
        assert!(matches!(
            read_regular(&p.join("ok"), 3).unwrap(),
            FileRead::Refused(_)
        ));
        symlink(p.join("ok"), p.join("link")).unwrap();
        assert!(matches!(
            read_regular(&p.join("link"), 10).unwrap(),
            FileRead::Refused(_)
        ));
        fs::create_dir(p.join("dir")).unwrap();
        assert!(matches!(
            read_regular(&p.join("dir"), 10).unwrap(),
            FileRead::Refused(_)
        ));
        let fifo = p.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(matches!(
            read_regular(&fifo, 10).unwrap(),
            FileRead::Refused(_)
        ));
    }
}
