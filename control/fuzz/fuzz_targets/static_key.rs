//! Fuzz the static key file reader; anything it accepts must write back and re-read equal.
#![no_main]

use libfuzzer_sys::fuzz_target;

use control::static_key::StaticKey;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(k) = StaticKey::parse(text) {
        let again = StaticKey::parse(&k.to_file_string()).expect("own output parses");
        assert_eq!(again.as_bytes(), k.as_bytes());
    }
});
