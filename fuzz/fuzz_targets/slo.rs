#![no_main]
//! cargo fuzz run slo — see fuzz/README.md and `portcullis_fuzz::slo`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        portcullis_fuzz::init_target("slo");
    },
    |data: &[u8]| {
        portcullis_fuzz::timed(data, portcullis_fuzz::slo);
    }
);
