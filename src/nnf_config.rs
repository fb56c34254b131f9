//! NNF's shared configuration: nnf-sos ships a small Python module
//! (`config.py`) naming the request and response directories, meant to be
//! imported by the fence agent. This agent runs as root, so it never runs
//! that file: it reads it.
//!
//! Understood, at the top level of the file: `REQUEST_DIR = "/x"` (string
//! literals, also adjacent ones), `REQUEST_DIR = _OTHER_NAME` (a name set to
//! a string above), and `REQUEST_DIR = os.environ.get("VAR", default)` or
//! `os.getenv("VAR", default)` (the variable's value when set, else the
//! default, as Python would compute it). Comments, docstrings and `import os`
//! are skipped; every other statement is ignored and reported as a note,
//! unless it names `REQUEST_DIR` or `RESPONSE_DIR`: then it might change them,
//! and the whole file is refused with the line named.
//!
//! The file is refused, naming it, unless root alone can change it, by the
//! rule of `trust`: the file and every directory above it (and every symbolic
//! link on the way) must be owned by root and not writable by group or
//! others; a sticky directory such as `/tmp` is accepted, since only root may
//! rename or remove root's entries in it.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::trust::{self, Owners};

/// Where the shared config is looked for when nothing names it.
pub const DEFAULT_PATH: &str = "/etc/nnf/fence/config.py";
/// The environment variable naming the shared config (empty: none).
pub const ENV_PATH: &str = "NNF_FENCE_CONFIG";
/// A config of a few lines; anything larger is not that file.
pub const MAX_BYTES: u64 = 64 * 1024;

/// The names the agent takes from the file.
pub const REQUEST_NAME: &str = "REQUEST_DIR";
pub const RESPONSE_NAME: &str = "RESPONSE_DIR";

/// One value read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub text: String,
    /// The line of the assignment (1-based).
    pub line: usize,
    /// How the value was computed, e.g. `the default of NNF_FENCE_REQUEST_DIR,
    /// which is not set` (None: a plain string).
    pub how: Option<String>,
}

/// What the file says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub request_dir: Option<Value>,
    pub response_dir: Option<Value>,
    /// Statements ignored, one line each (`line 7 ignored: ...`).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    /// A string literal: its value, or None when it is one this reader does
    /// not evaluate (f-strings, bytes, unusual escapes).
    Str(Option<String>),
    Op(String),
    Other,
}

struct Stmt {
    line: usize,
    indented: bool,
    toks: Vec<Tok>,
    text: String,
}

const OPS3: [&str; 5] = ["**=", "//=", ">>=", "<<=", "..."];
const OPS2: [&str; 19] = [
    "==", "!=", "<=", ">=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "@=", ":=", "->", "**",
    "//", "<<", ">>",
];

/// Splits the file into statements (logical lines split at `;`).
fn statements(text: &str) -> Result<Vec<Stmt>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut line = 1;
    let mut out = Vec::new();
    while i < chars.len() {
        // The start of a logical line.
        let start = i;
        while i < chars.len() && matches!(chars[i], ' ' | '\t' | '\x0c') {
            i += 1;
        }
        let indented = i > start;
        let first_line = line;
        let line_text: String = chars[start..]
            .iter()
            .take_while(|c| **c != '\n')
            .collect::<String>()
            .trim()
            .to_string();
        let mut toks = Vec::new();
        let mut depth = 0usize;
        let mut stmt_line = first_line;
        loop {
            let Some(&c) = chars.get(i) else {
                if depth > 0 {
                    return Err(format!("line {line}: a bracket is never closed"));
                }
                break;
            };
            match c {
                ' ' | '\t' | '\x0c' | '\r' => i += 1,
                '#' => {
                    while i < chars.len() && chars[i] != '\n' {
                        i += 1;
                    }
                }
                '\\' if chars.get(i + 1) == Some(&'\n') => {
                    i += 2;
                    line += 1;
                }
                '\n' => {
                    i += 1;
                    line += 1;
                    if depth == 0 {
                        break;
                    }
                }
                ';' if depth == 0 => {
                    i += 1;
                    push_stmt(&mut out, stmt_line, indented, &mut toks, &line_text);
                    stmt_line = line;
                }
                '\'' | '"' => {
                    let (tok, next, lines) = string(&chars, i, "", line)?;
                    toks.push(tok);
                    i = next;
                    line += lines;
                }
                c if c.is_alphabetic() || c == '_' => {
                    let s = i;
                    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                    let word: String = chars[s..i].iter().collect();
                    let is_prefix = word.len() <= 2
                        && word.chars().all(|c| "rRbBuUfF".contains(c))
                        && matches!(chars.get(i), Some('\'' | '"'));
                    if is_prefix {
                        let (tok, next, lines) = string(&chars, i, &word, line)?;
                        toks.push(tok);
                        i = next;
                        line += lines;
                    } else {
                        toks.push(Tok::Name(word));
                    }
                }
                c if c.is_ascii_digit() => {
                    while i < chars.len()
                        && (chars[i].is_alphanumeric() || ".+-_".contains(chars[i]))
                    {
                        i += 1;
                    }
                    toks.push(Tok::Other);
                }
                '(' | '[' | '{' => {
                    depth += 1;
                    i += 1;
                    toks.push(Tok::Op(c.to_string()));
                }
                ')' | ']' | '}' => {
                    if depth == 0 {
                        return Err(format!("line {line}: {c:?} closes nothing"));
                    }
                    depth -= 1;
                    i += 1;
                    toks.push(Tok::Op(c.to_string()));
                }
                _ => {
                    let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
                    let op = OPS3
                        .iter()
                        .chain(OPS2.iter())
                        .find(|o| rest.starts_with(**o))
                        .map(|o| o.to_string())
                        .unwrap_or_else(|| c.to_string());
                    i += op.chars().count();
                    toks.push(Tok::Op(op));
                }
            }
        }
        push_stmt(&mut out, stmt_line, indented, &mut toks, &line_text);
    }
    Ok(out)
}

fn push_stmt(out: &mut Vec<Stmt>, line: usize, indented: bool, toks: &mut Vec<Tok>, text: &str) {
    if !toks.is_empty() {
        out.push(Stmt {
            line,
            indented,
            toks: std::mem::take(toks),
            text: text.to_string(),
        });
    }
}

/// Reads the string literal starting at `chars[i]` (the opening quote).
/// Returns the token, the index after it and the newlines it spans.
fn string(
    chars: &[char],
    mut i: usize,
    prefix: &str,
    line: usize,
) -> Result<(Tok, usize, usize), String> {
    let q = chars[i];
    let triple = chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q);
    let raw = prefix.contains(['r', 'R']);
    // f-strings compute, bytes are no path: not evaluated.
    let mut understood = !prefix.contains(['f', 'F', 'b', 'B']);
    i += if triple { 3 } else { 1 };
    let mut value = String::new();
    let mut lines = 0;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(format!("line {line}: a string is never closed"));
        };
        if c == q && (!triple || (chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q))) {
            i += if triple { 3 } else { 1 };
            break;
        }
        if c == '\n' {
            if !triple {
                return Err(format!("line {line}: a string is never closed"));
            }
            lines += 1;
        }
        if c == '\\' {
            let Some(&n) = chars.get(i + 1) else {
                return Err(format!("line {line}: a string is never closed"));
            };
            if n == '\n' {
                lines += 1;
            }
            if raw {
                value.push(c);
                value.push(n);
            } else {
                match n {
                    '\\' | '\'' | '"' => value.push(n),
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    '\n' => {}
                    _ => understood = false,
                }
            }
            i += 2;
            continue;
        }
        value.push(c);
        i += 1;
    }
    Ok((Tok::Str(understood.then_some(value)), i, lines))
}

/// A value being computed: known, or why not.
#[derive(Debug, Clone)]
enum Eval {
    Known(String, Option<String>),
    Unknown(String),
}

/// Splits call arguments at top-level commas.
fn arguments(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Op(o) if "([{".contains(o.as_str()) => depth += 1,
            Tok::Op(o) if ")]}".contains(o.as_str()) => depth = depth.saturating_sub(1),
            Tok::Op(o) if o == "," && depth == 0 => {
                args.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < toks.len() {
        args.push(&toks[start..]);
    }
    args
}

fn eval(toks: &[Tok], names: &HashMap<String, Eval>, env: &dyn Fn(&str) -> Option<String>) -> Eval {
    if !toks.is_empty() && toks.iter().all(|t| matches!(t, Tok::Str(_))) {
        let mut s = String::new();
        for t in toks {
            match t {
                Tok::Str(Some(v)) => s.push_str(v),
                _ => {
                    return Eval::Unknown(
                        "a string this reader does not evaluate (f-string, bytes or escape)".into(),
                    )
                }
            }
        }
        return Eval::Known(s, None);
    }
    if let [Tok::Name(n)] = toks {
        return match names.get(n) {
            Some(Eval::Known(v, how)) => Eval::Known(
                v.clone(),
                Some(how.clone().unwrap_or_else(|| format!("the value of {n}"))),
            ),
            Some(Eval::Unknown(why)) => Eval::Unknown(format!("{n} is {why}")),
            None => Eval::Unknown(format!("{n} is not set to a string above")),
        };
    }
    // os.environ.get(VAR, DEFAULT) or os.getenv(VAR, DEFAULT)
    let call = match toks {
        [Tok::Name(os), Tok::Op(d1), Tok::Name(environ), Tok::Op(d2), Tok::Name(get), Tok::Op(p), rest @ ..]
            if os == "os"
                && d1 == "."
                && environ == "environ"
                && d2 == "."
                && get == "get"
                && p == "(" =>
        {
            Some(rest)
        }
        [Tok::Name(os), Tok::Op(d1), Tok::Name(getenv), Tok::Op(p), rest @ ..]
            if os == "os" && d1 == "." && getenv == "getenv" && p == "(" =>
        {
            Some(rest)
        }
        _ => None,
    };
    let Some(rest) = call else {
        return Eval::Unknown(
            "not a string, a name set above or os.environ.get(NAME, DEFAULT)".into(),
        );
    };
    let Some((Tok::Op(close), inner)) = rest.split_last() else {
        return Eval::Unknown("an unfinished call".into());
    };
    if close != ")" {
        return Eval::Unknown("not a single call".into());
    }
    let args = arguments(inner);
    if args.len() != 2 || args.iter().any(|a| a.is_empty()) {
        return Eval::Unknown(
            "an environment lookup without exactly a name and a default (None when unset)".into(),
        );
    }
    let var = match eval(args[0], names, env) {
        Eval::Known(v, _) => v,
        Eval::Unknown(why) => return Eval::Unknown(format!("a variable name that is {why}")),
    };
    match env(&var) {
        Some(v) => Eval::Known(v, Some(format!("environment variable {var}"))),
        None => match eval(args[1], names, env) {
            Eval::Known(v, _) => {
                Eval::Known(v, Some(format!("the default for {var}, which is not set")))
            }
            Eval::Unknown(why) => Eval::Unknown(format!("a default that is {why}")),
        },
    }
}

fn mentions_ours(s: &Stmt) -> Option<&'static str> {
    [REQUEST_NAME, RESPONSE_NAME].into_iter().find(|ours| {
        s.toks.iter().any(|t| match t {
            Tok::Name(n) => n == ours,
            Tok::Str(Some(v)) => v.contains(ours),
            _ => false,
        })
    })
}

fn shown(text: &str) -> String {
    let t: String = text.chars().take(80).collect();
    t.escape_debug().to_string()
}

/// Reads the file's text. `env` looks environment variables up, as the
/// file's `os.environ.get` would. Errors name the line.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, String> {
    let mut names: HashMap<String, Eval> = HashMap::new();
    let mut parsed = Parsed::default();
    for s in statements(text)? {
        let toks = &s.toks;
        if toks.iter().all(|t| matches!(t, Tok::Str(_))) {
            continue; // a docstring
        }
        if let [Tok::Name(i), Tok::Name(m)] = toks.as_slice() {
            if i == "import" && m == "os" && !s.indented {
                continue;
            }
        }
        // NAME = [NAME = ...] EXPR, or NAME: TYPE = EXPR, at the top level.
        let mut targets = Vec::new();
        let mut rest: &[Tok] = toks;
        while let [Tok::Name(n), Tok::Op(eq), tail @ ..] = rest {
            if eq != "=" || s.indented {
                break;
            }
            targets.push(n.clone());
            rest = tail;
        }
        if targets.is_empty() && !s.indented {
            if let [Tok::Name(n), Tok::Op(colon), Tok::Name(_), Tok::Op(eq), tail @ ..] =
                toks.as_slice()
            {
                if colon == ":" && eq == "=" {
                    targets.push(n.clone());
                    rest = tail;
                }
            }
        }
        let keyword = matches!(
            targets.first().map(String::as_str),
            Some(
                "if" | "for"
                    | "while"
                    | "def"
                    | "class"
                    | "with"
                    | "try"
                    | "del"
                    | "global"
                    | "import"
                    | "from"
                    | "return"
                    | "lambda"
                    | "not"
                    | "assert"
            )
        );
        if targets.is_empty() || rest.is_empty() || keyword {
            if let Some(ours) = mentions_ours(&s) {
                return Err(format!(
                    "line {}: {ours} appears in a statement that cannot be read without \
                     running the file: {}",
                    s.line,
                    shown(&s.text)
                ));
            }
            parsed
                .notes
                .push(format!("line {} ignored: {}", s.line, shown(&s.text)));
            continue;
        }
        let value = eval(rest, &names, env);
        let ours = targets
            .iter()
            .any(|t| t == REQUEST_NAME || t == RESPONSE_NAME);
        if let (Eval::Unknown(_), false) = (&value, ours) {
            parsed
                .notes
                .push(format!("line {} ignored: {}", s.line, shown(&s.text)));
        }
        for t in &targets {
            if t == REQUEST_NAME || t == RESPONSE_NAME {
                let v = match &value {
                    Eval::Known(text, how) => Value {
                        text: text.clone(),
                        line: s.line,
                        how: how.clone(),
                    },
                    Eval::Unknown(why) => {
                        return Err(format!(
                            "line {}: {t} cannot be read without running the file ({why}): {}",
                            s.line,
                            shown(&s.text)
                        ))
                    }
                };
                if t == REQUEST_NAME {
                    parsed.request_dir = Some(v);
                } else {
                    parsed.response_dir = Some(v);
                }
            }
            names.insert(t.clone(), value.clone());
        }
    }
    Ok(parsed)
}

/// Reads and parses the file at `path`, refusing it unless root alone can
/// change it. Errors name the file.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, String> {
    let named = |why: String| why;
    if let Err(e) = fs::symlink_metadata(path) {
        return Err(named(if e.kind() == io::ErrorKind::NotFound {
            "does not exist".into()
        } else {
            format!("cannot examine it: {e}")
        }));
    }
    if let Some(why) = trust::file_problem(path, Owners::Root) {
        return Err(named(format!(
            "refused, since someone other than root could change it: {why}"
        )));
    }
    let canonical = fs::canonicalize(path).map_err(|e| named(format!("cannot resolve it: {e}")))?;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&canonical)
        .map_err(|e| named(format!("cannot open it: {e}")))?;
    // What we hold, not what the name pointed at a moment ago.
    let meta = file
        .metadata()
        .map_err(|e| named(format!("cannot examine it: {e}")))?;
    if !meta.is_file() {
        return Err(named("refused: not a regular file".into()));
    }
    if let Some(why) = trust::entry_problem(&canonical, &meta, Owners::Root, false) {
        return Err(named(format!(
            "refused, since someone other than root could change it: {why}"
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| named(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(named(format!("refused: larger than {MAX_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| named("refused: not UTF-8 text".into()))?;
    parse(&text, env).map_err(named)
}

/// The shared config in use, if any, and how it was found.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    pub path: Option<PathBuf>,
    /// e.g. `option nnf_config`, `default location, absent`.
    pub origin: String,
    pub parsed: Parsed,
}

impl Shared {
    /// The file's value for `name` (REQUEST_NAME or RESPONSE_NAME) and a
    /// description of where it came from.
    pub fn value(&self, name: &str) -> Option<(String, String)> {
        let path = self.path.as_ref()?;
        let v = if name == REQUEST_NAME {
            self.parsed.request_dir.as_ref()
        } else {
            self.parsed.response_dir.as_ref()
        }?;
        let how = v.how.as_ref().map(|h| format!(", {h}")).unwrap_or_default();
        Some((
            v.text.clone(),
            format!("{name} in {} line {}{how}", path.display(), v.line),
        ))
    }
}

/// Finds and reads the shared config: the one named by the option, else by
/// `NNF_FENCE_CONFIG` (an empty value means none), else the file at the
/// default location if there is one. The default location is read only
/// when a directory is still to be taken from it (`needed`); a named file
/// is always read, so a mistake in it is never hidden.
pub fn shared(
    option: &Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    needed: bool,
) -> Result<Shared, crate::settings::SettingsError> {
    let env_value = env(ENV_PATH);
    let (source, value, origin) = match (option, &env_value) {
        (Some(v), _) => ("option".to_string(), v.clone(), "option nnf_config"),
        (None, Some(v)) => (
            format!("environment variable {ENV_PATH}"),
            v.clone(),
            "environment variable NNF_FENCE_CONFIG",
        ),
        (None, None) => (
            "default location".to_string(),
            DEFAULT_PATH.to_string(),
            "default location",
        ),
    };
    let error = |reason: String| crate::settings::SettingsError {
        setting: "nnf_config".to_string(),
        source: source.clone(),
        value: value.clone(),
        reason,
    };
    if value.is_empty() {
        return Ok(Shared {
            path: None,
            origin: format!("none: {origin} is empty"),
            parsed: Parsed::default(),
        });
    }
    if value.contains('\0') || !value.starts_with('/') {
        return Err(error("must be an absolute path, or empty for none".into()));
    }
    let path = PathBuf::from(&value);
    let default = option.is_none() && env_value.is_none();
    if default {
        let absent =
            matches!(fs::symlink_metadata(&path), Err(e) if e.kind() == io::ErrorKind::NotFound);
        if absent || !needed {
            let why = if absent {
                "no file at"
            } else {
                "both directories are set elsewhere, so not read:"
            };
            return Ok(Shared {
                path: None,
                origin: format!("none: {why} {DEFAULT_PATH}"),
                parsed: Parsed::default(),
            });
        }
    }
    let parsed = load(&path, env).map_err(error)?;
    Ok(Shared {
        path: Some(path),
        origin: origin.to_string(),
        parsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use std::os::unix::fs::PermissionsExt;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const NNF_SOS: &str = r#"#!/usr/bin/env python3
# Copyright line
"""
Fence Recorder Configuration

Override with NNF_FENCE_REQUEST_DIR and NNF_FENCE_RESPONSE_DIR
environment variables.
"""

import os

# Default paths
_DEFAULT_REQUEST_DIR = "/localdisk/fence-recorder/requests"
_DEFAULT_RESPONSE_DIR = "/localdisk/fence-recorder/responses"

# Directory where fence agents write fence request files
REQUEST_DIR = os.environ.get("NNF_FENCE_REQUEST_DIR", _DEFAULT_REQUEST_DIR)

# Directory where nnf-sos writes fence response files
RESPONSE_DIR = os.environ.get("NNF_FENCE_RESPONSE_DIR", _DEFAULT_RESPONSE_DIR)
"#;

    #[test]
    fn nnf_sos_form_with_and_without_the_environment() {
        let p = parse(NNF_SOS, &no_env).unwrap();
        let req = p.request_dir.unwrap();
        assert_eq!(req.text, "/localdisk/fence-recorder/requests");
        assert_eq!(req.line, 17);
        assert!(req.how.unwrap().contains("NNF_FENCE_REQUEST_DIR"));
        assert_eq!(
            p.response_dir.unwrap().text,
            "/localdisk/fence-recorder/responses"
        );
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        let env = |k: &str| (k == "NNF_FENCE_RESPONSE_DIR").then(|| "/e/resp".to_string());
        let p = parse(NNF_SOS, &env).unwrap();
        assert_eq!(p.response_dir.unwrap().text, "/e/resp");
        assert_eq!(
            p.request_dir.unwrap().text,
            "/localdisk/fence-recorder/requests"
        );
    }

    #[test]
    fn plain_form_and_literal_defaults() {
        let text = "REQUEST_DIR = \"/a/req\"\nRESPONSE_DIR = '/a/' 'resp'  # two parts\n";
        let p = parse(text, &no_env).unwrap();
        assert_eq!(p.request_dir.unwrap().text, "/a/req");
        let resp = p.response_dir.unwrap();
        assert_eq!(
            (resp.text.as_str(), resp.line, resp.how),
            ("/a/resp", 2, None)
        );
        let text = "REQUEST_DIR = os.getenv('X_REQ', \"/d/req\")\n";
        let p = parse(text, &no_env).unwrap();
        assert_eq!(p.request_dir.unwrap().text, "/d/req");
        assert_eq!(p.response_dir, None);
    }

    #[test]
    fn other_statements_are_notes_and_never_run() {
        let text = "import sys\nprint('hello')\nX = compute()\nif True:\n    pass\n\
                    REQUEST_DIR = '/r'\n";
        let p = parse(text, &no_env).unwrap();
        assert_eq!(p.request_dir.unwrap().text, "/r");
        assert_eq!(p.notes.len(), 5, "{:?}", p.notes);
        assert!(p.notes[0].starts_with("line 1 ignored: import sys"));
        assert!(p.notes[2].starts_with("line 3 ignored: X = compute()"));
        assert!(p.notes[4].starts_with("line 5 ignored: pass"));
    }

    #[test]
    fn anything_that_could_change_our_names_refuses_the_file() {
        for (text, line) in [
            ("REQUEST_DIR = '/a'\nif x:\n    REQUEST_DIR = '/b'\n", 3),
            ("REQUEST_DIR = compute()\n", 1),
            ("REQUEST_DIR = f'/a/{x}'\n", 1),
            ("REQUEST_DIR = '/a'\nREQUEST_DIR += '/b'\n", 2),
            ("exec('REQUEST_DIR = 1')\n", 1),
            ("RESPONSE_DIR = os.environ.get('X')\n", 1),
            ("RESPONSE_DIR = os.environ['X']\n", 1),
            ("RESPONSE_DIR = UNSET\n", 1),
            ("Y = g()\nREQUEST_DIR = Y\n", 2),
            ("import os as REQUEST_DIR\n", 1),
            ("REQUEST_DIR = '/a'; del REQUEST_DIR\n", 1),
        ] {
            let err = parse(text, &no_env).unwrap_err();
            assert!(err.starts_with(&format!("line {line}:")), "{text:?}: {err}");
            assert!(err.contains("_DIR"), "{err}");
        }
    }

    #[test]
    fn broken_syntax_is_an_error_not_a_guess() {
        for text in [
            "REQUEST_DIR = '/a\n",
            "X = (\n",
            "X = )\n",
            "R = \"\"\"open\n",
        ] {
            assert!(parse(text, &no_env).is_err(), "{text:?}");
        }
    }

    #[test]
    fn any_mix_of_fragments_gives_a_value_or_an_error_never_a_panic() {
        let parts = [
            "REQUEST_DIR",
            " = ",
            "'/a'",
            "\"",
            "'''",
            "\"\"\"",
            "os.environ.get(",
            "os.getenv(",
            ",",
            ")",
            "(",
            "[",
            "]",
            "\n",
            "    ",
            "\\",
            "\\\n",
            "#",
            ";",
            "f'",
            "r'",
            "b\"",
            "X",
            ":",
            "=",
            "+=",
            "é",
            "\t",
            "1.5e3",
            "import os",
            "if x:",
            "\r\n",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut text = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for k in 0..(state % 12) {
                let idx = (state.rotate_left(k as u32 * 5) % parts.len() as u64) as usize;
                text.push_str(parts[idx]);
            }
            let env = |k: &str| (k == "/a").then(|| "/e".to_string());
            let _ = parse(&text, &env);
        }
    }

    #[test]
    fn multi_line_values_and_semicolons() {
        let text =
            "REQUEST_DIR = os.environ.get(\n    'NNF_FENCE_REQUEST_DIR',\n    '/m/req',\n)\n\
                    A = '/x'; RESPONSE_DIR = A\n";
        let p = parse(text, &no_env).unwrap();
        assert_eq!(p.request_dir.unwrap().text, "/m/req");
        let resp = p.response_dir.unwrap();
        assert_eq!((resp.text.as_str(), resp.line), ("/x", 5));
    }

    #[test]
    fn option_beats_environment_beats_shared_config_beats_default() {
        use crate::settings::{resolve, SettingsInput, DEFAULT_RESPONSE_DIR};
        let d = TempDir::new("nnfcfg");
        let f = d.path().join("config.py");
        fs::write(
            &f,
            "REQUEST_DIR = '/cfg/req'\nRESPONSE_DIR = '/cfg/resp'\nX = y()\n",
        )
        .unwrap();
        if unsafe { libc::geteuid() } != 0 {
            return; // only root's files are read; covered above
        }
        let named = f.display().to_string();
        let env = |k: &str| match k {
            "NNF_FENCE_CONFIG" => Some(named.clone()),
            "NNF_FENCE_RESPONSE_DIR" => Some("/env/resp".to_string()),
            _ => None,
        };
        let s = resolve(&SettingsInput::default(), env).unwrap();
        assert_eq!(s.request_dir, PathBuf::from("/cfg/req"));
        assert_eq!(s.response_dir, PathBuf::from("/env/resp"));
        assert_eq!(s.nnf_config.as_deref(), Some(f.as_path()));
        assert_eq!(s.nnf_config_notes.len(), 1);
        assert_eq!(s.origins[0].1, format!("REQUEST_DIR in {named} line 1"));
        assert_eq!(
            s.origins[1].1,
            "environment variable NNF_FENCE_RESPONSE_DIR"
        );
        assert_eq!(s.origins[2].1, "default");
        let input = SettingsInput {
            request_dir: Some("/opt/req".into()),
            ..Default::default()
        };
        let s = resolve(&input, env).unwrap();
        assert_eq!(s.request_dir, PathBuf::from("/opt/req"));
        assert_eq!(s.origins[0].1, "option request_dir");
        // An empty name means no shared config at all.
        let input = SettingsInput {
            nnf_config: Some(String::new()),
            ..Default::default()
        };
        let s = resolve(&input, |_| None).unwrap();
        assert_eq!(s.nnf_config, None);
        assert_eq!(s.response_dir, PathBuf::from(DEFAULT_RESPONSE_DIR));
        // A bad value in the file names the file, the line and the value.
        fs::write(&f, "REQUEST_DIR = 'relative'\n").unwrap();
        let err = resolve(&SettingsInput::default(), env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&named) && err.contains("line 1") && err.contains("relative"),
            "{err}"
        );
        let input = SettingsInput {
            nnf_config: Some(d.path().join("missing.py").display().to_string()),
            ..Default::default()
        };
        let err = resolve(&input, |_| None).unwrap_err().to_string();
        assert!(
            err.contains("missing.py") && err.contains("does not exist"),
            "{err}"
        );
    }

    #[test]
    fn only_a_file_root_alone_can_change_is_read() {
        let d = TempDir::new("nnfcfg");
        let dir = d.path().join("etc");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let f = dir.join("config.py");
        fs::write(&f, "REQUEST_DIR = '/ok/req'\n").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let running_as_root = unsafe { libc::geteuid() } == 0;
        if !running_as_root {
            // Files made by a non-root user are refused: that is the rule.
            assert!(load(&f, &no_env).unwrap_err().contains("not root"));
            return;
        }
        assert_eq!(
            load(&f, &no_env).unwrap().request_dir.unwrap().text,
            "/ok/req"
        );
        fs::set_permissions(&f, fs::Permissions::from_mode(0o664)).unwrap();
        let err = load(&f, &no_env).unwrap_err();
        assert!(
            err.contains(&f.display().to_string()) && err.contains("0664"),
            "{err}"
        );
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o775)).unwrap();
        let err = load(&f, &no_env).unwrap_err();
        assert!(err.contains("refused") && err.contains("0775"), "{err}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::lchown(&f, Some(65534), None).unwrap();
        assert!(load(&f, &no_env).unwrap_err().contains("uid 65534"));
        std::os::unix::fs::lchown(&f, Some(0), None).unwrap();
        // A link owned by someone else could be pointed elsewhere.
        let link = d.path().join("link.py");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(load(&link, &no_env).is_ok());
        std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
        assert!(load(&link, &no_env).unwrap_err().contains("uid 65534"));
        assert!(load(&d.path().join("none.py"), &no_env)
            .unwrap_err()
            .contains("does not exist"));
    }
}
