//! The binding layer: converts between Python and the engine, releases the
//! GIL around every blocking call, and turns Python signals into an
//! interrupted outcome. No behaviour lives here.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::{
    PyFileNotFoundError, PyOSError, PyPermissionError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::exchange::{self, FenceCall, FenceOutcome};
use crate::fenced::{self, UnfenceOutcome};
use crate::health;
use crate::journal::{self, Journal};
use crate::nnf_checks;
use crate::nvmet::{self, Nvmet};
use crate::protocol;
use crate::responder::{self, Mode, ResponderConfig};
use crate::settings::{self as engine_settings, SettingsInput};

create_exception!(
    _native,
    SettingsError,
    PyValueError,
    "A setting is present but invalid. `errors` holds (setting, source, value, reason) \
     of every bad setting found; str() gives one line each."
);

fn settings_error(py: Python<'_>, e: engine_settings::SettingsErrors) -> PyErr {
    let lines: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
    let err = SettingsError::new_err(lines.join("\n"));
    let errors =
        e.0.into_iter()
            .map(|e| (e.setting, e.source, e.value, e.reason));
    let set = PyTuple::new(py, errors).and_then(|t| err.value(py).setattr("errors", t));
    match set {
        Ok(()) => err,
        Err(e) => e,
    }
}

/// An engine io error as the matching Python exception: FileNotFoundError,
/// PermissionError, else OSError.
fn io_error(e: io::Error) -> PyErr {
    let message = e.to_string();
    match e.kind() {
        io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
        io::ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
        _ => PyOSError::new_err(message),
    }
}

/// Resolved settings (read-only).
#[pyclass(frozen, module = "fence_gfs2_recorder._native", name = "Settings")]
pub struct PySettings {
    inner: engine_settings::Settings,
}

fn path_str(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// How a resolved value is shown to Python: paths as str, durations as
/// seconds (float), the rest as they are.
trait ToPython {
    type Out;
    fn to_python(&self) -> Self::Out;
}

impl ToPython for PathBuf {
    type Out = String;
    fn to_python(&self) -> String {
        path_str(self)
    }
}

impl ToPython for Option<PathBuf> {
    type Out = Option<String>;
    fn to_python(&self) -> Option<String> {
        self.as_deref().map(path_str)
    }
}

impl ToPython for Duration {
    type Out = f64;
    fn to_python(&self) -> f64 {
        self.as_secs_f64()
    }
}

/// Values Python receives unchanged.
macro_rules! to_python_as_is {
    ($($ty:ty),*) => {$(
        impl ToPython for $ty {
            type Out = $ty;
            fn to_python(&self) -> $ty {
                self.clone()
            }
        }
    )*};
}
to_python_as_is!(bool, u32, String, Vec<String>, Vec<(String, String)>);

/// One read-only getter per field of the settings, with its doc.
macro_rules! settings_getters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty,)*) => {
        #[pymethods]
        impl PySettings {
            $(
                $(#[$doc])*
                #[getter]
                fn $name(&self) -> <$ty as ToPython>::Out {
                    self.inner.$name.to_python()
                }
            )*
            fn __repr__(&self) -> String {
                format!("Settings({:?})", self.inner)
            }
        }
    };
}

engine_settings::settings_fields!(settings_getters);

/// An option's value: Ok(text), or Err(bytes) for a str holding bytes that
/// are not UTF-8 (argv and stdin carry them as surrogate escapes); None when
/// it is neither str nor None.
fn option_text(value: &Bound<'_, PyAny>) -> Option<Result<Option<String>, Vec<u8>>> {
    if value.is_none() {
        return Some(Ok(None));
    }
    value.cast::<pyo3::types::PyString>().ok()?;
    if let Ok(s) = value.extract::<String>() {
        return Some(Ok(Some(s)));
    }
    let bytes = value
        .call_method1("encode", ("utf-8", "surrogateescape"))
        .and_then(|b| b.extract::<Vec<u8>>())
        .ok()?;
    Some(Err(bytes))
}

/// Resolves settings: explicit values, then environment, then defaults.
/// The keywords are the names in `SETTINGS`; None means not given.
#[pyfunction]
#[pyo3(signature = (**options))]
fn resolve_settings(py: Python<'_>, options: Option<&Bound<'_, PyDict>>) -> PyResult<PySettings> {
    let mut input = SettingsInput::default();
    for (name, value) in options.into_iter().flatten() {
        let name: String = name.extract()?;
        let text = option_text(&value)
            .ok_or_else(|| PyTypeError::new_err(format!("setting {name} must be a str or None")))?;
        let value = match text {
            Ok(v) => v,
            Err(bytes) => {
                input.not_utf8.push((name.clone(), bytes));
                None
            }
        };
        if !input.set(&name, value) {
            return Err(PyTypeError::new_err(format!("no setting named {name:?}")));
        }
    }
    engine_settings::resolve_from_process(&input)
        .map(|inner| PySettings { inner })
        .map_err(|e| settings_error(py, e))
}

/// How a fence ended.
#[pyclass(frozen, get_all, module = "fence_gfs2_recorder._native")]
pub struct FenceResult {
    /// "answered", "contradicted", "timed_out", "interrupted", "refused" or
    /// "failed".
    kind: &'static str,
    success: bool,
    message: String,
    action_performed: Option<String>,
    response_path: Option<String>,
    request_id: Option<String>,
    elapsed_ms: f64,
}

#[pymethods]
impl FenceResult {
    fn __repr__(&self) -> String {
        format!(
            "FenceResult(kind={:?}, success={}, message={:?}, elapsed_ms={:.3})",
            self.kind, self.success, self.message, self.elapsed_ms
        )
    }
}

impl From<FenceOutcome> for FenceResult {
    fn from(o: FenceOutcome) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let base = |kind, message, request_id, elapsed_ms| FenceResult {
            kind,
            success: false,
            message,
            action_performed: None,
            response_path: None,
            request_id,
            elapsed_ms,
        };
        match o {
            FenceOutcome::Answered {
                request_id,
                success,
                message,
                action_performed,
                response_path,
                elapsed,
            } => FenceResult {
                kind: "answered",
                success,
                message,
                action_performed,
                response_path: Some(path_str(&response_path)),
                request_id: Some(request_id),
                elapsed_ms: ms(elapsed),
            },
            FenceOutcome::Contradicted {
                request_id,
                message,
                response_path,
                elapsed,
            } => FenceResult {
                response_path: Some(path_str(&response_path)),
                ..base("contradicted", message, Some(request_id), ms(elapsed))
            },
            FenceOutcome::TimedOut {
                request_id,
                elapsed,
                detail,
            } => base("timed_out", detail, Some(request_id), ms(elapsed)),
            FenceOutcome::Interrupted {
                request_id,
                elapsed,
                reason,
            } => base("interrupted", reason, Some(request_id), ms(elapsed)),
            FenceOutcome::Refused { detail } => base("refused", detail, None, 0.0),
            FenceOutcome::Failed { detail } => base("failed", detail, None, 0.0),
        }
    }
}

/// Asks Python whether the wait should end: Python's signal handlers run
/// (one that raises ends it), then `interrupted`, if given, is called and a
/// string it returns ends it. Handlers that only set a flag read by
/// `interrupted` cannot raise once the engine has returned.
fn python_interrupt(interrupted: &Option<Py<PyAny>>) -> Option<String> {
    Python::attach(|py| {
        if let Err(e) = py.check_signals() {
            return Some(e.to_string());
        }
        let asked = interrupted.as_ref()?.bind(py).call0();
        match asked {
            Ok(v) if v.is_none() => None,
            Ok(v) => Some(v.str().map(|s| s.to_string()).unwrap_or_default()),
            Err(e) => Some(e.to_string()),
        }
    })
}

fn journal_for(s: &engine_settings::Settings) -> Arc<Journal> {
    Arc::new(Journal::new(&s.log_dir, &s.main_log, s.log_mode))
}

/// Runs `run` for one fence call with the GIL released, its journal
/// receiving the main log's lines.
/// One fence call as Python gives it: action, target, recorder node, the
/// seconds already spent on it, and `delay` in seconds.
type CallArgs = (String, Vec<u8>, Option<String>, f64, f64);

fn seconds(name: &str, v: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| PyValueError::new_err(format!("invalid {name} {v}: expected seconds >= 0")))
}

fn with_fence_call(
    py: Python<'_>,
    settings: &PySettings,
    (action, target, recorder_node, spent, delay): CallArgs,
    run: impl FnOnce(&engine_settings::Settings, &Journal, &FenceCall<'_>) -> FenceOutcome + Send,
) -> PyResult<FenceResult> {
    let s = settings.inner.clone();
    let spent = seconds("spent", spent)?;
    let delay = seconds("delay", delay)?;
    let now = std::time::Instant::now();
    let started = now.checked_sub(spent).unwrap_or(now);
    Ok(py.detach(move || {
        let journal = journal_for(&s);
        let recorder = recorder_node.unwrap_or_else(exchange::host_name);
        let call = FenceCall {
            action: &action,
            target: &target,
            recorder_node: &recorder,
            started,
            delay,
        };
        journal::with_main_log(&journal, || run(&s, &journal, &call)).into()
    }))
}

/// Runs one fence exchange (`off` or `reboot`) with the GIL released.
/// `interrupted`, asked at least every 50 ms during the delay and the wait,
/// ends it by returning a reason (e.g. the name of a signal its handler
/// noted). `spent`: seconds the agent has already spent on this fence,
/// counted within `fence_timeout`; `delay`: seconds to wait before sending.
#[pyfunction]
#[pyo3(signature = (settings, action, target, recorder_node=None, interrupted=None,
                    spent=0.0, delay=0.0))]
#[allow(clippy::too_many_arguments)]
fn fence(
    py: Python<'_>,
    settings: &PySettings,
    action: String,
    target: Vec<u8>,
    recorder_node: Option<String>,
    interrupted: Option<Py<PyAny>>,
    spent: f64,
    delay: f64,
) -> PyResult<FenceResult> {
    let call = (action, target, recorder_node, spent, delay);
    with_fence_call(py, settings, call, |s, journal, call| {
        exchange::fence(s, journal, call, || python_interrupt(&interrupted))
    })
}

/// Records a fence refused before any request is written (`why` says why).
#[pyfunction]
#[pyo3(signature = (settings, action, target, why, recorder_node=None))]
fn refuse(
    py: Python<'_>,
    settings: &PySettings,
    action: String,
    target: Vec<u8>,
    why: String,
    recorder_node: Option<String>,
) -> PyResult<FenceResult> {
    let call = (action, target, recorder_node, 0.0, 0.0);
    with_fence_call(py, settings, call, |_, journal, call| {
        exchange::refuse(journal, call, &why)
    })
}

/// Problems that stop the agent from working (empty: none). With `create`,
/// missing directories are created first.
#[pyfunction]
#[pyo3(signature = (settings, create=false))]
fn check_directories(py: Python<'_>, settings: &PySettings, create: bool) -> Vec<String> {
    let s = settings.inner.clone();
    // monitor's probe of the request directory notes in the main log what
    // it found short of a problem.
    py.detach(move || {
        if create {
            journal::with_main_log(&journal_for(&s), || health::problems(&s, true))
        } else {
            health::problems(&s, false)
        }
    })
}

/// Whether GFS2 discovery can list the NnfNodeBlockStorages, as a fence
/// would run it: ("lists", what it used), ("off", warning) when switched off
/// on purpose, or ("fails", why not).
#[pyfunction]
fn discovery_check(py: Python<'_>, settings: &PySettings) -> (&'static str, String) {
    let s = settings.inner.clone();
    py.detach(move || match health::discovery_check(&s) {
        health::DiscoveryCheck::Lists(m) => ("lists", m),
        health::DiscoveryCheck::Off(m) => ("off", m),
        health::DiscoveryCheck::Fails(m) => ("fails", m),
    })
}

/// Signs that nnf-sos does not read or write the configured directories
/// (warnings for monitor and validate-all).
#[pyfunction]
fn nnf_warnings(py: Python<'_>, settings: &PySettings) -> Vec<String> {
    let s = settings.inner.clone();
    py.detach(move || nnf_checks::warnings(&s))
}

/// For each shared directory: a line naming its file system, and a warning
/// (or None) when its NFS mount options let answers be seen late.
#[pyfunction]
fn mount_report(py: Python<'_>, settings: &PySettings) -> Vec<(String, Option<String>)> {
    let s = settings.inner.clone();
    py.detach(move || {
        health::mount_report(&s)
            .into_iter()
            .map(|m| (m.description, m.warning))
            .collect()
    })
}

/// Removes leftovers of killed agents (old requests and dot-temps) from the
/// request directory; says so in the main log. Returns the problems met.
#[pyfunction]
fn clean_stale(py: Python<'_>, settings: &PySettings) -> Vec<String> {
    let s = settings.inner.clone();
    py.detach(move || journal::with_main_log(&journal_for(&s), || health::remove_leftovers(&s)))
}

/// Runs the stand-in responder until a Python signal handler raises or
/// `max_answers` requests are answered. Returns how many were answered.
#[pyfunction]
#[pyo3(signature = (request_dir, response_dir, mode="success", delay=0.0, pause=0.2,
                    poll_interval=0.5, force_poll=false, max_answers=None, verbose=true,
                    answer_delay=0.0, nothing_found=None, serial_cost=None,
                    nvmet_subsystem=None, nvmet_root=None))]
#[allow(clippy::too_many_arguments)]
fn run_responder(
    py: Python<'_>,
    request_dir: PathBuf,
    response_dir: PathBuf,
    mode: &str,
    delay: f64,
    pause: f64,
    poll_interval: f64,
    force_poll: bool,
    max_answers: Option<u64>,
    verbose: bool,
    answer_delay: f64,
    nothing_found: Option<Vec<String>>,
    serial_cost: Option<f64>,
    nvmet_subsystem: Option<String>,
    nvmet_root: Option<PathBuf>,
) -> PyResult<u64> {
    let mode = Mode::parse(mode).map_err(PyValueError::new_err)?;
    let nvmet = match (mode, nvmet_subsystem) {
        (Mode::Detach, Some(t)) => Some(
            Nvmet::new(nvmet_root.unwrap_or_else(|| nvmet::DEFAULT_ROOT.into()), &t)
                .map_err(PyValueError::new_err)?,
        ),
        (Mode::Detach, None) => {
            return Err(PyValueError::new_err(
                "mode detach needs nvmet_subsystem (the subsystem NQN, {target} for the node)",
            ))
        }
        (_, Some(t)) => {
            return Err(PyValueError::new_err(format!(
                "nvmet_subsystem {t:?} is used by mode detach only"
            )))
        }
        (_, None) => None,
    };
    let secs = |name: &str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(PyValueError::new_err(format!(
                "invalid {name} {v}: expected seconds >= 0"
            )))
        }
    };
    let cfg = ResponderConfig {
        request_dir,
        response_dir,
        mode,
        delay: secs("delay", delay)?,
        answer_delay: secs("answer_delay", answer_delay)?,
        nothing_found: nothing_found.unwrap_or_default(),
        pause: secs("pause", pause)?,
        poll_interval: secs("poll_interval", poll_interval.max(0.01))?,
        force_poll,
        max_answers,
        verbose,
        serial_cost: serial_cost.map(|v| secs("serial_cost", v)).transpose()?,
        nvmet,
    };
    let mut raised: Option<PyErr> = None;
    let result = py.detach(|| {
        responder::run(&cfg, || {
            if raised.is_none() {
                raised = Python::attach(|py| py.check_signals().err());
            }
            raised.is_some()
        })
    });
    if let Some(e) = raised {
        return Err(e);
    }
    result.map_err(io_error)
}

fn target_text(target: &[u8]) -> PyResult<String> {
    protocol::target_name(target)
        .map(str::to_string)
        .map_err(PyValueError::new_err)
}

/// True while nnf-sos counts `target` fenced (a response it reads as a
/// success for the node). Raises OSError when the response directory cannot
/// be read or nnf-sos's answer cannot be known (it would block on a FIFO),
/// ValueError for an unacceptable target name.
#[pyfunction]
fn is_fenced(py: Python<'_>, settings: &PySettings, target: Vec<u8>) -> PyResult<bool> {
    let target = target_text(&target)?;
    let dir = settings.inner.response_dir.clone();
    let log_dir = settings.inner.log_dir.clone();
    py.detach(move || fenced::status(&dir, &log_dir, &target))
        .map_err(io_error)
}

/// The targets nnf-sos counts fenced, each escaped to one field of one line.
#[pyfunction]
fn fenced_targets(py: Python<'_>, settings: &PySettings) -> PyResult<Vec<String>> {
    let dir = settings.inner.response_dir.clone();
    py.detach(move || fenced::fenced_targets(&dir))
        .map_err(io_error)
}

/// How an unfence ended.
#[pyclass(frozen, get_all, module = "fence_gfs2_recorder._native")]
pub struct UnfenceResult {
    /// "removed", "nothing_to_remove" or "failed".
    kind: &'static str,
    removed: Vec<String>,
    message: String,
}

/// Unfences `target`: its fenced records are copied under the log dir, then
/// removed, and the event is recorded.
#[pyfunction]
#[pyo3(signature = (settings, target, recorder_node=None))]
fn unfence(
    py: Python<'_>,
    settings: &PySettings,
    target: Vec<u8>,
    recorder_node: Option<String>,
) -> UnfenceResult {
    let s = settings.inner.clone();
    py.detach(move || {
        let journal = journal_for(&s);
        let recorder = recorder_node.unwrap_or_else(exchange::host_name);
        let outcome = journal::with_main_log(&journal, || {
            fenced::unfence(&s, &journal, &target, &recorder)
        });
        match outcome {
            UnfenceOutcome::Removed(paths) => UnfenceResult {
                kind: "removed",
                message: format!("removed {} fenced record(s)", paths.len()),
                removed: paths.iter().map(|p| path_str(p)).collect(),
            },
            UnfenceOutcome::NothingToRemove => UnfenceResult {
                kind: "nothing_to_remove",
                message: "no fenced record to remove".into(),
                removed: Vec::new(),
            },
            UnfenceOutcome::Failed(m) => UnfenceResult {
                kind: "failed",
                message: m,
                removed: Vec::new(),
            },
        }
    })
}

#[pymodule]
pub fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    let settings_error = m.py().get_type::<SettingsError>();
    settings_error.setattr("errors", PyTuple::empty(m.py()))?;
    m.add("SettingsError", settings_error)?;
    let settings = engine_settings::SETTINGS.iter().copied();
    m.add("SETTINGS", PyTuple::new(m.py(), settings)?)?;
    m.add(
        "ENVIRONMENT",
        PyTuple::new(m.py(), engine_settings::environment())?,
    )?;
    m.add_class::<PySettings>()?;
    m.add_class::<FenceResult>()?;
    m.add_class::<UnfenceResult>()?;
    m.add_function(wrap_pyfunction!(resolve_settings, m)?)?;
    m.add_function(wrap_pyfunction!(refuse, m)?)?;
    m.add_function(wrap_pyfunction!(fence, m)?)?;
    m.add_function(wrap_pyfunction!(check_directories, m)?)?;
    m.add_function(wrap_pyfunction!(run_responder, m)?)?;
    m.add_function(wrap_pyfunction!(is_fenced, m)?)?;
    m.add_function(wrap_pyfunction!(fenced_targets, m)?)?;
    m.add_function(wrap_pyfunction!(unfence, m)?)?;
    m.add_function(wrap_pyfunction!(clean_stale, m)?)?;
    m.add_function(wrap_pyfunction!(nnf_warnings, m)?)?;
    m.add_function(wrap_pyfunction!(mount_report, m)?)?;
    m.add_function(wrap_pyfunction!(discovery_check, m)?)?;
    Ok(())
}
