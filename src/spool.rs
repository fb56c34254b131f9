//! Spool: the files in the shared request and response directories.
//!
//! Writes are atomic and durable (dot-temp created exclusively without
//! following symlinks, fsync, rename into place, fsync the directory; the temp
//! is removed on any failure). Reads refuse symlinks, non-regular files and
//! oversized files without opening them in a way that could block.
//!
//! A request the agent publishes ([`publish`]) stays open and `flock`ed by
//! it until the agent is done, so [`clean_stale`] can tell a leftover of a
//! killed agent (no lock) from a request in flight whatever the clocks say;
//! and an inotify watch on the file tells the agent whether another process
//! opened it (the storage side read it) before it was withdrawn. The lock is
//! only a marker: where the file system refuses locks (an NFS mount without
//! its lock service: ENOLCK), the request is published all the same, and the
//! clean-up judges leftovers by their age alone.

#[cfg(test)]
use std::cell::Cell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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

#[cfg(test)]
thread_local! {
    /// An error every `flock` of this thread fails with (unit tests: no file
    /// system at hand refuses locks).
    static REFUSED_LOCKS: Cell<Option<i32>> = const { Cell::new(None) };
}

/// Makes every `flock` of the calling thread fail with `errno` (None: as
/// the file system says), as on a file system that refuses locks.
#[cfg(test)]
pub fn refuse_locks(errno: Option<i32>) {
    REFUSED_LOCKS.with(|r| r.set(errno));
}

/// `flock(2)` on `f`.
fn flock(f: &File, op: libc::c_int) -> io::Result<()> {
    #[cfg(test)]
    if let Some(errno) = REFUSED_LOCKS.with(Cell::get) {
        return Err(io::Error::from_raw_os_error(errno));
    }
    // SAFETY: plain system call on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The file system does not do `flock` (as opposed to: someone holds it).
fn locks_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
    )
}

/// A request published by this process. While it lives, the file is held
/// open with an exclusive `flock`: the mark that an agent still owns it.
pub struct Published {
    pub path: PathBuf,
    /// Set when the rename happened (the request is out, the storage side may
    /// act on it) but making it durable (the directory's fsync) failed.
    pub sync_error: Option<io::Error>,
    /// Set when the file system refused the lock: the request is out all the
    /// same, unmarked, so monitor judges it by its age alone.
    pub unmarked: Option<io::Error>,
    pub opens: OpenWatch,
    /// Taken only by `drop`.
    owner: Option<File>,
}

impl Drop for Published {
    /// Lets go of the request: its lock (the mark of an agent still owning
    /// it) at once, then the file and the opens watch on a thread of their
    /// own. Those closes can take milliseconds that belong to no one's
    /// answer: the kernel frees the file here when the storage side has
    /// already removed it, and the release of an inotify instance waits for
    /// the end of an SRCU grace period. The fence's final record is written
    /// before this, so the agent reports and exits meanwhile (its exit still
    /// waits for the thread: nothing is left open). Without a thread, they
    /// close here.
    fn drop(&mut self) {
        let owner = self.owner.take();
        if let Some(f) = &owner {
            // SAFETY: plain system call on a descriptor we own.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
        let watch = self.opens.fd.take();
        let closing = std::thread::Builder::new().name("request-close".into());
        // On failure the closure, and with it both descriptors, drops here.
        let _ = closing.spawn(move || drop((owner, watch)));
    }
}

/// Writes a request like [`write_atomic`], but keeps it locked and watched.
/// An error means nothing was published (the temp is removed); after the
/// rename only [`Published::sync_error`] can say something went wrong.
pub fn publish(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<Published> {
    publish_as(dir, name, bytes, mode, true)
}

/// [`publish`]'s steps without the opens watch, for a file no one else
/// reads (monitor's probe): closing an inotify instance costs an SRCU grace
/// period, milliseconds a monitor would spend at its exit.
pub fn publish_unwatched(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<Published> {
    publish_as(dir, name, bytes, mode, false)
}

fn publish_as(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
    watch_opens: bool,
) -> io::Result<Published> {
    let tmp = dir.join(temp_name(name));
    let dest = dir.join(name);
    let unpublished = |e: io::Error| {
        let _ = fs::remove_file(&tmp);
        io::Error::new(e.kind(), format!("cannot write {}: {e}", dest.display()))
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", dest.display())))?;
    // Locked before anything else can see it: held by the descriptor, so it
    // follows the file through the rename and ends with this process. The
    // file is new and ours alone, so a failure means the file system does
    // not do locks: a marker, which the fence does not depend on.
    let unmarked = flock(&f, libc::LOCK_EX | libc::LOCK_NB).err();
    // Armed before the rename: no other process can have opened it yet.
    let opens = if watch_opens {
        OpenWatch::arm(&f, dir)
    } else {
        OpenWatch::unwatched()
    };
    f.write_all(bytes).map_err(unpublished)?;
    f.sync_all().map_err(unpublished)?;
    fs::rename(&tmp, &dest).map_err(unpublished)?;
    Ok(Published {
        path: dest,
        sync_error: sync_dir(dir).err(),
        unmarked,
        opens,
        owner: Some(f),
    })
}

/// Whether another process opened or read a file since the watch was armed
/// (the first open or read is seen, not how many followed).
pub struct OpenWatch {
    fd: Option<OwnedFd>,
    /// The watch on the file, until [`stop`](Self::stop) removes it.
    wd: Option<i32>,
    /// The watched file as `/proc/self/fd/N`, to arm the watch again after
    /// an open of our own ended it.
    target: Option<std::ffi::CString>,
    /// Why opens cannot be seen (None: they can, at least on this host).
    blind: Option<String>,
    /// Why opens made on other hosts cannot be seen (network file system).
    remote: Option<String>,
    opened: u64,
}

/// What an [`OpenWatch`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// No other process opened it (and opens would have been seen).
    No,
    /// Another process opened or read it (at least this many times: the
    /// watch ends at the first event, so this is 1).
    Yes(u64),
    /// Cannot be told: the reason.
    Unknown(String),
}

impl OpenWatch {
    /// No watch: opens are not looked for.
    fn unwatched() -> OpenWatch {
        OpenWatch {
            fd: None,
            wd: None,
            target: None,
            blind: Some("opens are not watched".into()),
            remote: None,
            opened: 0,
        }
    }

    fn arm(file: &File, dir: &Path) -> OpenWatch {
        let remote = remote_file_system(dir).map(|fs| {
            format!(
                "{} is on {fs}: opens made on other hosts raise no event here",
                dir.display()
            )
        });
        let mut w = OpenWatch {
            fd: None,
            wd: None,
            target: None,
            blind: None,
            remote,
            opened: 0,
        };
        // SAFETY: plain system call; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            w.blind = Some(format!(
                "inotify unavailable: {}",
                io::Error::last_os_error()
            ));
            return w;
        }
        // SAFETY: fd is a fresh descriptor we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Through /proc/self/fd: the watch is on the very inode we hold.
        let Ok(c) = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())) else {
            w.blind = Some("inotify unavailable".into());
            return w;
        };
        let Some(wd) = Self::add_watch(&fd, &c) else {
            w.blind = Some(format!(
                "inotify unavailable: {}",
                io::Error::last_os_error()
            ));
            return w;
        };
        w.fd = Some(fd);
        w.wd = Some(wd);
        w.target = Some(c);
        w
    }

    /// Adds the watch on the file (again). None when it cannot. One event is
    /// all it takes: the kernel then removes the watch itself, when the
    /// storage side reads the request, long before it answers, instead of at
    /// the answer, where retiring a watch costs the agent an SRCU grace
    /// period (see `Published::drop`).
    fn add_watch(fd: &OwnedFd, target: &std::ffi::CStr) -> Option<i32> {
        let mask = libc::IN_OPEN | libc::IN_ACCESS | libc::IN_ONESHOT;
        // SAFETY: valid descriptor and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), target.as_ptr(), mask) };
        (wd >= 0).then_some(wd)
    }

    /// Stops watching, once opens no longer matter (the request is
    /// answered): [`seen`](Self::seen) then tells what was seen until now.
    /// A watch still there (no open seen) is removed right away, so that the
    /// kernel retires it together with the response directory's watch,
    /// which goes at the same moment, not in a grace period of its own.
    pub fn stop(&mut self) {
        self.take_events();
        if let (Some(fd), Some(wd)) = (&self.fd, self.wd.take()) {
            // SAFETY: plain system call on a descriptor we own.
            unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) };
        }
    }

    /// Runs `probe`, an open of the watched file by this process itself (a
    /// presence probe on a network mount), so that it is not counted as
    /// another process's: what came before is counted first, and what comes
    /// while it runs is dropped. The kernel merges identical events that are
    /// not read yet, so ours cannot be counted off afterwards; an open by
    /// another process in that same instant is dropped with ours. The watch
    /// is one-shot: when an open of ours ended it, it is armed again (if
    /// that fails, it counts as stopped).
    pub fn own_open<R>(&mut self, probe: impl FnOnce() -> R) -> R {
        self.take_events();
        let result = probe();
        let before = self.opened;
        self.take_events();
        if self.opened != before && self.wd.is_some() {
            self.wd = match (&self.fd, &self.target) {
                (Some(fd), Some(target)) => Self::add_watch(fd, target),
                _ => None,
            };
        }
        self.opened = before;
        result
    }

    /// What has been seen so far (never blocks).
    pub fn seen(&mut self) -> Opened {
        self.take_events();
        match (&self.blind, &self.remote) {
            _ if self.opened > 0 => Opened::Yes(self.opened),
            (Some(why), _) | (None, Some(why)) => Opened::Unknown(why.clone()),
            (None, None) if self.wd.is_none() => {
                Opened::Unknown("the watch had been stopped".into())
            }
            (None, None) => Opened::No,
        }
    }

    /// Counts the events queued so far (never blocks).
    fn take_events(&mut self) {
        if let Some(fd) = &self.fd {
            let mut buf = [0u8; 4096];
            loop {
                // SAFETY: buf is valid for its length; the fd is non-blocking.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                let mut at = 0usize;
                let head = std::mem::size_of::<libc::inotify_event>();
                while at + head <= n as usize {
                    // SAFETY: the kernel wrote whole events; read_unaligned
                    // copes with the byte buffer's alignment.
                    let ev: libc::inotify_event =
                        unsafe { std::ptr::read_unaligned(buf.as_ptr().add(at).cast()) };
                    if ev.mask & (libc::IN_OPEN | libc::IN_ACCESS | libc::IN_Q_OVERFLOW) != 0 {
                        self.opened += 1;
                    }
                    at += head + ev.len as usize;
                }
            }
        }
    }
}

/// The network file system `dir` is on, if it is one.
pub fn remote_file_system(dir: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    match st.f_type as u32 {
        0x6969 => Some("NFS"),
        0xFF53_4D42 | 0xFE53_4D42 | 0x517B => Some("SMB"),
        0x0102_1997 => Some("9P"),
        0x00C3_6400 => Some("CephFS"),
        0x0BD0_0BD0 => Some("Lustre"),
        0x6573_5546 => Some("FUSE"),
        _ => None,
    }
}

/// Makes a rename or unlink in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What [`clean_stale`] did.
#[derive(Debug, Default)]
pub struct Cleaned {
    pub removed: Vec<PathBuf>,
    /// Old by their time stamp, but an agent still holds their lock: a
    /// fence in flight (the clock was stepped, or the agent is slow).
    pub owned: Vec<PathBuf>,
    /// Set when the file system refused locks: leftovers were judged by
    /// their age alone.
    pub by_age_alone: Option<String>,
    pub problems: Vec<String>,
}

/// Removes leftovers of killed agents from the request directory: requests
/// (`<uuid>.json`) and dot-temps (`.<uuid>.json.tmp`) last modified more than
/// `max_age` ago that no running agent owns (holds locked). Nothing else is
/// touched.
pub fn clean_stale(dir: &Path, max_age: std::time::Duration) -> Cleaned {
    let mut done = Cleaned::default();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            done.problems
                .push(format!("cannot read {}: {e}", dir.display()));
            return done;
        }
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
        // Held for the removal: no agent can own it meanwhile.
        let _lock = if meta.is_file() {
            match unowned(&path) {
                Ok(Some(lock)) => Some(lock),
                Ok(None) => {
                    done.owned.push(path);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                // No agent can have marked it either: its age decides.
                Err(e) if locks_refused(&e) => {
                    done.by_age_alone = Some(format!(
                        "file locks are refused in {} ({e}): requests there were judged by \
                         their age alone",
                        dir.display()
                    ));
                    None
                }
                Err(e) => {
                    done.problems
                        .push(format!("cannot examine {}: {e}", path.display()));
                    continue;
                }
            }
        } else {
            None
        };
        match fs::remove_file(&path) {
            Ok(()) => done.removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => done
                .problems
                .push(format!("cannot remove {}: {e}", path.display())),
        }
    }
    if !done.removed.is_empty() {
        let _ = sync_dir(dir);
    }
    done
}

/// The file, locked, if no process holds its lock (None: an agent owns it).
fn unowned(path: &Path) -> io::Result<Option<File>> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)?;
    match flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        Err(e) => Err(e),
    }
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
mod tests {
    use super::*;
    use crate::test_support::{mkfifo, names, TempDir};
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
        assert_eq!(names(d.path()), ["a.json"]);
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
        let done = clean_stale(d.path(), std::time::Duration::from_secs(3600));
        assert!(done.problems.is_empty(), "{:?}", done.problems);
        assert_eq!(done.removed.len(), 2, "{:?}", done.removed);
        let left = names(d.path());
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
        mkfifo(&fifo, 0o644);
        assert!(matches!(
            read_regular(&fifo, 10).unwrap(),
            FileRead::Refused(_)
        ));
    }

    #[test]
    fn an_owned_request_is_never_cleaned_whatever_its_age() {
        let d = TempDir::new("spool");
        let id = uuid::Uuid::new_v4();
        let name = format!("{id}.json");
        let published = publish(d.path(), &name, b"{}", 0o644).unwrap();
        assert!(published.sync_error.is_none());
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&published.path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let done = clean_stale(d.path(), std::time::Duration::from_secs(3600));
        assert_eq!(done.owned, vec![published.path.clone()]);
        assert!(done.removed.is_empty() && published.path.exists());
        // The owner is gone (an agent killed): now it is a leftover.
        let path = published.path.clone();
        drop(published);
        let done = clean_stale(d.path(), std::time::Duration::from_secs(3600));
        assert_eq!(done.removed, vec![path.clone()]);
        assert!(!path.exists());
    }

    #[test]
    fn without_locks_a_request_is_published_and_leftovers_go_by_age() {
        let d = TempDir::new("spool");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        refuse_locks(Some(libc::ENOLCK));
        let published = publish(
            d.path(),
            &format!("{}.json", uuid::Uuid::new_v4()),
            b"{}",
            0o644,
        );
        let young = publish(
            d.path(),
            &format!("{}.json", uuid::Uuid::new_v4()),
            b"{}",
            0o644,
        );
        let leftover = d.path().join(format!("{}.json", uuid::Uuid::new_v4()));
        fs::write(&leftover, b"{}").unwrap();
        File::options()
            .write(true)
            .open(&leftover)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let done = clean_stale(d.path(), std::time::Duration::from_secs(3600));
        refuse_locks(None);
        let (published, young) = (published.unwrap(), young.unwrap());
        assert_eq!(
            published
                .unmarked
                .as_ref()
                .and_then(io::Error::raw_os_error),
            Some(libc::ENOLCK)
        );
        assert!(published.path.exists() && young.path.exists());
        assert!(done.problems.is_empty(), "{:?}", done.problems);
        assert_eq!(done.removed, vec![leftover]);
        assert!(done.by_age_alone.unwrap().contains("age alone"));
    }

    #[test]
    fn the_agents_own_opens_are_not_anothers() {
        let d = TempDir::new("spool");
        let mut p = publish(d.path(), "a.json", b"{}", 0o644).unwrap();
        if matches!(p.opens.seen(), Opened::Unknown(_)) {
            return; // inotify unavailable here: nothing to show
        }
        let path = p.path.clone();
        for _ in 0..3 {
            assert!(p.opens.own_open(|| File::open(&path).is_ok()));
        }
        assert_eq!(p.opens.seen(), Opened::No);
        // Another open before ours is still seen.
        let other = File::open(&path).unwrap();
        assert!(p.opens.own_open(|| File::open(&path).is_ok()));
        drop(other);
        assert!(
            matches!(p.opens.seen(), Opened::Yes(1)),
            "{:?}",
            p.opens.seen()
        );
    }

    #[test]
    fn opens_by_others_are_seen_and_ours_are_not() {
        let d = TempDir::new("spool");
        let mut p = publish(d.path(), "a.json", b"{}", 0o644).unwrap();
        if matches!(p.opens.seen(), Opened::Unknown(_)) {
            return; // inotify unavailable here: nothing to show
        }
        assert_eq!(p.opens.seen(), Opened::No);
        let _ = fs::metadata(&p.path).unwrap(); // a stat is not an open
        assert_eq!(p.opens.seen(), Opened::No);
        assert_eq!(fs::read(&p.path).unwrap(), b"{}");
        assert!(matches!(p.opens.seen(), Opened::Yes(n) if n >= 1));
    }

    #[test]
    fn a_stopped_watch_keeps_what_it_saw_and_sees_no_more() {
        let d = TempDir::new("spool");
        let mut p = publish(d.path(), "a.json", b"{}", 0o644).unwrap();
        if matches!(p.opens.seen(), Opened::Unknown(_)) {
            return; // inotify unavailable here: nothing to show
        }
        assert_eq!(fs::read(&p.path).unwrap(), b"{}");
        p.opens.stop();
        let seen = p.opens.seen();
        assert!(matches!(seen, Opened::Yes(n) if n >= 1), "{seen:?}");
        assert_eq!(fs::read(&p.path).unwrap(), b"{}");
        assert_eq!(p.opens.seen(), seen);
        let mut q = publish(d.path(), "b.json", b"{}", 0o644).unwrap();
        q.opens.stop();
        assert_eq!(fs::read(&q.path).unwrap(), b"{}");
        assert!(matches!(q.opens.seen(), Opened::Unknown(why) if why.contains("stopped")));
    }

    #[test]
    fn a_dropped_request_is_let_go_of() {
        let d = TempDir::new("spool");
        let p = publish(d.path(), "a.json", b"{}", 0o644).unwrap();
        let path = p.path.clone();
        let lock = || {
            let f = File::open(&path).unwrap();
            // SAFETY: plain system call on a descriptor we own.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
        };
        assert!(!lock(), "held while published");
        drop(p);
        assert!(lock(), "released at once, though closed on a thread");
    }
}
