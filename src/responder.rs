//! Responder: a stand-in for the NNF reconciler, for demos and tests.
//!
//! It is a test double, not a fencing mechanism: it detaches nothing. It
//! watches the request directory, answers each request under the same file
//! name in the response directory the way the real reconciler does, then
//! deletes the request.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::protocol;
use crate::spool::{self, FileRead};
use crate::wait::{Change, DirWatch};

/// How the responder answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pretty JSON echoing the request, written to a dot-temp and renamed.
    Success,
    /// Compact JSON with `"status": "success"`, written in place in two parts
    /// with a pause between them (the real nothing-to-detach path).
    InPlace,
    /// A failure answer (`"success": false`), written atomically.
    Failure,
    /// Never answers (requests are left where they are).
    Silent,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "success" => Ok(Mode::Success),
            "inplace" => Ok(Mode::InPlace),
            "failure" => Ok(Mode::Failure),
            "silent" => Ok(Mode::Silent),
            other => Err(format!(
                "unknown responder mode {other:?}: expected success, inplace, failure or silent"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ResponderConfig {
    pub request_dir: PathBuf,
    pub response_dir: PathBuf,
    pub mode: Mode,
    /// Wait this long after seeing a request before answering it.
    pub delay: Duration,
    /// In-place mode: pause between the two halves of the write.
    pub pause: Duration,
    pub poll_interval: Duration,
    pub force_poll: bool,
    /// Stop after answering this many requests.
    pub max_answers: Option<u64>,
    /// Print one line per answer on stdout.
    pub verbose: bool,
}

/// A scheduled piece of work.
enum Job {
    Answer {
        name: String,
    },
    SecondHalf {
        path: PathBuf,
        rest: Vec<u8>,
        request: PathBuf,
    },
}

fn is_request_name(n: &OsStr) -> bool {
    n.to_str()
        .map(|s| s.ends_with(".json") && !s.starts_with('.'))
        .unwrap_or(false)
}

/// Runs until `stop` returns true (asked at least every 50 ms) or
/// `max_answers` requests are answered. Returns the number answered.
pub fn run(cfg: &ResponderConfig, mut stop: impl FnMut() -> bool) -> io::Result<u64> {
    for d in [&cfg.request_dir, &cfg.response_dir] {
        fs::create_dir_all(d)?;
    }
    let watch = DirWatch::arm(&cfg.request_dir, cfg.force_poll, is_request_name);
    let mut seen: HashSet<String> = HashSet::new();
    let mut jobs: Vec<(Instant, Job)> = Vec::new();
    let mut answered = 0u64;
    let mut next_scan = Instant::now();
    loop {
        if stop() || cfg.max_answers.is_some_and(|m| answered >= m) {
            return Ok(answered);
        }
        let now = Instant::now();
        if now >= next_scan {
            for e in fs::read_dir(&cfg.request_dir)? {
                let n = e?.file_name();
                if is_request_name(&n) {
                    schedule(cfg, &mut seen, &mut jobs, n.to_string_lossy().into_owned());
                }
            }
            next_scan = now + cfg.poll_interval;
        }
        // Run what is due.
        let mut i = 0;
        while i < jobs.len() {
            if jobs[i].0 <= Instant::now() {
                let (_, job) = jobs.swap_remove(i);
                match job {
                    Job::Answer { name } => {
                        if let Some(next) = answer(cfg, &name)? {
                            jobs.push(next);
                        } else if cfg.mode != Mode::Silent {
                            answered += 1;
                        }
                    }
                    Job::SecondHalf {
                        path,
                        rest,
                        request,
                    } => {
                        let mut f = OpenOptions::new().append(true).open(&path)?;
                        f.write_all(&rest)?;
                        f.sync_all()?;
                        remove_request(&request)?;
                        answered += 1;
                        if cfg.verbose {
                            println!("answered {} (in place)", path.display());
                        }
                    }
                }
            } else {
                i += 1;
            }
        }
        let now = Instant::now();
        let mut step = Duration::from_millis(50).min(next_scan.saturating_duration_since(now));
        if let Some(due) = jobs.iter().map(|(t, _)| *t).min() {
            step = step.min(due.saturating_duration_since(now));
        }
        if let Some(c) = watch.next_change(step) {
            for c in std::iter::once(c).chain(watch.drain()) {
                match c {
                    Change::Name(n) => {
                        if cfg.request_dir.join(&n).exists() {
                            schedule(cfg, &mut seen, &mut jobs, n.to_string_lossy().into_owned());
                        }
                    }
                    Change::Rescan => next_scan = Instant::now(),
                }
            }
        }
    }
}

fn schedule(
    cfg: &ResponderConfig,
    seen: &mut HashSet<String>,
    jobs: &mut Vec<(Instant, Job)>,
    name: String,
) {
    if cfg.mode == Mode::Silent || !seen.insert(name.clone()) {
        return;
    }
    jobs.push((Instant::now() + cfg.delay, Job::Answer { name }));
}

fn remove_request(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        // Withdrawn by the agent meanwhile: nothing to do.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Answers one request; returns a follow-up job for the in-place mode.
fn answer(cfg: &ResponderConfig, name: &str) -> io::Result<Option<(Instant, Job)>> {
    let request_path = cfg.request_dir.join(name);
    let request: Map<String, Value> =
        match spool::read_regular(&request_path, protocol::MAX_RESPONSE_BYTES)? {
            FileRead::Bytes(b) => match serde_json::from_slice(&b) {
                Ok(Value::Object(m)) => m,
                _ => {
                    eprintln!(
                        "fence-gfs2-responder: ignoring {}: not a JSON object",
                        request_path.display()
                    );
                    return Ok(None);
                }
            },
            // Withdrawn before we got to it, or not a file we should touch.
            FileRead::Missing | FileRead::Refused(_) => return Ok(None),
        };
    let target = request
        .get("target_node")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let mut body = request.clone();
    match cfg.mode {
        Mode::Success | Mode::Failure => {
            let ok = cfg.mode == Mode::Success;
            body.insert("success".into(), json!(ok));
            body.insert(
                "message".into(),
                json!(if ok {
                    "Successfully fenced node by deleting 1 GFS2 storage groups (test responder)"
                } else {
                    "Partially fenced node: handled 1 of 2 storage groups (test responder)"
                }),
            );
            body.insert("action_performed".into(), json!("off"));
            let mut bytes = serde_json::to_vec_pretty(&Value::Object(body)).expect("serializes");
            bytes.push(b'\n');
            spool::write_atomic(&cfg.response_dir, name, &bytes, 0o644)?;
            remove_request(&request_path)?;
            if cfg.verbose {
                println!(
                    "answered {} for {target}: {}",
                    cfg.response_dir.join(name).display(),
                    if ok { "success" } else { "failure" }
                );
            }
            Ok(None)
        }
        Mode::InPlace => {
            body.insert("timestamp".into(), json!(protocol::utc_now_rfc3339()));
            body.insert("success".into(), json!(true));
            body.insert("status".into(), json!("success"));
            body.insert(
                "message".into(),
                json!(format!(
                    "No GFS2 storage groups found for node {target} (test responder)"
                )),
            );
            body.insert("action_performed".into(), json!("off"));
            let bytes = serde_json::to_vec(&Value::Object(body)).expect("serializes");
            let half = bytes.len() / 2;
            let path = cfg.response_dir.join(name);
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)?;
            f.write_all(&bytes[..half])?;
            f.sync_all()?;
            Ok(Some((
                Instant::now() + cfg.pause,
                Job::SecondHalf {
                    path,
                    rest: bytes[half..].to_vec(),
                    request: request_path,
                },
            )))
        }
        Mode::Silent => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::testdir::TempDir;

    fn cfg(d: &TempDir, mode: Mode) -> ResponderConfig {
        ResponderConfig {
            request_dir: d.path().join("req"),
            response_dir: d.path().join("resp"),
            mode,
            delay: Duration::ZERO,
            pause: Duration::from_millis(100),
            poll_interval: Duration::from_millis(100),
            force_poll: false,
            max_answers: Some(1),
            verbose: false,
        }
    }

    fn one_exchange(mode: Mode) -> Value {
        let d = TempDir::new("responder");
        let c = cfg(&d, mode);
        fs::create_dir_all(&c.request_dir).unwrap();
        let r = protocol::Request::new("reboot", "compute-node-3", "rabbit");
        spool::write_atomic(&c.request_dir, &r.file_name(), &r.to_json(), 0o644).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        assert_eq!(run(&c, || Instant::now() > end).unwrap(), 1);
        assert!(
            !c.request_dir.join(r.file_name()).exists(),
            "request deleted"
        );
        let v: Value =
            serde_json::from_slice(&fs::read(c.response_dir.join(r.file_name())).unwrap()).unwrap();
        assert_eq!(v["request_id"], json!(r.request_id));
        assert_eq!(v["target_node"], json!("compute-node-3"));
        v
    }

    #[test]
    fn modes_answer_as_the_reconciler_does() {
        assert_eq!(one_exchange(Mode::Success)["success"], json!(true));
        assert_eq!(one_exchange(Mode::Failure)["success"], json!(false));
        let v = one_exchange(Mode::InPlace);
        assert_eq!(v["status"], json!("success"));
    }

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("inplace"), Ok(Mode::InPlace));
        assert!(Mode::parse("maybe").unwrap_err().contains("maybe"));
    }
}
