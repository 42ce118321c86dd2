//! An fsync error keeps the acknowledgements it covers held and marks the
//! sink unhealthy. The disk queue lives on a real filesystem that cannot
//! make data durable: ext4 on a loop device whose (sparse) backing file sits
//! on a full 8 MiB tmpfs, so writes land in the page cache and `fsync` fails
//! with ENOSPC. Needs root (mount, losetup), like any test of a full disk.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::fault_http::{FaultServer, Reply};
use common::*;

/// tmpfs → sparse image → loop device → ext4; torn down on drop.
struct FullDisk {
    back: PathBuf,
    mnt: PathBuf,
    loop_dev: String,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

impl FullDisk {
    fn new(root: &Path) -> FullDisk {
        let (back, mnt) = (root.join("back"), root.join("mnt"));
        std::fs::create_dir_all(&back).unwrap();
        std::fs::create_dir_all(&mnt).unwrap();
        let image = back.join("disk.img");
        let setup = || -> Result<String, String> {
            run(Command::new("mount").args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"]).arg(&back))?;
            run(Command::new("truncate").args(["-s", "64M"]).arg(&image))?;
            run(Command::new("mkfs.ext4").args(["-q", "-O", "^has_journal"]).arg(&image))?;
            let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(&image))?;
            run(Command::new("mount").args(["-o", "errors=continue", &dev]).arg(&mnt)).inspect_err(|_| {
                let _ = Command::new("losetup").args(["-d", &dev]).status();
            })?;
            Ok(dev)
        };
        match setup() {
            Ok(loop_dev) => FullDisk { back, mnt, loop_dev },
            Err(e) => {
                let _ = Command::new("umount").arg(&back).status();
                panic!(
                    "cannot build a small full filesystem ({e}); this test needs root with mount, losetup and \
                     mkfs.ext4 (apt-get install -y util-linux e2fsprogs)"
                )
            }
        }
    }

    /// Fills the tmpfs under the image: the loop device can no longer write back.
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=1M"])
            .arg(format!("of={}", self.back.join("filler").display()))
            .stderr(Stdio::null())
            .status();
    }

    fn free(&self) {
        std::fs::remove_file(self.back.join("filler")).expect("remove filler");
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        let _ = Command::new("losetup").args(["-d", &self.loop_dev]).status();
        let _ = Command::new("umount").arg("-l").arg(&self.back).status();
    }
}

fn post(url: &str, line: &str) -> (u16, String) {
    let curl = require_binary("curl", "apt-get install -y curl");
    let mut child = Command::new(curl)
        .args(["-s", "-i", "-m", "30", "--data-binary", "@-", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(line.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), text)
}

fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[test]
fn an_fsync_error_holds_acks_and_marks_the_sink_unhealthy() {
    let root = tempfile::tempdir().unwrap();
    let disk = FullDisk::new(root.path());
    let backend = FaultServer::start(Vec::new(), Reply::status(503));
    let dir = root.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let http = free_port();
    let config = format!(
        r#"
data_dir = "{data}"
[receivers.http]
type = "http"
listen = "127.0.0.1:{http}"
ack = "delivered"
ack_timeout = "3s"
# The backend is down, so only the disk queue can make an ack succeed.
[sinks.spool]
type = "influxdb"
url = "{backend}"
database = "x"
unhealthy_after = "10m"
queue = {{ type = "disk", max_bytes = 4194304, fsync = "always" }}
[pipelines.main]
receivers = ["http"]
sinks = ["spool"]
"#,
        data = disk.mnt.join("data").display(),
        backend = backend.url("")
    );
    let mut t = Tsrelay::start(&dir, &config);
    let url = format!("http://127.0.0.1:{http}/write");
    let (code, text) = post(&url, &format!("before,host=a value=1 {}", now_ns()));
    assert_eq!(code, 204, "durable while the disk has room: {text}");

    disk.fill();
    // Enough samples (a few hundred KiB of records) to need blocks the full
    // tmpfs cannot give the image.
    let ts = now_ns();
    let body: String = (0..20_000).map(|i| format!("lost,host=h{i} value=1 {ts}\n")).collect();
    let (code, text) = post(&url, &body);
    assert_eq!(code, 504, "an ack whose record could not be synced must stay held: {text}\n{}", t.process.log_tail());
    let (code, body) = http_get(t.admin, "/readyz").expect("readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("storage_error") && body.contains("cannot sync"), "{body}");

    // Room on the disk again: new records are durable, but the sink stays
    // unhealthy while records a failed sync may have lost are undelivered.
    disk.free();
    std::thread::sleep(Duration::from_millis(500));
    let (code, body) = http_get(t.admin, "/readyz").expect("readyz");
    assert_eq!(code, 503, "{body}");
    backend.set_default(Reply::status(204));
    wait_for(Duration::from_secs(20), "the sink to recover once its records are delivered", || {
        http_get(t.admin, "/readyz").filter(|(c, _)| *c == 200).map(|_| ())
    });
    let (code, text) = post(&url, &format!("after,host=a value=1 {}", now_ns()));
    assert_eq!(code, 204, "{text}");
    assert!(t.process.terminate(Duration::from_secs(20)));
}
