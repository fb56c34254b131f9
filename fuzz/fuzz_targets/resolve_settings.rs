//! Any bytes as the raw settings: fields split on NUL (the options of the
//! settings table in its order, then a few environment values). `resolve`
//! must never panic, and what it accepts must hold its documented invariants.
#![no_main]

use std::collections::HashMap;
use std::time::Duration;

use fence_gfs2_recorder::settings::{resolve, SettingsInput, SETTINGS};
use libfuzzer_sys::fuzz_target;

const ENV_NAMES: [&str; 6] = [
    "FENCE_TIMEOUT",
    "FENCE_STALE_AGE",
    "FENCE_LOG",
    "FENCE_LOG_MODE",
    "FENCE_POLL_INTERVAL",
    "LOG_DIR",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\0').map(|f| {
        // An empty field means "not given"; "\u{1}" stands for an empty value.
        match f {
            "" => None,
            "\u{1}" => Some(String::new()),
            other => Some(other.to_string()),
        }
    });
    let mut next = || fields.next().flatten();
    // Every setting in the engine's table, but no shared config file: the
    // fuzzer must not choose files to read.
    let mut input = SettingsInput {
        nnf_config: Some(String::new()),
        ..Default::default()
    };
    for (name, _) in SETTINGS.iter().filter(|(name, _)| *name != "nnf_config") {
        input.set(name, next());
    }
    let env: HashMap<&str, String> = ENV_NAMES
        .iter()
        .filter_map(|name| next().map(|v| (*name, v)))
        .collect();
    match resolve(&input, |k| env.get(k).cloned()) {
        Ok(s) => {
            for p in [&s.request_dir, &s.response_dir, &s.log_dir, &s.main_log] {
                assert!(p.is_absolute(), "{p:?}");
            }
            assert_ne!(s.request_dir, s.response_dir);
            assert!(s.fence_timeout >= Duration::from_secs(1));
            assert!(s.fence_timeout <= Duration::from_secs(86_400));
            assert!(s.poll_interval >= Duration::from_millis(10));
            assert!(s.stale_age > s.fence_timeout);
            assert!(s.log_mode & 0o600 == 0o600 && s.log_mode <= 0o666);
        }
        Err(errs) => {
            assert!(!errs.0.is_empty());
            for e in &errs.0 {
                assert!(!e.setting.is_empty() && !e.source.is_empty() && !e.reason.is_empty());
            }
            let _ = errs.to_string();
        }
    }
});
