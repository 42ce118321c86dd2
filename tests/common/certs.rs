//! Test certificates made with the `openssl` command line: a CA, a server
//! certificate for 127.0.0.1, client certificates (valid, expired, and one
//! from an unknown CA).

use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let bin = super::require_binary("openssl", "apt-get install openssl");
    let out = Command::new(bin).args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA in `dir` named `name`: `name.pem`, `name.key`.
pub fn ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    dir.join(format!("{name}.pem"))
}

/// A leaf certificate `name.pem` / `name.key` with subject CN `cn`, signed by
/// CA `ca`; `server` adds the 127.0.0.1 SAN and serverAuth, else clientAuth.
/// `expired` dates it in 2020.
pub fn leaf(dir: &Path, ca: &str, name: &str, cn: &str, server: bool, expired: bool) -> (PathBuf, PathBuf) {
    let ext = if server {
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    } else {
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
    };
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    if expired {
        // `openssl ca` can set both dates; `x509 -req` cannot date in the past.
        let db = format!("{name}.index");
        std::fs::write(dir.join(&db), "").unwrap();
        std::fs::write(dir.join(format!("{name}.serial")), "1000\n").unwrap();
        let cnf = format!(
            "[ca]\ndefault_ca = d\n[d]\ndatabase = {db}\nnew_certs_dir = .\nserial = {name}.serial\n\
             default_md = sha256\npolicy = p\ncopy_extensions = none\n[p]\ncommonName = supplied\n"
        );
        std::fs::write(dir.join(format!("{name}.cnf")), cnf).unwrap();
        openssl(
            dir,
            &[
                "ca",
                "-batch",
                "-notext",
                "-config",
                &format!("{name}.cnf"),
                "-cert",
                &format!("{ca}.pem"),
                "-keyfile",
                &format!("{ca}.key"),
                "-in",
                &format!("{name}.csr"),
                "-out",
                &format!("{name}.pem"),
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200102000000Z",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    } else {
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
    (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")))
}
