//! nvmet: detaching and re-attaching a compute's storage in the Linux NVMe
//! target (configfs), for the responder's `detach` mode in a lab.
//!
//! A compute's subsystem is named from a template holding `{target}`. A
//! detach writes `0` to the `enable` of every namespace of that subsystem
//! and reads it back; an attach writes `1`. Disabling the namespace is what
//! stops the compute's writes at once (its next write fails, its device
//! goes away). Removing the host from `allowed_hosts` is only checked at
//! connect, and unlinking the subsystem from its port leaves the writes
//! queued on the compute, to complete when the link comes back: neither is a
//! fence.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where the kernel's NVMe target is configured.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/nvmet";
/// What a subsystem name template must hold.
pub const TARGET_FIELD: &str = "{target}";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nvmet {
    /// The nvmet configfs directory (`DEFAULT_ROOT`).
    pub root: PathBuf,
    /// The subsystem NQN of a compute, `{target}` standing for its name.
    pub subsystem: String,
}

impl Nvmet {
    /// Checks the template; the root is checked when it is used.
    pub fn new(root: impl Into<PathBuf>, subsystem: &str) -> Result<Nvmet, String> {
        if !subsystem.contains(TARGET_FIELD) {
            return Err(format!(
                "invalid nvmet subsystem template {subsystem:?}: it must contain {TARGET_FIELD}"
            ));
        }
        Ok(Nvmet {
            root: root.into(),
            subsystem: subsystem.to_string(),
        })
    }

    /// The subsystem NQN of `target`.
    pub fn subsystem_of(&self, target: &str) -> String {
        self.subsystem.replace(TARGET_FIELD, target)
    }

    fn namespaces(&self, target: &str) -> io::Result<Vec<PathBuf>> {
        // Target names are host names (the agent refuses others), so the
        // NQN cannot climb out of the subsystems directory; refuse anyway.
        if target.is_empty() || target.contains('/') || target.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing target name {target:?}"),
            ));
        }
        let dir = self
            .root
            .join("subsystems")
            .join(self.subsystem_of(target))
            .join("namespaces");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir)? {
            out.push(e?.path());
        }
        out.sort();
        if out.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} holds no namespace", dir.display()),
            ));
        }
        Ok(out)
    }

    /// Disables (`attached` false) or enables every namespace of `target`'s
    /// subsystem, and checks that each reads back as asked. Gives the number
    /// of namespaces; `NotFound` when the subsystem does not exist.
    pub fn set_attached(&self, target: &str, attached: bool) -> io::Result<usize> {
        let want = if attached { "1" } else { "0" };
        let namespaces = self.namespaces(target)?;
        for ns in &namespaces {
            write_attr(&ns.join("enable"), want)?;
        }
        for ns in &namespaces {
            let got = fs::read_to_string(ns.join("enable"))?;
            if got.trim() != want {
                return Err(io::Error::other(format!(
                    "{} reads {:?} after writing {want}",
                    ns.join("enable").display(),
                    got.trim()
                )));
            }
        }
        Ok(namespaces.len())
    }
}

/// One write of the whole value, as configfs wants it.
fn write_attr(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(value.as_bytes())
        .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::TempDir;

    pub const TEMPLATE: &str = "nqn.2024-01.io.nnf:rabbit:{target}";

    /// A configfs-like tree (plain files) with `namespaces` enabled
    /// namespaces in each named target's subsystem.
    pub fn fake_nvmet(targets: &[&str], namespaces: usize) -> (TempDir, Nvmet) {
        let d = TempDir::new("nvmet");
        let n = Nvmet::new(d.path(), TEMPLATE).unwrap();
        for t in targets {
            for i in 1..=namespaces {
                let ns = d
                    .path()
                    .join("subsystems")
                    .join(n.subsystem_of(t))
                    .join("namespaces")
                    .join(i.to_string());
                fs::create_dir_all(&ns).unwrap();
                fs::write(ns.join("enable"), "1\n").unwrap();
            }
        }
        (d, n)
    }

    pub fn enabled(d: &TempDir, n: &Nvmet, target: &str) -> Vec<String> {
        let dir = d
            .path()
            .join("subsystems")
            .join(n.subsystem_of(target))
            .join("namespaces");
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                fs::read_to_string(e.unwrap().path().join("enable"))
                    .unwrap()
                    .trim()
                    .to_string()
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn detach_disables_every_namespace_of_the_target_only() {
        let (d, n) = fake_nvmet(&["c1", "c2"], 2);
        assert_eq!(n.set_attached("c2", false).unwrap(), 2);
        assert_eq!(enabled(&d, &n, "c2"), ["0", "0"]);
        assert_eq!(enabled(&d, &n, "c1"), ["1", "1"]);
        assert_eq!(n.set_attached("c2", true).unwrap(), 2);
        assert_eq!(enabled(&d, &n, "c2"), ["1", "1"]);
    }

    #[test]
    fn an_unknown_target_is_not_found() {
        let (_d, n) = fake_nvmet(&["c1"], 1);
        let e = n.set_attached("c9", false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn names_that_could_leave_the_tree_are_refused() {
        let (_d, n) = fake_nvmet(&["c1"], 1);
        for bad in ["", "../c1", ".."] {
            let e = n.set_attached(bad, false).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn a_template_without_the_target_is_refused() {
        let e = Nvmet::new(DEFAULT_ROOT, "nqn.2024-01.io.nnf:rabbit").unwrap_err();
        assert!(e.contains("{target}"), "{e}");
    }
}
