//! The Telegraf-like line-protocol body shared by `benches/line_protocol.rs` and
//! `scripts/bench-lp-parser` (which links this file into its small crate).

/// A body shaped like a Telegraf agent's output: several measurements, 3–4 tags, integer,
/// float and unsigned fields, nanosecond timestamps, an occasional escape or string field.
pub fn telegraf_like_body(lines: usize) -> Vec<u8> {
    use std::io::Write;
    let mut body = Vec::with_capacity(lines * 140);
    let ts = 1_700_000_000_000_000_000i64;
    for i in 0..lines {
        let host = i % 500;
        let t = ts + (i as i64) * 10_000_000;
        let written = match i % 5 {
            0 => writeln!(
                body,
                "cpu,host=server-{host:04},region=eu-west-1,cpu=cpu{} usage_user={}.{},usage_system=3.25,usage_idle=84.125,usage_iowait=0i {t}",
                i % 8,
                i % 100,
                i % 7
            ),
            1 => writeln!(
                body,
                "mem,host=server-{host:04},region=eu-west-1 used={}i,free=8123456789i,cached=123456i,used_percent=42.{} {t}",
                1_000_000 + i,
                i % 1000
            ),
            2 => writeln!(
                body,
                "disk,host=server-{host:04},path=/var/lib/data\\ {},fstype=ext4 used_percent=71.{},inodes_free={}u {t}",
                i % 3,
                i % 10,
                900_000 + i
            ),
            3 => writeln!(
                body,
                "net,host=server-{host:04},interface=eth{} bytes_recv={}i,bytes_sent={}i,err_in=0i,drop_in=0i {t}",
                i % 2,
                i * 1500,
                i * 900
            ),
            _ => writeln!(
                body,
                "system,host=server-{host:04} load1={}.{},load5=0.52,n_users=3i,uptime_format=\"3 days\" {t}",
                i % 4,
                i % 100
            ),
        };
        written.expect("writing to a Vec cannot fail");
    }
    body
}
