//! Fuzz target `aarch64_walk`: `synq::fuzzing::aarch64_walk` (see src/fuzzing.rs for what it drives and its input format).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = synq::fuzzing::aarch64_walk(data);
});
