//! Fuzz control-channel text handling: splitting a TLS read into messages, classifying
//! them, and parsing/reassembling PUSH_REPLY options. No panic on any input.
#![no_main]

use control::push::{ControlMessage, PushReplyAssembler, PushedOptions, split_incoming};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let incoming = split_incoming(data);
    let mut asm = PushReplyAssembler::new();
    for m in &incoming.messages {
        let msg = ControlMessage::parse(m);
        let _ = msg.to_text();
        if let ControlMessage::PushReply(body) = msg {
            let _ = PushedOptions::parse(&body);
            let _ = asm.feed(&body);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PushedOptions::parse(text);
        let _ = control::pool::CcdOptions::parse("fuzz", text);
    }
});
