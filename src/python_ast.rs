//! CPython's own parser for the engine: `ast.parse` of a source, handed back
//! as a plain tree the engine's rules can walk without knowing Python.
//!
//! `ast.parse` only parses: it never runs the code, and it reads every form
//! the interpreter accepts, exactly as the interpreter does (string prefixes,
//! escapes, implicit concatenation, continuation lines, encoding cookies).
//! The tree is kept generic (each node's class name, line and fields, as
//! `ast` lists them in `_fields`), so it reads the same on every CPython the
//! agent supports (3.9 and later: literals are `ast.Constant` since 3.8, new
//! node kinds only add names).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

/// How deep a tree may nest. A config file of a few assignments nests a
/// handful of levels; deeper input is not such a file, and a bound keeps the
/// conversion's recursion small.
pub const MAX_DEPTH: usize = 64;

/// A node of the syntax tree, e.g. `Assign` with fields `targets`, `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The class name in `ast` (`Assign`, `Name`, `Constant`, ...).
    pub kind: String,
    /// The first line of the node (1-based; 0 for nodes without a position).
    pub line: usize,
    /// Whether it is a statement (`ast.stmt`).
    pub statement: bool,
    /// The fields in `_fields` order.
    pub fields: Vec<(String, Field)>,
}

/// A field of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Node(Node),
    List(Vec<Field>),
    /// A `str`: an identifier, or the value of a string `Constant`.
    Str(String),
    /// A `bytes` value (of a bytes `Constant`).
    Bytes(Vec<u8>),
    /// None, a number, Ellipsis or a constant kind this reader never uses.
    Other,
}

impl Node {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }

    /// The node in field `name`, if it holds one.
    pub fn node(&self, name: &str) -> Option<&Node> {
        match self.field(name) {
            Some(Field::Node(n)) => Some(n),
            _ => None,
        }
    }

    /// The str in field `name`, if it holds one.
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.field(name) {
            Some(Field::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The items of list field `name` (empty when it is not a list).
    pub fn list(&self, name: &str) -> &[Field] {
        match self.field(name) {
            Some(Field::List(items)) => items,
            _ => &[],
        }
    }

    /// The nodes of list field `name`.
    pub fn nodes<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Node> + 'a {
        self.list(name).iter().filter_map(|f| match f {
            Field::Node(n) => Some(n),
            _ => None,
        })
    }
}

/// Parses `source` as a module (`ast.parse(source)`, given as bytes so an
/// encoding cookie or BOM is read as the interpreter reads a file). Errors
/// say what is wrong, starting with `line N:` when the parser names a line.
pub fn parse(source: &[u8]) -> Result<Node, String> {
    Python::attach(|py| {
        let ast = py
            .import("ast")
            .map_err(|e| format!("cannot load the Python parser: {e}"))?;
        // Quietly: the parser warns on stderr about forms it still accepts
        // (an invalid escape, a number run into a name); the rules decide.
        let warnings = py
            .import("warnings")
            .and_then(|w| w.call_method0("catch_warnings"))
            .map_err(|e| e.to_string())?;
        warnings
            .call_method0("__enter__")
            .map_err(|e| e.to_string())?;
        let tree = py
            .import("warnings")
            .and_then(|w| w.call_method1("simplefilter", ("ignore",)))
            .and_then(|_| ast.call_method1("parse", (PyBytes::new(py, source),)));
        let none = py.None();
        warnings
            .call_method1("__exit__", (&none, &none, &none))
            .map_err(|e| e.to_string())?;
        let tree = tree.map_err(|e| syntax_error(py, &e))?;
        let kinds = Kinds {
            node: ast.getattr("AST").map_err(|e| e.to_string())?,
            statement: ast.getattr("stmt").map_err(|e| e.to_string())?,
        };
        convert(&tree, &kinds, 0).map_err(|e| e.to_string())
    })
}

fn syntax_error(py: Python<'_>, e: &PyErr) -> String {
    let value = e.value(py);
    let line: Option<usize> = value.getattr("lineno").ok().and_then(|l| l.extract().ok());
    let message: Option<String> = value.getattr("msg").ok().and_then(|m| m.extract().ok());
    match (line, message) {
        (Some(line), Some(msg)) => format!("line {line}: {msg}"),
        (None, Some(msg)) => msg,
        _ => format!("{}: {value}", type_name(&value.get_type())),
    }
}

fn type_name(t: &Bound<'_, pyo3::types::PyType>) -> String {
    t.name().map(|n| n.to_string()).unwrap_or_default()
}

struct Kinds<'py> {
    node: Bound<'py, PyAny>,
    statement: Bound<'py, PyAny>,
}

#[derive(Debug)]
enum ConvertError {
    TooDeep(usize),
    Python(PyErr),
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConvertError::TooDeep(line) => write!(
                f,
                "line {line}: nested more than {MAX_DEPTH} levels deep, which no \
                 configuration needs"
            ),
            ConvertError::Python(e) => write!(f, "cannot read the parsed file: {e}"),
        }
    }
}

impl From<PyErr> for ConvertError {
    fn from(e: PyErr) -> Self {
        ConvertError::Python(e)
    }
}

fn convert(obj: &Bound<'_, PyAny>, kinds: &Kinds<'_>, depth: usize) -> Result<Node, ConvertError> {
    let line: usize = match obj.getattr_opt("lineno")? {
        Some(l) => l.extract().unwrap_or(0),
        None => 0,
    };
    if depth > MAX_DEPTH {
        return Err(ConvertError::TooDeep(line));
    }
    let class = obj.get_type();
    let mut fields = Vec::new();
    for name in class.getattr("_fields")?.try_iter()? {
        let name: String = name?.extract()?;
        // Optional fields may be absent on older interpreters.
        let value = match obj.getattr_opt(name.as_str())? {
            Some(v) => convert_value(&v, kinds, depth + 1)?,
            None => Field::Other,
        };
        fields.push((name, value));
    }
    Ok(Node {
        kind: type_name(&class),
        line,
        statement: obj.is_instance(&kinds.statement)?,
        fields,
    })
}

fn convert_value(
    v: &Bound<'_, PyAny>,
    kinds: &Kinds<'_>,
    depth: usize,
) -> Result<Field, ConvertError> {
    if v.is_instance(&kinds.node)? {
        return Ok(Field::Node(convert(v, kinds, depth)?));
    }
    if let Ok(list) = v.cast::<PyList>() {
        let mut items = Vec::with_capacity(list.len());
        for item in list.iter() {
            items.push(convert_value(&item, kinds, depth)?);
        }
        return Ok(Field::List(items));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Field::Str(s.to_cow()?.into_owned()));
    }
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(Field::Bytes(b.as_bytes().to_vec()));
    }
    Ok(Field::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_as_a_plain_tree() {
        let tree = parse(b"import os\nX = 'a' 'b'  # c\nif X:\n    pass\n").unwrap();
        assert_eq!(tree.kind, "Module");
        let body: Vec<&Node> = tree.nodes("body").collect();
        assert_eq!(
            body.iter()
                .map(|n| (n.kind.as_str(), n.line))
                .collect::<Vec<_>>(),
            [("Import", 1), ("Assign", 2), ("If", 3)]
        );
        assert!(body.iter().all(|n| n.statement));
        let value = body[1].node("value").unwrap();
        assert_eq!((value.kind.as_str(), value.statement), ("Constant", false));
        assert_eq!(value.field("value"), Some(&Field::Str("ab".into())));
        let target = body[1].nodes("targets").next().unwrap();
        assert_eq!(target.str("id"), Some("X"));
        assert_eq!(body[2].nodes("body").next().unwrap().line, 4);
        let b = parse(b"B = b'\\x00'\n").unwrap();
        let value = b.nodes("body").next().unwrap().node("value").unwrap();
        assert_eq!(value.field("value"), Some(&Field::Bytes(vec![0])));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse(b"X = 1\nY = (\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let err = parse(b"X = )\n").unwrap_err();
        assert!(err.starts_with("line 1:"), "{err}");
        assert!(parse(b"X = '\0'\n\0").is_err());
    }

    #[test]
    fn warnings_of_the_parser_are_not_shown() {
        // A warning turned into an error would fail the parse: none is shown.
        Python::attach(|py| {
            let w = py.import("warnings").unwrap();
            w.call_method1("simplefilter", ("error",)).unwrap();
            let tree = parse(b"X = '\\d'\nY = 1if 1else 2\n");
            w.call_method0("resetwarnings").unwrap();
            assert!(tree.is_ok(), "{tree:?}");
        });
    }

    #[test]
    fn an_encoding_cookie_is_read_as_the_interpreter_reads_it() {
        let tree = parse(b"# -*- coding: latin-1 -*-\nX = '\xe9'\n").unwrap();
        let value = tree.nodes("body").next().unwrap().node("value").unwrap();
        assert_eq!(value.field("value"), Some(&Field::Str("\u{e9}".into())));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("X = {}1\n", "-".repeat(MAX_DEPTH * 2));
        let err = parse(deep.as_bytes()).unwrap_err();
        assert!(err.contains("nested more than"), "{err}");
    }
}
