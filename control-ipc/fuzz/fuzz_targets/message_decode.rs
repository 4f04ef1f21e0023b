//! Requests as the server reads them and messages as the client reads them: never panic,
//! every request that decodes re-encodes to an equal request.
#![no_main]

use control_ipc::Limits;
use control_ipc::message::{decode_incoming, decode_request, encode_request, peek_id};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let _ = peek_id(data);
    let _ = decode_incoming(data, &limits);
    if let Ok((id, req)) = decode_request(data, &limits) {
        let packed = encode_request(id, &req).expect("decoded requests pack");
        let (id2, req2) = decode_request(&packed, &limits).expect("packed requests decode");
        assert_eq!((id2, req2), (id, req));
    }
});
