//! Any bytes, decoded whole and as a segment, must give audio or an error, never a panic.
#![no_main]

use ent_features::{Segment, decode, decode_segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode(data);
    let _ = decode_segment(data, Segment::new(0.05, 0.1));
});
