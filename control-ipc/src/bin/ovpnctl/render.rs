//! Human output of `ovpnctl`: `wg show`-like peer listings, counter tables, conntrack lines
//! in `conntrack -L` style. Never prints key bytes (the replies carry none).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use control_ipc::Notification;
use control_ipc::schema::*;
use control_ipc::types::InOut;

/// `1.21 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", UNITS[u])
}

/// `3 minutes` / `1 hour, 2 minutes`.
pub fn duration(secs: u64) -> String {
    let unit = |n: u64, what: &str| {
        if n == 1 {
            format!("1 {what}")
        } else {
            format!("{n} {what}s")
        }
    };
    match secs {
        0..60 => unit(secs, "second"),
        60..3600 => unit(secs / 60, "minute"),
        3600..86400 => {
            let m = (secs % 3600) / 60;
            if m == 0 {
                unit(secs / 3600, "hour")
            } else {
                format!("{}, {}", unit(secs / 3600, "hour"), unit(m, "minute"))
            }
        }
        _ => {
            let h = (secs % 86400) / 3600;
            if h == 0 {
                unit(secs / 86400, "day")
            } else {
                format!("{}, {}", unit(secs / 86400, "day"), unit(h, "hour"))
            }
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `5 minutes ago` from a Unix timestamp.
pub fn ago(ts: Option<u64>) -> String {
    match ts {
        None | Some(0) => "never".into(),
        Some(t) => {
            let n = now();
            if t >= n {
                "just now".into()
            } else {
                format!("{} ago", duration(n - t))
            }
        }
    }
}

/// The interface block of `show`.
pub fn interface(info: &Info) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "interface: {}", info.ifname);
    let _ = writeln!(
        s,
        "  state: {}",
        if info.running {
            "running"
        } else {
            "not started"
        }
    );
    let _ = writeln!(
        s,
        "  daemon: {} ({} worker{}), crypto: {}, gpu: {}",
        info.version,
        info.workers,
        if info.workers == 1 { "" } else { "s" },
        info.crypto_backend,
        info.gpu_status
    );
    if !info.listen.is_empty() {
        let l: Vec<String> = info.listen.iter().map(|e| e.0.to_string()).collect();
        let _ = writeln!(s, "  listening: {}", l.join(", "));
    }
    let _ = writeln!(s, "  peers: {}, up {}", info.peers, duration(info.uptime));
    s
}

/// One peer block of `show`.
pub fn peer(p: &PeerInfo) -> String {
    let mut s = String::new();
    match &p.common_name {
        Some(cn) => {
            let _ = writeln!(s, "peer {}: {cn}", p.peerid);
        }
        None => {
            let _ = writeln!(s, "peer {}", p.peerid);
        }
    }
    match p.local {
        Some(l) => {
            let _ = writeln!(s, "  endpoint: {} (local {l})", p.remote);
        }
        None => {
            let _ = writeln!(s, "  endpoint: {}", p.remote);
        }
    }
    let mut vpn = Vec::new();
    if let Some(a) = p.vpn_ipv4 {
        vpn.push(a.to_string());
    }
    if let Some(a) = p.vpn_ipv6 {
        vpn.push(a.to_string());
    }
    if !vpn.is_empty() {
        let _ = writeln!(s, "  vpn addresses: {}", vpn.join(", "));
    }
    if !p.iroutes.is_empty() {
        let r: Vec<String> = p.iroutes.iter().map(|r| r.to_string()).collect();
        let _ = writeln!(s, "  iroutes: {}", r.join(", "));
    }
    if p.keys.is_empty() {
        let _ = writeln!(s, "  keys: none");
    } else {
        let k: Vec<String> = p
            .keys
            .iter()
            .map(|k| {
                let when = match k.installed {
                    Some(_) => format!(" (installed {})", ago(k.installed)),
                    None => String::new(),
                };
                format!("{} key-id {} {}{when}", k.slot, k.keyid, k.cipher)
            })
            .collect();
        let _ = writeln!(s, "  keys: {}", k.join(", "));
    }
    if p.interval > 0 || p.timeout > 0 {
        let _ = writeln!(
            s,
            "  keepalive: every {} s, timeout {} s",
            p.interval, p.timeout
        );
    }
    let _ = writeln!(
        s,
        "  latest rx: {}, latest tx: {}",
        ago(p.last_rx),
        ago(p.last_tx)
    );
    let _ = writeln!(
        s,
        "  transfer: {} received ({} packets), {} sent ({} packets)",
        bytes(p.bytes.rx),
        p.packets.rx,
        bytes(p.bytes.tx),
        p.packets.tx
    );
    s
}

/// `stats`.
pub fn stats(st: &InterfaceStats) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{:<12} {:>16} {:>16}", "", "in", "out");
    let rows: [(&str, &InOut, bool); 7] = [
        ("data", &st.data, false),
        ("ctrl", &st.ctrl, false),
        ("lost_data", &st.lost_data, false),
        ("lost_ctrl", &st.lost_ctrl, false),
        ("nomem_data", &st.nomem_data, false),
        ("tunnel", &st.tunnel, true),
        ("transport", &st.transport, true),
    ];
    for (name, io, is_bytes) in rows {
        if is_bytes {
            let _ = writeln!(s, "{name:<12} {:>16} {:>16}", bytes(io.rx), bytes(io.tx));
        } else {
            let _ = writeln!(s, "{name:<12} {:>16} {:>16}  packets", io.rx, io.tx);
        }
    }
    if !st.drops.is_empty() {
        let _ = writeln!(s, "drops:");
        for d in &st.drops {
            let _ = writeln!(s, "  {:<24} {}", d.name, d.value);
        }
    }
    s
}

/// `stats --peers`.
pub fn peer_stats(peers: &[PeerStats]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>8} {:>12} {:>12} {:>14} {:>14}",
        "peer", "packets in", "packets out", "bytes in", "bytes out"
    );
    for p in peers {
        let _ = writeln!(
            s,
            "{:>8} {:>12} {:>12} {:>14} {:>14}",
            p.peerid,
            p.packets.rx,
            p.packets.tx,
            bytes(p.bytes.rx),
            bytes(p.bytes.tx)
        );
    }
    s
}

fn proto_name(p: u8) -> &'static str {
    match p {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        58 => "icmpv6",
        _ => "unknown",
    }
}

fn tuple(t: &CtTuple, packets: u64, bytes: u64) -> String {
    let mut s = format!("src={} dst={}", t.src, t.dst);
    if let Some(p) = t.sport {
        let _ = write!(s, " sport={p}");
    }
    if let Some(p) = t.dport {
        let _ = write!(s, " dport={p}");
    }
    if let Some(v) = t.icmp_type {
        let _ = write!(s, " type={v}");
    }
    if let Some(v) = t.icmp_code {
        let _ = write!(s, " code={v}");
    }
    if let Some(v) = t.icmp_id {
        let _ = write!(s, " id={v}");
    }
    let _ = write!(s, " packets={packets} bytes={bytes}");
    s
}

/// One `conntrack -L`-style line.
pub fn ct_entry(e: &CtEntry) -> String {
    let mut s = format!("{:<8} {:<2} {} ", proto_name(e.proto), e.proto, e.timeout);
    if !e.state.is_empty() && !matches!(e.proto, 1 | 58 | 17) {
        let _ = write!(s, "{} ", e.state);
    }
    s.push_str(&tuple(&e.orig, e.orig_packets, e.orig_bytes));
    if e.reply_packets == 0 && e.state == "UNREPLIED" {
        s.push_str(" [UNREPLIED]");
    }
    s.push(' ');
    s.push_str(&tuple(&e.reply, e.reply_packets, e.reply_bytes));
    if e.assured {
        s.push_str(" [ASSURED]");
    }
    let _ = write!(s, " mark={}", e.mark);
    if let Some(p) = e.peerid {
        let _ = write!(s, " peer={p}");
    }
    s
}

/// `ct stats`.
pub fn ct_stats(c: &CtStats) -> String {
    let mut s = format!(
        "entries={} max={} new={} invalid={} drop={} early_drop={} expired={} insert_failed={}",
        c.entries, c.max, c.new, c.invalid, c.drop, c.early_drop, c.expired, c.insert_failed
    );
    for n in &c.counters {
        let _ = write!(s, " {}={}", n.name, n.value);
    }
    s.push('\n');
    s
}

/// `fw list`.
pub fn fw_rules(r: &FwRules) -> String {
    let mut s = format!(
        "policy {} ({} packets, {})\n",
        r.policy,
        r.policy_packets,
        bytes(r.policy_bytes)
    );
    for rule in &r.rules {
        let _ = writeln!(
            s,
            "{:>4}  {:<48} {} packets, {}",
            rule.index,
            rule.text,
            rule.packets,
            bytes(rule.bytes)
        );
    }
    s
}

/// `fw counters`.
pub fn fw_counters(c: &FwCounters) -> String {
    let mut s = format!(
        "policy: {} packets, {}\n",
        c.policy_packets,
        bytes(c.policy_bytes)
    );
    for r in &c.rules {
        let _ = writeln!(
            s,
            "{:>4}: {} packets, {}",
            r.index,
            r.packets,
            bytes(r.bytes)
        );
    }
    s
}

/// One `watch` line.
pub fn notification(n: &Notification) -> String {
    match n {
        Notification::DelPeer(d) => format!(
            "DEL_PEER peer {} ({}): received {} ({} packets), sent {} ({} packets)",
            d.peerid,
            d.del_reason,
            bytes(d.bytes.rx),
            d.packets.rx,
            bytes(d.bytes.tx),
            d.packets.tx
        ),
        Notification::RotateKey(r) => format!("ROTATE_KEY peer {}", r.peerid),
        Notification::Float(f) => format!("FLOAT peer {} now at {}", f.peerid, f.address),
        Notification::ControlPacket(c) => {
            let peer = c.peerid.map(|p| format!(" peer {p}")).unwrap_or_default();
            let local = c.local.map(|l| format!(" to {l}")).unwrap_or_default();
            let op = c.packet.0.first().map(|b| b >> 3).unwrap_or(0);
            format!(
                "CONTROL_PACKET{peer} from {}{local}: {} bytes, opcode {op}",
                c.remote,
                c.packet.0.len()
            )
        }
        Notification::Missed(m) => format!("MISSED {} notifications (fell behind)", m.count),
        Notification::CtEvent(e) if e.missed > 0 => {
            format!("    [MISSED {}]\n{}", e.missed, e.text)
        }
        Notification::CtEvent(e) => e.text.clone(),
        Notification::Unknown { notification, .. } => {
            format!("notification type {notification} (unknown to this ovpnctl)")
        }
    }
}

/// A notification as a JSON object with its type name.
pub fn notification_json(n: &Notification) -> serde_json::Value {
    let (name, body) = match n {
        Notification::DelPeer(d) => ("DEL_PEER", serde_json::to_value(d)),
        Notification::RotateKey(r) => ("ROTATE_KEY", serde_json::to_value(r)),
        Notification::Float(f) => ("FLOAT", serde_json::to_value(f)),
        Notification::ControlPacket(c) => ("CONTROL_PACKET", serde_json::to_value(c)),
        Notification::Missed(m) => ("MISSED", serde_json::to_value(m)),
        Notification::CtEvent(e) => ("CT_EVENT", serde_json::to_value(e)),
        Notification::Unknown { notification, .. } => {
            ("UNKNOWN", Ok(serde_json::json!({ "type": notification })))
        }
    };
    let mut v = body.unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(m) = &mut v {
        m.insert(
            "notification".into(),
            serde_json::Value::String(name.into()),
        );
    }
    v
}
