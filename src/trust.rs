//! Trust: whether anyone but root (or the agent's own user) could change
//! what a path leads to, and whether the spool directories are what their
//! names say.
//!
//! The rule, for NNF's shared `config.py` and for the request, response and
//! log directories alike: every entry from `/` down, both as named and as
//! resolved (every symbolic link on the way included), is owned by an
//! accepted user and is not writable by group or others. A sticky directory
//! above (such as `/tmp`) is accepted: nobody else may rename or remove our
//! entries in it. The spool directories themselves get no such exemption:
//! a sticky directory still lets anyone add entries, and an answer, a fenced
//! record or a FIFO planted in the response directory would decide a fence
//! or block an unfence. A directory that does not exist yet is judged by the
//! one it would be created in.
//!
//! The request and response directories must also be two directories: under
//! two spellings of one (a symbolic link, a path through `..`), the agent
//! would read its own requests as answers, and monitor's clean-up would take
//! fenced records for stale requests.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::settings::Settings;

/// Whose entries are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// Root alone (NNF's shared config: only root configures the agent).
    Root,
    /// Root, or the user the agent runs as (the spool directories).
    RootOrAgent,
}

impl Owners {
    fn agent_uid() -> u32 {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() }
    }

    fn accepts(self, uid: u32) -> bool {
        uid == 0 || (self == Owners::RootOrAgent && uid == Self::agent_uid())
    }

    fn described(self) -> String {
        match self {
            Owners::RootOrAgent if Self::agent_uid() != 0 => {
                format!("root or uid {} (the agent's user)", Self::agent_uid())
            }
            _ => "root".into(),
        }
    }
}

/// Why `meta` (of `p`) lets someone else change what is under it (None: it
/// does not). `strict`: the directory the agent reads and writes entries of,
/// where a sticky bit does not help.
pub fn entry_problem(
    p: &Path,
    meta: &fs::Metadata,
    owners: Owners,
    strict: bool,
) -> Option<String> {
    if !owners.accepts(meta.uid()) {
        return Some(format!(
            "{} is owned by uid {}, not {}",
            p.display(),
            meta.uid(),
            owners.described()
        ));
    }
    let mode = meta.mode() & 0o7777;
    let sticky_dir = meta.is_dir() && mode & 0o1000 != 0 && !strict;
    if !meta.file_type().is_symlink() && mode & 0o022 != 0 && !sticky_dir {
        return Some(format!(
            "{} is writable by group or others (mode {:04o})",
            p.display(),
            mode
        ));
    }
    None
}

/// Checks every entry from `/` down to `path`, both as named and as
/// resolved; the last one `strict` if asked.
fn chain_problem(path: &Path, owners: Owners, strict_last: bool) -> Option<String> {
    let canonical = match fs::canonicalize(path) {
        Ok(c) => c,
        Err(e) => return Some(format!("cannot resolve {}: {e}", path.display())),
    };
    for p in [path, canonical.as_path()] {
        let count = p.components().count();
        let mut prefix = PathBuf::new();
        for (i, component) in p.components().enumerate() {
            prefix.push(component);
            let meta = match fs::symlink_metadata(&prefix) {
                Ok(m) => m,
                Err(e) => return Some(format!("cannot examine {}: {e}", prefix.display())),
            };
            let strict = strict_last && i + 1 == count;
            if let Some(why) = entry_problem(&prefix, &meta, owners, strict) {
                return Some(why);
            }
        }
    }
    None
}

/// Why someone other than `owners` could change the file at `path` (None:
/// nobody can).
pub fn file_problem(path: &Path, owners: Owners) -> Option<String> {
    chain_problem(path, owners, false)
}

/// Why someone other than root or the agent's user could add, replace or
/// remove entries of the directory `dir` (None: nobody can). A missing
/// directory is judged by the nearest existing one above it, where it would
/// be created.
pub fn dir_problem(dir: &Path) -> Option<String> {
    let mut at = dir;
    loop {
        match fs::symlink_metadata(at) {
            Ok(_) => return chain_problem(at, Owners::RootOrAgent, true),
            // Missing, or under a file: whether it can be made is not ours
            // to judge; where it would be is.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                match at.parent() {
                    Some(up) if !up.as_os_str().is_empty() => at = up,
                    _ => return None,
                }
            }
            Err(e) => return Some(format!("cannot examine {}: {e}", at.display())),
        }
    }
}

/// Every reason the agent must not fence or unfence through the configured
/// directories, each naming the directory (empty: none): one someone else
/// could change, or one directory named as both request and response
/// directory.
pub fn spool_problems(s: &Settings) -> Vec<String> {
    let mut found: Vec<String> = [
        ("request", &s.request_dir),
        ("response", &s.response_dir),
        ("log", &s.log_dir),
    ]
    .into_iter()
    .filter_map(|(role, dir)| {
        dir_problem(dir).map(|why| {
            format!(
                "{role} directory {} refused: someone other than {} could change it ({why})",
                dir.display(),
                Owners::RootOrAgent.described()
            )
        })
    })
    .collect();
    found.extend(same_directory(&s.request_dir, &s.response_dir));
    found
}

/// Says so when `request` and `response` lead to one directory.
pub fn same_directory(request: &Path, response: &Path) -> Option<String> {
    let (a, b) = (fs::metadata(request).ok()?, fs::metadata(response).ok()?);
    (a.dev() == b.dev() && a.ino() == b.ino()).then(|| {
        format!(
            "response directory {} and request directory {} are the same directory \
             (device {}, inode {}): the agent would read its own requests as answers, and \
             monitor would remove fenced records as stale requests",
            response.display(),
            request.display(),
            a.dev(),
            a.ino()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_sticky_directory_is_fine_above_but_not_as_the_spool() {
        let d = TempDir::new("trust");
        let dir = d.path().join("spool");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(dir_problem(&dir), None);
        // Not made yet: judged by where it would be made.
        assert_eq!(dir_problem(&dir.join("a").join("b")), None);
        let err = dir_problem(&d.path().join("missing")).unwrap();
        assert!(err.contains("mode 1777"), "{err}");
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(file_problem(&dir, Owners::Root), None);
    }
}
