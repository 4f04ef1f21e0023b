//! OpenVPN's `--status` file, so existing monitoring keeps working: versions 1, 2 (comma
//! separated, with HEADER lines) and 3 (tab separated), with the columns stock 2.6 writes.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::server::Server;

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time, as OpenVPN prints dates.
pub fn format_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

struct Row {
    cn: String,
    real: String,
    v4: String,
    v6: String,
    bytes_in: u64,
    bytes_out: u64,
    since: u64,
    client_id: u64,
    peer_id: u32,
    cipher: String,
}

/// Renders the status file of a server. `now`/`unix_now` map the shell's clock to wall time.
pub fn render(server: &Server, version: u8, now: Instant, unix_now: u64) -> String {
    let to_unix = |t: Instant| unix_now.saturating_sub(now.saturating_duration_since(t).as_secs());
    let mut rows: Vec<Row> = server
        .connections()
        .filter_map(|c| {
            let a = c.admitted.as_ref()?;
            Some(Row {
                cn: c.common_name.clone().unwrap_or_default(),
                real: c.remote.to_string(),
                v4: a.ipv4.map(|(ip, _)| ip.to_string()).unwrap_or_default(),
                v6: a.ipv6.map(|(ip, _, _)| ip.to_string()).unwrap_or_default(),
                bytes_in: c.traffic.bytes_in,
                bytes_out: c.traffic.bytes_out,
                since: c.admitted_at.map(to_unix).unwrap_or(unix_now),
                client_id: a.id.0,
                peer_id: c.peer_id.unwrap_or(0),
                cipher: c
                    .negotiated
                    .as_ref()
                    .map(|n| n.cipher.name().to_string())
                    .unwrap_or_default(),
            })
        })
        .collect();
    rows.sort_by(|a, b| a.cn.cmp(&b.cn).then(a.real.cmp(&b.real)));
    let title = format!(
        "dco-control {} (OpenVPN 2.6 compatible, user-space DCO)",
        env!("CARGO_PKG_VERSION")
    );
    let mut out = String::new();
    if version <= 1 {
        let _ = writeln!(
            out,
            "OpenVPN CLIENT LIST\nUpdated,{}",
            format_time(unix_now)
        );
        out.push_str("Common Name,Real Address,Bytes Received,Bytes Sent,Connected Since\n");
        for r in &rows {
            let _ = writeln!(
                out,
                "{},{},{},{},{}",
                r.cn,
                r.real,
                r.bytes_in,
                r.bytes_out,
                format_time(r.since)
            );
        }
        out.push_str("ROUTING TABLE\nVirtual Address,Common Name,Real Address,Last Ref\n");
        for r in &rows {
            for v in [&r.v4, &r.v6].into_iter().filter(|v| !v.is_empty()) {
                let _ = writeln!(out, "{v},{},{},{}", r.cn, r.real, format_time(unix_now));
            }
        }
        out.push_str("GLOBAL STATS\nMax bcast/mcast queue length,0\nEND\n");
        return out;
    }
    let sep = if version >= 3 { "\t" } else { "," };
    let line = |fields: &[&str]| fields.join(sep) + "\n";
    out.push_str(&line(&["TITLE", &title]));
    out.push_str(&line(&[
        "TIME",
        &format_time(unix_now),
        &unix_now.to_string(),
    ]));
    out.push_str(&line(&[
        "HEADER",
        "CLIENT_LIST",
        "Common Name",
        "Real Address",
        "Virtual Address",
        "Virtual IPv6 Address",
        "Bytes Received",
        "Bytes Sent",
        "Connected Since",
        "Connected Since (time_t)",
        "Username",
        "Client ID",
        "Peer ID",
        "Data Channel Cipher",
    ]));
    for r in &rows {
        out.push_str(&line(&[
            "CLIENT_LIST",
            &r.cn,
            &r.real,
            &r.v4,
            &r.v6,
            &r.bytes_in.to_string(),
            &r.bytes_out.to_string(),
            &format_time(r.since),
            &r.since.to_string(),
            "UNDEF",
            &r.client_id.to_string(),
            &r.peer_id.to_string(),
            &r.cipher,
        ]));
    }
    out.push_str(&line(&[
        "HEADER",
        "ROUTING_TABLE",
        "Virtual Address",
        "Common Name",
        "Real Address",
        "Last Ref",
        "Last Ref (time_t)",
    ]));
    for r in &rows {
        for v in [&r.v4, &r.v6].into_iter().filter(|v| !v.is_empty()) {
            out.push_str(&line(&[
                "ROUTING_TABLE",
                v,
                &r.cn,
                &r.real,
                &format_time(unix_now),
                &unix_now.to_string(),
            ]));
        }
    }
    out.push_str(&line(&[
        "GLOBAL_STATS",
        "Max bcast/mcast queue length",
        "0",
    ]));
    out.push_str(&line(&["GLOBAL_STATS", "dco_enabled", "1"]));
    out.push_str("END\n");
    out
}

/// Rewrites an open status file in place. The file is opened once before the control
/// process drops root (as OpenVPN does), so it may live where only root can create files.
pub fn write(file: &mut std::fs::File, text: &str) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(text.as_bytes())?;
    file.flush()
}

/// How often to write.
pub fn interval(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_time(1_795_323_845), "2026-11-22 05:04:05");
    }
}
