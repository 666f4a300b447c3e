//! Certificates for tests of TLS connections: a CA made for the test and a
//! server certificate for `localhost` and 127.0.0.1 signed by it, made with
//! the `openssl` command.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A test CA and a server certificate signed by it, as PEM files in one
/// directory (removed when this value is dropped).
pub struct TestCertificates {
    dir: PathBuf,
}

impl TestCertificates {
    /// Makes them in a new directory.
    ///
    /// # Panics
    ///
    /// When the `openssl` command is missing (the message says how to
    /// install it) or fails.
    pub fn make() -> TestCertificates {
        let dir = crate::scratch::new_scratch_dir("tls");
        let run = |args: &str| {
            let output = Command::new("sh")
                .arg("-c")
                .arg(format!("openssl {args}"))
                .current_dir(&dir)
                .output()
                .unwrap_or_else(|err| fail!("cannot run sh for the openssl command: {err}"));
            if !output.status.success() {
                fail!(
                    "openssl {args}: {} (TLS tests need the openssl command: Debian/Ubuntu \
                     `apt-get install -y openssl`; `bash .ci/test` does it)",
                    String::from_utf8_lossy(&output.stderr).trim_end()
                );
            }
        };
        run(
            "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=shedlock-test-ca",
        );
        run("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost");
        if let Err(err) = std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        ) {
            fail!("cannot write {}: {err}", dir.display());
        }
        run(
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext",
        );
        TestCertificates { dir }
    }

    /// The CA's certificate (`ca.crt`): what a client trusts.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The server's certificate (`server.crt`).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The server's private key (`server.key`).
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The directory of the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
