//! Health: whether the agent can do its job, as `monitor` and
//! `validate-all` ask: the directories exist (or can be created), are
//! directories, are readable and writable, and their file system has room;
//! a request can be written (monitor writes a probe); nobody else could
//! change them and they are two (`trust`, which fences and unfences refuse
//! too); and the clean-up of what killed agents left behind, which monitor
//! runs.

use std::fs;
use std::io;
use std::path::Path;

use tracing::{error, info, warn};

use crate::discovery;
use crate::journal::Journal;
use crate::mounts::{self, DirMount};
use crate::settings::Settings;
use crate::spool;
use crate::trust;

/// Every problem that stops the agent from working (empty: none). With
/// `create` (monitor), missing directories are created first; without it
/// (validate-all) nothing is changed, and a log directory that can still be
/// created is fine, since the journal creates it on first write.
pub fn problems(s: &Settings, create: bool) -> Vec<String> {
    let mut found: Vec<String> = [&s.request_dir, &s.response_dir]
        .into_iter()
        .filter_map(|d| directory_problem(d, create).or_else(|| space_problem(d)))
        .collect();
    if create && found.is_empty() {
        found.extend(request_write_problem(&s.request_dir));
    }
    let log = if create {
        directory_problem(&s.log_dir, true)
    } else {
        log_dir_problem(&s.log_dir)
    };
    found.extend(log);
    found.extend(log_file_problems(s));
    // What a fence or an unfence refuses: monitor fails on it too.
    found.extend(trust::spool_problems(s));
    found
}

/// Log names holding something that is not a regular file (a FIFO, device,
/// socket, directory or symlink): the journal refuses them without blocking,
/// so those records are not kept; monitor and validate-all name the path.
pub fn log_file_problems(s: &Settings) -> Vec<String> {
    let journal = Journal::new(&s.log_dir, &s.main_log, s.log_mode);
    [
        journal.main_log().to_path_buf(),
        journal.readable_log(),
        journal.detailed_log(),
        s.log_dir.join(crate::journal::ROTATION_LOCK_NAME),
    ]
    .iter()
    .filter_map(|p| {
        let meta = fs::symlink_metadata(p).ok()?;
        crate::journal::not_a_log(&meta.file_type()).map(|what| {
            format!(
                "log file {} is {what}, not a regular file: only regular files are logs, \
                 so nothing is recorded there",
                p.display()
            )
        })
    })
    .collect()
}

/// What `monitor` and `validate-all` know of GFS2 discovery, which alone
/// can refuse a "nothing found" answer for a node whose storage is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryCheck {
    /// kubectl lists the NnfNodeBlockStorages with this kubeconfig.
    Lists(String),
    /// Switched off on purpose (`kubectl_path` empty or `off`): a warning.
    Off(String),
    /// Switched on but cannot list them: a fence could not check an answer.
    Fails(String),
}

/// Runs discovery's kubectl once, as a fence would (same kubeconfig, same
/// time limit), and says whether it can list the NnfNodeBlockStorages.
pub fn discovery_check(s: &Settings) -> DiscoveryCheck {
    let Some(kubectl) = s.kubectl_path.as_deref() else {
        return DiscoveryCheck::Off(format!(
            "{}: a \"{}\" answer is taken as fenced without checking whether this rabbit \
             holds the node's GFS2 storage",
            discovery::SWITCHED_OFF,
            crate::exchange::NOTHING_FOUND
        ));
    };
    let config = s.kubeconfig.as_deref();
    match discovery::probe(Some(kubectl), config, s.discovery_timeout) {
        Ok(()) => DiscoveryCheck::Lists(format!(
            "GFS2 discovery: {} lists NnfNodeBlockStorages with kubeconfig {}",
            kubectl.display(),
            config.map(|c| c.display().to_string()).unwrap_or_default()
        )),
        Err(why) => DiscoveryCheck::Fails(format!(
            "GFS2 discovery is on but cannot list NnfNodeBlockStorages ({why}): a \"{}\" \
             answer for a node whose storage is on this rabbit would be taken as fenced; \
             set kubeconfig (and kubectl_path) so that kubectl can list them, or set \
             kubectl_path=off to switch discovery off",
            crate::exchange::NOTHING_FOUND
        )),
    }
}

/// The file system each shared directory is on, with a warning for an NFS
/// mount whose options let answers be seen late (see `mounts`).
pub fn mount_report(s: &Settings) -> Vec<DirMount> {
    [("request", &s.request_dir), ("response", &s.response_dir)]
        .into_iter()
        .filter_map(|(role, dir)| mounts::describe_dir(role, dir))
        .collect()
}

/// Removes requests and dot-temps that agents killed by Pacemaker left behind
/// (older than `stale_age` and owned by no running agent, so never an attempt
/// in flight, even after a clock step), saying so in the main log. Returns
/// the problems met.
pub fn remove_leftovers(s: &Settings) -> Vec<String> {
    let done = spool::clean_stale(&s.request_dir, s.stale_age);
    for p in &done.removed {
        warn!("Removed stale request file {}", p.display());
    }
    for p in &done.owned {
        info!(
            "Left request file {}: older than stale_age by its time stamp, but a running agent owns it",
            p.display()
        );
    }
    if let Some(note) = &done.by_age_alone {
        warn!("{note}");
    }
    for p in &done.problems {
        error!("{p}");
    }
    done.problems
}

/// Why the log directory cannot be used (None: it can). A missing one is
/// fine when it can be created: the journal creates it on first write.
pub fn log_dir_problem(dir: &Path) -> Option<String> {
    if fs::symlink_metadata(dir).is_ok() {
        return directory_problem(dir, false);
    }
    let mut parent = dir.parent();
    while let Some(p) = parent {
        if fs::symlink_metadata(p).is_ok() {
            return directory_problem(p, false)
                .map(|why| format!("log directory {} cannot be created: {why}", dir.display()));
        }
        parent = p.parent();
    }
    Some(format!("log directory {} cannot be created", dir.display()))
}

/// Why `dir` is not a usable directory (None: it is). With `create`, a
/// missing directory is created first.
pub fn directory_problem(dir: &Path, create: bool) -> Option<String> {
    use std::os::unix::fs::DirBuilderExt;
    let exists = fs::symlink_metadata(dir).is_ok();
    if create && !exists {
        if let Err(e) = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
        {
            return Some(format!("cannot create directory {}: {e}", dir.display()));
        }
    }
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Some(format!("directory {} does not exist", dir.display()))
        }
        Err(e) => Some(format!("cannot examine directory {}: {e}", dir.display())),
        Ok(m) if m.file_type().is_symlink() => match fs::metadata(dir) {
            Ok(t) if t.is_dir() => access_problem(dir),
            _ => Some(format!("{} is not a directory", dir.display())),
        },
        Ok(m) if !m.is_dir() => Some(format!("{} is not a directory", dir.display())),
        Ok(_) => access_problem(dir),
    }
}

fn access_problem(dir: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK | libc::X_OK) };
    if rc == 0 {
        None
    } else {
        Some(format!(
            "directory {} is not readable and writable: {}",
            dir.display(),
            io::Error::last_os_error()
        ))
    }
}

/// Why a fence could not publish a request in `dir` (None: it could): a
/// probe file goes through the steps of a request (created exclusively
/// without following links, written, synced, renamed, the directory synced)
/// under dot-names nnf-sos and the clean-up ignore, and is removed. Its lock
/// is tried too, and a refusal only noted: the fence does not depend on it.
/// Opens of the probe are not watched: nobody else reads it.
pub fn request_write_problem(dir: &Path) -> Option<String> {
    let name = format!(".monitor-probe-{}.tmp", uuid::Uuid::new_v4());
    let probe = match spool::publish_unwatched(dir, &name, b"{}\n", 0o600) {
        Ok(p) => p,
        Err(e) => {
            return Some(format!(
                "a fence could not write its request in {}: {e}",
                dir.display()
            ))
        }
    };
    if let Some(e) = &probe.unmarked {
        warn!(
            "{} refuses file locks ({e}): fences work, and monitor tells a leftover request \
             from one in flight by its age alone (stale_age)",
            dir.display()
        );
    }
    // A failed directory sync does not stop a fence either (the request is
    // out): only what would is a problem.
    fs::remove_file(&probe.path).err().map(|e| {
        format!(
            "cannot remove the probe {} after writing it: {e}",
            probe.path.display()
        )
    })
}

/// Why nothing can be written in `dir` (None: there is room, or it cannot
/// be told): a file system without a free block or inode fails every request.
pub fn space_problem(dir: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path; st is a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    if st.f_bavail == 0 || (st.f_files > 0 && st.f_favail == 0) {
        Some(format!(
            "directory {} is on a full file system (no free block or inode)",
            dir.display()
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{mkfifo, Dirs};

    /// The three directories in `a/`, none of them made.
    fn dirs() -> Dirs {
        Dirs::named_under("health", "a")
    }

    #[test]
    fn validate_changes_nothing_and_monitor_creates() {
        let d = dirs();
        let s = d.settings();
        let found = problems(&s, false);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("a/req") && found[1].contains("a/resp"));
        assert!(!d.path().join("a").exists());
        assert!(problems(&s, true).is_empty());
        assert!(s.request_dir.is_dir() && s.response_dir.is_dir() && s.log_dir.is_dir());
    }

    #[test]
    fn a_fifo_at_a_log_name_is_named() {
        let d = dirs();
        let s = d.settings();
        assert!(problems(&s, true).is_empty());
        let fifo = s.log_dir.join(crate::journal::DETAILED_LOG_NAME);
        mkfifo(&fifo, 0o600);
        for create in [true, false] {
            let found = problems(&s, create);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(
                found[0].contains(&format!("{} is a FIFO", fifo.display())),
                "{found:?}"
            );
        }
    }

    #[test]
    fn directories_others_could_change_fail_monitor_naming_them() {
        use std::os::unix::fs::PermissionsExt;
        let d = dirs();
        let s = d.settings();
        assert!(problems(&s, true).is_empty());
        let parent = d.path().join("a");
        for (dir, mode) in [
            (&s.response_dir, 0o777),
            (&s.request_dir, 0o775),
            (&s.log_dir, 0o1777),
            (&parent, 0o757),
        ] {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).unwrap();
            for create in [true, false] {
                let found = problems(&s, create);
                assert!(!found.is_empty(), "{mode:o}");
                for f in &found {
                    assert!(
                        f.contains(&dir.display().to_string())
                            && f.contains("writable by group or others"),
                        "{mode:o}: {found:?}"
                    );
                }
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::lchown(&s.response_dir, Some(65534), None).unwrap();
        let found = problems(&s, true);
        assert!(
            found.len() == 1 && found[0].contains("owned by uid 65534"),
            "{found:?}"
        );
    }

    #[test]
    fn the_response_directory_as_the_request_directory_fails_monitor() {
        let d = dirs();
        let mut s = d.settings();
        assert!(problems(&s, true).is_empty());
        let link = d.path().join("a").join("resp-link");
        std::os::unix::fs::symlink(&s.request_dir, &link).unwrap();
        let dotdot = d.path().join("a").join("log").join("..").join("req");
        for response_dir in [link, dotdot] {
            s.response_dir = response_dir;
            for create in [true, false] {
                let found = problems(&s, create);
                assert_eq!(found.len(), 1, "{found:?}");
                assert!(found[0].contains("same directory"), "{found:?}");
            }
        }
    }

    #[test]
    fn a_file_where_a_directory_belongs_is_named() {
        let d = dirs();
        let s = d.settings();
        fs::create_dir_all(d.path().join("a")).unwrap();
        fs::write(&s.request_dir, "").unwrap();
        let found = problems(&s, true);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("is not a directory"), "{found:?}");
    }
}
