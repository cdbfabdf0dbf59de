//! Integration tests of ent-decode.

mod metrics;
mod search;
