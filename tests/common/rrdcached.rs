//! rrdcached as a child process: base dir, journal, pid file, a unix socket and
//! a loopback TCP port; values read back with `rrdtool fetch`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{ChildGuard, free_port, require_binary, wait_for};

pub struct Rrdcached {
    pub process: ChildGuard,
    pub base: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
    root: PathBuf,
}

impl Rrdcached {
    pub fn start(dir: &Path) -> Rrdcached {
        let root = dir.join("rrdcached");
        let base = root.join("base");
        std::fs::create_dir_all(&base).expect("rrdcached base dir");
        std::fs::create_dir_all(root.join("journal")).expect("rrdcached journal dir");
        let port = free_port();
        let mut r = Rrdcached { process: Self::spawn(dir, &root, port), base, socket: root.join("sock"), port, root };
        r.wait_ready();
        r
    }

    fn spawn(dir: &Path, root: &Path, port: u16) -> ChildGuard {
        let bin = require_binary("rrdcached", "apt-get install rrdcached rrdtool");
        let mut cmd = Command::new(bin);
        cmd.args(["-g", "-B", "-R", "-F"])
            .arg("-b")
            .arg(root.join("base"))
            .arg("-j")
            .arg(root.join("journal"))
            .arg("-p")
            .arg(root.join("pid"))
            .arg("-l")
            .arg(format!("unix:{}", root.join("sock").display()))
            .arg("-l")
            .arg(format!("127.0.0.1:{port}"));
        ChildGuard::spawn("rrdcached", &mut cmd, dir)
    }

    fn wait_ready(&mut self) {
        let sock = self.socket.clone();
        let port = self.port;
        let process = &mut self.process;
        wait_for(Duration::from_secs(20), "rrdcached sockets", || {
            if !process.is_running() {
                panic!("rrdcached exited during start-up:\n{}", process.log_tail());
            }
            let unix = std::os::unix::net::UnixStream::connect(&sock).is_ok();
            let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            (unix && tcp).then_some(())
        });
    }

    /// Stops rrdcached cleanly (it writes its journal) and starts it again on
    /// the same socket, port and directories.
    pub fn restart(&mut self, down_for: Duration) {
        if self.process.is_running() {
            assert!(
                self.process.terminate(Duration::from_secs(20)),
                "rrdcached did not stop:\n{}",
                self.process.log_tail()
            );
        }
        std::thread::sleep(down_for);
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(self.root.join("pid"));
        let dir = self.root.parent().expect("rrdcached root has a parent").to_path_buf();
        self.process = Self::spawn(&dir, &self.root, self.port);
        self.wait_ready();
    }

    pub fn unix_address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    pub fn tcp_address(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }

    /// `rrdtool fetch` through the daemon (which flushes the file first):
    /// `(timestamp, value)` rows, `None` for unknown.
    pub fn fetch(&self, file: &str, cf: &str, start: i64, end: i64) -> Vec<(i64, Option<f64>)> {
        let bin = require_binary("rrdtool", "apt-get install rrdtool");
        let out = Command::new(bin)
            .arg("fetch")
            .arg(self.base.join(file))
            .arg(cf)
            .arg("--daemon")
            .arg(self.unix_address())
            .arg("--start")
            .arg(start.to_string())
            .arg("--end")
            .arg(end.to_string())
            .output()
            .expect("run rrdtool fetch");
        assert!(out.status.success(), "rrdtool fetch {file}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (t, v) = l.split_once(':')?;
                let t = t.trim().parse().ok()?;
                let v = v.trim();
                Some((t, if v.contains("nan") { None } else { v.parse().ok() }))
            })
            .collect()
    }

    /// `rrdtool flushcached` of every file under the base dir: returns once the
    /// daemon has written the updates it held for them (it keeps them for up to
    /// 300 s otherwise, and a read then flushes first).
    pub fn flush_all(&self) {
        let bin = require_binary("rrdtool", "apt-get install rrdtool");
        let files: Vec<PathBuf> = Self::files_under(&self.base)
            .into_iter()
            .filter(|f| f.ends_with(".rrd"))
            .map(|f| self.base.join(f))
            .collect();
        if files.is_empty() {
            return;
        }
        let out = Command::new(bin)
            .arg("flushcached")
            .arg("--daemon")
            .arg(self.unix_address())
            .args(&files)
            .output()
            .expect("run rrdtool flushcached");
        assert!(out.status.success(), "rrdtool flushcached: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `rrdtool info` of a file, as text.
    pub fn info(&self, file: &str) -> String {
        let bin = require_binary("rrdtool", "apt-get install rrdtool");
        let out = Command::new(bin)
            .arg("info")
            .arg(self.base.join(file))
            .arg("--daemon")
            .arg(self.unix_address())
            .output()
            .expect("run rrdtool info");
        assert!(out.status.success(), "rrdtool info {file}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every file under `dir`, relative to it, sorted.
    pub fn files_under(dir: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else if let Ok(rel) = p.strip_prefix(root) {
                    out.push(rel.display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }
}
