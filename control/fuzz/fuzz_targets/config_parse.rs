//! Fuzz the OpenVPN config parser: any text must give options or a located error, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = control::config::parse_str("fuzz.conf", text) {
            // Formatting the error must not panic either.
            let _ = e.to_string();
        }
    }
});
