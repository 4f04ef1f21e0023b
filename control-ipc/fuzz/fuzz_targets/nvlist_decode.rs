//! The nvlist decoder on arbitrary bytes: never panics, and whatever decodes packs again
//! and decodes to the same list (in either byte order).
#![no_main]

use control_ipc::codec::{self, ByteOrder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(nvl) = codec::decode(data) {
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let packed = codec::encode_with_order(&nvl, order).expect("decoded lists pack");
            let again = codec::decode(&packed).expect("packed lists decode");
            assert_eq!(again, nvl);
        }
    }
});
