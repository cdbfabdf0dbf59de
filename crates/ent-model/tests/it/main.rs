//! Integration tests of ent-model.

mod lstm;
mod model;
mod nn;
