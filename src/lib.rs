//! fence_gfs2_recorder: the fence request/response exchange with the NNF
//! reconciler, its journal, and the Python binding.
//!
//! One module per concern; only `python` (the binding) and `python_ast`
//! (CPython's parser, for `nnf_config`) know about Python.

pub mod discovery;
pub mod exchange;
pub mod fenced;
pub mod health;
pub mod journal;
pub mod mounts;
pub mod nnf_checks;
pub mod nnf_config;
pub mod nnf_view;
pub mod nvmet;
pub mod protocol;
pub mod python;
pub mod python_ast;
pub mod recent;
pub mod responder;
pub mod settings;
pub mod spool;
pub mod trust;
pub mod wait;

#[cfg(test)]
mod test_support;
