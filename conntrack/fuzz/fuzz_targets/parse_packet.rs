//! The packet parser and the reject builder on arbitrary bytes.
#![no_main]

use conntrack::packet;
use conntrack::{IcmpxCode, REJECT_BUF_LEN, RejectKind, build_reject};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = packet::parse(data) {
        assert!(p.bytes().len() <= data.len());
        assert!(p.l4_offset() <= p.bytes().len());
        let _ = p.tcp_options();
    }
    let mut buf = [0u8; REJECT_BUF_LEN];
    for kind in [RejectKind::TcpReset, RejectKind::Icmp(IcmpxCode::PortUnreachable)] {
        if let Ok(n) = build_reject(data, kind, &mut buf) {
            assert!(packet::parse(&buf[..n]).is_ok());
        }
    }
});
