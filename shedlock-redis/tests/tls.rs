//! `rediss://`: the provider locks through a TLS-only redis-server whose
//! certificate is signed by a CA made for the test (with the `openssl` CLI).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use redis::{Client, TlsCertificates};
use shedlock_core::{LockConfiguration, LockProvider};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::redis::RedisServer;

/// Makes a CA and a certificate for `localhost`/127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    let run = |args: &str| {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("openssl {args}"))
            .current_dir(dir)
            .output()
            .unwrap_or_else(|err| panic!("cannot run sh for the openssl command: {err}"));
        assert!(
            status.status.success(),
            "openssl {args}: {} (this test needs the openssl command: Debian/Ubuntu \
             `apt-get install -y openssl`; `bash .ci/test` does it)",
            String::from_utf8_lossy(&status.stderr).trim_end()
        );
    };
    run(
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=shedlock-test-ca",
    );
    run("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost");
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext",
    );
}

#[tokio::test]
async fn locks_work_over_rediss_with_a_verified_certificate() {
    let dir = std::env::temp_dir().join(format!("shedlock-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let server = RedisServer::start_tls(&file("server.crt"), &file("server.key"), &file("ca.crt"));
    assert!(server.url().starts_with("rediss://"));

    let certificates = TlsCertificates {
        client_tls: None,
        root_cert: Some(std::fs::read(dir.join("ca.crt")).unwrap()),
    };
    let client = Client::build_with_tls(server.url(), certificates).unwrap();
    let provider = RedisLockProvider::new(client).await.unwrap();
    let config =
        LockConfiguration::new("over-tls", Duration::from_secs(10), Duration::ZERO).unwrap();
    let guard = provider
        .try_lock(&config)
        .await
        .unwrap()
        .expect("lock over TLS");
    assert!(provider.try_lock(&config).await.unwrap().is_none());
    guard.unlock().await.unwrap();

    // Without trusting the test CA, the connection is refused: TLS is verified.
    let untrusted = RedisLockProvider::connect(server.url()).await;
    assert!(
        untrusted.is_err(),
        "an unverified certificate must be rejected"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
