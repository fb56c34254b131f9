//! Settings: where the agent reads and writes, and how long it waits.
//!
//! Every value is resolved the same way: the explicit option (command line or
//! Pacemaker's stdin) first, then the environment, then the documented default.
//! A value that is present but invalid is an error naming the setting, where it
//! came from, and the value: it never falls back to a default silently.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::nnf_config::{self, REQUEST_NAME, RESPONSE_NAME};

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
/// kubectl's own variable: a shell that runs kubectl with it gets the same
/// cluster from the agent.
pub const ENV_KUBECONFIG: &str = "KUBECONFIG";
/// The default kubeconfig, relative to the home directory of the user the
/// agent runs as, taken from the password database: Pacemaker's fencer
/// gives its agents no `HOME`.
pub const DEFAULT_KUBECONFIG_IN_HOME: &str = ".kube/config";
pub const ENV_DISCOVERY_TIMEOUT: &str = "FENCE_DISCOVERY_TIMEOUT";
pub const ENV_LOG_MODE: &str = "FENCE_LOG_MODE";
pub const ENV_STALE_AGE: &str = "FENCE_STALE_AGE";
/// Leftover requests and dot-temps older than this are removed by `monitor`
/// (at least twice `fence_timeout` when not set, so no attempt in flight is
/// ever touched).
pub const DEFAULT_STALE_AGE_SECS: f64 = 3600.0;

/// Makes the settings' types, their resolution and `settings_fields!` from
/// the table below. Its leading `$` lets it define a macro of its own.
macro_rules! settings_items {
    (
        $d:tt;
        resolve($r:ident, $shared:ident);
        options { $(
            $(#[$doc:meta])*
            $name:ident: $ty:ty, $env:expr, $how:ident($($arg:expr),*);
        )* }
        derived { $(
            $(#[$ddoc:meta])*
            $dname:ident: $dty:ty = $dvalue:expr;
        )* }
    ) => {
        /// Raw values as the caller received them (None: not given).
        #[derive(Debug, Clone, Default)]
        pub struct SettingsInput {
            $(pub $name: Option<String>,)*
            /// Options given as bytes that are not UTF-8: (setting, bytes).
            /// Each is an error naming it; none is ever taken as absent.
            pub not_utf8: Vec<(String, Vec<u8>)>,
        }

        /// (option name, environment variable) of every setting.
        pub const SETTINGS: &[(&str, &str)] = &[$((stringify!($name), $env),)*];

        impl SettingsInput {
            fn raw_value(&self, name: &str) -> Option<&str> {
                match name {
                    $(stringify!($name) => self.$name.as_deref(),)*
                    _ => None,
                }
            }

            /// Sets the raw value of the setting `name`; false when there is
            /// no such setting.
            pub fn set(&mut self, name: &str, value: Option<String>) -> bool {
                match name {
                    $(stringify!($name) => self.$name = value,)*
                    _ => return false,
                }
                true
            }
        }

        /// Resolved, validated settings.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Settings {
            $($(#[$doc])* pub $name: $ty,)*
            $($(#[$ddoc])* pub $dname: $dty,)*
        }

        /// Calls `$then!` with every field of `Settings` (doc, name, type): the
        /// binding makes its getters from them.
        macro_rules! settings_fields {
            ($d then:ident) => {
                $d then! { $($(#[$doc])* $name: $ty,)* $($(#[$ddoc])* $dname: $dty,)* }
            };
        }
        pub(crate) use settings_fields;

        /// Every row of the table, in order; errors are collected in `$r`.
        fn resolve_rows($r: &mut Resolver<'_>, $shared: nnf_config::Shared) -> Settings {
            $(let $name: $ty = $r.$how(stringify!($name) $(, $arg)*);)*
            $(let $dname: $dty = $dvalue;)*
            Settings { $($name,)* $($dname,)* }
        }
    };
}

// The one table of settings. Each option row gives its name, type, the
// environment variable read when the option is absent, and how it resolves
// (a `Resolver` method and its arguments); derived rows are computed from the
// rows above them. `SettingsInput`, `SETTINGS`, `Settings`, its resolution and,
// through `settings_fields!`, the binding's getters (`python.rs`) are all made
// from it: adding a setting is one row here, plus its documentation.
//
// Rows resolve in order, so a row may use the ones above it (`stale_age`
// defaults to twice `fence_timeout`).
settings_items! {
    $;
    resolve(r, shared);
    options {
        request_dir: PathBuf, ENV_REQUEST_DIR,
            path(shared.value(REQUEST_NAME), DEFAULT_REQUEST_DIR);
        response_dir: PathBuf, ENV_RESPONSE_DIR,
            path(shared.value(RESPONSE_NAME), DEFAULT_RESPONSE_DIR);
        log_dir: PathBuf, ENV_LOG_DIR, path(None, DEFAULT_LOG_DIR);
        fence_timeout: Duration, ENV_FENCE_TIMEOUT, seconds(FENCE_TIMEOUT);
        poll_interval: Duration, ENV_POLL_INTERVAL, seconds(POLL_INTERVAL);
        force_poll: bool, ENV_FORCE_POLL, flag();
        /// None: GFS2 discovery is switched off (`kubectl_path` set to
        /// empty or `off`). A bare name is looked up in PATH when it runs.
        kubectl_path: Option<PathBuf>, ENV_KUBECTL, command("kubectl");
        /// The kubeconfig discovery gives kubectl (`--kubeconfig`); the
        /// default is `~/.kube/config` of the agent's user, its home read
        /// from the password database (None: that user has no home there).
        kubeconfig: Option<PathBuf>, ENV_KUBECONFIG, kubeconfig();
        discovery_timeout: Duration, ENV_DISCOVERY_TIMEOUT,
            seconds(DISCOVERY_TIMEOUT);
        log_mode: u32, ENV_LOG_MODE, mode(DEFAULT_LOG_MODE);
        /// Requests and dot-temps older than this are leftovers of
        /// killed agents.
        stale_age: Duration, ENV_STALE_AGE,
            seconds_or(secs(STALE_AGE.default).max(fence_timeout * 2), STALE_AGE);
        /// NNF's shared config.py read (None: none); see `nnf_config`.
        /// It is read first, as the directories may come from it.
        nnf_config: Option<PathBuf>, nnf_config::ENV_PATH,
            read_first(shared.path.clone());
    }
    derived {
        /// `FENCE_LOG`, else the main log in `log_dir`.
        main_log: PathBuf = r.main_log(&log_dir);
        /// How NNF's shared config was found.
        nnf_config_origin: String = shared.origin.clone();
        /// The statements of NNF's shared config its reader ignored.
        nnf_config_notes: Vec<String> = shared.parsed.notes.clone();
        /// (setting, origin) for each path, kubeconfig and seconds setting.
        origins: Vec<(String, String)> = std::mem::take(&mut r.origins);
    }
}

/// Every environment variable the settings read: one per setting, and
/// `FENCE_LOG`, which moves the main log.
pub fn environment() -> Vec<&'static str> {
    SETTINGS
        .iter()
        .map(|(_, env)| *env)
        .chain([ENV_FENCE_LOG])
        .collect()
}

/// A setting that is present but unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    /// The setting, e.g. `fence_timeout` (`main_log` for `FENCE_LOG`).
    pub setting: String,
    /// Where the value came from: `option`, `environment variable NAME`,
    /// a line of NNF's shared config, or `default location`.
    pub source: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}", self.setting)?;
        if self.source != "option" {
            write!(f, " (from {})", self.source)?;
        }
        write!(f, " {:?}: {}", self.value, self.reason)
    }
}

impl std::error::Error for SettingsError {}

/// One raw value, the setting it is for and where it came from
/// (`option`, `environment variable NAME`, or a line of the NNF config).
struct Raw {
    setting: &'static str,
    source: String,
    value: String,
}

impl Raw {
    fn error(&self, reason: impl Into<String>) -> SettingsError {
        SettingsError {
            setting: self.setting.to_string(),
            source: self.source.clone(),
            value: self.value.clone(),
            reason: reason.into(),
        }
    }
}

fn absolute_path(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err("a path is required, got an empty value".into());
    }
    if v.contains('\0') {
        return Err("a path cannot contain a NUL byte".into());
    }
    if !v.starts_with('/') {
        return Err("must be an absolute path".into());
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

fn boolean(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Ok(true),
        "" | "0" | "no" | "off" | "false" => Ok(false),
        _ => Err("expected one of 1/yes/on/true or 0/no/off/false".into()),
    }
}

fn file_mode(v: &str) -> Result<u32, String> {
    let v = v.trim();
    let digits = v.strip_prefix("0o").unwrap_or(v);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if !digits.is_empty() && m <= 0o666 && m & 0o600 == 0o600 => Ok(m),
        _ => Err(
            "expected an octal file mode between 0600 and 0666 that keeps owner read/write".into(),
        ),
    }
}

/// What switches discovery off besides an empty value, which pcs refuses to
/// set as a device parameter.
pub const COMMAND_OFF: &str = "off";

/// A command run by name (looked up in PATH) or by absolute path; empty or
/// `off`: none.
fn command(v: &str) -> Result<Option<PathBuf>, String> {
    if v.is_empty() || v == COMMAND_OFF {
        Ok(None)
    } else if v.contains('\0') {
        Err("cannot contain a NUL byte".into())
    } else if v.contains('/') && !v.starts_with('/') {
        Err("must be an absolute path or a bare command name".into())
    } else {
        Ok(Some(PathBuf::from(v)))
    }
}

fn effective_uid() -> libc::uid_t {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The home directory of the user the agent runs as, from the password
/// database (None: no entry, or an empty one). `HOME` is not read: the
/// fencer does not set it.
pub fn home_dir() -> Option<PathBuf> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let uid = effective_uid();
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: all-zero is a valid passwd value; getpwuid_r fills it in.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf outlives pwd's use.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || found.is_null() || pwd.pw_dir.is_null() {
            return None;
        }
        // SAFETY: pw_dir points into buf, NUL-terminated by getpwuid_r.
        let dir = unsafe { CStr::from_ptr(pwd.pw_dir) };
        let dir = std::ffi::OsStr::from_bytes(dir.to_bytes());
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
}

/// `~/.kube/config` of the agent's user, its home from the password database.
pub fn default_kubeconfig() -> Option<PathBuf> {
    home_dir().map(|home| home.join(DEFAULT_KUBECONFIG_IN_HOME))
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

/// Reads each setting from its option, else its environment variable, and
/// collects every error, so that one run reports every bad setting at once.
struct Resolver<'a> {
    input: &'a SettingsInput,
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<SettingsError>,
    /// Where each path, kubeconfig and seconds setting came from: (setting, origin).
    origins: Vec<(String, String)>,
}

impl Resolver<'_> {
    fn raw(&self, setting: &'static str) -> Option<Raw> {
        let raw = |source: String, value: String| Raw {
            setting,
            source,
            value,
        };
        if let Some(v) = self.input.raw_value(setting) {
            return Some(raw("option".into(), v.to_string()));
        }
        let (_, env_name) = SETTINGS.iter().find(|(name, _)| *name == setting)?;
        let value = (self.env)(env_name)?;
        Some(raw(format!("environment variable {env_name}"), value))
    }

    /// Keeps where `setting`'s value came from (validate-all shows it).
    fn note_origin(
        &mut self,
        setting: &'static str,
        raw: &Option<Raw>,
        default: impl FnOnce() -> String,
    ) {
        let origin = match raw {
            Some(r) if r.source == "option" => format!("option {setting}"),
            Some(r) => r.source.clone(),
            None => default(),
        };
        self.origins.push((setting.to_string(), origin));
    }

    fn check<T>(&mut self, r: Result<T, SettingsError>, fallback: T) -> T {
        r.unwrap_or_else(|e| {
            self.errors.push(e);
            fallback
        })
    }

    /// The parsed raw value; `default` when not given, `fallback` when invalid.
    fn parsed<T>(
        &mut self,
        raw: Option<Raw>,
        default: T,
        fallback: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match raw {
            None => default,
            Some(r) => {
                let parsed = parse(&r.value).map_err(|e| r.error(e));
                self.check(parsed, fallback)
            }
        }
    }

    fn seconds(&mut self, setting: &'static str, spec: Seconds) -> Duration {
        self.seconds_or(setting, secs(spec.default), spec)
    }

    /// As `seconds`, with a default computed from other settings.
    fn seconds_or(&mut self, setting: &'static str, default: Duration, spec: Seconds) -> Duration {
        let raw = self.raw(setting);
        self.note_origin(setting, &raw, || "default".to_string());
        let parse = |v: &str| parse_seconds(v, spec.min, spec.max);
        self.parsed(raw, default, Duration::ZERO, parse)
    }

    /// A value resolved before the table is (NNF's shared config).
    fn read_first<T>(&mut self, _setting: &'static str, value: T) -> T {
        value
    }

    fn flag(&mut self, setting: &'static str) -> bool {
        let raw = self.raw(setting);
        self.parsed(raw, false, false, boolean)
    }

    fn mode(&mut self, setting: &'static str, default: u32) -> u32 {
        let raw = self.raw(setting);
        self.parsed(raw, default, default, file_mode)
    }

    fn command(&mut self, setting: &'static str, default: &str) -> Option<PathBuf> {
        let raw = self.raw(setting);
        self.parsed(raw, Some(PathBuf::from(default)), None, command)
    }

    /// An absolute path given, else `~/.kube/config` of the agent's user
    /// (its home from the password database, never from `HOME`).
    fn kubeconfig(&mut self, setting: &'static str) -> Option<PathBuf> {
        let raw = self.raw(setting);
        self.note_origin(setting, &raw, || {
            format!(
                "default: ~/{DEFAULT_KUBECONFIG_IN_HOME} of uid {}, its home from the \
                 password database",
                effective_uid()
            )
        });
        let default = default_kubeconfig();
        self.parsed(raw, default, None, |v| absolute_path(v).map(Some))
    }

    /// An absolute path: option, environment, then `from_file` (value,
    /// origin) of NNF's shared config, then `default`; its origin is kept.
    fn path(
        &mut self,
        setting: &'static str,
        from_file: Option<(String, String)>,
        default: &str,
    ) -> PathBuf {
        let raw = self.raw(setting).or_else(|| {
            from_file.map(|(value, source)| Raw {
                setting,
                source,
                value,
            })
        });
        self.note_origin(setting, &raw, || "default".to_string());
        self.parsed(
            raw,
            PathBuf::from(default),
            PathBuf::from(default),
            absolute_path,
        )
    }

    /// `FENCE_LOG`, else the main log in `log_dir`.
    fn main_log(&mut self, log_dir: &Path) -> PathBuf {
        let raw = (self.env)(ENV_FENCE_LOG).map(|value| Raw {
            setting: "main_log",
            source: format!("environment variable {ENV_FENCE_LOG}"),
            value,
        });
        let default = log_dir.join(MAIN_LOG_NAME);
        self.parsed(raw, default.clone(), default, absolute_path)
    }
}

/// The rules between settings, once each is valid on its own.
fn cross_checks(r: &mut Resolver<'_>, s: &Settings) {
    if s.request_dir == s.response_dir {
        let origin = s.origins.iter().find(|(name, _)| name == "response_dir");
        let source = match origin.map(|(_, o)| o.as_str()) {
            Some(o) if !o.starts_with("option ") => o.to_string(),
            _ => "option".to_string(),
        };
        r.errors.push(SettingsError {
            setting: "response_dir".into(),
            source,
            value: s.response_dir.display().to_string(),
            reason: "must differ from request_dir".into(),
        });
    }
    if let Some(raw) = r.raw("stale_age") {
        if s.stale_age != Duration::ZERO && s.stale_age <= s.fence_timeout {
            r.errors.push(raw.error(format!(
                "must be longer than fence_timeout ({} s), or attempts in flight would be \
                 cleaned up",
                s.fence_timeout.as_secs_f64()
            )));
        }
    }
}

/// A number of seconds: its default and the accepted range.
#[derive(Clone, Copy)]
struct Seconds {
    default: f64,
    min: f64,
    max: f64,
}

const FENCE_TIMEOUT: Seconds = Seconds {
    default: DEFAULT_FENCE_TIMEOUT_SECS,
    min: 1.0,
    max: MAX_FENCE_TIMEOUT_SECS,
};
const POLL_INTERVAL: Seconds = Seconds {
    default: DEFAULT_POLL_INTERVAL_SECS,
    min: MIN_POLL_INTERVAL_SECS,
    max: MAX_POLL_INTERVAL_SECS,
};
const DISCOVERY_TIMEOUT: Seconds = Seconds {
    default: DEFAULT_DISCOVERY_TIMEOUT_SECS,
    min: 0.1,
    max: MAX_DISCOVERY_TIMEOUT_SECS,
};
/// Its default is at least twice `fence_timeout`.
const STALE_AGE: Seconds = Seconds {
    default: DEFAULT_STALE_AGE_SECS,
    min: 1.0,
    max: 30.0 * MAX_FENCE_TIMEOUT_SECS,
};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Resolves every setting. `env` looks a variable up (tests pass a map).
/// All problems are reported together.
pub fn resolve(
    input: &SettingsInput,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Settings, SettingsErrors> {
    let mut r = Resolver {
        input,
        env: &env,
        errors: Vec::new(),
        origins: Vec::new(),
    };
    for (setting, bytes) in &input.not_utf8 {
        r.errors.push(not_utf8(setting, "option".into(), bytes));
    }
    // Option, then environment, then NNF's shared config, then the default.
    let needed = r.raw("request_dir").is_none() || r.raw("response_dir").is_none();
    let shared = nnf_config::shared(&input.nnf_config, &env, needed);
    let shared = r.check(shared, nnf_config::Shared::default());
    let settings = resolve_rows(&mut r, shared);
    cross_checks(&mut r, &settings);
    if !r.errors.is_empty() {
        return Err(SettingsErrors(r.errors));
    }
    Ok(settings)
}

/// Why a value in bytes is refused.
pub const NOT_UTF8: &str = "not valid UTF-8 (bytes shown as \\xNN)";

/// The error for a value that is not UTF-8, shown escaped (`\xNN`).
fn not_utf8(setting: &str, source: String, bytes: &[u8]) -> SettingsError {
    SettingsError {
        setting: setting.to_string(),
        source,
        value: crate::journal::lossless_text(bytes),
        reason: NOT_UTF8.into(),
    }
}

/// Resolves against the process environment. A variable of ours whose value
/// is not UTF-8 is an error naming it, never taken as unset.
pub fn resolve_from_process(input: &SettingsInput) -> Result<Settings, SettingsErrors> {
    use std::os::unix::ffi::OsStrExt;
    let mut errors: Vec<SettingsError> = Vec::new();
    for (setting, name) in SETTINGS.iter().chain([&("main_log", ENV_FENCE_LOG)]) {
        let given =
            input.raw_value(setting).is_some() || input.not_utf8.iter().any(|(n, _)| n == setting);
        match std::env::var_os(name) {
            Some(v) if v.to_str().is_none() && !given => errors.push(not_utf8(
                setting,
                format!("environment variable {name}"),
                v.as_bytes(),
            )),
            _ => {}
        }
    }
    let resolved = resolve(input, |name| std::env::var(name).ok());
    match resolved {
        Ok(s) if errors.is_empty() => Ok(s),
        Ok(_) => Err(SettingsErrors(errors)),
        Err(SettingsErrors(more)) => {
            errors.extend(more);
            Err(SettingsErrors(errors))
        }
    }
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
            assert_eq!(err.setting, "fence_timeout");
            assert_eq!(err.source, "environment variable FENCE_TIMEOUT");
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
        let names: Vec<(&str, &str)> = errs
            .0
            .iter()
            .map(|e| (e.setting.as_str(), e.source.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("request_dir", "option"),
                ("log_dir", "environment variable LOG_DIR"),
                ("fence_timeout", "option"),
                ("poll_interval", "option")
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
        let off = SettingsInput {
            kubectl_path: Some("off".into()),
            ..Default::default()
        };
        assert_eq!(resolve(&off, env_of(&[])).unwrap().kubectl_path, None);
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

    #[test]
    fn kubeconfig_defaults_to_the_users_own_from_the_password_database() {
        // HOME is not read: the fencer does not set it.
        let env = env_of(&[("HOME", "/somewhere/else")]);
        let s = resolve(&SettingsInput::default(), env).unwrap();
        let home = home_dir().expect("the test user has a home directory");
        assert_eq!(s.kubeconfig, Some(home.join(".kube/config")));
        let origin = s.origins.iter().find(|(n, _)| n == "kubeconfig").unwrap();
        assert!(
            origin.1.starts_with("default: ~/.kube/config of uid "),
            "{origin:?}"
        );

        let s = resolve(
            &SettingsInput::default(),
            env_of(&[("KUBECONFIG", "/etc/k/admin.conf")]),
        )
        .unwrap();
        assert_eq!(s.kubeconfig, Some(PathBuf::from("/etc/k/admin.conf")));
        let input = SettingsInput {
            kubeconfig: Some("/opt/k".into()),
            ..Default::default()
        };
        let s = resolve(&input, env_of(&[("KUBECONFIG", "/etc/k/admin.conf")])).unwrap();
        assert_eq!(s.kubeconfig, Some(PathBuf::from("/opt/k")));
        for bad in ["", "relative/config"] {
            let err = resolve(&SettingsInput::default(), env_of(&[("KUBECONFIG", bad)]))
                .unwrap_err()
                .0
                .remove(0);
            assert_eq!(err.setting, "kubeconfig");
            assert_eq!(err.source, "environment variable KUBECONFIG");
        }
    }
}
