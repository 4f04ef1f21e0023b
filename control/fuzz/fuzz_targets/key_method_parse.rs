//! Fuzz the key-method-2 record parser (both layouts) and the peer-info parser: no panic,
//! and a record that parses re-encodes to something that parses to the same record.
#![no_main]

use control::key_method::{Credentials, KeyMethod2, PeerInfo, Sender};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for sender in [Sender::Client, Sender::Server] {
        if let Ok(rec) = KeyMethod2::parse(data, sender) {
            if let Some(pi) = &rec.peer_info {
                let info = PeerInfo::parse(pi);
                let _ = info.iv_proto().flags();
                let _ = info.ciphers();
            }
            if !matches!(rec.credentials, Credentials::TooLong { .. }) {
                if let Ok(bytes) = rec.encode(sender) {
                    let again = KeyMethod2::parse(&bytes, sender).expect("re-encoded record parses");
                    assert_eq!(again.options, rec.options);
                    assert_eq!(again.peer_info, rec.peer_info);
                }
            }
        }
    }
});
