//! The binding layer driven from Rust through an embedded interpreter, so the
//! Python boundary is tested without the wheel.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A temporary directory holding `req` and `resp`, removed on drop (also
/// when the test fails).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("fgr-binding-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("req")).unwrap();
        std::fs::create_dir_all(p.join("resp")).unwrap();
        TempDir(p)
    }

    fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn invalid_settings_raise_a_value_error_naming_them() {
    Python::attach(|py| {
        let m = pyo3::wrap_pymodule!(fence_gfs2_recorder::python::_native)(py);
        let m = m.bind(py);
        let kwargs = PyDict::new(py);
        kwargs.set_item("fence_timeout", "abc").unwrap();
        kwargs.set_item("request_dir", "relative").unwrap();
        let err = m
            .call_method("resolve_settings", (), Some(&kwargs))
            .unwrap_err();
        assert!(err.is_instance_of::<PyValueError>(py));
        let text = err.to_string();
        assert!(text.contains("fence_timeout \"abc\""), "{text}");
        assert!(text.contains("request_dir \"relative\""), "{text}");
        let version: String = m.getattr("__version__").unwrap().extract().unwrap();
        assert_eq!(version, env!("CARGO_PKG_VERSION"));
    });
}

#[test]
fn a_fence_without_answer_is_a_typed_timeout_not_an_exception() {
    let d = TempDir::new("timeout");
    Python::attach(|py| {
        let m = pyo3::wrap_pymodule!(fence_gfs2_recorder::python::_native)(py);
        let m = m.bind(py);
        let kwargs = PyDict::new(py);
        for (k, v) in [
            ("request_dir", d.join("req")),
            ("response_dir", d.join("resp")),
            ("log_dir", d.join("log")),
        ] {
            kwargs.set_item(k, v.display().to_string()).unwrap();
        }
        kwargs.set_item("fence_timeout", "1").unwrap();
        kwargs.set_item("kubectl_path", "").unwrap();
        let settings = m
            .call_method("resolve_settings", (), Some(&kwargs))
            .unwrap();
        let target = pyo3::types::PyBytes::new(py, b"compute-node-3");
        let result = m
            .call_method1("fence", (settings.clone(), "off", target))
            .unwrap();
        let kind: String = result.getattr("kind").unwrap().extract().unwrap();
        let success: bool = result.getattr("success").unwrap().extract().unwrap();
        let elapsed: f64 = result.getattr("elapsed_ms").unwrap().extract().unwrap();
        assert_eq!(kind, "timed_out");
        assert!(!success);
        // The deadline counts from the call; the exchange starts just after it.
        assert!(elapsed >= 900.0, "{elapsed}");
        // A hostile target is refused, as a value, with nothing written.
        let bad = pyo3::types::PyBytes::new(py, b"../x\n");
        let result = m.call_method1("fence", (settings, "off", bad)).unwrap();
        let kind: String = result.getattr("kind").unwrap().extract().unwrap();
        assert_eq!(kind, "refused");
    });
    assert_eq!(std::fs::read_dir(d.join("req")).unwrap().count(), 0);
}
