//! fence_gfs2_recorder: the fence request/response exchange with the NNF
//! reconciler, its journal, and the Python binding.
//!
//! One module per concern; only `python` knows about Python.

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
pub mod recent;
pub mod responder;
pub mod settings;
pub mod spool;
pub mod wait;

#[cfg(test)]
mod test_support;
