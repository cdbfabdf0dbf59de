//! Integration tests of `ent-kernels` (one binary; modules by topic).

#[cfg(feature = "emulate")]
mod emulated_lstm;
