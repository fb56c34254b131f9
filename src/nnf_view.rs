//! nnf-sos's own view of the spool directories: which files it counts as
//! "this node is fenced", and which requests it would still act on.
//!
//! The agent's fence decision is strict (`protocol::read_response`). This
//! module is the opposite: it reproduces what the storage side itself
//! believes, so that `status`, `list` and `on` agree with it. nnf-sos reads
//! the response directory in two places:
//!
//! - the block storage reconciler (`checkComputeFenced`) will not re-create a
//!   node's GFS2 storage groups while a response has `target_node` equal to
//!   the node and `success` true;
//! - the node reconciler (`checkFencedStatus`) shows a node as fenced while a
//!   response has `success` true or `status` `"success"`.
//!
//! Both list the directory, take every entry that is not a directory and
//! whose name ends in `.json` (dot-names included), read it whole (following
//! symbolic links, with no size limit) and decode it with Go's
//! `encoding/json` into a small struct. A file that cannot be read or decoded
//! is passed over. The decoder below follows Go's rules: the whole input must
//! be valid JSON (nesting up to 10,000 levels), object keys match a field
//! exactly or else case-insensitively under Unicode simple folding (so
//! `Success`, `SUCCESS` and `ſuccess` all set `success`), a later key
//! overwrites an earlier one, invalid UTF-8 becomes U+FFFD instead of an
//! error, `null` leaves a field unchanged, and a value of the wrong type for
//! a field makes the whole decode fail (the struct with `status` then fails
//! where the one without it does not).
//!
//! Reading never blocks: FIFOs and devices (on which nnf-sos itself would
//! block or read without end) are reported as such and never read. Nor does
//! it read past its verdict: a file that is not JSON from its first bytes is
//! judged on them, however large it is.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Go's `encoding/json` nesting limit (`maxNestingDepth`).
pub const MAX_DEPTH: usize = 10_000;
/// Longest string value kept for a field; a longer one never equals a node
/// name (at most 253 bytes) and is shown cut.
const STRING_CAP: usize = 4096;
/// Longest object key kept: every field name is shorter.
const KEY_CAP: usize = 64;
/// How much of a file is kept for the record of its removal.
pub const HEAD_CAP: usize = 64 * 1024;

/// The Go type of a struct field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
}

/// A decoded field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Str { text: String, cut: bool },
    Bool(bool),
}

/// What `json.Unmarshal` left in a struct with the given fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fields {
    /// Per field: the value set last (None: never set, Go's zero value).
    pub values: Vec<Option<Val>>,
    /// Per field: the first type mismatch met for it.
    pub errors: Vec<Option<String>>,
    /// The top-level value is not an object (nor `null`).
    pub top_error: Option<String>,
}

impl Fields {
    fn new(n: usize) -> Fields {
        Fields {
            values: vec![None; n],
            errors: vec![None; n],
            top_error: None,
        }
    }

    /// The error `json.Unmarshal` returns for a struct made of the fields
    /// in `which` (by index), if any.
    pub fn error_for(&self, which: &[usize]) -> Option<&str> {
        self.top_error
            .as_deref()
            .or_else(|| which.iter().find_map(|&i| self.errors[i].as_deref()))
    }

    /// The Go string value of field `i` ("" when unset); `cut` when longer
    /// than kept.
    pub fn text(&self, i: usize) -> (&str, bool) {
        match &self.values[i] {
            Some(Val::Str { text, cut }) => (text, *cut),
            _ => ("", false),
        }
    }

    pub fn flag(&self, i: usize) -> bool {
        matches!(self.values[i], Some(Val::Bool(true)))
    }
}

/// Why the input is not JSON to Go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    /// The input ended early (empty or cut short: maybe still being written).
    pub at_end: bool,
    /// The fields decoded before the error (to tell whose a partial file is).
    pub partial: Fields,
}

#[derive(Debug)]
enum Stop {
    Io(io::Error),
    Syntax(String),
    End,
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        Stop::Io(e)
    }
}

type Res<T> = Result<T, Stop>;

/// A byte source with one byte of look-ahead, keeping the first `head_cap`
/// bytes it reads.
struct Src<R> {
    r: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    head: Vec<u8>,
    head_cap: usize,
}

impl<R: Read> Src<R> {
    fn new(r: R, head_cap: usize) -> Self {
        Src {
            r,
            buf: vec![0; 16 * 1024],
            pos: 0,
            len: 0,
            head: Vec::new(),
            head_cap,
        }
    }

    fn fill(&mut self) -> io::Result<bool> {
        if self.pos < self.len {
            return Ok(true);
        }
        loop {
            match self.r.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                    let room = self.head_cap.saturating_sub(self.head.len());
                    self.head.extend_from_slice(&self.buf[..n.min(room)]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn peek(&mut self) -> Res<Option<u8>> {
        Ok(if self.fill()? {
            Some(self.buf[self.pos])
        } else {
            None
        })
    }

    fn next(&mut self) -> Res<u8> {
        match self.peek()? {
            Some(b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(Stop::End),
        }
    }

    fn skip_ws(&mut self) -> Res<Option<u8>> {
        loop {
            match self.peek()? {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.pos += 1,
                other => return Ok(other),
            }
        }
    }

    fn next_non_ws(&mut self) -> Res<u8> {
        self.skip_ws()?;
        self.next()
    }
}

fn bad(c: u8, context: &str) -> Stop {
    Stop::Syntax(format!("invalid character {:?} {context}", c as char))
}

/// A string being decoded: at most `cap` bytes are kept.
struct Out {
    s: String,
    cap: usize,
    cut: bool,
}

impl Out {
    fn push(&mut self, c: char) {
        if self.s.len() + c.len_utf8() > self.cap {
            self.cut = true;
        } else {
            self.s.push(c);
        }
    }
}

fn hex4<R: Read>(src: &mut Src<R>) -> Res<u32> {
    let mut v = 0u32;
    for _ in 0..4 {
        let c = src.next()?;
        let d = (c as char)
            .to_digit(16)
            .ok_or_else(|| bad(c, "in \\u hexadecimal character escape"))?;
        v = v * 16 + d;
    }
    Ok(v)
}

/// The bytes a UTF-8 sequence led by `lead` may continue with, per position
/// (Go's `utf8.DecodeRune` accepts exactly these).
fn continuation_ranges(lead: u8) -> Option<&'static [(u8, u8)]> {
    const C: (u8, u8) = (0x80, 0xBF);
    Some(match lead {
        0xC2..=0xDF => &[C],
        0xE0 => &[(0xA0, 0xBF), C],
        0xE1..=0xEC | 0xEE..=0xEF => &[C, C],
        0xED => &[(0x80, 0x9F), C],
        0xF0 => &[(0x90, 0xBF), C, C],
        0xF1..=0xF3 => &[C, C, C],
        0xF4 => &[(0x80, 0x8F), C, C],
        _ => return None,
    })
}

/// Decodes a JSON string (the opening quote already read) as Go does:
/// escapes resolved, an unpaired surrogate and every byte of invalid UTF-8
/// become U+FFFD.
fn read_string<R: Read>(src: &mut Src<R>, cap: usize) -> Res<(String, bool)> {
    let mut out = Out {
        s: String::new(),
        cap,
        cut: false,
    };
    let mut pending: Option<u32> = None;
    loop {
        let c = src.next()?;
        if c == b'\\' {
            let e = src.next()?;
            let simple = match e {
                b'"' => Some('"'),
                b'\\' => Some('\\'),
                b'/' => Some('/'),
                b'b' => Some('\u{8}'),
                b'f' => Some('\u{c}'),
                b'n' => Some('\n'),
                b'r' => Some('\r'),
                b't' => Some('\t'),
                b'u' => None,
                other => return Err(bad(other, "in string escape code")),
            };
            if let Some(ch) = simple {
                if pending.take().is_some() {
                    out.push('\u{FFFD}');
                }
                out.push(ch);
                continue;
            }
            let u = hex4(src)?;
            if let Some(hi) = pending.take() {
                if (0xD800..0xDC00).contains(&hi) && (0xDC00..0xE000).contains(&u) {
                    let cp = 0x10000 + ((hi - 0xD800) << 10) + (u - 0xDC00);
                    out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                    continue;
                }
                out.push('\u{FFFD}');
            }
            if (0xD800..0xE000).contains(&u) {
                pending = Some(u);
            } else {
                out.push(char::from_u32(u).unwrap_or('\u{FFFD}'));
            }
            continue;
        }
        if pending.take().is_some() {
            out.push('\u{FFFD}');
        }
        match c {
            b'"' => return Ok((out.s, out.cut)),
            0..=0x1F => return Err(bad(c, "in string literal")),
            0x20..=0x7F => out.push(c as char),
            lead => {
                let Some(ranges) = continuation_ranges(lead) else {
                    out.push('\u{FFFD}');
                    continue;
                };
                let mut seq = vec![lead];
                for &(lo, hi) in ranges {
                    match src.peek()? {
                        Some(b) if (lo..=hi).contains(&b) => {
                            src.pos += 1;
                            seq.push(b);
                        }
                        _ => break,
                    }
                }
                if seq.len() == ranges.len() + 1 {
                    let s = std::str::from_utf8(&seq).expect("checked above");
                    for ch in s.chars() {
                        out.push(ch);
                    }
                } else {
                    // Go: the lead byte alone is invalid, then each
                    // continuation byte on its own is invalid too.
                    for _ in &seq {
                        out.push('\u{FFFD}');
                    }
                }
            }
        }
    }
}

fn literal<R: Read>(src: &mut Src<R>, rest: &[u8]) -> Res<()> {
    for &want in rest {
        let c = src.next()?;
        if c != want {
            return Err(bad(c, "in literal"));
        }
    }
    Ok(())
}

fn digits<R: Read>(src: &mut Src<R>, at_least_one: bool, what: &str) -> Res<()> {
    let mut n = 0;
    while let Some(b'0'..=b'9') = src.peek()? {
        src.pos += 1;
        n += 1;
    }
    if at_least_one && n == 0 {
        return match src.peek()? {
            Some(c) => Err(bad(c, what)),
            None => Err(Stop::End),
        };
    }
    Ok(())
}

/// A number whose first byte (`-` or a digit) was read.
fn number<R: Read>(src: &mut Src<R>, first: u8) -> Res<()> {
    let lead = if first == b'-' { src.next()? } else { first };
    match lead {
        b'0' => {}
        b'1'..=b'9' => digits(src, false, "")?,
        c => return Err(bad(c, "in numeric literal")),
    }
    if src.peek()? == Some(b'.') {
        src.pos += 1;
        digits(src, true, "after decimal point in numeric literal")?;
    }
    if let Some(b'e' | b'E') = src.peek()? {
        src.pos += 1;
        if let Some(b'+' | b'-') = src.peek()? {
            src.pos += 1;
        }
        digits(src, true, "in exponent of numeric literal")?;
    }
    Ok(())
}

/// What a value was, for type errors.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Str(String, bool),
    Bool(bool),
    Null,
    Number,
    Container(&'static str),
}

/// Reads one value whose first byte is `first`; containers are checked and
/// skipped without recursion. `depth` is the nesting around the value.
fn value<R: Read>(src: &mut Src<R>, first: u8, depth: usize, cap: usize) -> Res<Scalar> {
    match first {
        b'"' => read_string(src, cap).map(|(s, cut)| Scalar::Str(s, cut)),
        b't' => literal(src, b"rue").map(|()| Scalar::Bool(true)),
        b'f' => literal(src, b"alse").map(|()| Scalar::Bool(false)),
        b'n' => literal(src, b"ull").map(|()| Scalar::Null),
        b'-' | b'0'..=b'9' => number(src, first).map(|()| Scalar::Number),
        b'{' | b'[' => {
            skip_container(src, first, depth)?;
            Ok(Scalar::Container(if first == b'{' {
                "object"
            } else {
                "array"
            }))
        }
        c => Err(bad(c, "looking for beginning of value")),
    }
}

fn skip_container<R: Read>(src: &mut Src<R>, open: u8, depth: usize) -> Res<()> {
    let close = |o: u8| if o == b'{' { b'}' } else { b']' };
    let mut stack = vec![open];
    if depth + 1 > MAX_DEPTH {
        return Err(Stop::Syntax("exceeded max depth".into()));
    }
    let mut first_element = true;
    loop {
        let top = *stack.last().expect("never empty here");
        let mut c = src.next_non_ws()?;
        if first_element && c == close(top) {
            stack.pop();
        } else {
            if top == b'{' {
                if c != b'"' {
                    return Err(bad(c, "looking for beginning of object key string"));
                }
                read_string(src, 0)?;
                let colon = src.next_non_ws()?;
                if colon != b':' {
                    return Err(bad(colon, "after object key"));
                }
                c = src.next_non_ws()?;
            }
            if c == b'{' || c == b'[' {
                stack.push(c);
                if depth + stack.len() > MAX_DEPTH {
                    return Err(Stop::Syntax("exceeded max depth".into()));
                }
                first_element = true;
                continue;
            }
            value(src, c, depth + stack.len(), 0)?;
        }
        // After a value (or a closed container): a comma or closing brackets.
        loop {
            let Some(&top) = stack.last() else {
                return Ok(());
            };
            let c = src.next_non_ws()?;
            if c == b',' {
                first_element = false;
                break;
            }
            if c == close(top) {
                stack.pop();
                continue;
            }
            return Err(bad(c, "after value in a container"));
        }
    }
}

/// Does `key` select the field `name` (ASCII, lower case) by Go's
/// case-insensitive match? Go folds with Unicode simple case folding; the
/// only non-ASCII letters that fold onto ASCII ones are U+017F (long s, to
/// `s`) and U+212A (Kelvin sign, to `k`).
fn folds_to(key: &str, name: &str) -> bool {
    let mut k = key.chars();
    for f in name.chars() {
        let Some(c) = k.next() else { return false };
        let ok = c.to_ascii_lowercase() == f
            || (f == 's' && c == '\u{17F}')
            || (f == 'k' && c == '\u{212A}');
        if !ok {
            return false;
        }
    }
    k.next().is_none()
}

fn field_for(key: &str, names: &[(&str, Kind)]) -> Option<usize> {
    names
        .iter()
        .position(|(n, _)| *n == key)
        .or_else(|| names.iter().position(|(n, _)| folds_to(key, n)))
}

fn type_name(s: &Scalar) -> &'static str {
    match s {
        Scalar::Str(..) => "string",
        Scalar::Bool(_) => "bool",
        Scalar::Null => "null",
        Scalar::Number => "number",
        Scalar::Container(k) => k,
    }
}

fn store(fields: &mut Fields, i: usize, kind: Kind, name: &str, v: Scalar) {
    let set = match (kind, v) {
        (_, Scalar::Null) => return,
        (Kind::Str, Scalar::Str(text, cut)) => Val::Str { text, cut },
        (Kind::Bool, Scalar::Bool(b)) => Val::Bool(b),
        (kind, other) => {
            if fields.errors[i].is_none() {
                fields.errors[i] = Some(format!(
                    "json: cannot unmarshal {} into field {name} of type {}",
                    type_name(&other),
                    if kind == Kind::Str { "string" } else { "bool" }
                ));
            }
            return;
        }
    };
    fields.values[i] = Some(set);
}

fn decode_into<R: Read>(src: &mut Src<R>, names: &[(&str, Kind)], f: &mut Fields) -> Res<()> {
    let first = src.next_non_ws()?;
    if first != b'{' {
        let v = value(src, first, 0, 0)?;
        if v != Scalar::Null {
            f.top_error = Some(format!(
                "json: cannot unmarshal {} into a Go struct",
                type_name(&v)
            ));
        }
    } else {
        let mut c = src.next_non_ws()?;
        if c != b'}' {
            loop {
                if c != b'"' {
                    return Err(bad(c, "looking for beginning of object key string"));
                }
                let (key, cut) = read_string(src, KEY_CAP)?;
                let colon = src.next_non_ws()?;
                if colon != b':' {
                    return Err(bad(colon, "after object key"));
                }
                let vfirst = src.next_non_ws()?;
                let field = if cut { None } else { field_for(&key, names) };
                let cap = if field.is_some() { STRING_CAP } else { 0 };
                let v = value(src, vfirst, 1, cap)?;
                if let Some(i) = field {
                    store(f, i, names[i].1, names[i].0, v);
                }
                c = src.next_non_ws()?;
                if c == b'}' {
                    break;
                }
                if c != b',' {
                    return Err(bad(c, "after object key:value pair"));
                }
                c = src.next_non_ws()?;
            }
        }
    }
    if let Some(c) = src.skip_ws()? {
        return Err(bad(c, "after top-level value"));
    }
    Ok(())
}

/// A decode of one input.
struct Decode {
    result: Result<Fields, SyntaxError>,
    head: Vec<u8>,
    /// The file's size (0 for bytes in memory).
    total: u64,
}

fn decode_reader<R: Read>(r: R, names: &[(&str, Kind)], head_cap: usize) -> io::Result<Decode> {
    let mut src = Src::new(r, head_cap);
    let mut f = Fields::new(names.len());
    let result = match decode_into(&mut src, names, &mut f) {
        Ok(()) => Ok(f),
        Err(Stop::Io(e)) => return Err(e),
        Err(Stop::End) => Err(SyntaxError {
            message: "unexpected end of JSON input".into(),
            at_end: true,
            partial: f,
        }),
        Err(Stop::Syntax(m)) => Err(SyntaxError {
            message: m,
            at_end: false,
            partial: f,
        }),
    };
    // Nothing after the verdict is read: the first byte that is not JSON
    // decides, however large the file (its size comes from fstat).
    Ok(Decode {
        result,
        head: src.head,
        total: 0,
    })
}

/// `json.Unmarshal(bytes, &struct)` for a struct with `names` as fields.
pub fn decode(bytes: &[u8], names: &[(&str, Kind)]) -> Result<Fields, SyntaxError> {
    decode_reader(bytes, names, 0)
        .expect("reading a slice never fails")
        .result
}

/// The fields nnf-sos decodes from a response (the struct of
/// `checkFencedStatus`; `checkComputeFenced` has the first two only).
pub const RESPONSE_FIELDS: [(&str, Kind); 3] = [
    ("target_node", Kind::Str),
    ("success", Kind::Bool),
    ("status", Kind::Str),
];
const R_TARGET: usize = 0;
const R_SUCCESS: usize = 1;
const R_STATUS: usize = 2;

/// What nnf-sos's two checks take from one decoded response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseView {
    /// `target_node` as Go holds it ("" when absent).
    pub target: String,
    /// Longer than kept: equals no node name.
    pub target_cut: bool,
    /// `checkComputeFenced` counts it (for `target`): decoded, `success` true.
    pub compute_check: bool,
    /// `checkFencedStatus` counts it: decoded with `status` too, and
    /// `success` true or `status` `"success"`.
    pub status_check: bool,
    /// Why a check's decode failed, if one did.
    pub decode_error: Option<String>,
}

impl ResponseView {
    pub fn from_fields(f: &Fields) -> ResponseView {
        let (target, cut) = f.text(R_TARGET);
        let core = f.error_for(&[R_TARGET, R_SUCCESS]);
        let full = f.error_for(&[R_TARGET, R_SUCCESS, R_STATUS]);
        let success = f.flag(R_SUCCESS);
        ResponseView {
            target: target.to_string(),
            target_cut: cut,
            compute_check: core.is_none() && success,
            status_check: full.is_none() && (success || f.text(R_STATUS).0 == "success"),
            decode_error: full.map(str::to_string),
        }
    }

    /// Either check counts this file as `node` fenced.
    pub fn counts_for(&self, node: &str) -> bool {
        self.counted() && !self.target_cut && self.target == node
    }

    /// Either check counts this file as its target fenced.
    pub fn counted(&self) -> bool {
        self.compute_check || self.status_check
    }

    /// Which checks count it, in words.
    pub fn checks(&self) -> &'static str {
        match (self.compute_check, self.status_check) {
            (true, true) => "checkComputeFenced and checkFencedStatus",
            (true, false) => "checkComputeFenced",
            (false, true) => "checkFencedStatus",
            (false, false) => "neither check",
        }
    }
}

/// nnf-sos's verdict on one directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Read and decoded as a response.
    Read(ResponseView),
    /// Read and decoded as a request.
    Request(RequestView),
    /// Passed over (why). `incomplete`: cut short or empty, so it may be a
    /// response still being written; `partial_target`: the target it names
    /// so far.
    Skipped {
        why: String,
        incomplete: bool,
        partial_target: Option<String>,
    },
    /// nnf-sos would block on it (FIFO) or read it without end (device):
    /// never read here.
    Stuck(String),
}

/// One entry of a spool directory as nnf-sos sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub verdict: Verdict,
    /// Last modification (of what the name leads to).
    pub modified: Option<SystemTime>,
    /// The first bytes read (when asked for), and the size of the file.
    pub head: Vec<u8>,
    pub size: u64,
    /// The name is a symbolic link (nnf-sos follows it).
    pub is_symlink: bool,
}

impl Entry {
    /// Modified less than `age` ago (by the wall clock: a clock step can
    /// only make a wait that is bounded anyway longer or shorter).
    pub fn younger_than(&self, age: Duration) -> bool {
        self.modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|a| a < age)
    }
}

/// Go's `filepath.Ext(name) == ".json"`: the part from the last dot.
pub fn has_json_ext(name: &[u8]) -> bool {
    name.iter()
        .rposition(|&b| b == b'.')
        .is_some_and(|i| &name[i..] == b".json")
}

/// What reading one file as nnf-sos does gives.
enum FileRead {
    Decoded(Decode),
    Skipped(String),
    Stuck(String),
}

fn read_like_go(path: &Path, head_cap: usize) -> (FileRead, Option<SystemTime>) {
    // Type of what the name leads to, without opening it.
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return (FileRead::Skipped(format!("cannot be read: {e}")), None),
    };
    let modified = meta.modified().ok();
    if let Some(v) = special(&meta.file_type()) {
        return (v, modified);
    }
    let file: File = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => return (FileRead::Skipped(format!("cannot be read: {e}")), modified),
    };
    // The name may have changed between the two looks: judge what is open.
    let size = match file.metadata() {
        Ok(m) => {
            if let Some(v) = special(&m.file_type()) {
                return (v, m.modified().ok());
            }
            m.len()
        }
        Err(e) => return (FileRead::Skipped(format!("cannot be read: {e}")), modified),
    };
    match decode_reader(file, &RESPONSE_OR_REQUEST, head_cap) {
        Ok(d) => (FileRead::Decoded(Decode { total: size, ..d }), modified),
        Err(e) => (FileRead::Skipped(format!("cannot be read: {e}")), modified),
    }
}

/// Every field either kind of file has (decoded once, judged per struct):
/// the response fields first, then the rest of nnf-sos's `FenceRequest`.
const RESPONSE_OR_REQUEST: [(&str, Kind); 7] = [
    ("target_node", Kind::Str),
    ("success", Kind::Bool),
    ("status", Kind::Str),
    ("request_id", Kind::Str),
    ("timestamp", Kind::Str),
    ("action", Kind::Str),
    ("recorder_node", Kind::Str),
];

fn special(ft: &fs::FileType) -> Option<FileRead> {
    if ft.is_dir() {
        // Go's ReadFile opens it and the read fails (EISDIR).
        Some(FileRead::Skipped(
            "it leads to a directory (reading it fails)".into(),
        ))
    } else if ft.is_fifo() {
        Some(FileRead::Stuck(
            "it is a FIFO: nnf-sos blocks opening it until a writer comes".into(),
        ))
    } else if ft.is_char_device() || ft.is_block_device() {
        Some(FileRead::Stuck(
            "it is a device: nnf-sos would read it as a stream, maybe without end".into(),
        ))
    } else if ft.is_socket() {
        Some(FileRead::Skipped(
            "it is a socket (opening it fails)".into(),
        ))
    } else {
        None
    }
}

/// The entries of `dir` that nnf-sos reads as responses (not directories,
/// names ending in `.json`), with its verdict on each, sorted by name. The
/// first `head_cap` bytes of each are kept. Fails only when the directory
/// cannot be listed.
pub fn scan_responses(dir: &Path, head_cap: usize) -> io::Result<Vec<Entry>> {
    scan(dir, head_cap, has_json_ext, judge_response)
}

/// The one response file at `path`, looked up by its name rather than found
/// in a listing, as [`scan_responses`] would show it (None: no such file, or
/// a directory).
pub fn response_at(path: &Path, head_cap: usize) -> Option<Entry> {
    let meta = fs::symlink_metadata(path).ok()?;
    if meta.is_dir() {
        return None;
    }
    let entry = entry_of(
        path.to_path_buf(),
        meta.is_symlink(),
        head_cap,
        judge_response,
    );
    // A link to nothing, or a name gone since the lookup.
    match &entry.verdict {
        Verdict::Skipped { .. } if entry.modified.is_none() => None,
        _ => Some(entry),
    }
}

fn judge_response(fields: Result<Fields, SyntaxError>) -> Verdict {
    match fields {
        Ok(f) => Verdict::Read(ResponseView::from_fields(&f)),
        Err(e) => Verdict::Skipped {
            incomplete: e.at_end,
            partial_target: e.partial.values[R_TARGET].as_ref().map(|v| match v {
                Val::Str { text, .. } => text.clone(),
                Val::Bool(_) => String::new(),
            }),
            why: format!("not valid JSON: {}", e.message),
        },
    }
}

/// Whether nnf-sos counts the one response file at `path`, looked up by its
/// name rather than found in a listing, as fencing `node`.
pub fn response_counts_for(path: &Path, node: &str) -> bool {
    response_at(path, 0)
        .is_some_and(|e| matches!(&e.verdict, Verdict::Read(v) if v.counts_for(node)))
}

/// A request nnf-sos would act on: its `FenceRequest` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    pub request_id: String,
    pub target: String,
    /// `target` is longer than kept: it equals no node name.
    pub target_cut: bool,
}

/// The `FenceRequest` fields (request_id, timestamp, action, target_node,
/// recorder_node) as indexes into `RESPONSE_OR_REQUEST`.
const REQUEST_IDX: [usize; 5] = [3, 4, 5, 0, 6];

/// The entries of the request directory nnf-sos would act on as requests:
/// not directories, and either not dot-named (its start-up scan and its
/// watch take any such name) or ending in `.json` (its block storage
/// reconciler takes those, dot-names included). A request decodes into
/// `FenceRequest` (every field a string) or is passed over.
pub fn scan_requests(dir: &Path) -> io::Result<Vec<Entry>> {
    scan(
        dir,
        0,
        |name| !name.starts_with(b".") || has_json_ext(name),
        |fields| match fields {
            Ok(f) => match f.error_for(&REQUEST_IDX) {
                Some(e) => Verdict::Skipped {
                    why: e.to_string(),
                    incomplete: false,
                    partial_target: None,
                },
                None => Verdict::Request(RequestView {
                    request_id: f.text(3).0.to_string(),
                    target: f.text(0).0.to_string(),
                    target_cut: f.text(0).1,
                }),
            },
            Err(e) => Verdict::Skipped {
                why: format!("not valid JSON: {}", e.message),
                incomplete: e.at_end,
                partial_target: None,
            },
        },
    )
}

fn scan(
    dir: &Path,
    head_cap: usize,
    wanted: impl Fn(&[u8]) -> bool,
    judge: impl Fn(Result<Fields, SyntaxError>) -> Verdict,
) -> io::Result<Vec<Entry>> {
    let listing = fs::read_dir(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read directory {}: {e}", dir.display()),
        )
    })?;
    let mut out = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read directory {}: {e}", dir.display()),
            )
        })?;
        let name = entry.file_name();
        if !wanted(name.as_bytes()) {
            continue;
        }
        // Go's DirEntry.IsDir: the entry itself (a link to a directory is not one).
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            continue;
        }
        out.push(entry_of(entry.path(), ft.is_symlink(), head_cap, &judge));
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Reads one entry the way nnf-sos does and judges what it decoded to.
fn entry_of(
    path: PathBuf,
    is_symlink: bool,
    head_cap: usize,
    judge: impl Fn(Result<Fields, SyntaxError>) -> Verdict,
) -> Entry {
    let (read, modified) = read_like_go(&path, head_cap);
    let (verdict, head, size) = match read {
        FileRead::Decoded(d) => (judge(d.result), d.head, d.total),
        FileRead::Skipped(why) => (
            Verdict::Skipped {
                why,
                incomplete: false,
                partial_target: None,
            },
            Vec::new(),
            0,
        ),
        FileRead::Stuck(why) => (Verdict::Stuck(why), Vec::new(), 0),
    };
    Entry {
        path,
        verdict,
        modified,
        head,
        size,
        is_symlink,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(s: &[u8]) -> Option<ResponseView> {
        decode(s, &RESPONSE_FIELDS)
            .ok()
            .map(|f| ResponseView::from_fields(&f))
    }

    fn counts(s: &str) -> bool {
        view(s.as_bytes()).is_some_and(|v| v.counts_for("n3"))
    }

    #[test]
    fn go_rules_for_keys() {
        assert!(counts(r#"{"target_node":"n3","success":true}"#));
        assert!(counts(r#"{"TARGET_NODE":"n3","Success":true}"#));
        assert!(counts("{\"target_node\":\"n3\",\"\u{17F}uccess\":true}"));
        assert!(counts(r#"{"target_node":"n3","succ\u0065ss":true}"#));
        // A later duplicate wins, whatever its case.
        assert!(!counts(
            r#"{"target_node":"n3","success":true,"SUCCESS":false}"#
        ));
        assert!(counts(
            r#"{"target_node":"n3","success":false,"Success":true}"#
        ));
        // null leaves the earlier value.
        assert!(counts(
            r#"{"target_node":"n3","success":true,"success":null}"#
        ));
        assert!(!counts(r#"{"target_node":"n3","success":1}"#));
        assert!(!counts(r#"{"target_node":"n3","success":"true"}"#));
        assert!(!counts(r#"{"target_node":"n3 ","success":true}"#));
    }

    #[test]
    fn status_field_only_in_the_status_check() {
        let v = view(br#"{"target_node":"n3","success":false,"status":"success"}"#).unwrap();
        assert!(!v.compute_check && v.status_check);
        // A status of the wrong type breaks only the decode that has it.
        let v = view(br#"{"target_node":"n3","success":true,"status":5}"#).unwrap();
        assert!(v.compute_check && !v.status_check);
    }

    #[test]
    fn syntax_and_depth() {
        assert!(view(b"").is_none());
        assert!(view(br#"{"target_node":"n3","success":true} x"#).is_none());
        assert!(view(br#"{"target_node":"n3","success":true,}"#).is_none());
        assert!(view(b"\xef\xbb\xbf{}").is_none());
        assert!(counts(" \r\n\t{\"target_node\":\"n3\",\"success\":true}\n"));
        let nest = |n: usize| {
            format!(
                r#"{{"target_node":"n3","success":true,"x":{}{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(counts(&nest(MAX_DEPTH - 1)));
        assert!(view(nest(MAX_DEPTH).as_bytes()).is_none());
        for n in ["0", "-0.5e+3", "1E9"] {
            assert!(counts(&format!(
                r#"{{"x":{n},"target_node":"n3","success":true}}"#
            )));
        }
        for n in ["01", "1.", "-", ".5", "1e", "+1"] {
            assert!(
                view(format!(r#"{{"x":{n},"success":true}}"#).as_bytes()).is_none(),
                "{n}"
            );
        }
    }

    #[test]
    fn strings_as_go_decodes_them() {
        let f = decode(
            b"{\"target_node\":\"a\xffb\xe2\x82c\\ud800\\u0041\\ud83d\\ude00\"}",
            &RESPONSE_FIELDS,
        )
        .unwrap();
        assert_eq!(f.text(0).0, "a\u{FFFD}b\u{FFFD}\u{FFFD}c\u{FFFD}A\u{1F600}");
        assert!(decode(b"{\"x\":\"a\nb\"}", &RESPONSE_FIELDS).is_err());
        assert!(decode(br#"{"x":"\x"}"#, &RESPONSE_FIELDS).is_err());
    }

    #[test]
    fn top_level_values() {
        let f = decode(b"null", &RESPONSE_FIELDS).unwrap();
        assert!(!ResponseView::from_fields(&f).counted());
        let f = decode(b"[1]", &RESPONSE_FIELDS).unwrap();
        assert!(f.top_error.is_some());
        let e = decode(br#"{"target_node":"n3","succ"#, &RESPONSE_FIELDS).unwrap_err();
        assert!(e.at_end);
        assert_eq!(e.partial.text(0).0, "n3");
    }

    /// Bytes this thread has read through read(2) so far.
    fn read_by_this_thread() -> u64 {
        let io = fs::read_to_string("/proc/thread-self/io").unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn a_verdict_reads_no_more_than_it_needs() {
        let d = crate::test_support::TempDir::new("nnfview");
        // 8 GiB, sparse: its first byte (NUL) already says it is not JSON.
        let junk = d.path().join("junk.json");
        File::create(&junk).unwrap().set_len(8 << 30).unwrap();
        let before = read_by_this_thread();
        let entries = scan_responses(d.path(), HEAD_CAP).unwrap();
        let by_name = response_at(&junk, 0).unwrap();
        let read = read_by_this_thread() - before;
        assert!(read < 4 << 20, "{read} bytes read for two verdicts");
        assert!(
            matches!(&entries[0].verdict, Verdict::Skipped { why, .. } if why.contains("invalid character"))
        );
        assert!(matches!(by_name.verdict, Verdict::Skipped { .. }));
        assert_eq!(entries[0].size, 8 << 30, "the size is still told");
    }

    #[test]
    fn json_extension_as_go() {
        for (n, want) in [
            ("a.json", true),
            (".json", true),
            (".a.json", true),
            ("a.JSON", false),
            (".a.json.tmp", false),
            ("json", false),
        ] {
            assert_eq!(has_json_ext(n.as_bytes()), want, "{n}");
        }
        assert!(has_json_ext(b"\xff.json"));
    }
}
