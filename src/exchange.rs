//! Exchange: one fence, start to finish.
//!
//! Validate the target, start GFS2 discovery beside everything else, refuse
//! spool directories someone else could change or one directory named as
//! both (`trust`), arm the response watch, publish the request, record `initiated`, wait, withdraw an
//! unanswered request, and record exactly one final event. `fence` is those
//! steps in order: `publish` (watch, then request), `await_answer` (wait,
//! withdraw, last look), `Gfs2::judge` (discovery's word on a nothing-found
//! answer) and `conclude`, whose `Ending` is the only final record, written
//! by `EventBase::close`.
//!
//! A success answer that says nothing was found ([`NOTHING_FOUND`], nnf-sos's
//! in-place path: it found no GFS2 NnfNodeBlockStorage of the node in its own
//! rabbit's namespace, which is also its answer for a name it does not know
//! and when its list call fails) proves nothing was detached. It is checked
//! against discovery, which the exchange then waits for, within the fence's
//! deadline: storage of the target on this rabbit means the fence is not
//! done; storage on other rabbits only is named in the record (their devices
//! must fence it too); a discovery that failed or had not finished decides
//! nothing and the log says so.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::discovery::{self, Discovery, Gfs2Allocation};
use crate::health;
use crate::journal::{lossless_text, EventStatus, FenceEvent, Journal};
use crate::protocol::{self, Request};
use crate::settings::Settings;
use crate::spool::{self, Opened, Published};
use crate::trust;
use crate::wait::{self, DirWatch, WaitOutcome, INTERRUPT_CHECK_EVERY};

/// File mode of request files: the responder (another user, maybe) reads them.
pub const REQUEST_MODE: u32 = 0o644;

/// The message of nnf-sos's success answer when it found no GFS2 storage of
/// the node on its rabbit (written in place, with `"status": "success"`).
pub const NOTHING_FOUND: &str = "No block storage resources found to fence";

/// How a fence ended. Expected results, not errors.
#[derive(Debug, Clone, PartialEq)]
pub enum FenceOutcome {
    /// The responder answered (successfully or not).
    Answered {
        request_id: String,
        success: bool,
        message: String,
        action_performed: Option<String>,
        response_path: PathBuf,
        elapsed: Duration,
    },
    /// No answer before the deadline; the request was withdrawn if still there.
    TimedOut {
        request_id: String,
        elapsed: Duration,
        detail: String,
    },
    /// A success answer saying nothing was found, while discovery shows GFS2
    /// storage of the target on this rabbit: not fenced.
    Contradicted {
        request_id: String,
        /// The storage side's message and why it does not stand.
        message: String,
        response_path: PathBuf,
        elapsed: Duration,
    },
    /// A signal ended the wait; the request was withdrawn if still there.
    Interrupted {
        request_id: String,
        elapsed: Duration,
        reason: String,
    },
    /// The target name is not acceptable: nothing was written.
    Refused { detail: String },
    /// The request could not be published.
    Failed { detail: String },
}

impl FenceOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, FenceOutcome::Answered { success: true, .. })
    }
}

/// This host's name, as the `recorder_node` of requests and records.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it on success (truncation is handled by the search below).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    lossless_text(&buf[..end])
}

/// Everything a fence needs besides the settings.
pub struct FenceCall<'a> {
    /// The action written into the request (`off`, `reboot`).
    pub action: &'a str,
    /// The target as received (may be hostile; bytes, not yet validated).
    pub target: &'a [u8],
    pub recorder_node: &'a str,
    /// When the agent began this fence. The deadline is `started +
    /// fence_timeout`, so everything before the exchange (start-up, the CIB
    /// query, `delay`) counts within it.
    pub started: Instant,
    /// `delay`: waited before the request is sent, within the deadline.
    pub delay: Duration,
}

struct EventBase<'a> {
    call: &'a FenceCall<'a>,
    target: String,
    request_id: Option<String>,
}

impl EventBase<'_> {
    fn event(&self, status: EventStatus, details: String, gfs2: &[String]) -> FenceEvent {
        FenceEvent {
            timestamp: protocol::utc_now_rfc3339(),
            action: self.call.action.to_string(),
            target_node: self.target.clone(),
            status: status.as_str(),
            details,
            recorder_node: self.call.recorder_node.to_string(),
            pacemaker_action: self.call.action.to_string(),
            gfs2_filesystems: gfs2.to_vec(),
            request_id: self.request_id.clone(),
            action_performed: None,
            elapsed_ms: None,
            response_file: None,
        }
    }
}

/// Discovery as the exchange sees it: the result once known, one log line.
struct Gfs2 {
    discovery: Discovery,
    target: String,
    found: Option<Result<Vec<Gfs2Allocation>, String>>,
    names: Vec<String>,
    logged: bool,
}

impl Gfs2 {
    /// Starts discovery of `target`'s GFS2 storage beside the fence.
    fn start(settings: &Settings, target: &str) -> Self {
        Gfs2 {
            discovery: Discovery::start(
                settings.kubectl_path.as_deref(),
                settings.kubeconfig.as_deref(),
                settings.discovery_timeout,
                target,
            ),
            target: target.to_string(),
            found: None,
            names: Vec::new(),
            logged: false,
        }
    }

    /// Logs the result once when it arrives; returns the names known so far.
    fn check(&mut self) -> &[String] {
        if !self.logged {
            if let Some(result) = self.discovery.poll() {
                self.logged = true;
                self.found = Some(result.clone());
                match result {
                    Ok(found) => {
                        self.names = discovery::names(found);
                        info!(
                            "GFS2 filesystems for {}: {}",
                            self.target,
                            serde_json::to_string(&self.names).unwrap_or_default()
                        );
                    }
                    Err(why) => warn!(
                        "GFS2 filesystems for {}: [] (discovery failed: {why})",
                        self.target
                    ),
                }
            }
        }
        &self.names
    }

    /// Waits for the result until `deadline` (never past it) or until
    /// `interrupted` says stop; for an answer that only discovery can check.
    fn settle(&mut self, deadline: Instant, interrupted: &mut impl FnMut() -> Option<String>) {
        while !self.logged {
            let now = Instant::now();
            if now >= deadline || interrupted().is_some() {
                return;
            }
            self.discovery
                .wait((deadline - now).min(INTERRUPT_CHECK_EVERY));
            self.check();
        }
    }

    /// What discovery says about an answer that says nothing was found
    /// (None for any other ending); such an answer waits for discovery,
    /// never past `deadline`.
    fn judge(
        &mut self,
        ended: &WaitOutcome,
        recorder: &str,
        deadline: Instant,
        interrupted: &mut impl FnMut() -> Option<String>,
    ) -> Option<Verdict> {
        let nothing_found = matches!(ended, WaitOutcome::Answered { answer, .. }
            if answer.success && answer.message.trim() == NOTHING_FOUND);
        if nothing_found {
            // Only discovery can tell whether nothing was really there:
            // worth waiting for, within the fence's own deadline.
            self.settle(deadline, interrupted);
        }
        self.finish();
        nothing_found.then(|| judge_nothing_found(&self.target, recorder, self.found.as_ref()))
    }

    /// The names for the final record; says so once if discovery is still
    /// running (the fence never waits for it).
    fn finish(&mut self) -> Vec<String> {
        self.check();
        if !self.logged {
            self.logged = true;
            warn!(
                "GFS2 filesystems for {}: [] (discovery had not finished when the fence ended)",
                self.target
            );
        }
        self.names.clone()
    }
}

/// Whether a namespace names this rabbit (`recorder` may be a full name;
/// namespaces are DNS labels, so they hold no dot).
fn is_this_rabbit(namespace: &str, recorder: &str) -> bool {
    let short = recorder.split('.').next().unwrap_or(recorder);
    !namespace.is_empty()
        && (namespace.eq_ignore_ascii_case(recorder) || namespace.eq_ignore_ascii_case(short))
}

/// `rabbit-1: ["fs-a"], rabbit-2: ["fs-b"]` for allocations, grouped by rabbit.
fn by_rabbit(found: &[&Gfs2Allocation]) -> String {
    let mut rabbits: Vec<&str> = Vec::new();
    for a in found {
        if !rabbits.contains(&a.rabbit.as_str()) {
            rabbits.push(&a.rabbit);
        }
    }
    rabbits
        .iter()
        .map(|r| {
            let fs: Vec<&str> = found
                .iter()
                .filter(|a| a.rabbit == *r)
                .map(|a| a.filesystem.as_str())
                .collect();
            format!(
                "{}: {}",
                if r.is_empty() { "(no namespace)" } else { r },
                serde_json::to_string(&fs).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What discovery says about a "nothing found" success answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// The answer stands; the note says how far discovery confirms it.
    Stands(String),
    /// This rabbit holds GFS2 storage of the target: nothing was detached.
    Contradicted(String),
}

fn judge_nothing_found(
    target: &str,
    recorder: &str,
    found: Option<&Result<Vec<Gfs2Allocation>, String>>,
) -> Verdict {
    let found = match found {
        None => {
            return Verdict::Stands(format!(
                "GFS2 discovery had not finished by the fence deadline, so it decides nothing: \
                 unconfirmed that {target} has no GFS2 storage on this rabbit"
            ))
        }
        Some(Err(why)) => {
            return Verdict::Stands(format!(
                "GFS2 discovery failed ({why}), so it decides nothing: \
                 unconfirmed that {target} has no GFS2 storage on this rabbit"
            ))
        }
        Some(Ok(found)) => found,
    };
    let (here, elsewhere): (Vec<&Gfs2Allocation>, Vec<&Gfs2Allocation>) = found
        .iter()
        .partition(|a| is_this_rabbit(&a.rabbit, recorder));
    if !here.is_empty() {
        let mut why = format!(
            "but Kubernetes shows GFS2 storage of {target} on this rabbit ({}): nothing was \
             detached, so {target} is not fenced (a request directory shared with another \
             rabbit, or a node name the storage side does not know: see pcmk_host_map)",
            by_rabbit(&here)
        );
        if !elsewhere.is_empty() {
            why.push_str(&format!(
                "; it also has GFS2 storage on other rabbits ({}), whose devices must fence it too",
                by_rabbit(&elsewhere)
            ));
        }
        return Verdict::Contradicted(why);
    }
    if elsewhere.is_empty() {
        return Verdict::Stands(format!(
            "Kubernetes shows no GFS2 storage of {target} on any rabbit either"
        ));
    }
    let (unplaced, others): (Vec<&Gfs2Allocation>, Vec<&Gfs2Allocation>) =
        elsewhere.into_iter().partition(|a| a.rabbit.is_empty());
    let mut note = String::new();
    if !others.is_empty() {
        note = format!(
            "{target} has GFS2 storage only on other rabbits ({}), none on this rabbit \
             ({recorder}): the fence devices of those rabbits must fence it too",
            by_rabbit(&others)
        );
    }
    if !unplaced.is_empty() {
        if !note.is_empty() {
            note.push_str("; ");
        }
        note.push_str(&format!(
            "Kubernetes shows GFS2 storage of {target} whose rabbit it does not name ({}), \
             so it cannot tell whether this rabbit holds it",
            by_rabbit(&unplaced)
        ));
    }
    Verdict::Stands(note)
}

/// Records a fence the agent refuses before any exchange (`why`: e.g. the
/// node named is the host the agent runs on): one final record, nothing sent.
pub fn refuse(journal: &Journal, call: &FenceCall<'_>, why: &str) -> FenceOutcome {
    let base = EventBase::announced(call);
    base.close(journal, Ending::refused(&base.target, why))
}

/// Runs one fence exchange. `interrupted` is asked at least every 50 ms
/// during the wait and ends it when it returns a reason.
pub fn fence(
    settings: &Settings,
    journal: &Journal,
    call: &FenceCall<'_>,
    mut interrupted: impl FnMut() -> Option<String>,
) -> FenceOutcome {
    let deadline = call.started + settings.fence_timeout;
    let mut base = EventBase::announced(call);
    let target = match protocol::target_name(call.target) {
        Ok(t) => t,
        Err(why) => return base.close(journal, Ending::refused(&base.target, &why)),
    };

    let mut gfs2 = Gfs2::start(settings, target);
    let untrusted = trust::spool_problems(settings);
    if !untrusted.is_empty() {
        return base.close(journal, Ending::not_sent(&untrusted.join("; "), &mut gfs2));
    }
    if let Some(problem) = wait_delay(call.delay, deadline, &mut interrupted) {
        return base.close(journal, Ending::not_sent(&problem, &mut gfs2));
    }
    if Instant::now() >= deadline {
        let problem = format!(
            "fence_timeout ({} s) was spent before the request could be sent (start-up, the \
             CIB query for pcmk_host_map, delay)",
            settings.fence_timeout.as_secs_f64()
        );
        return base.close(journal, Ending::not_sent(&problem, &mut gfs2));
    }
    // The exchange's own clock (`elapsed_ms`: request to answer); the
    // deadline above is the whole fence's.
    let started = Instant::now();
    let request = Request::new(call.action, target, call.recorder_node);
    base.request_id = Some(request.request_id.clone());
    let (watch, mut sent) = match publish(settings, &request) {
        Ok(published) => published,
        Err(problem) => return base.close(journal, Ending::not_sent(&problem, &mut gfs2)),
    };
    let initiated = format!(
        "Fence action {} initiated by Pacemaker{}",
        call.action, sent.note
    );
    journal.record(&base.event(EventStatus::Initiated, initiated, gfs2.check()));

    let check = || {
        gfs2.check();
        interrupted()
    };
    let ended = await_answer(
        settings,
        watch,
        &mut sent,
        &request,
        (started, deadline),
        check,
    );
    let verdict = gfs2.judge(&ended, call.recorder_node, deadline, &mut interrupted);
    let ending = conclude(
        settings,
        request.request_id,
        ended,
        verdict,
        &sent,
        gfs2.finish(),
    );
    let outcome = base.close(journal, ending);
    // Only now may monitor see the request (if it is still there) as a leftover.
    drop(sent);
    outcome
}

/// Waits `delay` (never past `deadline`) before anything is sent, saying so
/// first in the main log, so that an agent killed meanwhile leaves a line.
/// Some(why) when `interrupted` ended it: nothing is sent then.
fn wait_delay(
    delay: Duration,
    deadline: Instant,
    interrupted: &mut impl FnMut() -> Option<String>,
) -> Option<String> {
    if delay.is_zero() {
        return None;
    }
    let end = (Instant::now() + delay).min(deadline);
    info!(
        "Waiting delay {:.3} s before sending the request (within fence_timeout)",
        delay.as_secs_f64()
    );
    loop {
        if let Some(reason) = interrupted() {
            return Some(format!("interrupted during the delay ({reason})"));
        }
        let now = Instant::now();
        if now >= end {
            return None;
        }
        std::thread::sleep((end - now).min(INTERRUPT_CHECK_EVERY));
    }
}

/// A published request and what the records say about its publication and
/// its withdrawal. Its file is held (open, and locked where the file system
/// allows) until the fence is over: it marks the request as owned by a
/// running agent, and watches for opens by the storage side.
struct Sent {
    published: Published,
    /// Set when the request is out but its directory could not be synced.
    note: String,
    /// Set when an unanswered request was withdrawn.
    withdrawal: String,
}

/// Arms the response watch (before the request is out, so no answer can
/// come unseen) and publishes the request; or says why nothing was sent.
fn publish(settings: &Settings, request: &Request) -> Result<(DirWatch, Sent), String> {
    if let Some(problem) = health::directory_problem(&settings.response_dir, false) {
        return Err(problem);
    }
    let name = request.file_name();
    let wanted = name.clone();
    let watch = DirWatch::arm(&settings.response_dir, settings.force_poll, move |n| {
        n == wanted.as_str()
    });
    if let Some(why) = &watch.watcher_error {
        warn!(
            "{why}; polling every {:.3} s instead",
            settings.poll_interval.as_secs_f64()
        );
    }
    let published = spool::publish(
        &settings.request_dir,
        &name,
        &request.to_json(),
        REQUEST_MODE,
    )
    .map_err(|e| e.to_string())?;
    info!(
        "Fence request written: {} (request_id {})",
        published.path.display(),
        request.request_id
    );
    // After the rename the request is out, durable or not: the storage side
    // may act on it, so the agent waits for its answer (or withdraws it).
    let mut note = match &published.sync_error {
        Some(e) => {
            let note = format!(
                "the request is published but syncing {} failed ({e}): it is out all the same, \
                 so the agent waits for its answer or withdraws it",
                settings.request_dir.display()
            );
            warn!("{note}");
            format!("; {note}")
        }
        None => String::new(),
    };
    if let Some(e) = &published.unmarked {
        // The lock only marks the request as owned: the fence goes on.
        let unmarked = format!(
            "the request is not locked ({} refuses file locks: {e}), so monitor tells it from \
             a leftover by its age alone (stale_age)",
            settings.request_dir.display()
        );
        warn!("{unmarked}");
        note.push_str(&format!("; {unmarked}"));
    }
    let sent = Sent {
        published,
        note,
        withdrawal: String::new(),
    };
    Ok((watch, sent))
}

/// Waits for the answer until the deadline, then withdraws an unanswered
/// request (noted in `sent.withdrawal`).
fn await_answer(
    settings: &Settings,
    watch: DirWatch,
    sent: &mut Sent,
    request: &Request,
    (started, deadline): (Instant, Instant),
    interrupted: impl FnMut() -> Option<String>,
) -> WaitOutcome {
    let name = request.file_name();
    let awaited = wait::Awaited {
        request,
        path: &sent.published.path,
        opens: Some(&mut sent.published.opens),
    };
    let outcome = wait::wait_for_response(
        &watch,
        awaited,
        started,
        deadline,
        settings.poll_interval,
        interrupted,
    );
    if matches!(outcome, WaitOutcome::Answered { .. }) {
        // Who opened the request no longer matters; its watch goes with
        // the response directory's (see `OpenWatch::stop`).
        sent.published.opens.stop();
    }
    drop(watch);
    match outcome {
        // A timed-out request is withdrawn first, then the answer is looked
        // for once more: it may have come at the last moment, or (on a
        // network mount) not have been looked for while the request was there.
        WaitOutcome::TimedOut { .. } => {
            sent.withdrawal = withdraw(&mut sent.published);
            let path = settings.response_dir.join(&name);
            let last = wait::look_after_deadline(outcome, &path, request, started);
            if matches!(last, WaitOutcome::Answered { .. }) {
                info!("Fence response found at the deadline{}", sent.withdrawal);
            }
            last
        }
        WaitOutcome::Interrupted { .. } => {
            sent.withdrawal = withdraw(&mut sent.published);
            outcome
        }
        answered => answered,
    }
}

/// A final outcome and what its record says beyond it.
struct Ending {
    status: EventStatus,
    details: String,
    action_performed: Option<String>,
    gfs2: Vec<String>,
    outcome: FenceOutcome,
}

impl Ending {
    fn new(status: EventStatus, details: String, gfs2: Vec<String>, outcome: FenceOutcome) -> Self {
        Ending {
            status,
            details,
            action_performed: None,
            gfs2,
            outcome,
        }
    }

    /// The target name is not acceptable (`shown` as received).
    fn refused(shown: &str, why: &str) -> Self {
        let detail = format!("refused target {shown:?}: {why}");
        error!("{detail}");
        let outcome = FenceOutcome::Refused {
            detail: detail.clone(),
        };
        Self::new(EventStatus::Failed, detail, Vec::new(), outcome)
    }

    /// The request could not be published.
    fn not_sent(problem: &str, gfs2: &mut Gfs2) -> Self {
        let detail = format!("request not sent: {problem}");
        error!("{detail}");
        let outcome = FenceOutcome::Failed {
            detail: detail.clone(),
        };
        Self::new(EventStatus::Failed, detail, gfs2.finish(), outcome)
    }
}

impl<'a> EventBase<'a> {
    /// The events of `call`, once the main log says it was asked for.
    fn announced(call: &'a FenceCall<'a>) -> Self {
        let base = EventBase {
            call,
            target: lossless_text(call.target),
            request_id: None,
        };
        info!(
            "Fence action requested: {} for target: {}",
            call.action, base.target
        );
        base
    }

    /// Records the one final event of a fence and returns its outcome.
    fn close(&self, journal: &Journal, end: Ending) -> FenceOutcome {
        let mut ev = self.event(end.status, end.details, &end.gfs2);
        ev.action_performed = end.action_performed;
        match &end.outcome {
            FenceOutcome::Answered {
                elapsed,
                response_path,
                ..
            }
            | FenceOutcome::Contradicted {
                elapsed,
                response_path,
                ..
            } => {
                ev.elapsed_ms = Some(elapsed.as_millis() as u64);
                ev.response_file = Some(response_path.display().to_string());
            }
            FenceOutcome::TimedOut { elapsed, .. } | FenceOutcome::Interrupted { elapsed, .. } => {
                ev.elapsed_ms = Some(elapsed.as_millis() as u64);
            }
            FenceOutcome::Refused { .. } | FenceOutcome::Failed { .. } => {}
        }
        journal.record(&ev);
        end.outcome
    }
}

/// How a published request ended: the answer (judged by `verdict` when it
/// says nothing was found), the timeout or the interruption.
fn conclude(
    settings: &Settings,
    request_id: String,
    ended: WaitOutcome,
    verdict: Option<Verdict>,
    sent: &Sent,
    gfs2: Vec<String>,
) -> Ending {
    let note = &sent.note;
    match ended {
        WaitOutcome::Answered {
            answer,
            path,
            elapsed,
        } => {
            let shown = if answer.message.is_empty() {
                "(no message)".to_string()
            } else {
                answer.message.clone()
            };
            if answer.success {
                info!("Fence response received: success: {shown}");
            } else {
                error!("Fence response received: failure: {shown}");
            }
            let (status, message) = match &verdict {
                None if answer.success => (EventStatus::Completed, answer.message.clone()),
                None => (EventStatus::Failed, answer.message.clone()),
                Some(Verdict::Stands(why)) => {
                    warn!("Fence response says nothing was found to fence: {why}");
                    (EventStatus::Completed, format!("{}; {why}", answer.message))
                }
                Some(Verdict::Contradicted(why)) => {
                    let message = format!("{}, {why}", answer.message);
                    error!("Fence not done: {message}");
                    (EventStatus::Failed, message)
                }
            };
            let details = format!("{message}{note}");
            let outcome = if matches!(verdict, Some(Verdict::Contradicted(_))) {
                FenceOutcome::Contradicted {
                    request_id,
                    message,
                    response_path: path,
                    elapsed,
                }
            } else {
                FenceOutcome::Answered {
                    request_id,
                    success: answer.success,
                    message,
                    action_performed: answer.action_performed.clone(),
                    response_path: path,
                    elapsed,
                }
            };
            Ending {
                action_performed: answer.action_performed,
                ..Ending::new(status, details, gfs2, outcome)
            }
        }
        WaitOutcome::TimedOut {
            elapsed,
            last_problem,
            request_gone,
        } => {
            let mut detail = format!(
                "no response within {:.3} s",
                settings.fence_timeout.as_secs_f64()
            );
            if let Some(p) = last_problem {
                detail.push_str(&format!("; last seen: {p}"));
            }
            if request_gone {
                detail.push_str("; the request disappeared during the wait");
            }
            detail.push_str(&sent.withdrawal);
            detail.push_str(note);
            error!("Fence timed out: {detail}");
            let outcome = FenceOutcome::TimedOut {
                request_id,
                elapsed,
                detail: detail.clone(),
            };
            Ending::new(EventStatus::Timeout, detail, gfs2, outcome)
        }
        WaitOutcome::Interrupted { elapsed, reason } => {
            let detail = format!("wait interrupted ({reason}){}{note}", sent.withdrawal);
            error!("Fence interrupted: {detail}");
            let outcome = FenceOutcome::Interrupted {
                request_id,
                elapsed,
                reason: detail.clone(),
            };
            Ending::new(EventStatus::Interrupted, detail, gfs2, outcome)
        }
    }
}

/// Removes an unanswered request so a late responder cannot act on it after
/// the agent has reported failure, and says honestly whether the storage side
/// had already read it (then it may still answer). Returns a note for the
/// record.
fn withdraw(published: &mut Published) -> String {
    let path = published.path.display().to_string();
    let removed = fs::remove_file(&published.path);
    // Looked at after the unlink: from then on nothing can open it by name,
    // so what the watch saw is all there will be.
    let opened = published.opens.seen();
    match removed {
        Ok(()) => {
            if let Some(dir) = published.path.parent() {
                let _ = spool::sync_dir(dir);
            }
            match opened {
                Opened::No => format!(
                    "; request {path} withdrawn before the storage side opened it: it cannot act on it"
                ),
                Opened::Yes(n) => format!(
                    "; request {path} withdrawn, but another process (the storage side) had \
                     already opened it ({n} open or read event(s)): it may still answer and detach the node"
                ),
                Opened::Unknown(why) => format!(
                    "; request {path} withdrawn; whether the storage side had already read it is \
                     unknown ({why}): it may still answer"
                ),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            "; the request had already been taken by the responder: it may still answer and detach the node"
                .into()
        }
        Err(e) => format!(
            "; request {path} could not be withdrawn: {e}; the storage side may still act on it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SettingsInput;
    use crate::test_support::{journal, records, resolved, ByHand, Dirs, Take};

    /// Made request and response directories, settings with `timeout`
    /// and discovery off, and their journal.
    fn setup(timeout: &str) -> (Dirs, Settings, Journal) {
        let d = Dirs::new("exchange");
        let s = resolved(&SettingsInput {
            fence_timeout: Some(timeout.into()),
            kubectl_path: Some(String::new()),
            ..d.input()
        });
        let j = journal(&s);
        (d, s, j)
    }

    /// Fences `target` from the rabbit, never interrupted.
    fn fence_from_rabbit(s: &Settings, j: &Journal, action: &str, target: &[u8]) -> FenceOutcome {
        let call = FenceCall {
            action,
            target,
            recorder_node: "rabbit",
            started: Instant::now(),
            delay: Duration::ZERO,
        };
        fence(s, j, &call, || None)
    }

    /// Fences compute-node-3 with `action` while `responder` acts on the request.
    fn fence_with(s: &Settings, j: &Journal, responder: ByHand, action: &str) -> FenceOutcome {
        let running = responder.start(&s.request_dir, &s.response_dir);
        let out = fence_from_rabbit(s, j, action, b"compute-node-3");
        running.join();
        out
    }

    #[test]
    fn success_answer_is_recorded_and_kept() {
        let (_d, s, j) = setup("10");
        let responder = ByHand::answering(|id| {
            format!(
                r#"{{"request_id":"{id}","target_node":"compute-node-3","success":true,"message":"done","action_performed":"off"}}"#
            )
        });
        let out = fence_with(&s, &j, responder, "reboot");
        let FenceOutcome::Answered {
            success: true,
            response_path,
            ..
        } = &out
        else {
            panic!("{out:?}")
        };
        assert!(
            response_path.exists(),
            "the response is NNF's record and stays"
        );
        let statuses: Vec<String> = records(&j)
            .iter()
            .map(|v| v["status"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(statuses, ["initiated", "completed"]);
    }

    #[test]
    fn no_answer_times_out_and_withdraws_the_request() {
        let (_d, s, j) = setup("1");
        let called = Instant::now();
        let out = fence_from_rabbit(&s, &j, "off", b"compute-node-3");
        let whole = called.elapsed();
        let FenceOutcome::TimedOut {
            elapsed, detail, ..
        } = &out
        else {
            panic!("{out:?}")
        };
        // fence_timeout counts from the call; `elapsed` is the exchange's
        // part of it (from the request on), so it is a little less.
        assert!(whole >= Duration::from_secs(1), "{whole:?}");
        assert!(*elapsed <= whole, "{elapsed:?} {whole:?}");
        assert!(detail.contains("withdrawn"), "{detail}");
        assert_eq!(fs::read_dir(&s.request_dir).unwrap().count(), 0);
    }

    #[test]
    fn an_answer_beside_a_request_never_deleted_is_found_at_the_deadline() {
        let (_d, mut s, j) = setup("1");
        s.force_poll = true;
        let responder =
            ByHand::answering(|_| r#"{"target_node":"compute-node-3","success":true}"#.into())
                .taking(Take::Never);
        let out = fence_with(&s, &j, responder, "off");
        assert!(out.is_success(), "{out:?}");
        // The request was withdrawn before the last look.
        assert_eq!(fs::read_dir(&s.request_dir).unwrap().count(), 0);
    }

    #[test]
    fn a_request_taken_without_an_answer_is_not_called_withdrawn() {
        let (_d, mut s, j) = setup("1");
        s.force_poll = true;
        let out = fence_with(&s, &j, ByHand::taking_without_answer(), "off");
        let FenceOutcome::TimedOut { detail, .. } = &out else {
            panic!("{out:?}")
        };
        assert!(detail.contains("disappeared during the wait"), "{detail}");
        assert!(detail.contains("already been taken"), "{detail}");
        assert!(!detail.contains("withdrawn"), "{detail}");
    }

    #[test]
    fn bad_target_writes_nothing() {
        let (_d, s, j) = setup("1");
        let out = fence_from_rabbit(&s, &j, "off", b"../../etc\npasswd");
        assert!(matches!(out, FenceOutcome::Refused { .. }), "{out:?}");
        assert_eq!(fs::read_dir(&s.request_dir).unwrap().count(), 0);
        let readable = fs::read_to_string(j.readable_log()).unwrap();
        assert_eq!(readable.lines().count(), 1);
    }

    #[test]
    fn missing_request_dir_fails_naming_it() {
        let (d, mut s, j) = setup("1");
        s.request_dir = d.path().join("gone");
        let FenceOutcome::Failed { detail } = fence_from_rabbit(&s, &j, "off", b"n1") else {
            panic!()
        };
        assert!(detail.contains("gone"), "{detail}");
    }

    #[test]
    fn a_success_for_another_node_or_none_is_not_our_fence() {
        // nnf-sos counts a success for the node its target_node names: an
        // answer naming another node, or none, leaves compute-node-3 attached.
        for target in [r#","target_node":"compute-node-9""#, ""] {
            let (_d, s, j) = setup("2");
            let responder = ByHand::answering(move |id| {
                format!(r#"{{"request_id":"{id}"{target},"success":true,"message":"done"}}"#)
            });
            let out = fence_with(&s, &j, responder, "off");
            assert!(!out.is_success(), "{target}: {out:?}");
            let last = records(&j).pop().unwrap();
            assert_eq!(last["status"], "failed", "{last}");
            assert!(
                last["details"].as_str().unwrap().contains("compute-node-3"),
                "{last}"
            );
        }
    }

    #[test]
    fn a_response_directory_others_can_write_is_refused_before_anything_is_sent() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, s, j) = setup("2");
        fs::set_permissions(&s.response_dir, fs::Permissions::from_mode(0o777)).unwrap();
        let responder = ByHand::answering(|id| {
            format!(r#"{{"request_id":"{id}","target_node":"compute-node-3","success":true}}"#)
        });
        let out = fence_with(&s, &j, responder, "off");
        let FenceOutcome::Failed { detail } = &out else {
            panic!("{out:?}")
        };
        assert!(
            detail.contains(&s.response_dir.display().to_string())
                && detail.contains("writable by group or others"),
            "{detail}"
        );
        assert_eq!(fs::read_dir(&s.request_dir).unwrap().count(), 0);
    }

    #[test]
    fn one_directory_under_two_spellings_is_refused() {
        let (d, mut s, j) = setup("1");
        // A symbolic link to the request directory, and a path through `..`.
        let link = d.path().join("resp-link");
        std::os::unix::fs::symlink(&s.request_dir, &link).unwrap();
        let dotdot = d.path().join("resp").join("..").join("req");
        for response_dir in [link, dotdot] {
            s.response_dir = response_dir;
            let out = fence_from_rabbit(&s, &j, "off", b"compute-node-3");
            let FenceOutcome::Failed { detail } = &out else {
                panic!("{out:?}")
            };
            assert!(detail.contains("same directory"), "{detail}");
            assert_eq!(fs::read_dir(&s.request_dir).unwrap().count(), 0);
        }
    }

    #[test]
    fn a_request_directory_refusing_locks_still_fences() {
        // As an NFS mount without its lock service (no file system here
        // refuses flock, so the refusal is injected at the call).
        let (_d, s, j) = setup("5");
        crate::spool::refuse_locks(Some(libc::ENOLCK));
        let responder = ByHand::answering(|id| {
            format!(r#"{{"request_id":"{id}","target_node":"compute-node-3","success":true}}"#)
        });
        let out = fence_with(&s, &j, responder, "off");
        crate::spool::refuse_locks(None);
        assert!(out.is_success(), "{out:?}");
        let last = records(&j).pop().unwrap();
        assert_eq!(last["status"], "completed", "{last}");
        assert!(
            last["details"]
                .as_str()
                .unwrap()
                .contains("refuses file locks"),
            "{last}"
        );
    }

    fn alloc(fs: &str, rabbit: &str) -> Gfs2Allocation {
        Gfs2Allocation {
            filesystem: fs.into(),
            rabbit: rabbit.into(),
        }
    }

    #[test]
    fn nothing_found_is_judged_by_where_discovery_puts_the_storage() {
        let here = Ok(vec![alloc("fs-a", "rabbit-1"), alloc("fs-b", "rabbit-2")]);
        let Verdict::Contradicted(why) =
            judge_nothing_found("n1", "rabbit-1.example.com", Some(&here))
        else {
            panic!()
        };
        assert!(
            why.contains("on this rabbit (rabbit-1: [\"fs-a\"])"),
            "{why}"
        );
        assert!(
            why.contains("other rabbits (rabbit-2: [\"fs-b\"])"),
            "{why}"
        );
        assert!(why.contains("n1 is not fenced"), "{why}");

        let others = Ok(vec![alloc("fs-a", "rabbit-2"), alloc("fs-b", "rabbit-3")]);
        let Verdict::Stands(note) = judge_nothing_found("n1", "rabbit-1", Some(&others)) else {
            panic!()
        };
        assert!(
            note.contains("only on other rabbits (rabbit-2: [\"fs-a\"], rabbit-3: [\"fs-b\"])"),
            "{note}"
        );
        assert!(note.contains("must fence it too"), "{note}");

        for (found, says) in [
            (
                Some(Ok(vec![])),
                "no GFS2 storage of n1 on any rabbit either",
            ),
            (
                Some(Err("kubectl exited".to_string())),
                "discovery failed (kubectl exited)",
            ),
            (None, "had not finished"),
            (
                Some(Ok(vec![alloc("fs-a", "")])),
                "cannot tell whether this rabbit",
            ),
        ] {
            let Verdict::Stands(note) = judge_nothing_found("n1", "rabbit-1", found.as_ref())
            else {
                panic!("{found:?}")
            };
            assert!(note.contains(says), "{note}");
        }
    }
}
