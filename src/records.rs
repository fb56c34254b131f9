//! Records: the successful responses kept in the response directory, which
//! the NNF reconciler treats as "this node is fenced" until they are removed.
//!
//! `status` asks whether a target has one; `on` (unfence) keeps a copy of
//! each under the log directory and then unlinks it (nnf-sos reacts to the
//! Remove event, not to renames); `list` names the targets that have one.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tracing::{error, info};

use crate::journal::{EventStatus, FenceEvent, Journal};
use crate::protocol::{self, MAX_RESPONSE_BYTES};
use crate::settings::Settings;
use crate::spool::{self, FileRead};

/// Where copies of removed records are kept, under the log directory.
pub const UNFENCED_DIR_NAME: &str = "unfenced";

/// A successful response found in the response directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedRecord {
    pub path: PathBuf,
    pub target: String,
}

/// Reads one response file as a fenced record (None: not a success answer).
fn fenced_record(path: &Path) -> Option<FencedRecord> {
    let FileRead::Bytes(bytes) = spool::read_regular(path, MAX_RESPONSE_BYTES).ok()? else {
        return None;
    };
    let Value::Object(obj) = serde_json::from_slice::<Value>(&bytes).ok()? else {
        return None;
    };
    let success = protocol::is_success(&obj);
    let target = obj.get("target_node")?.as_str()?.to_string();
    success.then(|| FencedRecord {
        path: path.to_path_buf(),
        target,
    })
}

/// Every fenced record in `response_dir` (for `target` only, if given).
/// Fails only when the directory itself cannot be read.
pub fn fenced_records(response_dir: &Path, target: Option<&str>) -> io::Result<Vec<FencedRecord>> {
    let mut out = Vec::new();
    let entries = fs::read_dir(response_dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read directory {}: {e}", response_dir.display()),
        )
    })?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        if let Some(rec) = fenced_record(&entry.path()) {
            if target.is_none_or(|t| t == rec.target) {
                out.push(rec);
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The targets that currently hold a fenced record, sorted.
pub fn fenced_targets(response_dir: &Path) -> io::Result<Vec<String>> {
    let set: BTreeSet<String> = fenced_records(response_dir, None)?
        .into_iter()
        .map(|r| r.target)
        .collect();
    Ok(set.into_iter().collect())
}

/// How an unfence ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnfenceOutcome {
    /// These records were removed (copies kept under the log directory).
    Removed(Vec<PathBuf>),
    /// There was nothing to remove.
    NothingToRemove,
    /// The target was refused or a record could not be kept or removed.
    Failed(String),
}

/// Unfences `raw_target` (bytes as received, maybe hostile): keeps a copy
/// of each of its fenced records, then unlinks the record, and records the
/// event.
pub fn unfence(
    settings: &Settings,
    journal: &Journal,
    raw_target: &[u8],
    recorder_node: &str,
) -> UnfenceOutcome {
    let shown = crate::journal::lossless_text(raw_target);
    let target = shown.as_str();
    info!("Fence action requested: on for target: {target}");
    let event = |status: EventStatus, details: String| FenceEvent {
        timestamp: protocol::utc_now_rfc3339(),
        action: "on".into(),
        target_node: target.to_string(),
        status: status.as_str(),
        details,
        recorder_node: recorder_node.to_string(),
        pacemaker_action: "on".into(),
        gfs2_filesystems: Vec::new(),
        request_id: None,
        action_performed: None,
        elapsed_ms: None,
        response_file: None,
    };
    let fail = |detail: String| {
        error!("Unfence failed: {detail}");
        journal.record(&event(EventStatus::Failed, detail.clone()));
        UnfenceOutcome::Failed(detail)
    };
    let valid = std::str::from_utf8(raw_target)
        .map_err(|_| "the target node name is not valid UTF-8".to_string())
        .and_then(protocol::validate_target);
    if let Err(why) = valid {
        return fail(format!("refused target {target:?}: {why}"));
    }
    let records = match fenced_records(&settings.response_dir, Some(target)) {
        Ok(r) => r,
        // No response directory holds no fenced record: a node whose storage
        // side is elsewhere (the rabbit, unfenced from a compute) is unfenced.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return fail(e.to_string()),
    };
    if records.is_empty() {
        journal.record(&event(
            EventStatus::AlreadyUnfenced,
            format!(
                "no fenced record for {target} in {}",
                settings.response_dir.display()
            ),
        ));
        return UnfenceOutcome::NothingToRemove;
    }
    let keep_dir = settings.log_dir.join(UNFENCED_DIR_NAME);
    let mut removed = Vec::new();
    for rec in &records {
        if let Err(e) = keep_then_remove(&rec.path, &keep_dir) {
            return fail(e);
        }
        info!("Removed fenced record {}", rec.path.display());
        removed.push(rec.path.clone());
    }
    let _ = spool::sync_dir(&settings.response_dir);
    let shown: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
    journal.record(&event(
        EventStatus::Unfenced,
        format!(
            "removed {} fenced record(s), copies kept in {}: {}",
            removed.len(),
            keep_dir.display(),
            shown.join(", ")
        ),
    ));
    UnfenceOutcome::Removed(removed)
}

fn keep_then_remove(record: &Path, keep_dir: &Path) -> Result<(), String> {
    let name = record
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("unexpected record name {}", record.display()))?;
    let bytes = match spool::read_regular(record, MAX_RESPONSE_BYTES) {
        Ok(FileRead::Bytes(b)) => b,
        // Removed by someone else meanwhile: already unfenced.
        Ok(FileRead::Missing) => return Ok(()),
        Ok(FileRead::Refused(why)) => {
            return Err(format!("record {} refused: {why}", record.display()))
        }
        Err(e) => return Err(format!("cannot read record {}: {e}", record.display())),
    };
    fs::create_dir_all(keep_dir)
        .map_err(|e| format!("cannot create {}: {e}", keep_dir.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let kept = format!("{stamp}-{name}");
    spool::write_atomic(keep_dir, &kept, &bytes, 0o600)
        .map_err(|e| format!("cannot keep a copy of {}: {e}", record.display()))?;
    match fs::remove_file(record) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!(
            "cannot remove fenced record {}: {e}",
            record.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{resolve, SettingsInput};
    use crate::spool::testdir::TempDir;

    fn settings(d: &TempDir) -> Settings {
        let p = |s: &str| Some(d.path().join(s).display().to_string());
        resolve(
            &SettingsInput {
                request_dir: p("req"),
                response_dir: p("resp"),
                log_dir: p("log"),
                ..Default::default()
            },
            |_| None,
        )
        .unwrap()
    }

    fn put(dir: &Path, name: &str, body: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(name), body).unwrap();
    }

    #[test]
    fn only_success_answers_for_the_target_count() {
        let d = TempDir::new("records");
        let s = settings(&d);
        put(
            &s.response_dir,
            "a.json",
            r#"{"target_node":"n3","success":true}"#,
        );
        put(
            &s.response_dir,
            "b.json",
            r#"{"target_node":"n3","success":false}"#,
        );
        put(
            &s.response_dir,
            "c.json",
            r#"{"target_node":"n4","status":"success"}"#,
        );
        put(
            &s.response_dir,
            ".d.json.tmp",
            r#"{"target_node":"n3","success":true}"#,
        );
        put(&s.response_dir, "e.json", "{half");
        let n3 = fenced_records(&s.response_dir, Some("n3")).unwrap();
        assert_eq!(n3.len(), 1);
        assert!(n3[0].path.ends_with("a.json"));
        assert_eq!(fenced_targets(&s.response_dir).unwrap(), ["n3", "n4"]);
        assert!(fenced_records(&d.path().join("none"), None).is_err());
    }

    #[test]
    fn unfence_keeps_a_copy_then_unlinks_and_is_idempotent() {
        let d = TempDir::new("records");
        let s = settings(&d);
        let j = Journal::new(&s.log_dir, &s.main_log, 0o600);
        let body = r#"{"target_node":"n3","success":true}"#;
        put(&s.response_dir, "a.json", body);
        put(
            &s.response_dir,
            "c.json",
            r#"{"target_node":"n4","success":true}"#,
        );
        let out = unfence(&s, &j, b"n3", "rabbit");
        assert!(
            matches!(out, UnfenceOutcome::Removed(ref v) if v.len() == 1),
            "{out:?}"
        );
        assert!(!s.response_dir.join("a.json").exists());
        assert!(s.response_dir.join("c.json").exists());
        let kept: Vec<_> = fs::read_dir(s.log_dir.join(UNFENCED_DIR_NAME))
            .unwrap()
            .collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            fs::read_to_string(kept[0].as_ref().unwrap().path()).unwrap(),
            body
        );
        assert_eq!(
            unfence(&s, &j, b"n3", "rabbit"),
            UnfenceOutcome::NothingToRemove
        );
        let statuses: Vec<String> = fs::read_to_string(j.detailed_log())
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["status"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(statuses, ["unfenced", "already_unfenced"]);
    }

    #[test]
    fn unfence_reports_what_it_cannot_remove() {
        let d = TempDir::new("records");
        let s = settings(&d);
        let j = Journal::new(&s.log_dir, &s.main_log, 0o600);
        // A log dir that cannot be created: the copy cannot be kept, so the
        // record must stay (nothing is lost).
        fs::write(d.path().join("log"), "a file").unwrap();
        put(
            &s.response_dir,
            "a.json",
            r#"{"target_node":"n3","success":true}"#,
        );
        let out = unfence(&s, &j, b"n3", "rabbit");
        assert!(
            matches!(out, UnfenceOutcome::Failed(ref m) if m.contains("log")),
            "{out:?}"
        );
        assert!(s.response_dir.join("a.json").exists());
    }
}
