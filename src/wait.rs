//! Wait: watching a directory for one file (or any file) to appear or change.
//!
//! inotify (through `notify`) wakes the waiter within microseconds of a local
//! write; a poll runs beside it because writes made by another NFS client raise
//! no event, and runs alone when the watcher cannot start or polling is forced.
//! Deadlines are `Instant`s (monotonic): a wall-clock jump does not move them.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use crate::protocol::{self, ResponseAnswer, ResponseReading};
use crate::spool::{self, FileRead};

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
    /// response file if one was seen (unreadable, refused, not ours).
    TimedOut {
        elapsed: Duration,
        last_problem: Option<String>,
    },
    Interrupted {
        elapsed: Duration,
        reason: String,
    },
}

/// One look at the response file.
fn look(path: &Path, request_id: &str) -> Result<ResponseAnswer, Option<String>> {
    match spool::read_regular(path, protocol::MAX_RESPONSE_BYTES) {
        Ok(FileRead::Missing) => Err(None),
        Ok(FileRead::Refused(why)) => {
            Err(Some(format!("response {} refused: {why}", path.display())))
        }
        Ok(FileRead::Bytes(b)) => match protocol::read_response(&b, request_id) {
            ResponseReading::Answer(a) => Ok(a),
            ResponseReading::NotYet(why) => Err(Some(format!(
                "response {} unreadable: {why}",
                path.display()
            ))),
            ResponseReading::NotOurs(why) => {
                Err(Some(format!("response {} ignored: {why}", path.display())))
            }
        },
        Err(e) => Err(Some(format!(
            "cannot read response {}: {e}",
            path.display()
        ))),
    }
}

/// Waits until `dir/<file_name>` holds our answer, the deadline passes, or
/// `interrupted` (asked at least every [`INTERRUPT_CHECK_EVERY`]) says stop.
/// The first look happens at once, so an answer already present is found.
pub fn wait_for_response(
    watch: &DirWatch,
    file_name: &str,
    request_id: &str,
    started: Instant,
    deadline: Instant,
    poll_interval: Duration,
    mut interrupted: impl FnMut() -> Option<String>,
) -> WaitOutcome {
    let path = watch.dir().join(file_name);
    let mut last_problem: Option<String> = None;
    let mut look_now = true;
    let mut next_poll = Instant::now() + poll_interval;
    loop {
        if look_now {
            match look(&path, request_id) {
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
        let now = Instant::now();
        if now >= deadline {
            return WaitOutcome::TimedOut {
                elapsed: started.elapsed(),
                last_problem,
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
        look_now = match watch.next_change(step) {
            Some(_) => {
                watch.drain();
                true
            }
            None => Instant::now() >= next_poll || Instant::now() >= deadline,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::testdir::TempDir;
    use std::fs;
    use std::thread;

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
            r#"{{"request_id": "{ID}", "success": true, "message": "ok", "action_performed": "off"}}"#
        )
    }

    #[test]
    fn answer_already_present_is_found() {
        let d = TempDir::new("wait");
        fs::write(d.path().join(name()), ok_body()).unwrap();
        let w = DirWatch::arm(d.path(), false, ours);
        let t = Instant::now();
        let out = wait_for_response(
            &w,
            &name(),
            ID,
            t,
            t + Duration::from_secs(5),
            Duration::from_secs(1),
            never,
        );
        assert!(
            matches!(out, WaitOutcome::Answered { ref answer, .. } if answer.success),
            "{out:?}"
        );
    }

    fn answer_after(force_poll: bool, poll: Duration) -> (WaitOutcome, Duration) {
        let d = TempDir::new("wait");
        let w = DirWatch::arm(d.path(), force_poll, ours);
        assert_eq!(w.is_watching(), !force_poll);
        let dir = d.path().to_path_buf();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            // half-written first, then complete in place
            fs::write(dir.join(name()), "{\"request_id\": ").unwrap();
            thread::sleep(Duration::from_millis(100));
            fs::write(dir.join(name()), ok_body()).unwrap();
            Instant::now()
        });
        let t = Instant::now();
        let out = wait_for_response(&w, &name(), ID, t, t + Duration::from_secs(10), poll, never);
        let seen = Instant::now();
        let written = writer.join().unwrap();
        (out, seen.saturating_duration_since(written))
    }

    #[test]
    fn in_place_answer_is_seen_by_the_watcher() {
        let (out, lag) = answer_after(false, Duration::from_secs(30));
        assert!(matches!(out, WaitOutcome::Answered { .. }), "{out:?}");
        // The poll is 30 s: only the watcher can have seen it this soon.
        assert!(lag < Duration::from_secs(5), "{lag:?}");
    }

    #[test]
    fn forced_polling_finds_the_answer() {
        let (out, lag) = answer_after(true, Duration::from_millis(50));
        assert!(matches!(out, WaitOutcome::Answered { .. }), "{out:?}");
        assert!(lag < Duration::from_secs(5), "{lag:?}");
    }

    #[test]
    fn timeout_reports_the_last_problem() {
        let d = TempDir::new("wait");
        fs::write(d.path().join(name()), "{\"success\": tr").unwrap();
        let w = DirWatch::arm(d.path(), false, ours);
        let t = Instant::now();
        let out = wait_for_response(
            &w,
            &name(),
            ID,
            t,
            t + Duration::from_millis(300),
            Duration::from_millis(50),
            never,
        );
        match out {
            WaitOutcome::TimedOut {
                elapsed,
                last_problem,
            } => {
                assert!(elapsed >= Duration::from_millis(300));
                assert!(last_problem.unwrap().contains("unreadable"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spoofed_request_id_is_not_an_answer() {
        let d = TempDir::new("wait");
        fs::write(
            d.path().join(name()),
            r#"{"request_id": "00000000-0000-4000-8000-000000000000", "success": true}"#,
        )
        .unwrap();
        let w = DirWatch::arm(d.path(), false, ours);
        let t = Instant::now();
        let out = wait_for_response(
            &w,
            &name(),
            ID,
            t,
            t + Duration::from_millis(200),
            Duration::from_millis(50),
            never,
        );
        assert!(
            matches!(out, WaitOutcome::TimedOut { last_problem: Some(ref p), .. } if p.contains("ignored")),
            "{out:?}"
        );
    }

    #[test]
    fn interruption_ends_the_wait_promptly() {
        let d = TempDir::new("wait");
        let w = DirWatch::arm(d.path(), false, ours);
        let t = Instant::now();
        let mut calls = 0;
        let out = wait_for_response(
            &w,
            &name(),
            ID,
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
