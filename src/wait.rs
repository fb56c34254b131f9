//! Wait: watching a directory for one file (or any file) to appear or change.
//!
//! inotify (through `notify`) wakes the waiter within microseconds of a local
//! write; a poll runs beside it because writes made by another NFS client raise
//! no event, and runs alone when the watcher cannot start or polling is forced.
//! Deadlines are `Instant`s (monotonic): a wall-clock jump does not move them.
//!
//! Network mounts cache "no such file" for a name once it has been looked up
//! (an NFS client with `lookupcache=all`, a FUSE file system with a negative
//! entry timeout): a response looked for before it exists stays invisible for
//! the whole cache time, however often it is polled. A name never looked up
//! is always asked of the server. The responder writes the response before it
//! deletes the request, so the fence wait does not look the response's name
//! up while its own request is still there: it polls the request (by opening
//! it, which an NFS client revalidates on open and a FUSE file system
//! resolves), and looks the response up once the request is gone, or once the
//! watcher names the response (a local write: the kernel knows the name). From
//! then on the response is read at every poll, so a partial answer written in
//! place is read again until it is complete. No directory is listed.
//! [`look_after_deadline`] gives a timed-out wait one last look, once the
//! caller has withdrawn the request.

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use crate::protocol::{self, Request, ResponseAnswer, ResponseReading};
use crate::spool::{self, FileRead, OpenWatch};

/// How often the waiter comes up to ask whether it was interrupted.
pub const INTERRUPT_CHECK_EVERY: Duration = Duration::from_millis(50);

/// A change seen by the watcher: a file name, or "look at everything again"
/// (queue overflow, watcher error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Name(OsString),
    Rescan,
}

/// A watch on one directory, armed before the awaited file can appear.
pub struct DirWatch {
    dir: PathBuf,
    // Held so the channel never disconnects, even with no watcher.
    _keepalive: Sender<Change>,
    changes: Receiver<Change>,
    watcher: Option<notify::RecommendedWatcher>,
    /// Why the watcher is not running (None when it is, or polling was forced).
    pub watcher_error: Option<String>,
}

impl DirWatch {
    /// Arms a watch on `dir` for names accepted by `wanted`; with
    /// `force_poll`, or when the watcher fails to start, polling alone is used.
    pub fn arm(
        dir: &Path,
        force_poll: bool,
        wanted: impl Fn(&OsStr) -> bool + Send + 'static,
    ) -> DirWatch {
        let (tx, rx) = mpsc::channel();
        let mut watch = DirWatch {
            dir: dir.to_path_buf(),
            _keepalive: tx.clone(),
            changes: rx,
            watcher: None,
            watcher_error: None,
        };
        if force_poll {
            return watch;
        }
        let handler = move |res: notify::Result<notify::Event>| {
            let ev = match res {
                Ok(ev) => ev,
                Err(_) => {
                    let _ = tx.send(Change::Rescan);
                    return;
                }
            };
            if ev.need_rescan() {
                let _ = tx.send(Change::Rescan);
                return;
            }
            for p in &ev.paths {
                if let Some(name) = p.file_name() {
                    if wanted(name) {
                        let _ = tx.send(Change::Name(name.to_os_string()));
                    }
                }
            }
        };
        let started = notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(dir, RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        match started {
            Ok(w) => watch.watcher = Some(w),
            Err(e) => watch.watcher_error = Some(format!("cannot watch {}: {e}", dir.display())),
        }
        watch
    }

    pub fn is_watching(&self) -> bool {
        self.watcher.is_some()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Blocks up to `timeout` for the next change (None: nothing happened).
    pub fn next_change(&self, timeout: Duration) -> Option<Change> {
        match self.changes.recv_timeout(timeout) {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Takes whatever changes are already queued.
    pub fn drain(&self) -> Vec<Change> {
        self.changes.try_iter().collect()
    }
}

/// How a wait for a response ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitOutcome {
    Answered {
        answer: ResponseAnswer,
        path: PathBuf,
        elapsed: Duration,
    },
    /// The deadline passed; `last_problem` says what was wrong with the
    /// response file if one was seen (unreadable, refused, not ours);
    /// `request_gone` whether the request had disappeared (taken by the
    /// responder) during the wait.
    TimedOut {
        elapsed: Duration,
        last_problem: Option<String>,
        request_gone: bool,
    },
    Interrupted {
        elapsed: Duration,
        reason: String,
    },
}

/// Whether the request file is still there. Only "no such file" counts as
/// gone; any other error leaves the request present.
///
/// On a network file system (`by_open`) it is opened, not `stat`ed: an NFS
/// client revalidates a name it opens (close-to-open), so a request another
/// host deleted is seen gone at once. On a local file system a `stat` is
/// exact, and it raises no open event: the exchange watches the request for
/// opens by the storage side, and its own probes must not look like one.
pub fn request_present(path: &Path, by_open: bool) -> bool {
    if !by_open {
        return match fs::symlink_metadata(path) {
            Ok(_) => true,
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        };
    }
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// One look at the response file, for `request`.
fn look(path: &Path, request: &Request) -> Result<ResponseAnswer, Option<String>> {
    match spool::read_regular(path, protocol::MAX_RESPONSE_BYTES) {
        Ok(FileRead::Missing) => Err(None),
        Ok(FileRead::Refused(why)) => {
            Err(Some(format!("response {} refused: {why}", path.display())))
        }
        Ok(FileRead::Bytes(b)) => {
            match protocol::read_response(&b, &request.request_id, &request.target_node) {
                ResponseReading::Answer(a) => Ok(a),
                ResponseReading::NotYet(why) => Err(Some(format!(
                    "response {} unreadable: {why}",
                    path.display()
                ))),
                ResponseReading::NotOurs(why) => {
                    Err(Some(format!("response {} ignored: {why}", path.display())))
                }
            }
        }
        Err(e) => Err(Some(format!(
            "cannot read response {}: {e}",
            path.display()
        ))),
    }
}

/// The request a wait is for, and its published file.
pub struct Awaited<'a> {
    pub request: &'a Request,
    /// Where the request was published (polled: gone means taken).
    pub path: &'a Path,
    /// The watch for opens of the request by others, if any: the wait's own
    /// opens of it (its presence probes) are kept out of what it sees.
    pub opens: Option<&'a mut OpenWatch>,
}

/// Waits until the watched directory holds the answer to `awaited`, the
/// deadline passes, or `interrupted` (asked at least every
/// [`INTERRUPT_CHECK_EVERY`]) says stop. The response is looked up only once
/// the request is gone or the watcher names the response (see the module
/// documentation); both are checked at once and then at every poll, so an
/// answer already there is found at once.
pub fn wait_for_response(
    watch: &DirWatch,
    mut awaited: Awaited<'_>,
    started: Instant,
    deadline: Instant,
    poll_interval: Duration,
    mut interrupted: impl FnMut() -> Option<String>,
) -> WaitOutcome {
    let request = awaited.request;
    let request_path = awaited.path;
    let path = watch.dir().join(request.file_name());
    let mut last_problem: Option<String> = None;
    let mut request_gone = false;
    // True once looking the response's name up cannot cache "missing" for it.
    let mut may_look = false;
    let mut check_now = true;
    let mut next_poll = Instant::now() + poll_interval;
    let probe_by_open = request_path
        .parent()
        .is_some_and(|dir| spool::remote_file_system(dir).is_some());
    loop {
        if check_now {
            if !request_gone {
                let probe = || request_present(request_path, probe_by_open);
                let present = match awaited.opens.as_deref_mut() {
                    Some(opens) if probe_by_open => opens.own_open(probe),
                    _ => probe(),
                };
                if !present {
                    request_gone = true;
                    may_look = true;
                }
            }
            if may_look {
                match look(&path, request) {
                    Ok(answer) => {
                        return WaitOutcome::Answered {
                            answer,
                            path,
                            elapsed: started.elapsed(),
                        }
                    }
                    Err(Some(p)) => last_problem = Some(p),
                    Err(None) => {}
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return WaitOutcome::TimedOut {
                elapsed: started.elapsed(),
                last_problem,
                request_gone,
            };
        }
        if let Some(reason) = interrupted() {
            return WaitOutcome::Interrupted {
                elapsed: started.elapsed(),
                reason,
            };
        }
        if now >= next_poll {
            next_poll = now + poll_interval;
        }
        let step = (deadline - now)
            .min(next_poll - now)
            .min(INTERRUPT_CHECK_EVERY);
        check_now = match watch.next_change(step) {
            Some(first) => {
                // A name is only reported for the response itself; a rescan
                // says nothing about it, so only the request is checked.
                for c in std::iter::once(first).chain(watch.drain()) {
                    if matches!(c, Change::Name(_)) {
                        may_look = true;
                    }
                }
                true
            }
            None => Instant::now() >= next_poll || Instant::now() >= deadline,
        };
    }
}

/// The last look of a wait that timed out, made after the caller withdrew
/// the request (or found it taken): a responder that answered at the last
/// moment, or whose answer could not be looked for while the request was
/// there, still counts. Any other outcome is returned unchanged.
pub fn look_after_deadline(
    outcome: WaitOutcome,
    path: &Path,
    request: &Request,
    started: Instant,
) -> WaitOutcome {
    let WaitOutcome::TimedOut {
        elapsed,
        last_problem,
        request_gone,
    } = outcome
    else {
        return outcome;
    };
    match look(path, request) {
        Ok(answer) => WaitOutcome::Answered {
            answer,
            path: path.to_path_buf(),
            elapsed: started.elapsed(),
        },
        Err(problem) => WaitOutcome::TimedOut {
            elapsed,
            last_problem: problem.or(last_problem),
            request_gone,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{mkfifo, put, ByHand, Dirs, Take, TempDir};

    const ID: &str = "12345678-1234-4234-8234-123456789abc";

    fn name() -> String {
        format!("{ID}.json")
    }

    fn ours(n: &OsStr) -> bool {
        n == OsStr::new(&format!("{ID}.json"))
    }

    fn never() -> Option<String> {
        None
    }

    fn ok_body() -> String {
        format!(
            r#"{{"request_id": "{ID}", "target_node": "n3", "success": true, "message": "ok", "action_performed": "off"}}"#
        )
    }

    /// The request the tests wait for: ID, for n3.
    fn req() -> Request {
        Request {
            request_id: ID.into(),
            timestamp: String::new(),
            action: "off".into(),
            target_node: "n3".into(),
            recorder_node: "rabbit".into(),
        }
    }

    fn awaited<'a>(request: &'a Request, path: &'a Path) -> Awaited<'a> {
        Awaited {
            request,
            path,
            opens: None,
        }
    }

    /// Our request's path; not written, it stands for a request the
    /// responder has taken.
    fn request(d: &Dirs) -> PathBuf {
        d.request_dir.join(name())
    }

    /// Waits from `t` for `within` for our answer in the watched directory.
    fn wait(
        w: &DirWatch,
        request: &Path,
        t: Instant,
        within: Duration,
        poll: Duration,
    ) -> WaitOutcome {
        wait_for_response(w, awaited(&req(), request), t, t + within, poll, never)
    }

    #[test]
    fn answer_already_present_is_found() {
        let d = Dirs::new("wait");
        put(&d.response_dir, &name(), &ok_body());
        let w = DirWatch::arm(&d.response_dir, false, ours);
        let out = wait(
            &w,
            &request(&d),
            Instant::now(),
            Duration::from_secs(5),
            Duration::from_secs(1),
        );
        assert!(
            matches!(out, WaitOutcome::Answered { ref answer, .. } if answer.success),
            "{out:?}"
        );
    }

    /// The response is written in place in two halves; with `take`, the
    /// request is deleted between them (so a poller sees the half first).
    fn answer_after(force_poll: bool, poll: Duration, take: bool) -> (WaitOutcome, Duration) {
        let d = Dirs::new("wait");
        let request = put(&d.request_dir, &name(), "{}");
        let w = DirWatch::arm(&d.response_dir, force_poll, ours);
        assert_eq!(w.is_watching(), !force_poll);
        let responder = ByHand::answering(|_| ok_body())
            .after(Duration::from_millis(200))
            .in_two_parts(Duration::from_millis(300))
            .taking(if take {
                Take::BetweenParts
            } else {
                Take::Never
            })
            .start(&d.request_dir, &d.response_dir);
        let out = wait(&w, &request, Instant::now(), Duration::from_secs(10), poll);
        let seen = Instant::now();
        let written = responder.join()[0].done;
        (out, seen.saturating_duration_since(written))
    }

    #[test]
    fn in_place_answer_is_seen_by_the_watcher() {
        // The request stays: only the watcher's naming the response lets it be read.
        let (out, lag) = answer_after(false, Duration::from_secs(30), false);
        assert!(matches!(out, WaitOutcome::Answered { .. }), "{out:?}");
        // The poll is 30 s: only the watcher can have seen it this soon.
        assert!(lag < Duration::from_secs(5), "{lag:?}");
    }

    #[test]
    fn forced_polling_finds_the_answer() {
        let (out, lag) = answer_after(true, Duration::from_millis(50), true);
        assert!(matches!(out, WaitOutcome::Answered { .. }), "{out:?}");
        assert!(lag < Duration::from_secs(5), "{lag:?}");
    }

    #[test]
    fn the_response_is_not_looked_up_while_the_request_is_there() {
        let d = Dirs::new("wait");
        let request = put(&d.request_dir, &name(), "{}");
        // Present from the start, but no event names it and the request stays.
        let response = put(&d.response_dir, &name(), &ok_body());
        let w = DirWatch::arm(&d.response_dir, true, ours);
        let t = Instant::now();
        let out = wait(
            &w,
            &request,
            t,
            Duration::from_millis(300),
            Duration::from_millis(20),
        );
        assert!(
            matches!(
                out,
                WaitOutcome::TimedOut {
                    request_gone: false,
                    last_problem: None,
                    ..
                }
            ),
            "{out:?}"
        );
        // After the deadline (the caller withdrew the request) it is found.
        let out = look_after_deadline(out, &response, &req(), t);
        assert!(
            matches!(out, WaitOutcome::Answered { ref answer, .. } if answer.success),
            "{out:?}"
        );
    }

    #[test]
    fn the_request_disappearing_leads_to_the_response() {
        let d = Dirs::new("wait");
        let request = put(&d.request_dir, &name(), "{}");
        let w = DirWatch::arm(&d.response_dir, true, ours);
        let responder = ByHand::answering(|_| ok_body())
            .after(Duration::from_millis(200))
            .in_place()
            .start(&d.request_dir, &d.response_dir);
        let out = wait(
            &w,
            &request,
            Instant::now(),
            Duration::from_secs(10),
            Duration::from_millis(50),
        );
        responder.join();
        assert!(
            matches!(out, WaitOutcome::Answered { elapsed, .. } if elapsed < Duration::from_secs(5)),
            "{out:?}"
        );
    }

    #[test]
    fn a_taken_request_without_an_answer_is_told_apart() {
        let d = Dirs::new("wait");
        let w = DirWatch::arm(&d.response_dir, true, ours);
        let t = Instant::now();
        let out = wait(
            &w,
            &request(&d),
            t,
            Duration::from_millis(200),
            Duration::from_millis(50),
        );
        assert!(
            matches!(
                out,
                WaitOutcome::TimedOut {
                    request_gone: true,
                    ..
                }
            ),
            "{out:?}"
        );
        let out = look_after_deadline(out, &d.response_dir.join(name()), &req(), t);
        assert!(matches!(out, WaitOutcome::TimedOut { .. }), "{out:?}");
    }

    #[test]
    fn only_a_missing_request_counts_as_gone() {
        let d = TempDir::new("wait");
        let fifo = d.path().join("fifo");
        mkfifo(&fifo, 0o644);
        std::os::unix::fs::symlink(d.path().join("none"), d.path().join("link")).unwrap();
        put(d.path(), "r", "{}");
        for by_open in [false, true] {
            assert!(!request_present(&d.path().join("none"), by_open));
            assert!(request_present(&d.path().join("r"), by_open));
            // A FIFO planted there is probed without blocking, and is not "gone".
            assert!(request_present(&fifo, by_open));
            assert!(request_present(&d.path().join("link"), by_open));
        }
    }

    #[test]
    fn timeout_reports_the_last_problem() {
        let d = Dirs::new("wait");
        put(&d.response_dir, &name(), "{\"success\": tr");
        let w = DirWatch::arm(&d.response_dir, false, ours);
        let out = wait(
            &w,
            &request(&d),
            Instant::now(),
            Duration::from_millis(300),
            Duration::from_millis(50),
        );
        match out {
            WaitOutcome::TimedOut {
                elapsed,
                last_problem,
                ..
            } => {
                assert!(elapsed >= Duration::from_millis(300));
                assert!(last_problem.unwrap().contains("unreadable"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spoofed_request_id_is_not_an_answer() {
        let d = Dirs::new("wait");
        put(
            &d.response_dir,
            &name(),
            r#"{"request_id": "00000000-0000-4000-8000-000000000000", "success": true}"#,
        );
        let w = DirWatch::arm(&d.response_dir, false, ours);
        let out = wait(
            &w,
            &request(&d),
            Instant::now(),
            Duration::from_millis(200),
            Duration::from_millis(50),
        );
        assert!(
            matches!(out, WaitOutcome::TimedOut { last_problem: Some(ref p), .. } if p.contains("ignored")),
            "{out:?}"
        );
    }

    #[test]
    fn interruption_ends_the_wait_promptly() {
        let d = Dirs::new("wait");
        let w = DirWatch::arm(&d.response_dir, false, ours);
        let t = Instant::now();
        let mut calls = 0;
        let (r, path) = (req(), request(&d));
        let out = wait_for_response(
            &w,
            awaited(&r, &path),
            t,
            t + Duration::from_secs(30),
            Duration::from_secs(10),
            || {
                calls += 1;
                (calls > 3).then(|| "SIGTERM".to_string())
            },
        );
        match out {
            WaitOutcome::Interrupted { elapsed, reason } => {
                assert_eq!(reason, "SIGTERM");
                assert!(elapsed < Duration::from_secs(5));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unwatchable_directory_falls_back_to_polling() {
        let w = DirWatch::arm(Path::new("/nonexistent/fgr"), false, ours);
        assert!(!w.is_watching());
        assert!(w
            .watcher_error
            .as_deref()
            .unwrap()
            .contains("/nonexistent/fgr"));
    }
}
