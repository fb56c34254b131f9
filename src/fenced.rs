//! Fenced: the successful responses kept in the response directory, which
//! the NNF reconciler treats as "this node is fenced" until they are removed
//! (called the node's fenced records below; the journal's lines are another
//! thing).
//!
//! What counts as such a record is nnf-sos's own rule (`nnf_view`), not the
//! agent's strict fence decision: `status` says what nnf-sos says, `list`
//! names what it counts, and `on` (unfence) leaves nothing it would still
//! count. `on` first withdraws the node's pending requests (so nnf-sos cannot
//! answer an old one later and detach the node again), waits a bounded time
//! for a response that is still being written in place, then unlinks each
//! record (nnf-sos reacts to the Remove event, not to renames; a symbolic
//! link is unlinked itself, never what it points to). A copy of each record
//! is kept under the log directory when it can be; whatever happens to the
//! log directory, the record's content also goes to syslog, and to stderr
//! when no copy could be kept, so unfencing never depends on log space.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::journal::{escape_line, lossless_text, EventStatus, FenceEvent, Journal};
use crate::nnf_view::{self, Entry, Verdict, HEAD_CAP};
use crate::protocol;
use crate::recent;
use crate::settings::Settings;
use crate::spool;
use crate::trust;

/// Where copies of removed records are kept, under the log directory.
pub const UNFENCED_DIR_NAME: &str = "unfenced";
/// A response that does not parse yet and was modified less than this long
/// ago may still be being written in place: `on` waits for it.
pub const YOUNG: Duration = Duration::from_secs(10);
/// The longest `on` waits for such responses to be complete.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(5);
const SETTLE_POLL: Duration = Duration::from_millis(20);
/// How much of a removed record is shown in the journal, syslog and stderr.
const SHOWN_BYTES: usize = 2048;

fn counted_for<'a>(entries: &'a [Entry], node: &str) -> Vec<&'a Entry> {
    entries
        .iter()
        .filter(|e| matches!(&e.verdict, Verdict::Read(v) if v.counts_for(node)))
        .collect()
}

fn stuck(entries: &[Entry]) -> Option<String> {
    entries.iter().find_map(|e| match &e.verdict {
        Verdict::Stuck(why) => Some(format!("{}: {why}", e.path.display())),
        _ => None,
    })
}

/// Does nnf-sos count `node` fenced? Fails when the response directory
/// cannot be read, or when nothing counts but nnf-sos would block on an
/// entry (a FIFO, a device), so its answer cannot be known.
pub fn is_fenced(response_dir: &Path, node: &str) -> io::Result<bool> {
    let entries = nnf_view::scan_responses(response_dir, 0)?;
    if !counted_for(&entries, node).is_empty() {
        return Ok(true);
    }
    match stuck(&entries) {
        Some(s) => Err(io::Error::other(format!(
            "cannot tell whether nnf-sos counts {node} fenced: {s}"
        ))),
        None => Ok(false),
    }
}

/// What `status` answers: [`is_fenced`], or a response that a recent record
/// of `log_dir` names for `node` and that, looked up by name, nnf-sos still
/// counts (a listing can lag behind a lookup by name on network mounts).
pub fn status(response_dir: &Path, log_dir: &Path, node: &str) -> io::Result<bool> {
    Ok(is_fenced(response_dir, node)? || recent::fenced_by_name(log_dir, response_dir, node))
}

/// A target as one field of one line of `list` output: a host name is
/// shown as it is; in anything else every byte other than a letter, a
/// digit, `.`, `-` or `_` is written `\xNN` (so a comma, a space or a
/// newline can add neither a field nor a line).
pub fn list_token(name: &str) -> String {
    if protocol::validate_target(name).is_ok() {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The targets nnf-sos counts fenced, as `list_token`s, sorted. Fails as
/// `is_fenced` does (a FIFO or device in the directory: nnf-sos blocks).
pub fn fenced_targets(response_dir: &Path) -> io::Result<Vec<String>> {
    let entries = nnf_view::scan_responses(response_dir, 0)?;
    if let Some(s) = stuck(&entries) {
        return Err(io::Error::other(format!(
            "cannot tell which nodes nnf-sos counts fenced: {s}"
        )));
    }
    let set: BTreeSet<String> = entries
        .iter()
        .filter_map(|e| match &e.verdict {
            Verdict::Read(v) if v.counted() && !v.target.is_empty() => Some(list_token(&v.target)),
            _ => None,
        })
        .collect();
    Ok(set.into_iter().collect())
}

/// How an unfence ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnfenceOutcome {
    /// These records were removed.
    Removed(Vec<PathBuf>),
    /// There was nothing to remove.
    NothingToRemove,
    /// The target was refused, or something nnf-sos would count (or block
    /// on) could not be removed.
    Failed(String),
}

/// Unfences `raw_target` (bytes as received, maybe hostile): withdraws its
/// pending requests, waits (at most `SETTLE_LIMIT`) for responses still
/// being written, removes every record nnf-sos counts for it, and records
/// the event.
pub fn unfence(
    settings: &Settings,
    journal: &Journal,
    raw_target: &[u8],
    recorder_node: &str,
) -> UnfenceOutcome {
    let shown = lossless_text(raw_target);
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
    let mut notes: Vec<String> = Vec::new();
    let fail = |notes: &[String], detail: String| {
        error!("Unfence failed: {detail}");
        let mut all = notes.to_vec();
        all.push(detail.clone());
        journal.record(&event(EventStatus::Failed, all.join("; ")));
        UnfenceOutcome::Failed(detail)
    };
    if let Err(why) = protocol::target_name(raw_target) {
        return fail(&notes, format!("refused target {target:?}: {why}"));
    }
    let untrusted = trust::spool_problems(settings);
    if !untrusted.is_empty() {
        return fail(&notes, untrusted.join("; "));
    }
    match withdraw_requests(&settings.request_dir, target) {
        Ok(Some(note)) => notes.push(note),
        Ok(None) => {}
        Err(e) => return fail(&notes, e),
    }
    let keep_dir = settings.log_dir.join(UNFENCED_DIR_NAME);
    // A network mount may list a directory from a cache for seconds after a
    // fence, while a lookup by name is fresh: the responses this log
    // directory's recent records name for the target are looked up too.
    let named = recent::named_responses(&settings.log_dir, &settings.response_dir, target);
    let start = Instant::now();
    let mut removed: Vec<PathBuf> = Vec::new();
    let mut taken: Vec<PathBuf> = Vec::new();
    let mut waited_for: BTreeSet<PathBuf> = BTreeSet::new();
    let leftovers = loop {
        let mut entries = match nnf_view::scan_responses(&settings.response_dir, HEAD_CAP) {
            Ok(e) => e,
            // No response directory holds no fenced record: a node whose
            // storage side is elsewhere (the rabbit, unfenced from a compute)
            // is unfenced.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return fail(&notes, e.to_string()),
        };
        entries.extend(not_listed(&named, &entries));
        let mine = counted_for(&entries, target);
        let writing: Vec<&Entry> = entries
            .iter()
            .filter(|e| being_written(e, target))
            .collect();
        for e in &writing {
            if waited_for.insert(e.path.clone()) {
                info!(
                    "Waiting for {} (incomplete, modified {} ms ago) before unfencing",
                    e.path.display(),
                    e.modified
                        .and_then(|m| m.elapsed().ok())
                        .map_or(0, |a| a.as_millis())
                );
            }
        }
        let settling = start.elapsed() < SETTLE_LIMIT;
        if mine.is_empty() {
            if writing.is_empty() || !settling {
                let still: Vec<PathBuf> = writing.iter().map(|e| e.path.clone()).collect();
                drop(writing);
                break (entries, still);
            }
            thread::sleep(SETTLE_POLL);
            continue;
        }
        if start.elapsed() > SETTLE_LIMIT * 2 {
            let names: Vec<String> = mine.iter().map(|e| e.path.display().to_string()).collect();
            return fail(
                &notes,
                format!(
                    "fenced records of {target} keep appearing: {}",
                    names.join(", ")
                ),
            );
        }
        for e in mine {
            match remove_record(e, &keep_dir) {
                Ok(Some(note)) => {
                    info!("Removed fenced record {}", e.path.display());
                    notes.push(note);
                    removed.push(e.path.clone());
                }
                // Gone since the listing: another unfence removed it, and
                // its own record says so.
                Ok(None) => {
                    info!(
                        "Fenced record {} was removed meanwhile by another process",
                        e.path.display()
                    );
                    taken.push(e.path.clone());
                }
                Err(why) => return fail(&notes, why),
            }
        }
        let _ = spool::sync_dir(&settings.response_dir);
    };
    let (entries, still_writing) = leftovers;
    for p in &still_writing {
        let note = format!(
            "gave up waiting for {} after {} s: still incomplete (nnf-sos does not count it as it is)",
            p.display(),
            SETTLE_LIMIT.as_secs()
        );
        warn!("{note}");
        notes.push(note);
    }
    if let Some(s) = stuck(&entries) {
        return fail(
            &notes,
            format!("cannot make sure nnf-sos no longer counts {target} fenced: {s}; remove it"),
        );
    }
    if !taken.is_empty() {
        notes.push(format!(
            "{} fenced record(s) of {target} were removed meanwhile by another process \
             (another unfence): {}",
            taken.len(),
            taken
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if removed.is_empty() {
        notes.insert(
            0,
            format!(
                "no fenced record for {target} in {}",
                settings.response_dir.display()
            ),
        );
        journal.record(&event(EventStatus::AlreadyUnfenced, notes.join("; ")));
        return UnfenceOutcome::NothingToRemove;
    }
    notes.insert(0, format!("removed {} fenced record(s)", removed.len()));
    journal.record(&event(EventStatus::Unfenced, notes.join("; ")));
    UnfenceOutcome::Removed(removed)
}

/// The `named` responses that exist although the listing did not show them.
fn not_listed(named: &[PathBuf], listed: &[Entry]) -> Vec<Entry> {
    named
        .iter()
        .filter(|p| !listed.iter().any(|e| &e.path == *p))
        .filter_map(|p| nnf_view::response_at(p, HEAD_CAP))
        .collect()
}

/// A response that may still become a record of `node`: it does not parse
/// because it ends early (empty or cut short), it is young, and what it
/// names so far is `node` or nothing yet.
fn being_written(e: &Entry, node: &str) -> bool {
    matches!(&e.verdict, Verdict::Skipped { incomplete: true, partial_target, .. }
        if partial_target.as_deref().is_none_or(|t| t == node))
        && e.younger_than(YOUNG)
}

/// Removes the requests for `node` that nnf-sos would still act on (its
/// start-up scan answers any request it finds, however old). Returns what
/// was withdrawn, in words; a missing request directory holds none.
fn withdraw_requests(dir: &Path, node: &str) -> Result<Option<String>, String> {
    let entries = match nnf_view::scan_requests(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot withdraw pending requests: {e}")),
    };
    let mut done = Vec::new();
    for e in &entries {
        let Verdict::Request(r) = &e.verdict else {
            continue;
        };
        if r.target_cut || r.target != node {
            continue;
        }
        let what = format!(
            "{} (request_id {:?})",
            e.path.display(),
            escape_line(&r.request_id)
        );
        match fs::remove_file(&e.path) {
            Ok(()) => {
                info!("Withdrew pending fence request {what}");
                done.push(what);
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                info!("Pending fence request {what} was taken meanwhile");
                done.push(format!("{what} already taken by nnf-sos"));
            }
            Err(err) => {
                return Err(format!(
                    "cannot withdraw pending request {what}: {err}; nnf-sos would answer it and fence {node} again"
                ))
            }
        }
    }
    if done.is_empty() {
        return Ok(None);
    }
    let _ = spool::sync_dir(dir);
    Ok(Some(format!(
        "withdrew {} pending request(s) of {node} first: {}",
        done.len(),
        done.join(", ")
    )))
}

/// The record's content as one line, cut to `SHOWN_BYTES`.
fn shown_content(e: &Entry) -> String {
    let head = &e.head[..e.head.len().min(SHOWN_BYTES)];
    let mut s = escape_line(&lossless_text(head));
    if (head.len() as u64) < e.size {
        s.push_str(&format!(" … ({} bytes in all)", e.size));
    }
    s
}

/// Keeps a copy of a record if it can, tells syslog (and stderr without a
/// copy) what it held, then unlinks the name in the response directory (a
/// symbolic link itself, never its target). Only the unlink can fail; None:
/// the name was already gone (another process removed it).
fn remove_record(e: &Entry, keep_dir: &Path) -> Result<Option<String>, String> {
    let content = shown_content(e);
    let link = if e.is_symlink {
        " (a symbolic link: the link is removed, not what it points to)"
    } else {
        ""
    };
    let kept = keep_copy(e, keep_dir);
    let about = format!("fenced record {}{link} held: {content}", e.path.display());
    syslog_notice(&format!("unfence: removing {about}"));
    let copy_note = match &kept {
        Ok(p) => format!("copy kept as {}", p.display()),
        Err(why) => {
            crate::journal::to_stderr(&format!("no copy kept ({why}); removing {about}"));
            format!("no copy kept ({why}); content sent to stderr and syslog")
        }
    };
    match fs::remove_file(&e.path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            // The process that removed it kept its own copy.
            if let Ok(p) = &kept {
                let _ = fs::remove_file(p);
            }
            return Ok(None);
        }
        Err(err) => {
            return Err(format!(
                "cannot remove fenced record {}: {err}",
                e.path.display()
            ))
        }
    }
    Ok(Some(format!(
        "removed {}{link} = {content} ({copy_note})",
        e.path.display()
    )))
}

fn keep_copy(e: &Entry, keep_dir: &Path) -> Result<PathBuf, String> {
    let name = e
        .path
        .file_name()
        .map(|n| lossless_text(std::os::unix::ffi::OsStrExt::as_bytes(n)))
        .unwrap_or_default()
        .replace(['/', '\\'], "_");
    fs::create_dir_all(keep_dir)
        .map_err(|err| format!("cannot create {}: {err}", keep_dir.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let cut = if (e.head.len() as u64) < e.size {
        ".head"
    } else {
        ""
    };
    let kept = format!("{stamp}-{name}{cut}");
    spool::write_atomic(keep_dir, &kept, &e.head, 0o600)
        .map_err(|err| format!("cannot keep a copy: {err}"))
}

/// One line to syslog (LOG_NOTICE), where journald picks it up.
fn syslog_notice(message: &str) {
    if let Ok(c) = CString::new(message) {
        let ident = c"fence_gfs2_recorder";
        // SAFETY: both strings are NUL-terminated and live across the calls;
        // the format string is a constant and the message is its argument.
        unsafe {
            libc::openlog(ident.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON);
            libc::syslog(libc::LOG_NOTICE, c"%s".as_ptr(), c.as_ptr());
            libc::closelog();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{after, journal, mkfifo, put, records, Dirs};
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn statuses(j: &Journal) -> Vec<(String, String)> {
        records(j)
            .iter()
            .map(|v| {
                (
                    v["status"].as_str().unwrap().to_string(),
                    v["details"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn what_nnf_sos_counts_is_what_status_and_list_say() {
        let d = Dirs::named("fenced");
        let s = d.settings();
        let r = &s.response_dir;
        put(r, "a.json", r#"{"target_node":"n3","success":true}"#);
        put(r, "b.json", r#"{"target_node":"n5","success":false}"#);
        put(r, "c.json", r#"{"target_node":"n4","status":"success"}"#);
        put(r, ".d.json.tmp", r#"{"target_node":"n6","success":true}"#);
        put(r, ".json", r#"{"TARGET_NODE":"n7","Success":true}"#);
        put(r, "e.json", "{half");
        put(r, "f.json", r#"{"target_node":"a,b\nc","success":true}"#);
        assert!(is_fenced(r, "n3").unwrap());
        assert!(is_fenced(r, "n7").unwrap());
        assert!(!is_fenced(r, "n5").unwrap());
        assert!(!is_fenced(r, "n6").unwrap());
        assert_eq!(
            fenced_targets(r).unwrap(),
            ["a\\x2cb\\x0ac", "n3", "n4", "n7"]
        );
        assert!(is_fenced(&d.path().join("none"), "n3").is_err());
    }

    #[test]
    fn a_fifo_makes_the_answer_unknown_without_blocking() {
        let d = Dirs::named("fenced");
        let s = d.settings();
        fs::create_dir_all(&s.response_dir).unwrap();
        mkfifo(&s.response_dir.join("x.json"), 0o644);
        let e = is_fenced(&s.response_dir, "n3").unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        put(
            &s.response_dir,
            "a.json",
            r#"{"target_node":"n3","success":true}"#,
        );
        assert!(is_fenced(&s.response_dir, "n3").unwrap());
    }

    #[test]
    fn unfence_keeps_a_copy_then_unlinks_and_is_idempotent() {
        let d = Dirs::named("fenced");
        let s = d.settings();
        let j = journal(&s);
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
        let st = statuses(&j);
        assert_eq!(st[0].0, "unfenced");
        assert!(st[0].1.contains(body), "{}", st[0].1);
        assert_eq!(st[1].0, "already_unfenced");
    }

    #[test]
    fn unfence_does_not_depend_on_the_log_directory() {
        let d = Dirs::named("fenced");
        let s = d.settings();
        let j = journal(&s);
        // A log dir that cannot be created: no copy, the record goes anyway.
        fs::write(d.path().join("log"), "a file").unwrap();
        put(
            &s.response_dir,
            "a.json",
            r#"{"target_node":"n3","success":true}"#,
        );
        let out = unfence(&s, &j, b"n3", "rabbit");
        assert!(matches!(out, UnfenceOutcome::Removed(_)), "{out:?}");
        assert!(!s.response_dir.join("a.json").exists());
    }

    #[test]
    fn unfence_refuses_a_log_directory_others_can_write() {
        let d = Dirs::named("fenced");
        let s = d.settings();
        let j = journal(&s);
        put(
            &s.response_dir,
            "a.json",
            r#"{"target_node":"n3","success":true}"#,
        );
        // Anyone may write the log directory: its unfenced/ could lead anywhere.
        fs::create_dir_all(&s.log_dir).unwrap();
        fs::set_permissions(&s.log_dir, fs::Permissions::from_mode(0o777)).unwrap();
        let elsewhere = d.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, s.log_dir.join(UNFENCED_DIR_NAME)).unwrap();
        let UnfenceOutcome::Failed(why) = unfence(&s, &j, b"n3", "rabbit") else {
            panic!()
        };
        assert!(
            why.contains(&s.log_dir.display().to_string())
                && why.contains("writable by group or others"),
            "{why}"
        );
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert!(s.response_dir.join("a.json").exists());
    }

    #[test]
    fn two_unfences_at_once_count_each_record_once() {
        let d = Dirs::named("fenced");
        let s = d.settings();
        let j = journal(&s);
        let n = 300;
        for i in 0..n {
            put(
                &s.response_dir,
                &format!("r{i:03}.json"),
                r#"{"target_node":"n3","success":true}"#,
            );
        }
        let both = std::sync::Arc::new(std::sync::Barrier::new(2));
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let (s, j, both) = (s.clone(), journal(&s), std::sync::Arc::clone(&both));
                std::thread::spawn(move || {
                    both.wait();
                    unfence(&s, &j, b"n3", "rabbit")
                })
            })
            .collect();
        let mut removed: Vec<PathBuf> = Vec::new();
        for r in runs {
            match r.join().unwrap() {
                UnfenceOutcome::Removed(v) => removed.extend(v),
                UnfenceOutcome::NothingToRemove => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(removed.len(), n, "each record is removed by one of the two");
        assert_eq!(fs::read_dir(&s.response_dir).unwrap().count(), 0);
        let said: usize = records(&j)
            .iter()
            .filter_map(|v| {
                let d = v["details"].as_str()?;
                d.strip_prefix("removed ")?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        assert_eq!(said, n, "the records say what each removed");
    }

    #[test]
    fn unfence_withdraws_pending_requests_first() {
        let d = Dirs::named("fenced");
        let s = d.settings();
        let j = journal(&s);
        let q = &s.request_dir;
        fs::create_dir_all(&s.response_dir).unwrap();
        put(q, "r1.json", r#"{"request_id":"r1","target_node":"n3"}"#);
        put(q, ".r2.json", r#"{"request_id":"r2","TARGET_NODE":"n3"}"#);
        put(q, "r3", r#"{"request_id":"r3","target_node":"n3"}"#);
        put(
            q,
            ".r4.json.tmp",
            r#"{"request_id":"r4","target_node":"n3"}"#,
        );
        put(q, "r5.json", r#"{"request_id":"r5","target_node":"n4"}"#);
        assert_eq!(
            unfence(&s, &j, b"n3", "rabbit"),
            UnfenceOutcome::NothingToRemove
        );
        for (n, gone) in [
            ("r1.json", true),
            (".r2.json", true),
            ("r3", true),
            (".r4.json.tmp", false),
            ("r5.json", false),
        ] {
            assert_eq!(!q.join(n).exists(), gone, "{n}");
        }
        let st = statuses(&j);
        assert!(
            st[0].1.contains("withdrew 3 pending request(s)"),
            "{}",
            st[0].1
        );
    }

    #[test]
    fn unfence_unlinks_a_symlinked_record_not_its_target() {
        let d = Dirs::named("fenced");
        let s = d.settings();
        let j = journal(&s);
        let outside = d.path().join("outside.json");
        fs::write(&outside, r#"{"target_node":"n3","success":true}"#).unwrap();
        fs::create_dir_all(&s.response_dir).unwrap();
        symlink(&outside, s.response_dir.join("l.json")).unwrap();
        assert!(is_fenced(&s.response_dir, "n3").unwrap());
        assert!(matches!(
            unfence(&s, &j, b"n3", "rabbit"),
            UnfenceOutcome::Removed(_)
        ));
        assert!(fs::symlink_metadata(s.response_dir.join("l.json")).is_err());
        assert!(outside.exists());
        assert!(!is_fenced(&s.response_dir, "n3").unwrap());
    }

    #[test]
    fn unfence_waits_for_a_response_being_written_in_place() {
        let d = Dirs::named("fenced");
        let s = d.settings();
        let j = journal(&s);
        let path = s.response_dir.join("w.json");
        put(&s.response_dir, "w.json", r#"{"target_node":"n3","suc"#);
        let writer = {
            let path = path.clone();
            after(Duration::from_millis(500), move || {
                fs::write(&path, r#"{"target_node":"n3","success":true}"#).unwrap();
            })
        };
        let t0 = Instant::now();
        let out = unfence(&s, &j, b"n3", "rabbit");
        writer.join().unwrap();
        assert!(matches!(out, UnfenceOutcome::Removed(_)), "{out:?}");
        assert!(!path.exists());
        assert!(t0.elapsed() < SETTLE_LIMIT + Duration::from_secs(5));
        // Another node's partial answer is not waited for.
        put(&s.response_dir, "o.json", r#"{"target_node":"n4","suc"#);
        let t0 = Instant::now();
        unfence(&s, &j, b"n3", "rabbit");
        assert!(t0.elapsed() < SETTLE_LIMIT);
    }

    #[test]
    fn responses_named_by_recent_records_count_when_the_listing_lags() {
        let d = Dirs::new("fenced");
        let s = d.settings();
        fs::create_dir_all(&s.log_dir).unwrap();
        let ours = s
            .response_dir
            .join(format!("{}.json", uuid::Uuid::new_v4()));
        let record = serde_json::json!({
            "status": "completed",
            "target_node": "n3",
            "response_file": ours.display().to_string(),
        });
        fs::write(
            s.log_dir.join(crate::journal::DETAILED_LOG_NAME),
            format!("{record}\n"),
        )
        .unwrap();
        let named = |node| recent::named_responses(&s.log_dir, &s.response_dir, node);
        // Named but not there (yet, or any more): nothing to add.
        assert!(not_listed(&named("n3"), &[]).is_empty());
        fs::write(&ours, r#"{"target_node":"n3","success":true}"#).unwrap();
        // A listing that does not show it yet: found by its name.
        let found = not_listed(&named("n3"), &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, ours);
        assert_eq!(counted_for(&found, "n3").len(), 1);
        // Listed already: not read twice.
        let listed = nnf_view::scan_responses(&s.response_dir, HEAD_CAP).unwrap();
        assert!(not_listed(&named("n3"), &listed).is_empty());
        // Only the target's records are followed.
        assert!(not_listed(&named("n4"), &[]).is_empty());
    }
}
