//! Discovery: which GFS2 file systems a target can reach, read from
//! Kubernetes (`kubectl --kubeconfig FILE get nnfnodeblockstorages -A -o json`).
//!
//! The kubeconfig is always named: Pacemaker's fencer gives its agents no
//! `HOME`, so kubectl left to itself finds no config and asks localhost:8080.
//! kubectl runs with the agent's environment, plus `HOME` (the agent's
//! user's, from the password database) when the agent has none, for its cache.
//!
//! Runs in its own thread beside the wait, with its own time limit, so it can
//! never delay or fail a fence: any problem gives an empty list and a reason.
//! Each allocation found keeps the namespace of its object: nnf-sos keeps a
//! rabbit's NnfNodeBlockStorage objects in the namespace named after that
//! rabbit, so the namespace says which rabbit holds the storage.
//!
//! kubectl runs in a process group of its own. At the time limit, or when the
//! [`Discovery`] is dropped before kubectl has finished, the whole group is
//! killed, so nothing it started can hold its output pipe open.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The arguments given to kubectl after `--kubeconfig FILE`: constant, never
/// built from the target.
pub const KUBECTL_ARGS: [&str; 5] = ["get", "nnfnodeblockstorages", "-A", "-o", "json"];
/// Most bytes of kubectl output read; more is an error.
pub const MAX_OUTPUT: u64 = 64 * 1024 * 1024;
/// Most bytes of kubectl error output kept (the rest is read and dropped).
const MAX_STDERR: usize = 64 * 1024;
/// Longest error output line quoted in a reason.
const MAX_REASON_CHARS: usize = 300;
/// The label selecting GFS2 block storages, and the value it must have.
pub const ALLOCATION_SET_LABEL: &str = "nnf.cray.hpe.com/allocationset";
pub const ALLOCATION_SET_GFS2: &str = "gfs2";
/// The label naming the owning NnfStorage (the file system's name).
pub const OWNER_NAME_LABEL: &str = "dataworkflowservices.github.io/owner.name";
/// How often the worker looks at a child that closed its output.
const EXIT_POLL: Duration = Duration::from_millis(5);

/// One GFS2 file system the target reaches, and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gfs2Allocation {
    /// The file system's name (owner label, else the object's name).
    pub filesystem: String,
    /// The object's namespace: the rabbit holding the storage ("" if none).
    pub rabbit: String,
}

/// The file system names of `found`, in first-seen order without repeats.
pub fn names(found: &[Gfs2Allocation]) -> Vec<String> {
    let mut seen = HashSet::new();
    found
        .iter()
        .filter(|a| seen.insert(a.filesystem.as_str()))
        .map(|a| a.filesystem.clone())
        .collect()
}

type Answer = Result<Vec<Gfs2Allocation>, String>;

/// The child as both the worker thread and `Drop` see it.
#[derive(Default)]
struct Shared {
    /// The child's process group while it may be signalled: set after spawn,
    /// taken just before the child is reaped (so the id cannot be reused
    /// while it is here).
    group: Option<libc::pid_t>,
    /// The owner went away: kill the group as soon as it exists.
    cancelled: bool,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn kill_group(group: libc::pid_t) {
    // SAFETY: plain system call; `group` is a live, unreaped group leader's id.
    unsafe {
        libc::killpg(group, libc::SIGKILL);
    }
}

/// A discovery running in the background.
pub struct Discovery {
    result: Option<Answer>,
    rx: Option<Receiver<Answer>>,
    shared: Arc<Mutex<Shared>>,
}

impl Discovery {
    /// Starts discovery for `target` with `kubeconfig` (`kubectl` None:
    /// discovery switched off; `kubeconfig` None: the agent's user has no
    /// home directory to find the default in).
    pub fn start(
        kubectl: Option<&Path>,
        kubeconfig: Option<&Path>,
        timeout: Duration,
        target: &str,
    ) -> Discovery {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let Some(kubectl) = kubectl else {
            return Discovery::finished(Err(SWITCHED_OFF.into()), shared);
        };
        let Some(kubeconfig) = kubeconfig else {
            return Discovery::finished(Err(NO_DEFAULT_KUBECONFIG.into()), shared);
        };
        let deadline = Instant::now() + timeout;
        let (tx, rx) = mpsc::channel();
        let job = Job {
            kubectl: kubectl.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            timeout,
            deadline,
            target: target.to_string(),
            shared: Arc::clone(&shared),
        };
        let spawned = thread::Builder::new()
            .name("gfs2-discovery".into())
            .spawn(move || {
                // The receiver may be gone (the fence ended first): fine.
                let _ = tx.send(job.run());
            });
        match spawned {
            Ok(_) => Discovery {
                result: None,
                rx: Some(rx),
                shared,
            },
            Err(e) => Discovery::finished(
                Err(format!("cannot start the discovery thread: {e}")),
                shared,
            ),
        }
    }

    fn finished(result: Answer, shared: Arc<Mutex<Shared>>) -> Discovery {
        Discovery {
            result: Some(result),
            rx: None,
            shared,
        }
    }

    /// The result if discovery has finished (never blocks).
    pub fn poll(&mut self) -> Option<&Answer> {
        if self.result.is_none() {
            if let Some(rx) = &self.rx {
                match rx.try_recv() {
                    Ok(answer) => self.result = Some(answer),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => {
                        self.result =
                            Some(Err("the discovery thread ended without a result".into()))
                    }
                }
            }
        }
        self.result.as_ref()
    }

    /// Waits up to `limit` for the result (for callers that can afford to).
    pub fn wait(&mut self, limit: Duration) -> Option<&Answer> {
        if self.result.is_none() {
            if let Some(rx) = &self.rx {
                match rx.recv_timeout(limit) {
                    Ok(answer) => self.result = Some(answer),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        self.result =
                            Some(Err("the discovery thread ended without a result".into()))
                    }
                }
            }
        }
        self.result.as_ref()
    }
}

impl Drop for Discovery {
    /// Kills a kubectl still running (its whole group); does not wait for it:
    /// the worker thread reaps it.
    fn drop(&mut self) {
        let mut shared = lock(&self.shared);
        shared.cancelled = true;
        if let Some(group) = shared.group {
            kill_group(group);
        }
    }
}

/// Why discovery decides nothing when `kubectl_path` is empty.
pub const SWITCHED_OFF: &str = "GFS2 discovery is switched off (kubectl_path is empty or off)";
/// Why discovery cannot run without a kubeconfig named and no home directory.
pub const NO_DEFAULT_KUBECONFIG: &str = "no kubeconfig: the agent's user has no home directory \
     in the password database, so there is no ~/.kube/config; set kubeconfig";

/// Why `kubeconfig` cannot be given to kubectl (None: it can be read).
/// kubectl itself would fall back to localhost:8080 for a missing file named
/// by `KUBECONFIG`; a missing file is named here instead.
pub fn kubeconfig_problem(kubeconfig: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let shown = kubeconfig.display();
    match std::fs::metadata(kubeconfig) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Some(format!("kubeconfig {shown} does not exist"))
        }
        Err(e) => return Some(format!("kubeconfig {shown} cannot be examined: {e}")),
        Ok(m) if !m.is_file() => return Some(format!("kubeconfig {shown} is not a regular file")),
        Ok(_) => {}
    }
    let c = std::ffi::CString::new(kubeconfig.as_os_str().as_bytes()).ok()?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::R_OK) } != 0 {
        let e = io::Error::last_os_error();
        return Some(format!("kubeconfig {shown} is not readable: {e}"));
    }
    None
}

/// Whether kubectl can list the NnfNodeBlockStorages now, as a fence would
/// run it (`monitor` and `validate-all` ask). Err says why not.
pub fn probe(
    kubectl: Option<&Path>,
    kubeconfig: Option<&Path>,
    timeout: Duration,
) -> Result<(), String> {
    let mut d = Discovery::start(kubectl, kubeconfig, timeout, "");
    // The job ends itself at its time limit; the margin only covers the
    // thread hand-over.
    match d.wait(timeout + Duration::from_secs(1)) {
        Some(Ok(_)) => Ok(()),
        Some(Err(why)) => Err(why.clone()),
        None => Err(format!(
            "kubectl did not answer within {} s",
            timeout.as_secs_f64()
        )),
    }
}

/// One kubectl run, in the worker thread.
struct Job {
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    timeout: Duration,
    deadline: Instant,
    target: String,
    shared: Arc<Mutex<Shared>>,
}

impl Job {
    /// kubectl, named with its path when that is not just `kubectl`.
    fn who(&self) -> String {
        if self.kubectl == Path::new("kubectl") {
            "kubectl".into()
        } else {
            format!("kubectl ({})", self.kubectl.display())
        }
    }

    /// Starts kubectl, retrying briefly while its file is being written
    /// ("text file busy": an update in progress, or a test writing it).
    fn spawn(&self) -> io::Result<Child> {
        let mut tries = 0;
        loop {
            let mut command = Command::new(&self.kubectl);
            if std::env::var_os("HOME").is_none() {
                if let Some(home) = crate::settings::home_dir() {
                    command.env("HOME", home);
                }
            }
            let spawned = command
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(KUBECTL_ARGS)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn();
            match spawned {
                Err(e)
                    if e.raw_os_error() == Some(libc::ETXTBSY)
                        && tries < 10
                        && Instant::now() < self.deadline =>
                {
                    tries += 1;
                    thread::sleep(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    fn run(self) -> Answer {
        if let Some(problem) = kubeconfig_problem(&self.kubeconfig) {
            return Err(problem);
        }
        let mut child = match self.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.kubectl.is_absolute() => {
                return Err(format!(
                    "kubectl not found: no {} in PATH",
                    self.kubectl.display()
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.kubectl.exists() => {
                return Err(format!(
                    "kubectl not found: {} does not exist",
                    self.kubectl.display()
                ));
            }
            Err(e) => return Err(format!("cannot run {}: {e}", self.who())),
        };
        let group = child.id() as libc::pid_t;
        {
            let mut shared = lock(&self.shared);
            if shared.cancelled {
                kill_group(group);
            } else {
                shared.group = Some(group);
            }
        }
        let stdout = read_in_thread(child.stdout.take(), read_stdout);
        let stderr = read_in_thread(child.stderr.take(), read_stderr);

        // The output first: kubectl closes it when it is done.
        let left = self.deadline.saturating_duration_since(Instant::now());
        let output = match stdout.recv_timeout(left) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => return Err(self.timed_out(child)),
            Err(RecvTimeoutError::Disconnected) => Err("the output reader failed".into()),
        };
        // Then its exit, looked at without reaping it so the group stays ours.
        loop {
            match exited(group) {
                Ok(true) => break,
                Ok(false) if Instant::now() >= self.deadline => {
                    return Err(self.timed_out(child));
                }
                Ok(false) => thread::sleep(EXIT_POLL),
                Err(e) => {
                    let _ = self.finish(child);
                    return Err(format!("cannot wait for {}: {e}", self.who()));
                }
            }
        }
        let status = self.finish(child);
        let status = match status {
            Ok(s) => s,
            Err(e) => return Err(format!("cannot wait for {}: {e}", self.who())),
        };
        // First: output cut off at the size limit says more than the exit it caused.
        let output =
            output.map_err(|e| format!("cannot read the output of {}: {e}", self.who()))?;
        if !status.success() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            let err_text = stderr.recv_timeout(left).unwrap_or_default();
            let line = first_line(&err_text);
            let how = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(sig)) => format!("was ended by signal {sig}"),
                (None, None) => format!("failed ({status})"),
            };
            return Err(if line.is_empty() {
                format!("{} {how} (no error output)", self.who())
            } else {
                format!("{} {how}: {line}", self.who())
            });
        }
        parse_allocations(&output, &self.target)
    }

    /// Kills the group (whatever is left of it) and reaps the child.
    fn finish(&self, mut child: Child) -> io::Result<ExitStatus> {
        if let Some(group) = lock(&self.shared).group.take() {
            kill_group(group);
        }
        child.wait()
    }

    fn timed_out(&self, child: Child) -> String {
        let _ = self.finish(child);
        let ms = self.timeout.as_millis();
        let secs = ms as f64 / 1000.0;
        format!("{} did not answer within {secs} s", self.who())
    }
}

/// Whether the child `pid` has ended; it is left unreaped (a zombie keeps its
/// process group id from being reused).
fn exited(pid: libc::pid_t) -> io::Result<bool> {
    // SAFETY: an all-zero siginfo_t is valid; waitid fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: plain system call with a valid pointer to `info`.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid succeeded, so si_pid is set (0: not ended yet).
    Ok(unsafe { info.si_pid() } != 0)
}

fn read_in_thread<R, T>(pipe: Option<R>, read: fn(R) -> T) -> Receiver<T>
where
    R: Read + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    if let Some(pipe) = pipe {
        // A reader that cannot start leaves the channel closed: the caller
        // sees that as a failed read, or waits for the deadline.
        let _ = thread::Builder::new()
            .name("gfs2-discovery-reader".into())
            .spawn(move || {
                let _ = tx.send(read(pipe));
            });
    }
    rx
}

fn read_stdout(pipe: ChildStdout) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    pipe.take(MAX_OUTPUT + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > MAX_OUTPUT {
        return Err(format!("more than {} MiB of output", MAX_OUTPUT >> 20));
    }
    Ok(out)
}

fn read_stderr(mut pipe: ChildStderr) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = MAX_STDERR.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The first non-blank line of `text`, trimmed, without control characters,
/// and shortened to a reasonable length.
fn first_line(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    let mut out: String = line
        .unwrap_or("")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect();
    if line.is_some_and(|l| l.chars().count() > MAX_REASON_CHARS) {
        out.push('…');
    }
    out
}

/// The GFS2 file systems `target` can reach, from the output of
/// `kubectl get nnfnodeblockstorages -A -o json`, in first-seen order without
/// repeats. Items that do not have the expected shape are skipped; output that
/// is not JSON, or not a list of items, is an error.
pub fn parse_block_storages(json: &[u8], target: &str) -> Result<Vec<String>, String> {
    parse_allocations(json, target).map(|found| names(&found))
}

/// Like [`parse_block_storages`], with the rabbit (namespace) of each: one
/// entry per distinct file system and rabbit.
pub fn parse_allocations(json: &[u8], target: &str) -> Result<Vec<Gfs2Allocation>, String> {
    let doc: Value =
        serde_json::from_slice(json).map_err(|e| format!("the kubectl output is not JSON: {e}"))?;
    let items = doc
        .get("items")
        .and_then(Value::as_array)
        .ok_or("the kubectl output is not a list (no \"items\" array)")?;
    let mut found: Vec<Gfs2Allocation> = Vec::new();
    for item in items {
        if let Some(name) = gfs2_name_for(item, target) {
            let rabbit = item
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if !found
                .iter()
                .any(|a| a.filesystem == name && a.rabbit == rabbit)
            {
                found.push(Gfs2Allocation {
                    filesystem: name.to_string(),
                    rabbit: rabbit.to_string(),
                });
            }
        }
    }
    Ok(found)
}

/// The file system name of one NnfNodeBlockStorage if it is GFS2 and
/// `target` has access to it.
fn gfs2_name_for<'a>(item: &'a Value, target: &str) -> Option<&'a str> {
    let metadata = item.get("metadata")?;
    let labels = metadata.get("labels").and_then(Value::as_object);
    let label = |key: &str| {
        labels
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    if label(ALLOCATION_SET_LABEL) != Some(ALLOCATION_SET_GFS2) {
        return None;
    }
    let reaches = item
        .get("status")?
        .get("allocations")?
        .as_array()?
        .iter()
        .filter_map(|a| a.get("accesses").and_then(Value::as_object))
        .any(|accesses| accesses.contains_key(target));
    if !reaches {
        return None;
    }
    label(OWNER_NAME_LABEL).or_else(|| {
        metadata
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{wait_until, TempDir};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const FIXTURE: &[u8] = include_bytes!("../tests/data/nnfnodeblockstorages.json");
    const EXPECTED: [&str; 3] = [
        "nnf-storage-1",
        "nnf-storage-4",
        "default-wf-gfs2c-0-gfs2-0",
    ];

    fn fixture_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nnfnodeblockstorages.json")
    }

    /// Writes an executable stand-in for kubectl, and a kubeconfig beside it.
    fn script(d: &TempDir, name: &str, body: &str) -> PathBuf {
        fs::write(
            d.path().join("kubeconfig"),
            "apiVersion: v1\nkind: Config\n",
        )
        .unwrap();
        let p = d.path().join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// A stand-in `kubectl` running `body`, in a temporary directory.
    fn stand_in(body: &str) -> (TempDir, PathBuf) {
        let t = TempDir::new("discovery");
        let k = script(&t, "kubectl", body);
        (t, k)
    }

    /// A stand-in that writes its process id (its group's, as discovery
    /// starts it) to a file, then runs `then`; gives the directory, the
    /// stand-in and that file.
    fn group_leader(then: &str) -> (TempDir, PathBuf, PathBuf) {
        let t = TempDir::new("discovery");
        let pid_file = t.path().join("pid");
        let k = script(
            &t,
            "kubectl",
            &format!("echo $$ > '{}'\n{then}", pid_file.display()),
        );
        (t, k, pid_file)
    }

    /// The kubeconfig `script` writes beside a stand-in.
    fn config_of(k: &Path) -> PathBuf {
        k.with_file_name("kubeconfig")
    }

    /// Starts discovery of `target` with `k` and the kubeconfig beside it.
    fn start(k: &Path, timeout: Duration, target: &str) -> Discovery {
        Discovery::start(Some(k), Some(&config_of(k)), timeout, target)
    }

    /// Polls until the result arrives or `limit` passes.
    fn finish(d: &mut Discovery, limit: Duration) -> Answer {
        wait_until(limit, Duration::from_millis(5), || {
            d.poll()
                .cloned()
                .ok_or_else(|| format!("no result within {limit:?}"))
        })
    }

    /// Runs discovery of compute-node-3 with `k` under `timeout`; its
    /// result must come within `within`.
    fn discover(k: &Path, timeout: Duration, within: Duration) -> Answer {
        let mut d = start(k, timeout, "compute-node-3");
        finish(&mut d, within)
    }

    fn read_pid(path: &Path, limit: Duration) -> libc::pid_t {
        wait_until(limit, Duration::from_millis(5), || {
            fs::read_to_string(path)
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .ok_or_else(|| "the stand-in never started".to_string())
        })
    }

    /// Live (not zombie) processes in process group `group`.
    fn live_members(group: libc::pid_t) -> Vec<libc::pid_t> {
        let mut live = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // After "pid (comm)": state ppid pgrp ...
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() > 2 && fields[2] == group.to_string() && fields[0] != "Z" {
                live.push(pid);
            }
        }
        live
    }

    fn assert_group_gone(group: libc::pid_t) {
        wait_until(Duration::from_secs(3), Duration::from_millis(10), || {
            let live = live_members(group);
            live.is_empty()
                .then_some(())
                .ok_or_else(|| format!("process group {group} still has {live:?}"))
        });
    }

    #[test]
    fn fixture_gives_the_documented_names() {
        let names = parse_block_storages(FIXTURE, "compute-node-3").unwrap();
        assert_eq!(names, EXPECTED);
        assert_eq!(
            parse_block_storages(FIXTURE, "compute-node-4").unwrap(),
            ["nnf-storage-1"]
        );
        assert_eq!(
            parse_block_storages(FIXTURE, "compute-node-5").unwrap(),
            ["default-wf-gfs2c-0-gfs2-0"]
        );
        for other in ["compute-node-30", "compute-node-", "", "nnf-storage-1"] {
            assert_eq!(
                parse_block_storages(FIXTURE, other).unwrap(),
                Vec::<String>::new()
            );
        }
    }

    #[test]
    fn each_allocation_keeps_its_rabbit() {
        let item = |ns: Option<&str>, fs: &str| {
            let mut meta = serde_json::json!({"name": fs, "labels": {ALLOCATION_SET_LABEL: "gfs2", OWNER_NAME_LABEL: fs}});
            if let Some(ns) = ns {
                meta["namespace"] = ns.into();
            }
            serde_json::json!({"metadata": meta,
                "status": {"allocations": [{"accesses": {"n1": {}}}]}})
        };
        let doc = serde_json::json!({"items": [
            item(Some("rabbit-1"), "fs-a"),
            item(Some("rabbit-2"), "fs-a"),
            item(Some("rabbit-1"), "fs-a"),
            item(None, "fs-b"),
        ]});
        let found = parse_allocations(doc.to_string().as_bytes(), "n1").unwrap();
        let pairs: Vec<(&str, &str)> = found
            .iter()
            .map(|a| (a.filesystem.as_str(), a.rabbit.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("fs-a", "rabbit-1"), ("fs-a", "rabbit-2"), ("fs-b", "")]
        );
        assert_eq!(names(&found), ["fs-a", "fs-b"]);
        let fixture = parse_allocations(FIXTURE, "compute-node-3").unwrap();
        assert!(fixture.iter().all(|a| a.rabbit == "rabbit-node-1"));
    }

    #[test]
    fn junk_is_an_error_with_a_one_line_reason() {
        for junk in [
            &b""[..],
            b"not json",
            b"{\"items\": [",
            b"[1, 2]",
            b"{}",
            b"{\"items\": 3}",
            b"null",
            b"\xff\xfe",
        ] {
            let err = parse_block_storages(junk, "n1").unwrap_err();
            assert!(!err.contains('\n'), "{err}");
            assert!(err.contains("kubectl output"), "{err}");
        }
    }

    #[test]
    fn malformed_items_are_skipped_and_names_deduplicated() {
        let doc = serde_json::json!({"items": [
            1,
            null,
            {"metadata": null},
            {"metadata": {"labels": {ALLOCATION_SET_LABEL: "gfs2"}}},
            {"metadata": {"labels": {ALLOCATION_SET_LABEL: "gfs2"}},
             "status": {"allocations": "nope"}},
            {"metadata": {"labels": {ALLOCATION_SET_LABEL: "gfs2"}},
             "status": {"allocations": [null, {"accesses": ["n1"]}]}},
            {"metadata": {"labels": {ALLOCATION_SET_LABEL: "gfs2"}},
             "status": {"allocations": [{"accesses": {"n1": {}}}]}},
            {"metadata": {"name": "b", "labels": {ALLOCATION_SET_LABEL: "gfs2", OWNER_NAME_LABEL: 7}},
             "status": {"allocations": [{"accesses": {"n1": {}}}]}},
            {"metadata": {"name": "c", "labels": {ALLOCATION_SET_LABEL: "gfs2", OWNER_NAME_LABEL: "fs"}},
             "status": {"allocations": [{}, {"accesses": {"n1": {}}}]}},
            {"metadata": {"name": "d", "labels": {ALLOCATION_SET_LABEL: "GFS2", OWNER_NAME_LABEL: "x"}},
             "status": {"allocations": [{"accesses": {"n1": {}}}]}},
            {"metadata": {"name": "e", "labels": {ALLOCATION_SET_LABEL: "gfs2", OWNER_NAME_LABEL: "fs"}},
             "status": {"allocations": [{"accesses": {"n1": {}}}]}},
            {"metadata": {"name": "b", "labels": {ALLOCATION_SET_LABEL: "gfs2"}},
             "status": {"allocations": [{"accesses": {"n1": {}, "n2": {}}}]}},
        ]});
        let names = parse_block_storages(doc.to_string().as_bytes(), "n1").unwrap();
        assert_eq!(names, ["b", "fs"]);
    }

    #[test]
    fn switched_off_answers_at_once() {
        let mut d = Discovery::start(None, None, Duration::from_secs(5), "compute-node-3");
        assert_eq!(
            d.poll(),
            Some(&Err(
                "GFS2 discovery is switched off (kubectl_path is empty or off)".to_string()
            ))
        );
    }

    #[test]
    fn stand_in_kubectl_printing_the_fixture() {
        // Also checks the constant arguments and that stdin is /dev/null.
        let (_t, k) = stand_in(&format!(
            r#"[ "$1 $3 $4 $5 $6 $7" = "--kubeconfig get nnfnodeblockstorages -A -o json" ] && [ -f "$2" ] || {{ echo "bad args: $*" >&2; exit 3; }}
[ "$(readlink /proc/$$/fd/0)" = /dev/null ] || {{ echo "stdin is not /dev/null" >&2; exit 4; }}
cat '{}'"#,
            fixture_path().display()
        ));
        assert_eq!(
            discover(&k, Duration::from_secs(10), Duration::from_secs(15)).map(|f| names(&f)),
            Ok(EXPECTED.map(String::from).to_vec())
        );
    }

    #[test]
    fn failing_kubectl_gives_its_first_error_line() {
        let (t, k) = stand_in(
            "echo 'some output' \n echo '  error: You must be logged in to the server (Unauthorized)' >&2\necho 'second line' >&2\nexit 1",
        );
        let err = discover(&k, Duration::from_secs(10), Duration::from_secs(15)).unwrap_err();
        assert_eq!(
            err,
            format!(
                "kubectl ({}) exited with status 1: error: You must be logged in to the server (Unauthorized)",
                k.display()
            )
        );

        let k = script(&t, "quiet", "exit 2");
        let err = discover(&k, Duration::from_secs(10), Duration::from_secs(15)).unwrap_err();
        assert!(
            err.ends_with("exited with status 2 (no error output)"),
            "{err}"
        );
    }

    #[test]
    fn junk_output_is_an_error() {
        let (_t, k) = stand_in("echo 'No resources found'");
        let err = discover(&k, Duration::from_secs(10), Duration::from_secs(15)).unwrap_err();
        assert!(err.starts_with("the kubectl output is not JSON"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn output_beyond_the_cap_is_an_error() {
        let (_t, k) = stand_in("head -c 70000000 /dev/zero");
        let err = discover(&k, Duration::from_secs(20), Duration::from_secs(30)).unwrap_err();
        assert!(err.ends_with("more than 64 MiB of output"), "{err}");
    }

    #[test]
    fn missing_kubectl_is_an_error() {
        let t = TempDir::new("discovery");
        let cfg = t.path().join("kubeconfig");
        fs::write(&cfg, "").unwrap();
        let discover = |k: &Path| {
            let mut d = Discovery::start(Some(k), Some(&cfg), Duration::from_secs(10), "n1");
            finish(&mut d, Duration::from_secs(5)).unwrap_err()
        };
        let gone = t.path().join("kubectl");
        assert_eq!(
            discover(&gone),
            format!("kubectl not found: {} does not exist", gone.display())
        );

        let bare = Path::new("kubectl-that-is-not-installed-anywhere");
        assert_eq!(
            discover(bare),
            "kubectl not found: no kubectl-that-is-not-installed-anywhere in PATH"
        );

        let k = t.path().join("not-executable");
        fs::write(&k, "#!/bin/sh\n").unwrap();
        let err = discover(&k);
        assert!(err.starts_with("cannot run kubectl ("), "{err}");
    }

    #[test]
    fn a_kubeconfig_that_cannot_be_read_is_named_and_kubectl_not_run() {
        let (t, k) = stand_in("exit 0");
        let ran = t.path().join("ran");
        let k2 = script(&t, "kubectl2", &format!("touch '{}'", ran.display()));
        let gone = t.path().join("no-such-config");
        let dir = t.path().to_path_buf();
        for (config, why) in [
            (
                gone.clone(),
                format!("kubeconfig {} does not exist", gone.display()),
            ),
            (
                dir.clone(),
                format!("kubeconfig {} is not a regular file", dir.display()),
            ),
        ] {
            let mut d = Discovery::start(Some(&k2), Some(&config), Duration::from_secs(10), "n1");
            assert_eq!(finish(&mut d, Duration::from_secs(5)), Err(why));
        }
        assert!(!ran.exists(), "kubectl ran without a kubeconfig");
        let mut d = Discovery::start(Some(&k), None, Duration::from_secs(10), "n1");
        assert_eq!(
            finish(&mut d, Duration::from_secs(5)),
            Err(NO_DEFAULT_KUBECONFIG.to_string())
        );
    }

    #[test]
    fn probe_says_whether_kubectl_can_list() {
        let (t, k) = stand_in(&format!("cat '{}'", fixture_path().display()));
        let cfg = config_of(&k);
        assert_eq!(probe(Some(&k), Some(&cfg), Duration::from_secs(10)), Ok(()));
        let failing = script(
            &t,
            "refused",
            "echo 'The connection to the server localhost:8080 was refused' >&2; exit 1",
        );
        let err = probe(Some(&failing), Some(&cfg), Duration::from_secs(10)).unwrap_err();
        assert!(
            err.ends_with(
                "exited with status 1: The connection to the server localhost:8080 was refused"
            ),
            "{err}"
        );
        assert_eq!(
            probe(None, Some(&cfg), Duration::from_secs(10)),
            Err(SWITCHED_OFF.to_string())
        );
    }

    #[test]
    fn slow_kubectl_is_killed_at_the_time_limit_with_its_group() {
        // `sleep` is a child of the shell holding the output pipe open.
        let (_t, k, pid_file) = group_leader("sleep 30\necho '{}'");
        let started = Instant::now();
        let mut d = start(&k, Duration::from_millis(500), "compute-node-3");
        assert!(
            d.poll().is_none(),
            "poll answers at once while kubectl runs"
        );
        assert!(started.elapsed() < Duration::from_millis(400));
        let group = read_pid(&pid_file, Duration::from_secs(5));
        assert!(!live_members(group).is_empty());
        let err = finish(&mut d, Duration::from_secs(10)).unwrap_err();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        assert_eq!(
            err,
            format!("kubectl ({}) did not answer within 0.5 s", k.display())
        );
        assert_group_gone(group);
    }

    #[test]
    fn exiting_kubectl_leaving_a_child_with_the_pipe_is_killed_too() {
        // The shell ends at once; its background child keeps stdout open.
        let (_t, k, pid_file) = group_leader("sleep 30 &\nexit 0");
        let started = Instant::now();
        let mut d = start(&k, Duration::from_millis(500), "compute-node-3");
        let group = read_pid(&pid_file, Duration::from_secs(5));
        let err = finish(&mut d, Duration::from_secs(10)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.ends_with("did not answer within 0.5 s"), "{err}");
        assert_group_gone(group);
    }

    #[test]
    fn dropping_a_running_discovery_kills_kubectl_without_waiting() {
        let (_t, k, pid_file) = group_leader("sleep 30");
        let mut d = start(&k, Duration::from_secs(60), "compute-node-3");
        let group = read_pid(&pid_file, Duration::from_secs(5));
        assert!(d.poll().is_none());
        assert!(!live_members(group).is_empty());
        let dropping = Instant::now();
        drop(d);
        assert!(dropping.elapsed() < Duration::from_millis(200));
        assert_group_gone(group);
    }

    #[test]
    fn wait_gives_the_result_when_it_comes() {
        let (_t, k) = stand_in(&format!("cat '{}'", fixture_path().display()));
        let mut d = start(&k, Duration::from_secs(10), "compute-node-4");
        assert_eq!(
            d.wait(Duration::from_secs(15)),
            Some(&Ok(vec![Gfs2Allocation {
                filesystem: "nnf-storage-1".into(),
                rabbit: "rabbit-node-1".into()
            }]))
        );
    }
}
