//! The rules parser on arbitrary text; accepted rulesets list and parse back equal.
#![no_main]

use conntrack::RuleSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match RuleSet::parse(text) {
        Ok(rs) => {
            let again = RuleSet::parse(&rs.to_string()).expect("listing parses back");
            assert_eq!(again.rules(), rs.rules());
        }
        Err(e) => assert!(e.line >= 1 && e.col >= 1),
    }
});
