#![no_main]
//! cargo fuzz run acs — see fuzz/README.md and `portcullis_fuzz::acs`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        portcullis_fuzz::init_target("acs");
    },
    |data: &[u8]| {
        portcullis_fuzz::timed(data, portcullis_fuzz::acs);
    }
);
