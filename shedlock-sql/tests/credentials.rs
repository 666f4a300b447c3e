//! Passwords in connection URLs never appear in errors or `Debug` output.

use shedlock_sql::{MySqlLockProvider, PostgresLockProvider};
use shedlock_test_support::sql::{database_unreachable, mysql_url, postgres_url};

const PASSWORD: &str = "s3cret-Pa55word";

/// `url` with `PASSWORD` put in as the user's password.
fn with_password(url: &str) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("not a URL: {url}"));
    let (user, host) = rest
        .split_once('@')
        .unwrap_or_else(|| panic!("the test URL names no user: {url}"));
    let user = user.split(':').next().unwrap_or(user);
    format!("{scheme}://{user}:{PASSWORD}@{host}")
}

fn assert_no_password(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "{what} shows the password: {text}"
    );
}

#[tokio::test]
async fn unreachable_servers_are_reported_without_the_password() {
    // Each retries for the pool's acquire timeout: both at once.
    let postgres = format!("postgres://app:{PASSWORD}@127.0.0.1:1/app");
    let mysql = format!("mysql://app:{PASSWORD}@127.0.0.1:1/app");
    let (postgres, mysql) = tokio::join!(
        PostgresLockProvider::connect(&postgres),
        MySqlLockProvider::connect(&mysql)
    );
    for err in [postgres.err(), mysql.err()] {
        let err = err.unwrap_or_else(|| panic!("port 1 should refuse connections"));
        assert_no_password("the error", &err.to_string());
        assert_no_password("the error's Debug", &format!("{err:?}"));
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    }
}

#[tokio::test]
async fn malformed_urls_are_reported_without_the_password() {
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:notaport/app");
    let err = PostgresLockProvider::connect(&url)
        .await
        .err()
        .unwrap_or_else(|| panic!("a malformed URL must be refused"));
    assert_no_password("the error", &format!("{err} {err:?}"));
}

#[tokio::test]
async fn providers_debug_without_the_password() {
    // Trust authentication ignores the password, so this connects.
    let provider = PostgresLockProvider::connect(&with_password(&postgres_url()))
        .await
        .unwrap_or_else(|err| database_unreachable("postgres", &err));
    assert_no_password("Debug", &format!("{provider:?}"));
    // A wrong password for a user that has none is refused, without repeating it.
    match MySqlLockProvider::connect(&with_password(&mysql_url())).await {
        Ok(provider) => assert_no_password("Debug", &format!("{provider:?}")),
        Err(err) => assert_no_password("the error", &format!("{err} {err:?}")),
    }
}
