//! Whether nnf-sos is on the other side of the configured directories, as
//! `monitor` and `validate-all` ask. These are warnings, not failures: they
//! are signs that the agent and nnf-sos do not meet, not proof.
//!
//! - Requests older than a few `fence_timeout`s with no answer: the agent
//!   withdraws its request when it gives up, so such files are left by agents
//!   Pacemaker killed, and nothing took them: nobody reads the directory.
//! - nnf-sos's default directories (current `/localdisk/fence-recorder/...`,
//!   earlier `/localdisk/gfs2-fencing/...`) present beside the configured
//!   ones: nnf-sos may be watching those.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::settings::Settings;

/// A request unanswered for this many `fence_timeout`s is a sign.
pub const UNANSWERED_FACTOR: u32 = 3;

/// nnf-sos's default (request, response) directories, current then earlier.
pub const NNF_DEFAULT_DIRS: [(&str, &str); 2] = [
    (
        "/localdisk/fence-recorder/requests",
        "/localdisk/fence-recorder/responses",
    ),
    (
        "/localdisk/gfs2-fencing/requests",
        "/localdisk/gfs2-fencing/responses",
    ),
];

/// Every warning for these settings (empty: none).
pub fn warnings(s: &Settings) -> Vec<String> {
    let mut found = Vec::new();
    found.extend(unanswered_requests(
        &s.request_dir,
        &s.response_dir,
        s.fence_timeout * UNANSWERED_FACTOR,
        SystemTime::now(),
    ));
    found.extend(other_default_dirs(s, &NNF_DEFAULT_DIRS));
    found
}

/// Requests (`<uuid>.json`, regular files) in `request_dir` last changed
/// more than `older_than` before `now`, with no response of the same name.
pub fn unanswered_requests(
    request_dir: &Path,
    response_dir: &Path,
    older_than: Duration,
    now: SystemTime,
) -> Option<String> {
    let entries = fs::read_dir(request_dir).ok()?;
    let mut count = 0usize;
    let mut oldest: Option<(Duration, String)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_request = name
            .strip_suffix(".json")
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok());
        if !is_request {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let Some(age) = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
        else {
            continue;
        };
        if !meta.is_file() || age <= older_than {
            continue;
        }
        if fs::symlink_metadata(response_dir.join(name)).is_ok() {
            continue; // answered; the responder has not removed it yet
        }
        count += 1;
        if oldest.as_ref().is_none_or(|(a, _)| age > *a) {
            oldest = Some((age, name.to_string()));
        }
    }
    let (age, name) = oldest?;
    Some(format!(
        "{count} fence request(s) in {} unanswered for more than {} s (the oldest, {name}, for \
         {} s): nothing seems to read this directory; check that nnf-sos watches {} and \
         answers in {}",
        request_dir.display(),
        older_than.as_secs(),
        age.as_secs(),
        request_dir.display(),
        response_dir.display()
    ))
}

/// nnf-sos default directories, other than the configured ones, that exist.
pub fn other_default_dirs(s: &Settings, defaults: &[(&str, &str)]) -> Vec<String> {
    let mut found = Vec::new();
    for (role, configured, pick) in [
        ("request", &s.request_dir, 0),
        ("response", &s.response_dir, 1),
    ] {
        for pair in defaults {
            let other = Path::new(if pick == 0 { pair.0 } else { pair.1 });
            if other == configured.as_path() || !other.is_dir() {
                continue;
            }
            found.push(format!(
                "{} exists beside the configured {role} directory {}: it is a default \
                 directory of nnf-sos, which may be watching it; make sure nnf-sos and this \
                 agent use the same {role} directory",
                other.display(),
                configured.display()
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SettingsInput;
    use crate::test_support::{resolved, Dirs};

    fn settings(d: &Dirs) -> Settings {
        resolved(&SettingsInput {
            fence_timeout: Some("10".into()),
            nnf_config: Some(String::new()),
            ..d.input()
        })
    }

    #[test]
    fn old_unanswered_requests_are_named_young_or_answered_ones_not() {
        let d = Dirs::named("nnfchk");
        let s = settings(&d);
        fs::create_dir_all(&s.request_dir).unwrap();
        fs::create_dir_all(&s.response_dir).unwrap();
        let id = |n: u8| format!("12345678-1234-4234-8234-1234567890{n:02}.json");
        for n in 0..3 {
            fs::write(s.request_dir.join(id(n)), "{}").unwrap();
        }
        fs::write(s.request_dir.join("notes.json"), "{}").unwrap();
        fs::write(s.response_dir.join(id(2)), "{}").unwrap();
        let now = SystemTime::now();
        let limit = s.fence_timeout * UNANSWERED_FACTOR;
        assert_eq!(
            unanswered_requests(&s.request_dir, &s.response_dir, limit, now),
            None
        );
        let later = now + Duration::from_secs(31);
        let w = unanswered_requests(&s.request_dir, &s.response_dir, limit, later).unwrap();
        assert!(w.starts_with("2 fence request(s) in "), "{w}");
        assert!(w.contains(&s.request_dir.display().to_string()), "{w}");
        assert!(w.contains("more than 30 s"), "{w}");
    }

    #[test]
    fn another_default_directory_beside_the_configured_one() {
        let d = Dirs::named("nnfchk");
        let s = settings(&d);
        let old_req = d.path().join("old/requests");
        let old_resp = d.path().join("old/responses");
        let (a, b) = (
            old_req.display().to_string(),
            old_resp.display().to_string(),
        );
        let defaults = [(a.as_str(), b.as_str())];
        assert!(other_default_dirs(&s, &defaults).is_empty());
        fs::create_dir_all(&old_req).unwrap();
        let w = other_default_dirs(&s, &defaults);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(&a) && w[0].contains("request directory"),
            "{w:?}"
        );
        // The configured directory itself is never "another" one.
        let same = [(s.request_dir.to_str().unwrap(), b.as_str())];
        fs::create_dir_all(&s.request_dir).unwrap();
        assert!(other_default_dirs(&s, &same).is_empty());
    }
}
