#![no_main]
//! cargo fuzz run return_url — see fuzz/README.md and `portcullis_fuzz::return_url`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        portcullis_fuzz::init_target("return_url");
    },
    |data: &[u8]| {
        portcullis_fuzz::timed(data, portcullis_fuzz::return_url);
    }
);
