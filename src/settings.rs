//! Settings: where the agent reads and writes, and how long it waits.
//!
//! Every value is resolved the same way: the explicit option (command line or
//! Pacemaker's stdin) first, then the environment, then the documented default.
//! A value that is present but invalid is an error naming the setting, where it
//! came from, and the value: it never falls back to a default silently.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::nnf_config;

/// Current nnf-sos's defaults (its `pkg/fence`), used when neither an option,
/// the environment nor NNF's shared config names the directories.
pub const DEFAULT_REQUEST_DIR: &str = "/localdisk/fence-recorder/requests";
pub const DEFAULT_RESPONSE_DIR: &str = "/localdisk/fence-recorder/responses";
pub const DEFAULT_LOG_DIR: &str = "/var/log/gfs2-fencing";
pub const MAIN_LOG_NAME: &str = "fence-events.log";
/// Pacemaker's default action timeout is 60 s, and it retries a failed
/// action once, a second later, with what is left of those 60 s: two waits
/// of 25 s plus start-up and that second end before its SIGKILL.
pub const DEFAULT_FENCE_TIMEOUT_SECS: f64 = 25.0;
pub const DEFAULT_POLL_INTERVAL_SECS: f64 = 0.5;
pub const DEFAULT_DISCOVERY_TIMEOUT_SECS: f64 = 5.0;
pub const DEFAULT_LOG_MODE: u32 = 0o600;
/// A fence wait longer than a day is a configuration mistake, not a plan.
pub const MAX_FENCE_TIMEOUT_SECS: f64 = 86_400.0;
pub const MIN_POLL_INTERVAL_SECS: f64 = 0.01;
pub const MAX_POLL_INTERVAL_SECS: f64 = 60.0;
pub const MAX_DISCOVERY_TIMEOUT_SECS: f64 = 300.0;

/// The environment variables read, one per setting (None: option only).
pub const ENV_REQUEST_DIR: &str = "NNF_FENCE_REQUEST_DIR";
pub const ENV_RESPONSE_DIR: &str = "NNF_FENCE_RESPONSE_DIR";
pub const ENV_LOG_DIR: &str = "LOG_DIR";
pub const ENV_FENCE_LOG: &str = "FENCE_LOG";
pub const ENV_FENCE_TIMEOUT: &str = "FENCE_TIMEOUT";
pub const ENV_POLL_INTERVAL: &str = "FENCE_POLL_INTERVAL";
pub const ENV_FORCE_POLL: &str = "FENCE_FORCE_POLL";
pub const ENV_KUBECTL: &str = "FENCE_KUBECTL";
pub const ENV_DISCOVERY_TIMEOUT: &str = "FENCE_DISCOVERY_TIMEOUT";
pub const ENV_LOG_MODE: &str = "FENCE_LOG_MODE";
pub const ENV_STALE_AGE: &str = "FENCE_STALE_AGE";
/// Leftover requests and dot-temps older than this are removed by `monitor`
/// (at least twice `fence_timeout` when not set, so no attempt in flight is
/// ever touched).
pub const DEFAULT_STALE_AGE_SECS: f64 = 3600.0;

/// Raw values as the caller received them (None: not given).
#[derive(Debug, Clone, Default)]
pub struct SettingsInput {
    pub request_dir: Option<String>,
    pub response_dir: Option<String>,
    pub log_dir: Option<String>,
    pub fence_timeout: Option<String>,
    pub poll_interval: Option<String>,
    pub force_poll: Option<String>,
    pub kubectl_path: Option<String>,
    pub discovery_timeout: Option<String>,
    pub log_mode: Option<String>,
    pub stale_age: Option<String>,
    /// NNF's shared config.py (empty: none); see `nnf_config`.
    pub nnf_config: Option<String>,
}

/// Resolved, validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub request_dir: PathBuf,
    pub response_dir: PathBuf,
    pub log_dir: PathBuf,
    pub main_log: PathBuf,
    pub fence_timeout: Duration,
    pub poll_interval: Duration,
    pub force_poll: bool,
    /// None: GFS2 discovery is switched off (`kubectl_path` set to empty).
    /// A bare name is looked up in PATH when it runs.
    pub kubectl_path: Option<PathBuf>,
    pub discovery_timeout: Duration,
    pub log_mode: u32,
    /// Requests and dot-temps older than this are leftovers of killed agents.
    pub stale_age: Duration,
    /// The shared NNF config read (None: none), how it was found, and the
    /// statements its reader ignored.
    pub nnf_config: Option<PathBuf>,
    pub nnf_config_origin: String,
    pub nnf_config_notes: Vec<String>,
    /// Where each directory setting came from: (setting, origin).
    pub origins: Vec<(String, String)>,
}

/// A setting that is present but unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    /// The setting and its source, e.g. `fence_timeout` or `FENCE_TIMEOUT`.
    pub setting: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} {:?}: {}",
            self.setting, self.value, self.reason
        )
    }
}

impl std::error::Error for SettingsError {}

/// One raw value and the name of where it came from.
struct Raw<'a> {
    source: String,
    value: &'a str,
}

impl Raw<'_> {
    fn error(&self, reason: impl Into<String>) -> SettingsError {
        SettingsError {
            setting: self.source.clone(),
            value: self.value.to_string(),
            reason: reason.into(),
        }
    }
}

fn pick<'a>(
    option_name: &str,
    option: &'a Option<String>,
    env_name: &str,
    env: &'a Option<String>,
) -> Option<Raw<'a>> {
    if let Some(v) = option {
        return Some(Raw {
            source: option_name.to_string(),
            value: v,
        });
    }
    env.as_deref().map(|v| Raw {
        source: format!("{option_name} (from environment variable {env_name})"),
        value: v,
    })
}

fn absolute_path(raw: &Raw<'_>) -> Result<PathBuf, SettingsError> {
    let v = raw.value;
    if v.is_empty() {
        return Err(raw.error("a path is required, got an empty value"));
    }
    if v.contains('\0') {
        return Err(raw.error("a path cannot contain a NUL byte"));
    }
    if !v.starts_with('/') {
        return Err(raw.error("must be an absolute path"));
    }
    Ok(PathBuf::from(v))
}

/// Parses a positive number of seconds (decimals allowed) within `[min, max]`.
pub fn parse_seconds(raw_value: &str, min: f64, max: f64) -> Result<Duration, String> {
    let v = raw_value.trim();
    let secs: f64 = v
        .parse()
        .map_err(|_| format!("expected a number of seconds between {min} and {max}"))?;
    if !secs.is_finite() || secs < min || secs > max {
        return Err(format!(
            "expected a number of seconds between {min} and {max}"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn seconds(
    raw: Option<Raw<'_>>,
    default: f64,
    min: f64,
    max: f64,
) -> Result<Duration, SettingsError> {
    match raw {
        None => Ok(Duration::from_secs_f64(default)),
        Some(r) => parse_seconds(r.value, min, max).map_err(|e| r.error(e)),
    }
}

fn boolean(raw: Option<Raw<'_>>) -> Result<bool, SettingsError> {
    let Some(r) = raw else { return Ok(false) };
    match r.value.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Ok(true),
        "" | "0" | "no" | "off" | "false" => Ok(false),
        _ => Err(r.error("expected one of 1/yes/on/true or 0/no/off/false")),
    }
}

fn file_mode(raw: Option<Raw<'_>>) -> Result<u32, SettingsError> {
    let Some(r) = raw else {
        return Ok(DEFAULT_LOG_MODE);
    };
    let v = r.value.trim();
    let digits = v.strip_prefix("0o").unwrap_or(v);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if !digits.is_empty() && m <= 0o666 && m & 0o600 == 0o600 => Ok(m),
        _ => Err(r.error(
            "expected an octal file mode between 0600 and 0666 that keeps owner read/write",
        )),
    }
}

/// Every problem found in one resolution (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsErrors(pub Vec<SettingsError>);

impl fmt::Display for SettingsErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SettingsErrors {}

/// Collects errors so that one run reports every bad setting at once.
struct Collect(Vec<SettingsError>);

impl Collect {
    fn take<T>(&mut self, r: Result<T, SettingsError>, fallback: T) -> T {
        r.unwrap_or_else(|e| {
            self.0.push(e);
            fallback
        })
    }
}

/// Resolves every setting. `env` looks a variable up (tests pass a map).
/// All problems are reported together.
pub fn resolve(
    input: &SettingsInput,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Settings, SettingsErrors> {
    let mut c = Collect(Vec::new());
    // Option, then environment, then NNF's shared config, then the default.
    let unset = |opt: &Option<String>, name: &str| opt.is_none() && env(name).is_none();
    let needed =
        unset(&input.request_dir, ENV_REQUEST_DIR) || unset(&input.response_dir, ENV_RESPONSE_DIR);
    let shared = nnf_config::shared(&input.nnf_config, &env, needed);
    let shared = c.take(shared, nnf_config::Shared::default());
    let mut origins = Vec::new();
    let mut path_or = |opt_name: &str, opt: &Option<String>, env_name: &str, default: &str| {
        let env_value = env(env_name);
        let from_file = match opt_name {
            "request_dir" => shared.value(nnf_config::REQUEST_NAME),
            "response_dir" => shared.value(nnf_config::RESPONSE_NAME),
            _ => None,
        };
        let (result, origin) = match (pick(opt_name, opt, env_name, &env_value), from_file) {
            (Some(r), _) => {
                let origin = match opt {
                    Some(_) => format!("option {opt_name}"),
                    None => format!("environment variable {env_name}"),
                };
                (absolute_path(&r), origin)
            }
            (None, Some((value, origin))) => {
                let raw = Raw {
                    source: format!("{opt_name} (from {origin})"),
                    value: &value,
                };
                (absolute_path(&raw), origin)
            }
            (None, None) => (Ok(PathBuf::from(default)), "default".to_string()),
        };
        origins.push((opt_name.to_string(), origin));
        result
    };
    let request_dir = path_or(
        "request_dir",
        &input.request_dir,
        ENV_REQUEST_DIR,
        DEFAULT_REQUEST_DIR,
    );
    let response_dir = path_or(
        "response_dir",
        &input.response_dir,
        ENV_RESPONSE_DIR,
        DEFAULT_RESPONSE_DIR,
    );
    let log_dir = path_or("log_dir", &input.log_dir, ENV_LOG_DIR, DEFAULT_LOG_DIR);
    let request_dir = c.take(request_dir, PathBuf::from(DEFAULT_REQUEST_DIR));
    let response_dir = c.take(response_dir, PathBuf::from(DEFAULT_RESPONSE_DIR));
    let log_dir = c.take(log_dir, PathBuf::from(DEFAULT_LOG_DIR));
    if request_dir == response_dir {
        c.0.push(SettingsError {
            setting: "response_dir".into(),
            value: response_dir.display().to_string(),
            reason: "must differ from request_dir".into(),
        });
    }
    let main_log = match env(ENV_FENCE_LOG) {
        Some(v) => {
            let r = absolute_path(&Raw {
                source: ENV_FENCE_LOG.to_string(),
                value: &v,
            });
            c.take(r, log_dir.join(MAIN_LOG_NAME))
        }
        None => log_dir.join(MAIN_LOG_NAME),
    };

    let env_timeout = env(ENV_FENCE_TIMEOUT);
    let fence_timeout = seconds(
        pick(
            "fence_timeout",
            &input.fence_timeout,
            ENV_FENCE_TIMEOUT,
            &env_timeout,
        ),
        DEFAULT_FENCE_TIMEOUT_SECS,
        1.0,
        MAX_FENCE_TIMEOUT_SECS,
    );
    let fence_timeout = c.take(fence_timeout, Duration::ZERO);
    let env_poll = env(ENV_POLL_INTERVAL);
    let poll_interval = seconds(
        pick(
            "poll_interval",
            &input.poll_interval,
            ENV_POLL_INTERVAL,
            &env_poll,
        ),
        DEFAULT_POLL_INTERVAL_SECS,
        MIN_POLL_INTERVAL_SECS,
        MAX_POLL_INTERVAL_SECS,
    );
    let poll_interval = c.take(poll_interval, Duration::ZERO);
    let env_force = env(ENV_FORCE_POLL);
    let force_poll = boolean(pick(
        "force_poll",
        &input.force_poll,
        ENV_FORCE_POLL,
        &env_force,
    ));
    let force_poll = c.take(force_poll, false);
    let env_kubectl = env(ENV_KUBECTL);
    let kubectl_path = match pick(
        "kubectl_path",
        &input.kubectl_path,
        ENV_KUBECTL,
        &env_kubectl,
    ) {
        None => Ok(Some(PathBuf::from("kubectl"))),
        Some(r) if r.value.is_empty() => Ok(None),
        Some(r) if r.value.contains('\0') => Err(r.error("cannot contain a NUL byte")),
        Some(r) if r.value.contains('/') && !r.value.starts_with('/') => {
            Err(r.error("must be an absolute path or a bare command name"))
        }
        Some(r) => Ok(Some(PathBuf::from(r.value))),
    };
    let kubectl_path = c.take(kubectl_path, None);
    let env_disc = env(ENV_DISCOVERY_TIMEOUT);
    let discovery_timeout = seconds(
        pick(
            "discovery_timeout",
            &input.discovery_timeout,
            ENV_DISCOVERY_TIMEOUT,
            &env_disc,
        ),
        DEFAULT_DISCOVERY_TIMEOUT_SECS,
        0.1,
        MAX_DISCOVERY_TIMEOUT_SECS,
    );
    let discovery_timeout = c.take(discovery_timeout, Duration::ZERO);
    let env_mode = env(ENV_LOG_MODE);
    let log_mode = file_mode(pick("log_mode", &input.log_mode, ENV_LOG_MODE, &env_mode));
    let log_mode = c.take(log_mode, DEFAULT_LOG_MODE);

    let env_stale = env(ENV_STALE_AGE);
    let stale_raw = pick("stale_age", &input.stale_age, ENV_STALE_AGE, &env_stale);
    let stale_age = match stale_raw {
        None => Duration::from_secs_f64(DEFAULT_STALE_AGE_SECS).max(fence_timeout * 2),
        Some(r) => {
            let parsed = parse_seconds(r.value, 1.0, 30.0 * MAX_FENCE_TIMEOUT_SECS)
                .map_err(|e| r.error(e))
                .and_then(|d| {
                    if d <= fence_timeout {
                        Err(r.error(format!(
                            "must be longer than fence_timeout ({} s), or attempts in flight \
                             would be cleaned up",
                            fence_timeout.as_secs_f64()
                        )))
                    } else {
                        Ok(d)
                    }
                });
            c.take(parsed, Duration::ZERO)
        }
    };

    if !c.0.is_empty() {
        return Err(SettingsErrors(c.0));
    }
    Ok(Settings {
        request_dir,
        response_dir,
        log_dir,
        main_log,
        fence_timeout,
        poll_interval,
        force_poll,
        kubectl_path,
        discovery_timeout,
        log_mode,
        stale_age,
        nnf_config: shared.path,
        nnf_config_origin: shared.origin,
        nnf_config_notes: shared.parsed.notes,
        origins,
    })
}

/// Resolves against the process environment.
pub fn resolve_from_process(input: &SettingsInput) -> Result<Settings, SettingsErrors> {
    resolve(input, |name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_come_from_the_protocol() {
        let s = resolve(&SettingsInput::default(), env_of(&[])).unwrap();
        assert_eq!(s.request_dir, PathBuf::from(DEFAULT_REQUEST_DIR));
        assert_eq!(s.response_dir, PathBuf::from(DEFAULT_RESPONSE_DIR));
        assert_eq!(s.log_dir, PathBuf::from(DEFAULT_LOG_DIR));
        assert_eq!(
            s.main_log,
            PathBuf::from(DEFAULT_LOG_DIR).join(MAIN_LOG_NAME)
        );
        assert_eq!(s.fence_timeout, Duration::from_secs(25));
        assert_eq!(s.poll_interval, Duration::from_millis(500));
        assert!(!s.force_poll);
        assert_eq!(s.log_mode, 0o600);
    }

    #[test]
    fn option_beats_environment_beats_default() {
        let env = env_of(&[
            ("NNF_FENCE_REQUEST_DIR", "/env/req"),
            ("NNF_FENCE_RESPONSE_DIR", "/env/resp"),
            ("FENCE_TIMEOUT", "30"),
            ("LOG_DIR", "/env/log"),
        ]);
        let input = SettingsInput {
            request_dir: Some("/opt/req".into()),
            fence_timeout: Some("7.5".into()),
            ..Default::default()
        };
        let s = resolve(&input, env).unwrap();
        assert_eq!(s.request_dir, PathBuf::from("/opt/req"));
        assert_eq!(s.response_dir, PathBuf::from("/env/resp"));
        assert_eq!(s.log_dir, PathBuf::from("/env/log"));
        assert_eq!(s.main_log, PathBuf::from("/env/log/fence-events.log"));
        assert_eq!(s.fence_timeout, Duration::from_millis(7500));
    }

    #[test]
    fn fence_log_overrides_the_main_log_only() {
        let s = resolve(
            &SettingsInput::default(),
            env_of(&[("FENCE_LOG", "/x/main.log")]),
        )
        .unwrap();
        assert_eq!(s.main_log, PathBuf::from("/x/main.log"));
        assert_eq!(s.log_dir, PathBuf::from(DEFAULT_LOG_DIR));
    }

    #[test]
    fn invalid_timeouts_name_the_setting_and_value() {
        for bad in ["abc", "0", "-5", "1e9", "nan", "inf", "", "86401"] {
            let err = resolve(&SettingsInput::default(), env_of(&[("FENCE_TIMEOUT", bad)]))
                .unwrap_err()
                .0
                .remove(0);
            assert!(err.setting.contains("FENCE_TIMEOUT"), "{err}");
            assert_eq!(err.value, bad);
            let text = err.to_string();
            assert!(text.contains("fence_timeout"), "{text}");
        }
    }

    #[test]
    fn relative_and_empty_paths_are_refused() {
        for (opt, bad) in [
            ("request_dir", "relative/dir"),
            ("log_dir", ""),
            ("response_dir", "./x"),
        ] {
            let mut input = SettingsInput::default();
            match opt {
                "request_dir" => input.request_dir = Some(bad.into()),
                "log_dir" => input.log_dir = Some(bad.into()),
                _ => input.response_dir = Some(bad.into()),
            }
            let err = resolve(&input, env_of(&[])).unwrap_err().0.remove(0);
            assert_eq!(err.setting, opt);
            assert_eq!(err.value, bad);
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let input = SettingsInput {
            request_dir: Some("rel".into()),
            fence_timeout: Some("abc".into()),
            poll_interval: Some("-1".into()),
            ..Default::default()
        };
        let errs = resolve(&input, env_of(&[("LOG_DIR", "x")])).unwrap_err();
        let names: Vec<&str> = errs.0.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(
            names,
            [
                "request_dir",
                "log_dir (from environment variable LOG_DIR)",
                "fence_timeout",
                "poll_interval"
            ]
        );
        let text = errs.to_string();
        assert!(
            text.contains("\"abc\"") && text.contains("\"rel\""),
            "{text}"
        );
    }

    #[test]
    fn stale_age_never_reaches_attempts_in_flight() {
        let s = resolve(&SettingsInput::default(), env_of(&[])).unwrap();
        assert_eq!(s.stale_age, Duration::from_secs(3600));
        let long = SettingsInput {
            fence_timeout: Some("7200".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&long, env_of(&[])).unwrap().stale_age,
            Duration::from_secs(14400)
        );
        let bad = SettingsInput {
            fence_timeout: Some("120".into()),
            stale_age: Some("60".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&bad, env_of(&[])).unwrap_err().0[0].setting,
            "stale_age"
        );
    }

    #[test]
    fn same_request_and_response_dir_is_refused() {
        let input = SettingsInput {
            request_dir: Some("/a".into()),
            response_dir: Some("/a".into()),
            ..Default::default()
        };
        assert!(resolve(&input, env_of(&[])).is_err());
    }

    #[test]
    fn poll_interval_and_flags() {
        let input = SettingsInput {
            poll_interval: Some("0.05".into()),
            force_poll: Some("yes".into()),
            ..Default::default()
        };
        let s = resolve(&input, env_of(&[])).unwrap();
        assert_eq!(s.poll_interval, Duration::from_millis(50));
        assert!(s.force_poll);
        for bad in ["0", "0.001", "61", "x"] {
            let input = SettingsInput {
                poll_interval: Some(bad.into()),
                ..Default::default()
            };
            assert_eq!(
                resolve(&input, env_of(&[])).unwrap_err().0[0].setting,
                "poll_interval"
            );
        }
        let input = SettingsInput {
            force_poll: Some("maybe".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&input, env_of(&[])).unwrap_err().0[0].setting,
            "force_poll"
        );
    }

    #[test]
    fn log_mode_and_kubectl() {
        let input = SettingsInput {
            log_mode: Some("0640".into()),
            kubectl_path: Some(String::new()),
            ..Default::default()
        };
        let s = resolve(&input, env_of(&[])).unwrap();
        assert_eq!(s.log_mode, 0o640);
        assert_eq!(s.kubectl_path, None);
        for bad in ["0400", "0777", "abc", "", "9"] {
            let input = SettingsInput {
                log_mode: Some(bad.into()),
                ..Default::default()
            };
            assert_eq!(
                resolve(&input, env_of(&[])).unwrap_err().0[0].setting,
                "log_mode"
            );
        }
        let input = SettingsInput {
            kubectl_path: Some("bin/kubectl".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&input, env_of(&[])).unwrap_err().0[0].setting,
            "kubectl_path"
        );
    }
}
