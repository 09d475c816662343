//! Over HTTP(S), the token reaches the git server only as the password of the credentials
//! libgit2 asks for after a 401 challenge, and a refused token is a clear error, not a loop.

mod common;

use common::*;
use modelsync_bump_pr::run;
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn a_rejected_token_is_an_authentication_error() {
    let server = MockServer::start().await;
    let challenge =
        ResponseTemplate::new(401).insert_header("WWW-Authenticate", "Basic realm=\"git\"");
    // The answer to the token itself: still 401, as for a revoked token. Must be asked once.
    Mock::given(method("GET"))
        .and(path("/acme/gitops.git/info/refs"))
        .and(basic_auth("x-access-token", TOKEN))
        .respond_with(challenge.clone())
        .expect(1)
        .named("request carrying the token")
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/acme/gitops.git/info/refs"))
        .respond_with(challenge)
        .mount(&server)
        .await;

    let (_t, token) = token_file();
    let url = format!("{}/acme/gitops.git", server.uri());
    let a = args(&url, "http://127.0.0.1:9", &token, "m-2", &[]);
    let mut out = Vec::new();
    let message = format!("{:#}", run(&a, &mut out).await.unwrap_err());
    assert!(message.contains("git authentication"), "{message}");
    assert!(message.contains("rejected the token"), "{message}");
    assert!(!message.contains(TOKEN));
    let requests = server.received_requests().await.unwrap();
    assert!(
        requests.iter().all(|r| !r.url.as_str().contains(TOKEN)),
        "the token never goes in a URL"
    );
}
