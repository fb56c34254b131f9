//! Responder: a stand-in for the NNF reconciler, for demos, tests and labs.
//!
//! In every mode but `detach` it is a test double, not a fencing mechanism:
//! it detaches nothing. In mode `detach` (for a lab whose storage is the
//! kernel's NVMe target) it disables the target's namespaces in nvmet
//! (`crate::nvmet`) before it answers success, and enables them again once
//! every success response it knows for the target has been removed (what
//! `on` does), as nnf-sos re-attaches a node whose record is removed.
//! It plays nnf-sos's side of the file exchange as nnf-sos does it:
//!
//! - at start-up it answers every request already in the directory, however
//!   old (nnf-sos's start-up scan), then watches for new ones;
//! - it reads a request, waits `answer_delay`, and then answers it even if
//!   the request was withdrawn meanwhile (nnf-sos answers what it has read);
//! - storage found (modes `success`, `failure`): pretty JSON with sorted keys
//!   and no final newline, the request's five fields plus `success`,
//!   `message` and `action_performed`, written to `.<name>.tmp` and renamed;
//!   a request whose response already exists is only deleted;
//! - nothing found (mode `inplace`, or a target listed in `nothing_found`):
//!   compact JSON in nnf-sos's field order with `"status": "success"`,
//!   `"success": true` and "No block storage resources found to fence",
//!   written in place under the final name (here in two halves, `pause`
//!   apart, so tests can see a response being written);
//! - then it deletes the request.
//!
//! With `serial_cost` it works as nnf-sos's reconciler does, one request at
//! a time: each is read when the one before it is answered (or when it
//! arrives, if later) and answered `serial_cost` after that, so a burst of
//! N requests is answered over N times that cost.
//!
//! In mode `detach`, a target without a subsystem is answered "nothing
//! found" (nnf-sos's answer for a node it holds no storage of), and a detach
//! that fails is answered `"success": false` with the error.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::nvmet::Nvmet;
use crate::protocol;
use crate::spool::{self, FileRead};
use crate::wait::{Change, DirWatch};

/// How the responder answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Storage found and detached: pretty JSON, written to a dot-temp and renamed.
    Success,
    /// Nothing found: compact JSON with `"status": "success"`, written in place.
    InPlace,
    /// Storage found, detaching failed (`"success": false`), renamed into place.
    Failure,
    /// Never answers (requests are left where they are).
    Silent,
    /// Detaches the target in nvmet, then answers as `Success`; re-attaches
    /// it when its success responses are removed.
    Detach,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "success" => Ok(Mode::Success),
            "inplace" => Ok(Mode::InPlace),
            "failure" => Ok(Mode::Failure),
            "silent" => Ok(Mode::Silent),
            "detach" => Ok(Mode::Detach),
            other => Err(format!(
                "unknown responder mode {other:?}: expected success, inplace, failure, silent or detach"
            )),
        }
    }
}

/// nnf-sos's message when it finds nothing to detach for a node.
pub const NOTHING_FOUND_MESSAGE: &str = "No block storage resources found to fence";
/// A `nothing_found` entry that matches every target.
pub const EVERY_TARGET: &str = "*";

#[derive(Debug, Clone)]
pub struct ResponderConfig {
    pub request_dir: PathBuf,
    pub response_dir: PathBuf,
    pub mode: Mode,
    /// Wait this long after seeing a request before reading it.
    pub delay: Duration,
    /// Wait this long between reading a request and answering it; the answer
    /// is written even if the request is withdrawn meanwhile.
    pub answer_delay: Duration,
    /// Targets answered "nothing found" in place whatever the mode
    /// (`EVERY_TARGET` for all).
    pub nothing_found: Vec<String>,
    /// In-place answers: pause between the two halves of the write.
    pub pause: Duration,
    pub poll_interval: Duration,
    pub force_poll: bool,
    /// Stop after answering this many requests.
    pub max_answers: Option<u64>,
    /// Print one line per answer on stdout.
    pub verbose: bool,
    /// One request at a time, each taking this long from its read to its
    /// answer (None: every request on its own clock).
    pub serial_cost: Option<Duration>,
    /// Mode `detach`: where the targets' subsystems are (required there,
    /// refused in the other modes).
    pub nvmet: Option<Nvmet>,
}

impl ResponderConfig {
    fn finds_nothing_for(&self, target: &str) -> bool {
        self.mode == Mode::InPlace
            || self
                .nothing_found
                .iter()
                .any(|t| t == target || t == EVERY_TARGET)
    }
}

/// A scheduled piece of work.
enum Job {
    /// Read the request.
    Read { name: String },
    /// Answer a request read earlier.
    Answer {
        name: String,
        request: Map<String, Value>,
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
    if (cfg.mode == Mode::Detach) != cfg.nvmet.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an nvmet subsystem template is needed by mode detach, and only by it",
        ));
    }
    for d in [&cfg.request_dir, &cfg.response_dir] {
        fs::create_dir_all(d)?;
    }
    // Mode detach: the success responses on record, by name, with their target.
    let mut detached: HashMap<String, String> = HashMap::new();
    if cfg.nvmet.is_some() {
        detached = successes_on_record(&cfg.response_dir)?;
    }
    let watch = DirWatch::arm(&cfg.request_dir, cfg.force_poll, is_request_name);
    let mut seen: HashSet<String> = HashSet::new();
    let mut jobs: Vec<(Instant, Job)> = Vec::new();
    let mut answered = 0u64;
    // With `serial_cost`: when the request scheduled last is answered.
    let mut busy_until = Instant::now();
    // The first scan is the start-up scan: old requests are answered too.
    let mut next_scan = Instant::now();
    loop {
        if stop() || cfg.max_answers.is_some_and(|m| answered >= m) {
            return Ok(answered);
        }
        let now = Instant::now();
        if now >= next_scan {
            if let Some(nvmet) = &cfg.nvmet {
                reattach_removed(cfg, nvmet, &mut detached);
            }
            for e in fs::read_dir(&cfg.request_dir)? {
                let n = e?.file_name();
                if is_request_name(&n) {
                    let name = n.to_string_lossy().into_owned();
                    schedule(cfg, &mut seen, &mut jobs, &mut busy_until, name);
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
                    Job::Read { name } => {
                        if let Some(request) = read_request(cfg, &name)? {
                            let cost = cfg.serial_cost.unwrap_or(cfg.answer_delay);
                            jobs.push((Instant::now() + cost, Job::Answer { name, request }));
                        }
                    }
                    Job::Answer { name, request } => match answer(cfg, &name, &request)? {
                        Answered::Done => {
                            answered += 1;
                            if cfg.nvmet.is_some() {
                                record_if_success(cfg, &name, &mut detached);
                            }
                        }
                        Answered::Later(next) => jobs.push(next),
                        Answered::Not => {}
                    },
                    Job::SecondHalf {
                        path,
                        rest,
                        request,
                    } => {
                        let mut f = OpenOptions::new().append(true).open(&path)?;
                        f.write_all(&rest)?;
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
                            let name = n.to_string_lossy().into_owned();
                            schedule(cfg, &mut seen, &mut jobs, &mut busy_until, name);
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
    busy_until: &mut Instant,
    name: String,
) {
    if cfg.mode == Mode::Silent || !seen.insert(name.clone()) {
        return;
    }
    let mut due = Instant::now() + cfg.delay;
    if let Some(cost) = cfg.serial_cost {
        due = due.max(*busy_until);
        *busy_until = due + cost;
    }
    jobs.push((due, Job::Read { name }));
}

fn remove_request(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        // Withdrawn by the agent meanwhile: nothing to do (nnf-sos logs it).
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn read_request(cfg: &ResponderConfig, name: &str) -> io::Result<Option<Map<String, Value>>> {
    let request_path = cfg.request_dir.join(name);
    match spool::read_regular(&request_path, protocol::MAX_RESPONSE_BYTES)? {
        FileRead::Bytes(b) => match serde_json::from_slice(&b) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            _ => {
                eprintln!(
                    "fence-gfs2-responder: ignoring {}: not a JSON object",
                    request_path.display()
                );
                Ok(None)
            }
        },
        // Withdrawn before we got to it, or not a file we should touch.
        FileRead::Missing | FileRead::Refused(_) => Ok(None),
    }
}

enum Answered {
    Done,
    Later((Instant, Job)),
    Not,
}

fn text(request: &Map<String, Value>, key: &str) -> String {
    request
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// `2025-01-10T14:23:15+01:00` (Go's `time.RFC3339` in local time; `Z` for UTC).
fn go_rfc3339_now() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Answers one request read earlier.
fn answer(cfg: &ResponderConfig, name: &str, request: &Map<String, Value>) -> io::Result<Answered> {
    let request_path = cfg.request_dir.join(name);
    let target = text(request, "target_node");
    if cfg.finds_nothing_for(&target) {
        return answer_in_place(cfg, name, request, request_path).map(Answered::Later);
    }
    let response_path = cfg.response_dir.join(name);
    if fs::symlink_metadata(&response_path).is_ok() {
        // nnf-sos's block storage scan: a response already exists, so the
        // request is an orphan of a crash between the two steps.
        remove_request(&request_path)?;
        return Ok(Answered::Not);
    }
    let (ok, message) = match (&cfg.nvmet, cfg.mode) {
        (Some(nvmet), Mode::Detach) => match nvmet.set_attached(&target, false) {
            Ok(n) => (
                true,
                format!(
                    "Successfully fenced node by disabling {n} NVMe namespaces of {}",
                    nvmet.subsystem_of(&target)
                ),
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return answer_in_place(cfg, name, request, request_path).map(Answered::Later);
            }
            Err(e) => (false, format!("Failed to fence node: {e}")),
        },
        (_, Mode::Success) => (
            true,
            "Successfully fenced node by deleting 1 GFS2 storage groups".to_string(),
        ),
        _ => (
            false,
            "Partially fenced node: handled 1 of 2 storage groups (1 deleted, 0 already deleted). Errors: test responder".to_string(),
        ),
    };
    // A Go map marshals with sorted keys, as serde_json's map does.
    let mut body = Map::new();
    for k in protocol::REQUEST_FIELDS {
        body.insert(k.into(), json!(text(request, k)));
    }
    body.insert("success".into(), json!(ok));
    body.insert("message".into(), json!(message));
    body.insert("action_performed".into(), json!("off"));
    let bytes = serde_json::to_vec_pretty(&Value::Object(body)).expect("serializes");
    spool::write_atomic(&cfg.response_dir, name, &bytes, 0o644)?;
    remove_request(&request_path)?;
    if cfg.verbose {
        println!(
            "answered {} for {target}: {}",
            response_path.display(),
            if ok { "success" } else { "failure" }
        );
    }
    Ok(Answered::Done)
}

/// The success responses in `dir` (`*.json` naming a target with `success`
/// true), by name: what detach mode re-attaches once they are removed.
fn successes_on_record(dir: &Path) -> io::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(target) = success_target(&dir.join(&name))? {
            out.insert(name, target);
        }
    }
    Ok(out)
}

fn success_target(path: &Path) -> io::Result<Option<String>> {
    if !path.to_string_lossy().ends_with(".json") {
        return Ok(None);
    }
    let bytes = match spool::read_regular(path, protocol::MAX_RESPONSE_BYTES)? {
        FileRead::Bytes(b) => b,
        FileRead::Missing | FileRead::Refused(_) => return Ok(None),
    };
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(None);
    };
    let target = text(&m, "target_node");
    Ok((m.get("success") == Some(&json!(true)) && !target.is_empty()).then_some(target))
}

fn record_if_success(cfg: &ResponderConfig, name: &str, detached: &mut HashMap<String, String>) {
    if let Ok(Some(target)) = success_target(&cfg.response_dir.join(name)) {
        detached.insert(name.to_string(), target);
    }
}

/// Re-attaches every target whose last success response on record is gone.
/// A failed attach is printed and tried again at the next scan.
fn reattach_removed(cfg: &ResponderConfig, nvmet: &Nvmet, detached: &mut HashMap<String, String>) {
    let gone: Vec<String> = detached
        .keys()
        .filter(|n| {
            matches!(fs::symlink_metadata(cfg.response_dir.join(n)),
                     Err(e) if e.kind() == io::ErrorKind::NotFound)
        })
        .cloned()
        .collect();
    for name in gone {
        let target = detached.remove(&name).expect("listed above");
        if detached.values().any(|t| *t == target) {
            continue;
        }
        match nvmet.set_attached(&target, true) {
            Ok(n) => {
                if cfg.verbose {
                    println!(
                        "re-attached {target}: {n} NVMe namespaces of {} enabled ({name} removed)",
                        nvmet.subsystem_of(&target)
                    );
                }
            }
            Err(e) => {
                eprintln!("fence-gfs2-responder: cannot re-attach {target}: {e}");
                detached.insert(name, target);
            }
        }
    }
}

/// The nothing-found answer, in nnf-sos's `FenceResponse` field order.
pub fn nothing_found_body(request: &Map<String, Value>) -> Vec<u8> {
    let mut b = String::from("{");
    let mut field = |k: &str, v: Value, omit_empty: bool| {
        if omit_empty && v.as_str() == Some("") {
            return;
        }
        if b.len() > 1 {
            b.push(',');
        }
        b.push_str(&serde_json::to_string(k).expect("serializes"));
        b.push(':');
        b.push_str(&serde_json::to_string(&v).expect("serializes"));
    };
    field("request_id", json!(text(request, "request_id")), false);
    field("status", json!("success"), true);
    field("success", json!(true), false);
    field("message", json!(NOTHING_FOUND_MESSAGE), false);
    field("timestamp", json!(go_rfc3339_now()), false);
    field("target_node", json!(text(request, "target_node")), false);
    field("action", json!(text(request, "action")), true);
    field("recorder_node", json!(text(request, "recorder_node")), true);
    field("action_performed", json!("off"), true);
    b.push('}');
    b.into_bytes()
}

fn answer_in_place(
    cfg: &ResponderConfig,
    name: &str,
    request: &Map<String, Value>,
    request_path: PathBuf,
) -> io::Result<(Instant, Job)> {
    let bytes = nothing_found_body(request);
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
    Ok((
        Instant::now() + cfg.pause,
        Job::SecondHalf {
            path,
            rest: bytes[half..].to_vec(),
            request: request_path,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{after, deadline, Dirs};

    fn cfg(d: &Dirs, mode: Mode) -> ResponderConfig {
        ResponderConfig {
            request_dir: d.request_dir.clone(),
            response_dir: d.response_dir.clone(),
            mode,
            delay: Duration::ZERO,
            answer_delay: Duration::ZERO,
            nothing_found: Vec::new(),
            pause: Duration::from_millis(100),
            poll_interval: Duration::from_millis(100),
            force_poll: false,
            max_answers: Some(1),
            verbose: false,
            serial_cost: None,
            nvmet: None,
        }
    }

    /// Writes a request as the agent does; gives it and its path.
    fn send(c: &ResponderConfig, action: &str, target: &str) -> (protocol::Request, PathBuf) {
        let r = protocol::Request::new(action, target, "rabbit");
        let path =
            spool::write_atomic(&c.request_dir, &r.file_name(), &r.to_json(), 0o644).unwrap();
        (r, path)
    }

    /// The answer to `r`, as JSON.
    fn response(c: &ResponderConfig, r: &protocol::Request) -> Value {
        serde_json::from_slice(&fs::read(c.response_dir.join(r.file_name())).unwrap()).unwrap()
    }

    fn one_exchange(mode: Mode) -> Value {
        let d = Dirs::new("responder");
        let c = cfg(&d, mode);
        let (r, _) = send(&c, "reboot", "compute-node-3");
        assert_eq!(run(&c, deadline(Duration::from_secs(10))).unwrap(), 1);
        assert!(
            !c.request_dir.join(r.file_name()).exists(),
            "request deleted"
        );
        let v = response(&c, &r);
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
        assert_eq!(v["success"], json!(true));
        assert_eq!(v["message"], json!(NOTHING_FOUND_MESSAGE));
    }

    #[test]
    fn the_rename_answer_is_go_marshal_indent_of_the_eight_fields() {
        let d = Dirs::new("responder");
        let c = cfg(&d, Mode::Success);
        let (r, _) = send(&c, "off", "n3");
        run(&c, deadline(Duration::from_secs(10))).unwrap();
        let text = fs::read_to_string(c.response_dir.join(r.file_name())).unwrap();
        assert!(text.starts_with("{\n  \"action\": \"off\",\n"), "{text}");
        assert!(text.ends_with("\n}"), "no final newline: {text:?}");
        let v: Map<String, Value> = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = v.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "action",
                "action_performed",
                "message",
                "recorder_node",
                "request_id",
                "success",
                "target_node",
                "timestamp"
            ]
        );
    }

    #[test]
    fn the_in_place_answer_has_nnf_sos_field_order() {
        let mut req = Map::new();
        for (k, v) in [
            ("request_id", "id1"),
            ("action", "off"),
            ("target_node", "n3"),
            ("recorder_node", "r"),
        ] {
            req.insert(k.into(), json!(v));
        }
        let text = String::from_utf8(nothing_found_body(&req)).unwrap();
        assert!(
            text.starts_with(
                r#"{"request_id":"id1","status":"success","success":true,"message":"No block storage resources found to fence","timestamp":""#
            ),
            "{text}"
        );
        assert!(text.ends_with(r#","target_node":"n3","action":"off","recorder_node":"r","action_performed":"off"}"#), "{text}");
    }

    #[test]
    fn a_request_read_before_it_was_withdrawn_is_answered_anyway() {
        let d = Dirs::new("responder");
        let mut c = cfg(&d, Mode::Success);
        c.answer_delay = Duration::from_millis(400);
        c.nothing_found = vec!["n3".into()];
        c.pause = Duration::ZERO;
        let (r, req) = send(&c, "off", "n3");
        let t = after(Duration::from_millis(200), move || {
            fs::remove_file(req).unwrap()
        });
        assert_eq!(run(&c, deadline(Duration::from_secs(10))).unwrap(), 1);
        t.join().unwrap();
        assert_eq!(response(&c, &r)["message"], json!(NOTHING_FOUND_MESSAGE));
    }

    #[test]
    fn an_orphan_request_with_a_response_is_only_deleted() {
        let d = Dirs::new("responder");
        let mut c = cfg(&d, Mode::Success);
        c.max_answers = None;
        let r = protocol::Request::new("off", "n3", "rabbit");
        fs::write(c.response_dir.join(r.file_name()), "old").unwrap();
        spool::write_atomic(&c.request_dir, &r.file_name(), &r.to_json(), 0o644).unwrap();
        assert_eq!(run(&c, deadline(Duration::from_secs(1))).unwrap(), 0);
        assert!(!c.request_dir.join(r.file_name()).exists());
        assert_eq!(
            fs::read_to_string(c.response_dir.join(r.file_name())).unwrap(),
            "old"
        );
    }

    #[test]
    fn serial_answers_one_request_at_a_time() {
        let d = Dirs::new("responder");
        let mut c = cfg(&d, Mode::Success);
        let cost = Duration::from_millis(300);
        c.serial_cost = Some(cost);
        c.max_answers = Some(3);
        let sent: Vec<_> = (1..=3)
            .map(|i| send(&c, "off", &format!("n{i}")).0)
            .collect();
        let t = Instant::now();
        assert_eq!(run(&c, deadline(Duration::from_secs(20))).unwrap(), 3);
        // Three answers one after the other: never sooner than three costs.
        assert!(t.elapsed() >= cost * 3, "{:?}", t.elapsed());
        let mut done: Vec<_> = sent
            .iter()
            .map(|r| {
                fs::metadata(c.response_dir.join(r.file_name()))
                    .unwrap()
                    .modified()
                    .unwrap()
            })
            .collect();
        done.sort();
        for w in done.windows(2) {
            let gap = w[1].duration_since(w[0]).unwrap();
            assert!(gap >= cost - Duration::from_millis(20), "{gap:?}");
        }
    }

    #[test]
    fn detach_disables_the_target_before_answering_and_a_removed_answer_re_attaches() {
        let (nv, nvmet) = crate::nvmet::tests::fake_nvmet(&["c1", "c2"], 1);
        let d = Dirs::new("responder");
        let mut c = cfg(&d, Mode::Detach);
        c.nvmet = Some(nvmet.clone());
        c.max_answers = None;
        let (r, _) = send(&c, "reboot", "c2");
        let (r9, _) = send(&c, "reboot", "c9");
        let answer = c.response_dir.join(r.file_name());
        let unknown = c.response_dir.join(r9.file_name());
        let resp = answer.clone();
        let removed = after(Duration::from_millis(1500), move || {
            fs::remove_file(resp).unwrap()
        });
        run(&c, deadline(Duration::from_secs(3))).unwrap();
        removed.join().unwrap();
        // Re-attached once the answer was removed; c1 never touched.
        let enabled = |t| crate::nvmet::tests::enabled(&nv, &nvmet, t);
        assert_eq!(enabled("c2"), ["1"]);
        assert_eq!(enabled("c1"), ["1"]);
        // The answer said what was disabled; the unknown node was told "nothing found".
        assert!(!answer.exists());
        let v: Value = serde_json::from_slice(&fs::read(&unknown).unwrap()).unwrap();
        assert_eq!(v["message"], json!(NOTHING_FOUND_MESSAGE));
    }

    #[test]
    fn detach_answers_success_only_with_the_namespace_disabled() {
        let (nv, nvmet) = crate::nvmet::tests::fake_nvmet(&["c2"], 2);
        let d = Dirs::new("responder");
        let mut c = cfg(&d, Mode::Detach);
        c.nvmet = Some(nvmet.clone());
        let (r, _) = send(&c, "off", "c2");
        assert_eq!(run(&c, deadline(Duration::from_secs(10))).unwrap(), 1);
        assert_eq!(crate::nvmet::tests::enabled(&nv, &nvmet, "c2"), ["0", "0"]);
        let v = response(&c, &r);
        assert_eq!(v["success"], json!(true));
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("disabling 2 NVMe namespaces"),
            "{v}"
        );
        // A responder started later finds the record: removing it re-attaches.
        let mut again = c.clone();
        again.max_answers = None;
        let resp = c.response_dir.join(r.file_name());
        let removed = after(Duration::from_millis(500), move || {
            fs::remove_file(resp).unwrap()
        });
        run(&again, deadline(Duration::from_millis(1500))).unwrap();
        removed.join().unwrap();
        assert_eq!(crate::nvmet::tests::enabled(&nv, &nvmet, "c2"), ["1", "1"]);
    }

    #[test]
    fn detach_needs_the_template_and_only_detach_takes_it() {
        let (_nv, nvmet) = crate::nvmet::tests::fake_nvmet(&["c2"], 1);
        let d = Dirs::new("responder");
        let c = cfg(&d, Mode::Detach);
        assert!(run(&c, deadline(Duration::ZERO)).is_err());
        let mut c = cfg(&d, Mode::Success);
        c.nvmet = Some(nvmet);
        assert!(run(&c, deadline(Duration::ZERO)).is_err());
    }

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("inplace"), Ok(Mode::InPlace));
        assert!(Mode::parse("maybe").unwrap_err().contains("maybe"));
    }
}
