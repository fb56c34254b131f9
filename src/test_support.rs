//! What the unit tests share: temporary directories, the request, response
//! and log directories of an exchange with settings on them, a responder
//! that answers by hand, and waits with a limit.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::journal::Journal;
use crate::settings::{resolve, Settings, SettingsInput};
use crate::spool;

/// A temporary directory removed on drop (no extra crates for tests).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "fgr-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The request, response and log directories of one exchange (`req`,
/// `resp` and `log`) in a temporary directory.
pub struct Dirs {
    root: TempDir,
    pub request_dir: PathBuf,
    pub response_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl Dirs {
    /// The request and response directories made; the log directory not.
    pub fn new(tag: &str) -> Dirs {
        let d = Dirs::named(tag);
        for dir in [&d.request_dir, &d.response_dir] {
            fs::create_dir(dir).unwrap();
        }
        d
    }

    /// Only the names: nothing exists below the temporary directory.
    pub fn named(tag: &str) -> Dirs {
        Dirs::named_under(tag, "")
    }

    /// Only the names, in `sub` of the temporary directory (not made either).
    pub fn named_under(tag: &str, sub: &str) -> Dirs {
        let root = TempDir::new(tag);
        let base = root.path().join(sub);
        Dirs {
            request_dir: base.join("req"),
            response_dir: base.join("resp"),
            log_dir: base.join("log"),
            root,
        }
    }

    /// The temporary directory holding the three.
    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// Settings input naming the three directories and nothing else; the
    /// rest is filled in by struct update: `SettingsInput { .., ..d.input() }`.
    pub fn input(&self) -> SettingsInput {
        let text = |p: &Path| Some(p.display().to_string());
        SettingsInput {
            request_dir: text(&self.request_dir),
            response_dir: text(&self.response_dir),
            log_dir: text(&self.log_dir),
            ..Default::default()
        }
    }

    /// The defaults but for the three directories.
    pub fn settings(&self) -> Settings {
        resolved(&self.input())
    }
}

/// `input` resolved with no environment; it must be valid.
pub fn resolved(input: &SettingsInput) -> Settings {
    resolve(input, |_| None).unwrap()
}

/// The journal the settings name.
pub fn journal(s: &Settings) -> Journal {
    Journal::new(&s.log_dir, &s.main_log, s.log_mode)
}

/// The records of the detailed (JSON lines) log, in order.
pub fn records(j: &Journal) -> Vec<Value> {
    fs::read_to_string(j.detailed_log())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Writes `dir/name`, making `dir` first if need be.
pub fn put(dir: &Path, name: &str, body: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    fs::write(&p, body).unwrap();
    p
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path, mode: libc::mode_t) {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), mode) }, 0);
}

/// Runs `f` on a thread of its own once `delay` has passed.
pub fn after<T: Send + 'static>(
    delay: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    thread::spawn(move || {
        thread::sleep(delay);
        f()
    })
}

/// Asks `probe` every `every` until it gives a value; once `limit` has
/// passed, a "not yet" fails the test with the reason it gave.
pub fn wait_until<T>(
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let end = Instant::now() + limit;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < end, "{why}"),
        }
        thread::sleep(every);
    }
}

/// A stop condition for a loop that asks one: true once `limit` has passed.
pub fn deadline(limit: Duration) -> impl Fn() -> bool {
    let end = Instant::now() + limit;
    move || Instant::now() > end
}

/// When a responder by hand deletes the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Once the answer is complete (as the reconciler does).
    AfterAnswer,
    /// Between the two parts of an answer in two parts.
    BetweenParts,
    /// Never: the request stays for its writer to withdraw.
    Never,
}

type Body = Box<dyn Fn(&str) -> String + Send>;

/// A responder written by hand: answers each new request (`*.json`, not
/// hidden) of a request directory at the same name in a response directory,
/// for at most ten seconds or until joined.
pub struct ByHand {
    body: Option<Body>,
    delay: Duration,
    in_place: bool,
    parts_pause: Option<Duration>,
    take: Take,
}

impl ByHand {
    /// Answers with `body(request id)`, at once, by rename (an atomic
    /// write), deleting the request after.
    pub fn answering(body: impl Fn(&str) -> String + Send + 'static) -> ByHand {
        ByHand::replying(Some(Box::new(body)))
    }

    /// Deletes each request without answering it.
    pub fn taking_without_answer() -> ByHand {
        ByHand::replying(None)
    }

    fn replying(body: Option<Body>) -> ByHand {
        ByHand {
            body,
            delay: Duration::ZERO,
            in_place: false,
            parts_pause: None,
            take: Take::AfterAnswer,
        }
    }

    /// Acts `delay` after seeing a request.
    pub fn after(mut self, delay: Duration) -> ByHand {
        self.delay = delay;
        self
    }

    /// Writes the answer in place (an ordinary write) instead of by rename.
    pub fn in_place(mut self) -> ByHand {
        self.in_place = true;
        self
    }

    /// Writes the first half of the answer in place, then `pause` later
    /// the whole of it, in place too.
    pub fn in_two_parts(mut self, pause: Duration) -> ByHand {
        self.in_place = true;
        self.parts_pause = Some(pause);
        self
    }

    pub fn taking(mut self, take: Take) -> ByHand {
        self.take = take;
        self
    }

    /// Starts answering the requests of `request_dir` in `response_dir`.
    pub fn start(self, request_dir: &Path, response_dir: &Path) -> Responding {
        let stop = Arc::new(AtomicBool::new(false));
        let (req, resp, stopped) = (
            request_dir.to_path_buf(),
            response_dir.to_path_buf(),
            Arc::clone(&stop),
        );
        let handle = thread::spawn(move || {
            let mut answered: Vec<Answered> = Vec::new();
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end && !stopped.load(Ordering::SeqCst) {
                for n in names(&req) {
                    if n.ends_with(".json")
                        && !n.starts_with('.')
                        && !answered.iter().any(|a| a.name == n)
                    {
                        let done = self.act(&req.join(&n), &resp.join(&n));
                        answered.push(Answered { name: n, done });
                    }
                }
                thread::sleep(Duration::from_millis(5));
            }
            answered
        });
        Responding {
            handle: Some(handle),
            stop,
        }
    }

    /// Answers (or takes) one request; returns when the answer was complete.
    fn act(&self, request: &Path, response: &Path) -> Instant {
        thread::sleep(self.delay);
        let take = || fs::remove_file(request).unwrap();
        if let Some(body) = &self.body {
            let name = response.file_name().unwrap().to_str().unwrap();
            let bytes = body(name.trim_end_matches(".json")).into_bytes();
            if let Some(pause) = self.parts_pause {
                fs::write(response, &bytes[..bytes.len() / 2]).unwrap();
                if self.take == Take::BetweenParts {
                    take();
                }
                thread::sleep(pause);
            }
            if self.in_place {
                fs::write(response, &bytes).unwrap();
            } else {
                spool::write_atomic(response.parent().unwrap(), name, &bytes, 0o644).unwrap();
            }
        }
        let done = Instant::now();
        if self.take == Take::AfterAnswer {
            take();
        }
        done
    }
}

/// One request a responder by hand answered.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The file name of the request and its answer.
    pub name: String,
    /// When the answer was complete.
    pub done: Instant,
}

/// A running responder by hand; stops when joined or dropped.
pub struct Responding {
    handle: Option<JoinHandle<Vec<Answered>>>,
    stop: Arc<AtomicBool>,
}

impl Responding {
    /// Stops the responder and gives what it answered, in order (a panic
    /// of its thread fails the test here).
    pub fn join(mut self) -> Vec<Answered> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Responding {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_name_and_make_what_they_say() {
        let named = Dirs::named_under("support", "a");
        assert_eq!(named.request_dir, named.path().join("a/req"));
        assert!(!named.path().join("a").exists());
        let made = Dirs::new("support");
        assert!(made.request_dir.is_dir() && made.response_dir.is_dir());
        assert!(!made.log_dir.exists());
        let s = made.settings();
        assert_eq!(
            (s.request_dir, s.response_dir, s.log_dir),
            (made.request_dir, made.response_dir, made.log_dir)
        );
    }

    /// Waits until `path` is gone.
    fn gone(path: &Path) {
        wait_until(Duration::from_secs(5), Duration::from_millis(5), || {
            (!path.exists())
                .then_some(())
                .ok_or_else(|| format!("{} still there", path.display()))
        });
    }

    #[test]
    fn a_responder_by_hand_answers_each_new_request_once() {
        let d = Dirs::new("support");
        let r = ByHand::answering(|id| format!("{{\"request_id\":\"{id}\"}}"))
            .start(&d.request_dir, &d.response_dir);
        put(&d.request_dir, "a.json", "{}");
        put(&d.request_dir, ".hidden.json", "{}");
        gone(&d.request_dir.join("a.json"));
        put(&d.request_dir, "b.json", "{}");
        gone(&d.request_dir.join("b.json"));
        let answered = r.join();
        let order: Vec<&str> = answered.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(order, ["a.json", "b.json"]);
        assert_eq!(names(&d.response_dir), ["a.json", "b.json"]);
        assert_eq!(
            fs::read_to_string(d.response_dir.join("b.json")).unwrap(),
            r#"{"request_id":"b"}"#
        );
        assert_eq!(names(&d.request_dir), [".hidden.json"]);
    }

    #[test]
    fn an_answer_in_two_parts_is_half_there_first() {
        let d = Dirs::new("support");
        let request = put(&d.request_dir, "a.json", "{}");
        let r = ByHand::answering(|_| "0123456789".into())
            .in_two_parts(Duration::from_millis(300))
            .taking(Take::BetweenParts)
            .start(&d.request_dir, &d.response_dir);
        // The request is taken between the parts: the first is there by then.
        gone(&request);
        let response = d.response_dir.join("a.json");
        assert_eq!(fs::read_to_string(&response).unwrap(), "01234");
        let answered = r.join();
        assert_eq!(answered.len(), 1);
        assert_eq!(fs::read_to_string(&response).unwrap(), "0123456789");
    }

    #[test]
    #[should_panic(expected = "still waiting")]
    fn a_wait_past_its_limit_fails_with_the_reason() {
        wait_until(Duration::from_millis(20), Duration::from_millis(5), || {
            Err::<(), _>("still waiting".to_string())
        });
    }
}
