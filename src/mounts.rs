//! Mounts: which file system a directory is on, from `/proc/self/mountinfo`,
//! and whether an NFS mount's options let an answer written on another host
//! be seen late.
//!
//! The Linux NFS client caches a name's absence (`lookupcache=all`, the
//! default) until the directory's attributes are revalidated, and caches
//! directory attributes and listings for `acdirmin`..`acdirmax` seconds
//! (`actimeo` sets all four attribute times; `noac` turns caching off). The
//! fence wait does not look an answer up before it can exist, but `status`,
//! `list` and `on` list the response directory, and any other tool looking
//! at the directory can pin a missing name in the cache.

use std::path::{Path, PathBuf};

/// The directory attribute cache time (s) above which a warning is given:
/// the goal is an answer seen within the poll interval plus a second.
pub const MAX_ACDIRMAX: u64 = 1;
/// The kernel's defaults when an option is not shown (nfs(5)).
const DEFAULT_ACDIRMAX: u64 = 60;

/// One line of mountinfo: where a file system is mounted and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    /// Per-mount and per-superblock options, in order.
    pub options: Vec<String>,
}

/// Undoes mountinfo's octal escapes (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(o)) = (b[i], oct) {
            let v = o.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one mountinfo line (None: not a well-formed line).
/// `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER_OPTIONS`
pub fn parse_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().position(|f| *f == "-")?;
    if sep < 6 || fields.len() < sep + 3 {
        return None;
    }
    let mut options: Vec<String> = fields[5].split(',').map(str::to_string).collect();
    if let Some(sup) = fields.get(sep + 3) {
        options.extend(sup.split(',').filter(|o| !o.is_empty()).map(str::to_string));
    }
    Some(Mount {
        mount_point: PathBuf::from(unescape(fields[4])),
        fs_type: fields[sep + 1].to_string(),
        source: unescape(fields[sep + 2]),
        options,
    })
}

/// The mount `path` is on: the longest mount point that is a prefix of it
/// (the last such line wins, as later mounts cover earlier ones).
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if path.starts_with(&m.mount_point)
            && best.is_none_or(|b| {
                m.mount_point.components().count() >= b.mount_point.components().count()
            })
        {
            best = Some(m);
        }
    }
    best
}

impl Mount {
    fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find_map(|o| o.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    }

    fn flag(&self, key: &str) -> bool {
        self.options.iter().any(|o| o == key)
    }

    pub fn is_nfs(&self) -> bool {
        self.fs_type == "nfs" || self.fs_type == "nfs4"
    }

    /// Why answers written on another host may be seen late on this mount
    /// (empty: no reason, or not NFS).
    pub fn late_answer_reasons(&self) -> Vec<String> {
        if !self.is_nfs() {
            return Vec::new();
        }
        let mut why = Vec::new();
        match self.option("lookupcache") {
            Some("none" | "pos" | "positive") => {}
            shown => why.push(format!(
                "lookupcache={} keeps a name looked up before its file existed missing",
                shown.unwrap_or("all")
            )),
        }
        if !self.flag("noac") {
            let secs = |k: &str| self.option(k).and_then(|v| v.parse::<u64>().ok());
            let acdirmax = secs("acdirmax")
                .or_else(|| secs("actimeo"))
                .unwrap_or(DEFAULT_ACDIRMAX);
            if acdirmax > MAX_ACDIRMAX {
                why.push(format!(
                    "directory attributes and listings are cached up to {acdirmax} s (acdirmax)"
                ));
            }
        }
        if self.flag("nocto") {
            why.push("nocto: opening a file does not revalidate it".into());
        }
        why
    }
}

/// What monitor and validate-all say about one directory's file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMount {
    /// A line naming the directory and its file system type and source.
    pub description: String,
    /// Set when the mount's options let answers be seen late.
    pub warning: Option<String>,
}

/// Describes the file system `dir` is on, given mountinfo's text.
pub fn describe(mountinfo: &str, role: &str, dir: &Path) -> Option<DirMount> {
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(parse_line).collect();
    let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let m = mount_of(&mounts, &real)?;
    let description = format!(
        "{role} directory {} is on {} ({} mounted on {})",
        dir.display(),
        m.fs_type,
        m.source,
        m.mount_point.display()
    );
    let reasons = m.late_answer_reasons();
    let warning = (!reasons.is_empty()).then(|| {
        format!(
            "{role} directory {} is on an NFS mount ({}) whose options let answers written on \
             another host be seen late: {}; mount it with lookupcache=positive,acdirmax=1 \
             (or actimeo=1, or noac)",
            dir.display(),
            m.source,
            reasons.join("; ")
        )
    });
    Some(DirMount {
        description,
        warning,
    })
}

/// [`describe`] against this process's `/proc/self/mountinfo` (None when it
/// cannot be read or names no mount for `dir`).
pub fn describe_dir(role: &str, dir: &Path) -> Option<DirMount> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    describe(&text, role, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
40 27 0:45 / /localdisk rw,relatime shared:20 - nfs4 rabbit:/export rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.2,local_lock=none,addr=10.0.0.1
41 27 0:46 / /srv/good rw,relatime - nfs rabbit:/good rw,vers=3,acregmin=1,acregmax=1,acdirmin=1,acdirmax=1,hard,lookupcache=pos,proto=tcp
42 27 0:47 / /srv/none rw,relatime - nfs4 rabbit:/none rw,vers=4.1,noac,lookupcache=none
43 27 0:48 / /srv/actimeo rw,relatime - nfs rabbit:/a rw,vers=3,actimeo=30,lookupcache=positive
44 27 0:49 / /srv/with\\040space rw,nosuid - fuse.bindfs /store rw,user_id=0,group_id=0
45 27 0:50 / /srv/nocto rw - nfs4 rabbit:/n rw,vers=4.2,lookupcache=pos,acdirmax=1,nocto
";

    fn mounts() -> Vec<Mount> {
        SAMPLE.lines().filter_map(parse_line).collect()
    }

    #[test]
    fn lines_are_parsed_with_escapes_and_optional_fields() {
        let m = mounts();
        assert_eq!(m.len(), 8);
        assert_eq!(m[1].mount_point, Path::new("/"));
        assert_eq!(m[1].fs_type, "ext4");
        assert_eq!(m[2].fs_type, "nfs4");
        assert_eq!(m[2].source, "rabbit:/export");
        assert!(m[2].options.contains(&"vers=4.2".to_string()));
        assert_eq!(m[6].mount_point, Path::new("/srv/with space"));
        assert_eq!(m[6].fs_type, "fuse.bindfs");
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(parse_line("1 2 3 4 5 - x"), None);
    }

    #[test]
    fn the_longest_mount_point_wins() {
        let m = mounts();
        let at = |p: &str| mount_of(&m, Path::new(p)).unwrap().fs_type.clone();
        assert_eq!(at("/localdisk/fence-recorder/requests"), "nfs4");
        assert_eq!(at("/var/log"), "ext4");
        assert_eq!(at("/srv/with space/x"), "fuse.bindfs");
        // A prefix of a name is not its mount.
        assert_eq!(at("/srv/goodness"), "ext4");
    }

    #[test]
    fn nfs_defaults_are_warned_about_and_safe_options_are_not() {
        let m = mounts();
        let why = |p: &str| mount_of(&m, Path::new(p)).unwrap().late_answer_reasons();
        let defaults = why("/localdisk/r");
        assert_eq!(defaults.len(), 2, "{defaults:?}");
        assert!(defaults[0].contains("lookupcache=all"), "{defaults:?}");
        assert!(defaults[1].contains("60 s"), "{defaults:?}");
        assert!(why("/srv/good/r").is_empty());
        assert!(why("/srv/none/r").is_empty());
        let actimeo = why("/srv/actimeo/r");
        assert_eq!(actimeo.len(), 1, "{actimeo:?}");
        assert!(actimeo[0].contains("30 s"), "{actimeo:?}");
        let nocto = why("/srv/nocto/r");
        assert_eq!(nocto.len(), 1, "{nocto:?}");
        assert!(nocto[0].contains("nocto"), "{nocto:?}");
        // Not NFS: nothing to say about its options.
        assert!(why("/srv/with space/r").is_empty());
        assert!(why("/var/log").is_empty());
    }

    #[test]
    fn descriptions_name_the_directory_and_type() {
        let d = describe(
            SAMPLE,
            "request",
            Path::new("/localdisk/none-such/requests"),
        )
        .unwrap();
        assert!(
            d.description
                .contains("request directory /localdisk/none-such/requests is on nfs4"),
            "{}",
            d.description
        );
        let w = d.warning.unwrap();
        assert!(w.contains("/localdisk/none-such/requests") && w.contains("lookupcache"));
        let ok = describe(SAMPLE, "response", Path::new("/srv/good/responses")).unwrap();
        assert!(ok.description.contains("is on nfs"), "{}", ok.description);
        assert_eq!(ok.warning, None);
        assert_eq!(describe("", "request", Path::new("/x")), None);
    }

    #[test]
    fn this_machine_has_a_root_mount() {
        let d = describe_dir("log", Path::new("/")).unwrap();
        assert!(d.description.starts_with("log directory / is on "));
    }
}
