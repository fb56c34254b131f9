//! Journal: the three log files of fence events.
//!
//! - `fence-events.log` (or `$FENCE_LOG`): every message, `[time] [LEVEL] text`
//! - `fence-events-readable.log`: one grep-friendly line per event
//! - `fence-events-detailed.jsonl`: one JSON object per event
//!
//! Each record is one `write(2)` on a descriptor opened with `O_APPEND` just
//! for that record, so concurrent agents never interleave lines and logrotate
//! (`create` or `copytruncate`) loses nothing. Every field is escaped so one
//! record is always one line, and in the readable log no value can contain
//! ` KEY=` (`=` and, outside DETAILS, spaces are escaped), so a grep for a
//! field matches only that field. Only regular files are logs: a FIFO,
//! device or symlink at a log name is refused without blocking. A record that
//! follows a fragment left by a short write (full disk) starts on a new line.
//! A log that cannot be written is reported on stderr and to syslog, once per
//! file, and never changes a fence's outcome.
//!
//! One route into the main log: the engine's modules write its lines with
//! the `tracing` macros (`info!`, `warn!`, `error!`), and the binding runs
//! each call that logs under [`with_main_log`], whose subscriber appends
//! each event as one line. Outside it those events go nowhere. Nothing else
//! writes the main log but the journal itself (the `Recorded fence event`
//! line of each record).

use std::collections::HashSet;
use std::ffi::CString;
use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

pub const READABLE_LOG_NAME: &str = "fence-events-readable.log";
pub const DETAILED_LOG_NAME: &str = "fence-events-detailed.jsonl";

/// Severity of a main-log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

/// The lifecycle states a fence event is recorded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// The request is published (written before the wait starts).
    Initiated,
    /// A success answer arrived.
    Completed,
    /// A failure answer arrived, or the request could not be made.
    Failed,
    /// No answer before `fence_timeout`.
    Timeout,
    /// A signal ended the wait.
    Interrupted,
    /// `on`: the node's fenced records were removed.
    Unfenced,
    /// `on`: there was nothing to remove.
    AlreadyUnfenced,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Initiated => "initiated",
            EventStatus::Completed => "completed",
            EventStatus::Failed => "failed",
            EventStatus::Timeout => "timeout",
            EventStatus::Interrupted => "interrupted",
            EventStatus::Unfenced => "unfenced",
            EventStatus::AlreadyUnfenced => "already_unfenced",
        }
    }
}

/// One fence event, as written to the readable and detailed logs.
#[derive(Debug, Clone, Serialize)]
pub struct FenceEvent {
    pub timestamp: String,
    pub action: String,
    pub target_node: String,
    pub status: &'static str,
    pub details: String,
    pub recorder_node: String,
    pub pacemaker_action: String,
    pub gfs2_filesystems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_performed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_file: Option<String>,
}

/// Where the journal writes, and with which file mode.
#[derive(Debug)]
pub struct Journal {
    log_dir: PathBuf,
    main_log: PathBuf,
    mode: u32,
    /// Files already reported as unwritable (reported once each).
    reported: Mutex<HashSet<PathBuf>>,
    /// An append already waited ROTATION_WAIT for a rotation in vain.
    rotation_gave_up: AtomicBool,
}

impl Journal {
    pub fn new(log_dir: &Path, main_log: &Path, mode: u32) -> Journal {
        Journal {
            log_dir: log_dir.to_path_buf(),
            main_log: main_log.to_path_buf(),
            mode,
            reported: Mutex::new(HashSet::new()),
            rotation_gave_up: AtomicBool::new(false),
        }
    }

    pub fn main_log(&self) -> &Path {
        &self.main_log
    }

    pub fn readable_log(&self) -> PathBuf {
        self.log_dir.join(READABLE_LOG_NAME)
    }

    pub fn detailed_log(&self) -> PathBuf {
        self.log_dir.join(DETAILED_LOG_NAME)
    }

    /// Appends one line to the main log: only for the journal's own line
    /// of each record and for `MainLogSubscriber` (the one route in).
    fn log(&self, level: Level, message: &str) {
        let line = format!(
            "[{}] [{}] {}\n",
            local_now(),
            level.as_str(),
            escape_line(message)
        );
        self.append(&self.main_log, line.as_bytes());
    }

    /// Writes an event to the readable and detailed logs, then says so in the
    /// main log.
    pub fn record(&self, event: &FenceEvent) {
        let gfs2 = serde_json::to_string(&event.gfs2_filesystems).unwrap_or_else(|_| "[]".into());
        let readable = format!(
            "[{}] ACTION={} TARGET={} GFS2={} STATUS={} DETAILS={}\n",
            local_now(),
            escape_field(&event.action),
            escape_field(&event.target_node),
            escape_field(&gfs2),
            event.status,
            escape_value(&event.details)
        );
        self.append(&self.readable_log(), readable.as_bytes());
        self.append(&self.detailed_log(), &json_line(event));
        self.log(
            Level::Info,
            &format!(
                "Recorded fence event: action={}, target={}, status={}",
                event.action, event.target_node, event.status
            ),
        );
    }

    fn append(&self, path: &Path, bytes: &[u8]) {
        // One process waits for rotations at most ROTATION_WAIT in all: a
        // stuck rotation can delay a fence by that much, never more.
        let wait = if self.rotation_gave_up.load(Ordering::Relaxed) {
            Duration::ZERO
        } else {
            ROTATION_WAIT
        };
        let rotation = RotationLock::shared(&self.log_dir, self.mode, wait);
        if !rotation.is_held() && !wait.is_zero() {
            self.rotation_gave_up.store(true, Ordering::Relaxed);
        }
        if let Err(e) = append_record(path, bytes, self.mode) {
            let first = self
                .reported
                .lock()
                .map(|mut r| r.insert(path.to_path_buf()))
                .unwrap_or(true);
            if first {
                report_log_failure(&format!(
                    "cannot write log {}: {e}; the fence goes on without it",
                    path.display()
                ));
            }
        }
    }
}

/// The lock a `copytruncate` rotation holds exclusively (through
/// `contrib/fence-gfs2-rotate-hold`, run as logrotate's prerotate and
/// postrotate scripts) so that no record is appended between logrotate's copy
/// and its truncate. Agents hold it shared around each append, so they never
/// wait for one another.
pub const ROTATION_LOCK_NAME: &str = ".fence-events.lock";
/// Longest a process waits for rotations, over all its appends; then appends
/// go ahead (a record that might be lost beats an agent that hangs).
pub const ROTATION_WAIT: Duration = Duration::from_secs(1);

/// A shared hold on the rotation lock, released on drop. Holds nothing when
/// the lock cannot be had (no log dir yet, or a rotation outlasting
/// [`ROTATION_WAIT`]).
pub struct RotationLock(Option<File>);

impl RotationLock {
    pub fn shared(log_dir: &Path, mode: u32, wait: Duration) -> RotationLock {
        let Ok(f) = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(log_dir.join(ROTATION_LOCK_NAME))
        else {
            return RotationLock(None);
        };
        if !f.metadata().is_ok_and(|m| m.is_file()) {
            return RotationLock(None);
        }
        let deadline = Instant::now() + wait;
        loop {
            // SAFETY: the descriptor is open for the whole call.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
                return RotationLock(Some(f));
            }
            if Instant::now() >= deadline {
                return RotationLock(None);
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn is_held(&self) -> bool {
        self.0.is_some()
    }
}

/// Appends `bytes` with a single `write(2)` on a fresh `O_APPEND` descriptor
/// (never following a symlink, never blocking on a FIFO or device: only a
/// regular file is a log), creating the file and its directory if needed.
/// When the file ends in a fragment without a newline (an earlier short write
/// on a full disk), the record is written after a newline of its own.
pub fn append_record(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    let open = |read: bool| {
        OpenOptions::new()
            .read(read)
            .append(true)
            .create(true)
            .mode(mode)
            .custom_flags(flags)
            .open(path)
    };
    // Read access lets the last byte be looked at; a log we may only append
    // to is still written.
    let open = || match open(true) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => open(false),
        other => other,
    };
    let f = match open() {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o750)
                    .create(dir)?;
            }
            open()?
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(io::Error::other(
                "it is a symbolic link (only regular files are logs; it is not followed)",
            ))
        }
        // A FIFO without a reader, opened write-only without blocking.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(io::Error::other(
                "it is a FIFO, not a regular file (only regular files are logs)",
            ))
        }
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if let Some(what) = not_a_log(&meta.file_type()) {
        return Err(io::Error::other(format!(
            "it is {what}, not a regular file (only regular files are logs)"
        )));
    }
    // Other agents' appends are held off while the last byte is looked at:
    // a record of theirs seen half-copied would look like a fragment. Without
    // the lock the look is skipped (a blank line is not worth risking).
    let serial = AppendLock::take(&f);
    let mut record = Vec::with_capacity(bytes.len() + 1);
    if serial.0.is_some() && ends_in_fragment(&f, f.metadata()?.len()) {
        record.push(b'\n');
    }
    record.extend_from_slice(bytes);
    let written = (&f).write(&record)?;
    if written != record.len() {
        // Only a full disk or a size limit stops a regular-file append short.
        // Try to end the fragment here; if that fails too, the next record
        // starts with a newline instead.
        let _ = (&f).write(b"\n");
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write ({written} of {} bytes)", record.len()),
        ));
    }
    Ok(())
}

/// Longest one append waits for other agents' appends to the same log (each
/// holds it for one write); once that has run out, the process stops waiting
/// (a holder that never lets go can cost a fence this much once, never more).
const APPEND_LOCK_WAIT: Duration = Duration::from_secs(1);
static APPEND_LOCK_GAVE_UP: AtomicBool = AtomicBool::new(false);

/// An exclusive `flock` on a log descriptor for one append (or nothing, when
/// it could not be had in time: the append goes ahead regardless).
struct AppendLock<'a>(Option<&'a File>);

impl<'a> AppendLock<'a> {
    fn take(f: &'a File) -> AppendLock<'a> {
        let deadline = Instant::now() + APPEND_LOCK_WAIT;
        loop {
            // SAFETY: plain system call on an open descriptor.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return AppendLock(Some(f));
            }
            if APPEND_LOCK_GAVE_UP.load(Ordering::Relaxed) || Instant::now() >= deadline {
                APPEND_LOCK_GAVE_UP.store(true, Ordering::Relaxed);
                return AppendLock(None);
            }
            thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for AppendLock<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.0 {
            // SAFETY: plain system call on an open descriptor.
            unsafe {
                libc::flock(f.as_raw_fd(), libc::LOCK_UN);
            }
        }
    }
}

/// What a non-regular file at a log name is (None: a regular file).
pub fn not_a_log(ft: &fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_file() {
        None
    } else if ft.is_symlink() {
        Some("a symbolic link")
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_fifo() {
        Some("a FIFO")
    } else if ft.is_socket() {
        Some("a socket")
    } else {
        Some("a device")
    }
}

/// Whether a non-empty file's last byte is not a newline.
fn ends_in_fragment(f: &File, len: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8; 1];
    len > 0 && matches!(f.read_at(&mut last, len - 1), Ok(1)) && last[0] != b'\n'
}

/// One line on stderr, whatever became of it: a closed stderr or a reader
/// that went away must never end a fence (`eprintln!` would panic).
pub fn to_stderr(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "fence_gfs2_recorder: {line}");
}

/// Tells the operator, on stderr and in syslog, that a log is not being kept.
pub fn report_log_failure(message: &str) {
    to_stderr(message);
    if let Ok(c) = CString::new(message.replace('%', "%%")) {
        let ident = c"fence_gfs2_recorder";
        // SAFETY: both strings are NUL-terminated and live across the calls;
        // the format string is a constant and the message is passed as its argument.
        unsafe {
            libc::openlog(ident.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON);
            libc::syslog(libc::LOG_ERR, c"%s".as_ptr(), c.as_ptr());
            libc::closelog();
        }
    }
}

/// `2025-01-10 14:23:15` in local time.
pub fn local_now() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Escapes a value so it can never end or forge a line: backslash, control
/// characters (C0, DEL, C1) and Unicode line/paragraph separators.
pub fn escape_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `escape_line` for the last value of a readable record (DETAILS): `=` is
/// written `\x3d`, so no text in it can read as a ` KEY=value` field (a
/// `grep STATUS=completed` matches only the real STATUS field).
pub fn escape_value(s: &str) -> String {
    escape_line(s).replace('=', "\\x3d")
}

/// `escape_value` for the value of a `KEY=value` field followed by others: a
/// space is written `\x20` too, so the value cannot end early.
pub fn escape_field(s: &str) -> String {
    escape_value(s).replace(' ', "\\x20")
}

/// One JSON Lines record. serde_json leaves DEL, C1 controls, U+2028 and
/// U+2029 raw; they can only occur inside strings, where `\uXXXX` means the
/// same, and Unicode-aware line readers split on some of them.
fn json_line(event: &FenceEvent) -> Vec<u8> {
    let json = serde_json::to_string(event).expect("an event always serializes");
    let mut out = String::with_capacity(json.len() + 1);
    for c in json.chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out.push('\n');
    out.into_bytes()
}

/// Text for bytes that may not be UTF-8: invalid bytes become `\xNN`.
pub fn lossless_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

struct MessageVisitor(String);

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

/// A `tracing` subscriber that writes every event to the main log.
pub struct MainLogSubscriber(pub Arc<Journal>);

impl tracing::Subscriber for MainLogSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut v = MessageVisitor(String::new());
        event.record(&mut v);
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warning,
            tracing::Level::INFO => Level::Info,
            _ => Level::Debug,
        };
        self.0.log(level, &v.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs `f` with every `tracing` event of this thread going to the main log.
pub fn with_main_log<R>(journal: &Arc<Journal>, f: impl FnOnce() -> R) -> R {
    let dispatch = tracing::Dispatch::new(MainLogSubscriber(Arc::clone(journal)));
    tracing::dispatcher::with_default(&dispatch, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{mkfifo, TempDir};
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// The journal with its logs in `dir`, the main one `fence-events.log`.
    fn journal_in(dir: &Path) -> Journal {
        Journal::new(dir, &dir.join("fence-events.log"), 0o600)
    }

    /// A temporary directory and the journal in it.
    fn logs() -> (TempDir, Journal) {
        let d = TempDir::new("journal");
        let j = journal_in(d.path());
        (d, j)
    }

    fn event(status: EventStatus, target: &str, details: &str) -> FenceEvent {
        FenceEvent {
            timestamp: "2025-01-10T14:23:16Z".into(),
            action: "reboot".into(),
            target_node: target.into(),
            status: status.as_str(),
            details: details.into(),
            recorder_node: "rabbit-node-1".into(),
            pacemaker_action: "reboot".into(),
            gfs2_filesystems: vec!["nnf-storage-1".into()],
            request_id: Some("r1".into()),
            action_performed: None,
            elapsed_ms: None,
            response_file: None,
        }
    }

    #[test]
    fn escaping_keeps_one_line() {
        assert_eq!(
            escape_line("a\nb\r\tc\\d\u{1b}[31m\u{2028}"),
            "a\\nb\\r\\tc\\\\d\\u{001b}[31m\\u{2028}"
        );
        assert_eq!(lossless_text(b"ok\xff\\"), "ok\\xff\\\\");
    }

    #[test]
    fn three_files_one_line_each() {
        let d = TempDir::new("journal");
        let j = Journal::new(
            &d.path().join("logs"),
            &d.path().join("logs/fence-events.log"),
            0o600,
        );
        j.record(&event(
            EventStatus::Initiated,
            "evil\n[2025-01-01 00:00:00] [INFO] forged",
            "x\ny",
        ));
        let main = fs::read_to_string(j.main_log()).unwrap();
        let readable = fs::read_to_string(j.readable_log()).unwrap();
        let detailed = fs::read_to_string(j.detailed_log()).unwrap();
        for text in [&main, &readable, &detailed] {
            assert_eq!(text.lines().count(), 1, "{text}");
        }
        assert!(
            readable.contains("STATUS=initiated DETAILS=x\\ny"),
            "{readable}"
        );
        assert!(readable.contains("GFS2=[\"nnf-storage-1\"]"), "{readable}");
        let v: serde_json::Value = serde_json::from_str(&detailed).unwrap();
        assert_eq!(
            v["target_node"],
            "evil\n[2025-01-01 00:00:00] [INFO] forged"
        );
        assert_eq!(v["status"], "initiated");
        for p in [
            j.main_log().to_path_buf(),
            j.readable_log(),
            j.detailed_log(),
        ] {
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn no_unicode_line_break_and_no_forged_field() {
        let (_d, j) = logs();
        let details = "a\u{85}b\u{2028}c\u{2029}d\u{7f}e";
        j.record(&event(EventStatus::Failed, "x STATUS=completed", details));
        let detailed = fs::read_to_string(j.detailed_log()).unwrap();
        assert_eq!(detailed.lines().count(), 1);
        assert!(!detailed.contains(['\u{85}', '\u{2028}', '\u{2029}', '\u{7f}']));
        let v: serde_json::Value = serde_json::from_str(&detailed).unwrap();
        assert_eq!(v["details"], details);
        let readable = fs::read_to_string(j.readable_log()).unwrap();
        assert!(
            readable.contains(" TARGET=x\\x20STATUS\\x3dcompleted GFS2="),
            "{readable}"
        );
    }

    #[test]
    fn details_cannot_forge_a_field() {
        let (_d, j) = logs();
        j.record(&event(
            EventStatus::Failed,
            "n1",
            "Failed to fence node STATUS=completed a=b",
        ));
        let readable = fs::read_to_string(j.readable_log()).unwrap();
        assert_eq!(readable.matches("STATUS=").count(), 1, "{readable}");
        assert!(
            readable.contains(
                " STATUS=failed DETAILS=Failed to fence node STATUS\\x3dcompleted a\\x3db\n"
            ),
            "{readable}"
        );
    }

    #[test]
    fn a_fifo_at_a_log_name_is_refused_without_blocking() {
        let d = TempDir::new("journal");
        let main = d.path().join("fence-events.log");
        mkfifo(&main, 0o600);
        mkfifo(&d.path().join(ROTATION_LOCK_NAME), 0o600);
        let start = Instant::now();
        let err = append_record(&main, b"x\n", 0o600).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        // With a reader present the open succeeds; the fstat check refuses it.
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&main)
            .unwrap();
        let err = append_record(&main, b"x\n", 0o600).unwrap_err();
        assert!(
            err.to_string().contains("a FIFO, not a regular file"),
            "{err}"
        );
        drop(reader);
        let j = journal_in(d.path());
        j.record(&event(EventStatus::Initiated, "n1", "x"));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(
            fs::read_to_string(j.readable_log())
                .unwrap()
                .lines()
                .count(),
            1
        );
    }

    #[test]
    fn a_held_log_lock_delays_appends_once_and_never_stops_them() {
        let d = TempDir::new("journal");
        let log = d.path().join("fence-events.log");
        fs::write(&log, "").unwrap();
        let holder = File::open(&log).unwrap();
        assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX) }, 0);
        let start = Instant::now();
        append_record(&log, b"one\n", 0o600).unwrap();
        let first = start.elapsed();
        append_record(&log, b"two\n", 0o600).unwrap();
        assert!(first >= APPEND_LOCK_WAIT, "{first:?}");
        assert!(start.elapsed() < first + Duration::from_millis(500));
        assert_eq!(fs::read_to_string(&log).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn a_fragment_without_newline_is_not_glued_to_the_next_record() {
        let (_d, j) = logs();
        fs::write(j.detailed_log(), "{\"timestamp\": \"2025").unwrap();
        j.record(&event(EventStatus::Initiated, "n1", "x"));
        j.record(&event(EventStatus::Completed, "n1", "y"));
        let text = fs::read_to_string(j.detailed_log()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "{\"timestamp\": \"2025");
        for l in &lines[1..] {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
    }

    #[test]
    fn appends_wait_for_a_rotation_then_go_ahead() {
        let (d, j) = logs();
        let first = RotationLock::shared(d.path(), 0o600, ROTATION_WAIT);
        let second = RotationLock::shared(d.path(), 0o600, ROTATION_WAIT);
        assert!(first.is_held() && second.is_held(), "agents share the lock");
        drop((first, second));
        // A rotation holds it exclusively: an append waits, then goes ahead.
        let holder = File::open(d.path().join(ROTATION_LOCK_NAME)).unwrap();
        assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX) }, 0);
        let start = Instant::now();
        j.log(Level::Info, "during a stuck rotation");
        assert!(start.elapsed() >= ROTATION_WAIT);
        // The process has waited its share: later appends do not wait again.
        let start = Instant::now();
        j.log(Level::Info, "still stuck");
        assert!(start.elapsed() < ROTATION_WAIT);
        drop(holder);
        j.log(Level::Info, "after it");
        assert_eq!(fs::read_to_string(j.main_log()).unwrap().lines().count(), 3);
    }

    #[test]
    fn symlinked_log_is_not_followed() {
        let d = TempDir::new("journal");
        let victim = d.path().join("victim");
        fs::write(&victim, "").unwrap();
        symlink(&victim, d.path().join("fence-events.log")).unwrap();
        let j = journal_in(d.path());
        j.log(Level::Info, "hello");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "");
    }

    #[test]
    fn tracing_events_reach_the_main_log() {
        let d = TempDir::new("journal");
        let j = Arc::new(Journal::new(d.path(), &d.path().join("main.log"), 0o600));
        with_main_log(&j, || tracing::warn!("something {}", 42));
        let main = fs::read_to_string(j.main_log()).unwrap();
        assert!(main.ends_with("[WARNING] something 42\n"), "{main}");
    }
}
