#![no_main]
//! cargo fuzz run metadata — see fuzz/README.md and `portcullis_fuzz::metadata`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        portcullis_fuzz::init_target("metadata");
    },
    |data: &[u8]| {
        portcullis_fuzz::timed(data, portcullis_fuzz::metadata);
    }
);
