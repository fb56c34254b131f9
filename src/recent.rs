//! Recent: the responses this agent's own journal names, looked up by name.
//!
//! Some network mounts cache a directory's listing longer than they cache a
//! name (sshfs's `dir_cache`, an NFS client's directory cache up to
//! `acdirmax`): right after a fence, a listing of the response directory can
//! miss the new response while a lookup by its name finds it. `status` lists
//! the directory, and also looks up by name the responses that the recent
//! `completed` records of this log directory name for the target, so a node
//! just fenced here is reported off at once.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::journal::DETAILED_LOG_NAME;
use crate::nnf_view;

/// How much of the end of the detailed log is read (recent records only).
pub const TAIL_BYTES: u64 = 256 * 1024;

/// The response files the last [`TAIL_BYTES`] of `log_dir`'s detailed log
/// name in `completed` records for `target`, as paths in `response_dir`
/// (a record naming another directory, or a name that is not a request id's,
/// is ignored). Nothing when the log cannot be read.
pub fn named_responses(log_dir: &Path, response_dir: &Path, target: &str) -> Vec<PathBuf> {
    let mut text = Vec::new();
    // As every reader of a log name: a FIFO, device or symlink planted there
    // is neither waited on nor followed.
    let read = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(log_dir.join(DETAILED_LOG_NAME))
        .and_then(|mut f| {
            let meta = f.metadata()?;
            if !meta.is_file() {
                return Err(io::Error::other("not a regular file"));
            }
            f.seek(SeekFrom::Start(meta.len().saturating_sub(TAIL_BYTES)))?;
            f.take(TAIL_BYTES).read_to_end(&mut text)
        });
    if read.is_err() {
        return Vec::new();
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let Ok(Value::Object(rec)) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let field = |k: &str| rec.get(k).and_then(Value::as_str);
        if field("status") != Some("completed") || field("target_node") != Some(target) {
            continue;
        }
        let Some(file) = field("response_file").map(Path::new) else {
            continue;
        };
        let (Some(parent), Some(name)) = (file.parent(), file.file_name()) else {
            continue;
        };
        let is_id = name
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok());
        if parent != response_dir || !is_id {
            continue;
        }
        let path = response_dir.join(name);
        if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// Whether a response this log directory's recent records name for `target`
/// is, looked up by name, still a successful response for it.
pub fn fenced_by_name(log_dir: &Path, response_dir: &Path, target: &str) -> bool {
    named_responses(log_dir, response_dir, target)
        .iter()
        .any(|p| nnf_view::response_counts_for(p, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use std::fs;

    fn record(status: &str, target: &str, file: &Path) -> String {
        serde_json::json!({
            "status": status,
            "target_node": target,
            "response_file": file.display().to_string(),
        })
        .to_string()
    }

    #[test]
    fn completed_records_for_the_target_are_looked_up_by_name() {
        let d = TempDir::new("recent");
        let (log, resp) = (d.path().join("log"), d.path().join("resp"));
        fs::create_dir_all(&log).unwrap();
        fs::create_dir_all(&resp).unwrap();
        let id = uuid::Uuid::new_v4();
        let ours = resp.join(format!("{id}.json"));
        let elsewhere = d.path().join(format!("{id}.json"));
        let lines = [
            record("completed", "n3", &ours),
            record("completed", "n3", &ours),
            record(
                "completed",
                "n4",
                &resp.join(format!("{}.json", uuid::Uuid::new_v4())),
            ),
            record(
                "timeout",
                "n3",
                &resp.join(format!("{}.json", uuid::Uuid::new_v4())),
            ),
            record("completed", "n3", &elsewhere),
            record("completed", "n3", &resp.join("notes.json")),
            "{half a line".into(),
        ];
        fs::write(log.join(DETAILED_LOG_NAME), lines.join("\n") + "\n").unwrap();
        assert_eq!(named_responses(&log, &resp, "n3"), vec![ours.clone()]);

        // Not there (yet or any more): not fenced.
        assert!(!fenced_by_name(&log, &resp, "n3"));
        fs::write(&ours, r#"{"target_node":"n3","success":true}"#).unwrap();
        assert!(fenced_by_name(&log, &resp, "n3"));
        assert!(!fenced_by_name(&log, &resp, "n4"));
        fs::write(&ours, r#"{"target_node":"n3","success":false}"#).unwrap();
        assert!(!fenced_by_name(&log, &resp, "n3"));
        fs::write(&ours, r#"{"target_node":"n4","success":true}"#).unwrap();
        assert!(!fenced_by_name(&log, &resp, "n3"));
        // No log at all: nothing named.
        assert!(named_responses(&d.path().join("none"), &resp, "n3").is_empty());
    }

    #[test]
    fn a_fifo_or_symlink_at_the_log_name_names_nothing_without_blocking() {
        let d = TempDir::new("recent");
        let (log, resp) = (d.path().join("log"), d.path().join("resp"));
        fs::create_dir_all(&log).unwrap();
        let id = uuid::Uuid::new_v4();
        let line = record("completed", "n3", &resp.join(format!("{id}.json")));
        let elsewhere = d.path().join("elsewhere.jsonl");
        fs::write(&elsewhere, line + "\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, log.join(DETAILED_LOG_NAME)).unwrap();
        assert!(named_responses(&log, &resp, "n3").is_empty());
        fs::remove_file(log.join(DETAILED_LOG_NAME)).unwrap();
        crate::test_support::mkfifo(&log.join(DETAILED_LOG_NAME), 0o600);
        // Opening a FIFO without O_NONBLOCK would wait for a writer forever.
        assert!(named_responses(&log, &resp, "n3").is_empty());
    }
}
