//! NNF's shared configuration: nnf-sos ships a small Python module
//! (`config.py`) naming the request and response directories, meant to be
//! imported by the fence agent. This agent runs as root, so it never runs
//! that file: CPython's own parser reads it ([`python_ast`], `ast.parse`,
//! which never runs code), and this module applies the rules to the tree.
//!
//! Understood, at the top level of the file: `REQUEST_DIR = "/x"` (string
//! literals, in every form Python accepts), `REQUEST_DIR = _OTHER_NAME` (a
//! name set to a string above), and `REQUEST_DIR = os.environ.get("VAR",
//! default)` or `os.getenv("VAR", default)` (the variable's value when set,
//! else the default, as Python would compute it). Docstrings and `import os`
//! are skipped; every other statement is ignored and reported as a note,
//! unless it names `REQUEST_DIR` or `RESPONSE_DIR` (as a name, an attribute,
//! an import alias, a keyword or inside a string): then it might change
//! them, and the whole file is refused with the line named.
//!
//! The file is refused, naming it, unless root alone can change it, by the
//! rule of `trust`: the file and every directory above it (and every symbolic
//! link on the way) must be owned by root and not writable by group or
//! others; a sticky directory such as `/tmp` is accepted, since only root may
//! rename or remove root's entries in it. It is read with a bound
//! ([`MAX_BYTES`]) and never waited on.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::python_ast::{self, Field, Node};
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

/// How deep an environment lookup may nest in another's arguments.
const MAX_EVAL_DEPTH: usize = 8;

/// A value being computed: known, or why not.
#[derive(Debug, Clone)]
enum Eval {
    Known(String, Option<String>),
    Unknown(String),
}

const NOT_UNDERSTOOD: &str = "not a string, a name set above or os.environ.get(NAME, DEFAULT)";

/// Whether `call` is `os.environ.get(...)` or `os.getenv(...)`.
fn is_env_lookup(call: &Node) -> bool {
    let Some(func) = call.node("func").filter(|f| f.kind == "Attribute") else {
        return false;
    };
    let is_os = |n: &Node| n.kind == "Name" && n.str("id") == Some("os");
    match (func.str("attr"), func.node("value")) {
        (Some("getenv"), Some(os)) => is_os(os),
        (Some("get"), Some(environ)) => {
            environ.kind == "Attribute"
                && environ.str("attr") == Some("environ")
                && environ.node("value").is_some_and(is_os)
        }
        _ => false,
    }
}

fn eval(
    node: &Node,
    names: &HashMap<String, Eval>,
    env: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Eval {
    match node.kind.as_str() {
        "Constant" => match node.field("value") {
            Some(Field::Str(s)) => Eval::Known(s.clone(), None),
            Some(Field::Bytes(_)) => Eval::Unknown("bytes, not a string".into()),
            _ => Eval::Unknown(NOT_UNDERSTOOD.into()),
        },
        "JoinedStr" => Eval::Unknown("an f-string, which computes its value".into()),
        "Name" => {
            let n = node.str("id").unwrap_or_default();
            match names.get(n) {
                Some(Eval::Known(v, how)) => Eval::Known(
                    v.clone(),
                    Some(how.clone().unwrap_or_else(|| format!("the value of {n}"))),
                ),
                Some(Eval::Unknown(why)) => Eval::Unknown(format!("{n} is {why}")),
                None => Eval::Unknown(format!("{n} is not set to a string above")),
            }
        }
        "Call" if is_env_lookup(node) => {
            if depth >= MAX_EVAL_DEPTH {
                return Eval::Unknown("environment lookups nested too deeply".into());
            }
            let args: Vec<&Node> = node.nodes("args").collect();
            let plain = args.len() == 2
                && args.iter().all(|a| a.kind != "Starred")
                && node.list("keywords").is_empty();
            if !plain {
                return Eval::Unknown(
                    "an environment lookup without exactly a name and a default \
                     (None when unset)"
                        .into(),
                );
            }
            let var = match eval(args[0], names, env, depth + 1) {
                Eval::Known(v, _) => v,
                Eval::Unknown(why) => {
                    return Eval::Unknown(format!("a variable name that is {why}"))
                }
            };
            // Python computes the default whether or not the variable is set.
            let default = match eval(args[1], names, env, depth + 1) {
                Eval::Known(v, _) => v,
                Eval::Unknown(why) => return Eval::Unknown(format!("a default that is {why}")),
            };
            match env(&var) {
                Some(v) => Eval::Known(v, Some(format!("environment variable {var}"))),
                None => Eval::Known(
                    default,
                    Some(format!("the default for {var}, which is not set")),
                ),
            }
        }
        _ => Eval::Unknown(NOT_UNDERSTOOD.into()),
    }
}

/// Which of our names `stmt` mentions in its own parts (nested statements
/// are looked at one by one), and on which line: as an identifier (a name,
/// attribute, alias, argument, keyword, dotted module part) or inside a
/// string or bytes.
fn mentions_ours(stmt: &Node) -> Option<(&'static str, usize)> {
    let ours = [REQUEST_NAME, RESPONSE_NAME];
    // (field, whether it is the value of a Constant, the line it is on)
    let mut todo: Vec<(&Field, bool, usize)> = stmt
        .fields
        .iter()
        .map(|(_, f)| (f, false, stmt.line))
        .collect();
    while let Some((field, literal, line)) = todo.pop() {
        let found = match field {
            Field::Node(n) if n.statement => None,
            Field::Node(n) => {
                let constant = n.kind == "Constant";
                let line = if n.line > 0 { n.line } else { line };
                todo.extend(
                    n.fields
                        .iter()
                        .map(|(k, f)| (f, constant && k == "value", line)),
                );
                None
            }
            Field::List(items) => {
                todo.extend(items.iter().map(|f| (f, literal, line)));
                None
            }
            Field::Str(s) if literal => ours.into_iter().find(|o| s.contains(o)),
            Field::Str(s) => ours
                .into_iter()
                .find(|o| s.split('.').any(|part| part == *o)),
            Field::Bytes(b) => ours
                .into_iter()
                .find(|o| b.windows(o.len()).any(|w| w == o.as_bytes())),
            Field::Other => None,
        };
        if let Some(name) = found {
            return Some((name, line));
        }
    }
    None
}

/// The statements nested in `stmt` (bodies of `if`, `def`, `try`, handlers
/// and `match` cases...), in source order.
fn nested(stmt: &Node) -> Vec<&Node> {
    let mut out = Vec::new();
    let mut todo: Vec<&Field> = stmt.fields.iter().rev().map(|(_, f)| f).collect();
    while let Some(field) = todo.pop() {
        match field {
            Field::Node(n) if n.statement => out.push(n),
            Field::Node(n) => todo.extend(n.fields.iter().rev().map(|(_, f)| f)),
            Field::List(items) => todo.extend(items.iter().rev()),
            _ => {}
        }
    }
    out
}

fn shown(text: &str) -> String {
    let t: String = text.chars().take(80).collect();
    t.escape_debug().to_string()
}

/// What the reader makes of the file, statement by statement.
struct Reader<'a> {
    lines: Vec<&'a str>,
    env: &'a dyn Fn(&str) -> Option<String>,
    names: HashMap<String, Eval>,
    parsed: Parsed,
}

impl Reader<'_> {
    fn text(&self, line: usize) -> String {
        let l = line
            .checked_sub(1)
            .and_then(|i| self.lines.get(i))
            .unwrap_or(&"");
        shown(l.trim())
    }

    fn note(&mut self, line: usize) {
        let note = format!("line {line} ignored: {}", self.text(line));
        self.parsed.notes.push(note);
    }

    /// A statement this reader does not evaluate: a note, or the file's
    /// refusal when it names one of our names. Nested statements likewise.
    fn other(&mut self, stmt: &Node) -> Result<(), String> {
        if let Some((ours, line)) = mentions_ours(stmt) {
            return Err(format!(
                "line {line}: {ours} appears in a statement that cannot be read without \
                 running the file: {}",
                self.text(line)
            ));
        }
        self.note(stmt.line);
        for inner in nested(stmt) {
            self.other(inner)?;
        }
        Ok(())
    }

    fn top_level(&mut self, stmt: &Node) -> Result<(), String> {
        let docstring = stmt.kind == "Expr"
            && stmt.node("value").is_some_and(|v| {
                v.kind == "Constant"
                    && matches!(v.field("value"), Some(Field::Str(_) | Field::Bytes(_)))
            });
        let import_os = stmt.kind == "Import"
            && matches!(stmt.nodes("names").collect::<Vec<_>>().as_slice(),
                [alias] if alias.str("name") == Some("os") && alias.str("asname").is_none());
        if docstring || import_os {
            return Ok(());
        }
        // NAME = [NAME = ...] EXPR, or NAME: TYPE = EXPR.
        let (targets, value): (Vec<&Node>, Option<&Node>) = match stmt.kind.as_str() {
            "Assign" => (stmt.nodes("targets").collect(), stmt.node("value")),
            "AnnAssign" => (
                stmt.node("target").into_iter().collect(),
                stmt.node("value"),
            ),
            _ => (Vec::new(), None),
        };
        let names: Option<Vec<&str>> = targets
            .iter()
            .map(|t| (t.kind == "Name").then(|| t.str("id")).flatten())
            .collect();
        let (Some(targets), Some(value)) = (names.filter(|n| !n.is_empty()), value) else {
            return self.other(stmt);
        };
        let value = eval(value, &self.names, self.env, 0);
        let ours = targets
            .iter()
            .any(|t| *t == REQUEST_NAME || *t == RESPONSE_NAME);
        if let (Eval::Unknown(_), false) = (&value, ours) {
            // Not ours, and not understood: it must not touch ours either.
            return self.other(stmt);
        }
        for t in targets {
            if t == REQUEST_NAME || t == RESPONSE_NAME {
                let v = match &value {
                    Eval::Known(text, how) => Value {
                        text: text.clone(),
                        line: stmt.line,
                        how: how.clone(),
                    },
                    Eval::Unknown(why) => {
                        return Err(format!(
                            "line {}: {t} cannot be read without running the file ({why}): {}",
                            stmt.line,
                            self.text(stmt.line)
                        ))
                    }
                };
                if t == REQUEST_NAME {
                    self.parsed.request_dir = Some(v);
                } else {
                    self.parsed.response_dir = Some(v);
                }
            }
            self.names.insert(t.to_string(), value.clone());
        }
        Ok(())
    }
}

/// Reads the file's text through CPython's parser. `env` looks environment
/// variables up, as the file's `os.environ.get` would. Errors name the line.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, String> {
    let module = python_ast::parse(text.as_bytes())?;
    // Lines as the parser counts them: \r\n, \r and \n each end one.
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut reader = Reader {
        lines: normalized.split('\n').collect(),
        env,
        names: HashMap::new(),
        parsed: Parsed::default(),
    };
    for stmt in module.nodes("body") {
        reader.top_level(stmt)?;
    }
    Ok(reader.parsed)
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
    fn a_mention_anywhere_in_a_statement_not_understood_refuses_the_file() {
        for (text, line) in [
            // In the value of another name's assignment.
            ("X = exec('REQUEST_DIR = 1')\n", 1),
            ("X = (REQUEST_DIR := '/b')\n", 1),
            ("X = os.getenv('A', REQUEST_DIR)\n", 1),
            // As an attribute, a keyword, an import or a parameter.
            ("import sys\nsys.modules[__name__].RESPONSE_DIR = '/b'\n", 2),
            ("globals().update(RESPONSE_DIR='/b')\n", 1),
            ("from elsewhere import REQUEST_DIR\n", 1),
            ("import pkg.RESPONSE_DIR\n", 1),
            ("def f(REQUEST_DIR):\n    pass\n", 1),
            ("def f():\n    global REQUEST_DIR\n", 2),
            (
                "X = 1\ntry:\n    pass\nexcept E as REQUEST_DIR:\n    pass\n",
                4,
            ),
            ("with open('/x') as f:\n    exec(b'RESPONSE_DIR = 1')\n", 2),
            ("print(f'{REQUEST_DIR}')\n", 1),
            ("REQUEST_DIR: str\n", 1),
            ("REQUEST_DIR, X = '/a', '/b'\n", 1),
        ] {
            let err = parse(text, &no_env).unwrap_err();
            assert!(err.starts_with(&format!("line {line}:")), "{text:?}: {err}");
            assert!(err.contains("_DIR"), "{err}");
        }
        // A docstring may name them; a longer name is another name.
        let text = "\"\"\"Sets REQUEST_DIR.\"\"\"\nX = REQUEST_DIR_HINT = 'a'\n";
        assert_eq!(parse(text, &no_env).unwrap(), Parsed::default());
    }

    #[test]
    fn strings_read_as_python_reads_them() {
        for (literal, value) in [
            (r"'/a\x41'", "/aA"),
            (r"'/a\u00e9'", "/a\u{e9}"),
            (r"r'/a\b'", r"/a\b"),
            ("u'/a'", "/a"),
            ("'''/a'''", "/a"),
            ("('/a'\n    '/b')", "/a/b"),
            ("'/a' \\\n '/b'", "/a/b"),
        ] {
            let text = format!("REQUEST_DIR = {literal}\n");
            let p = parse(&text, &no_env).unwrap();
            assert_eq!(p.request_dir.unwrap().text, value, "{text:?}");
        }
        // Lines as Python counts them, whatever the line ends.
        let p = parse("X = '1'\r\n\r\nREQUEST_DIR = '/a'\r\n", &no_env).unwrap();
        assert_eq!(p.request_dir.unwrap().line, 3);
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        let p = parse("X = f()\r\nREQUEST_DIR = '/a'\r\n", &no_env).unwrap();
        assert_eq!(p.notes, ["line 1 ignored: X = f()"]);
    }

    #[test]
    fn an_environment_lookup_needs_a_default_python_can_compute() {
        let env = |k: &str| (k == "A").then(|| "/env".to_string());
        let p = parse("REQUEST_DIR = os.environ.get('A', '/d')\n", &env).unwrap();
        assert_eq!(p.request_dir.unwrap().text, "/env");
        // Python computes the default even when the variable is set.
        for text in [
            "REQUEST_DIR = os.environ.get('A', compute())\n",
            "REQUEST_DIR = os.getenv('A', default='/d')\n",
            "REQUEST_DIR = os.getenv(*ARGS)\n",
            "REQUEST_DIR = os.environ.get(b'A', '/d')\n",
        ] {
            let err = parse(text, &env).unwrap_err();
            assert!(err.starts_with("line 1: REQUEST_DIR"), "{text:?}: {err}");
        }
        let depth = MAX_EVAL_DEPTH + 1;
        let nested = format!(
            "REQUEST_DIR = {}'/d'{}\n",
            "os.getenv('B', ".repeat(depth),
            ")".repeat(depth)
        );
        let err = parse(&nested, &env).unwrap_err();
        assert!(err.contains("nested too deeply"), "{err}");
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
