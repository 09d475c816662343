//! The lambda client the controller and `lambda-check` share, against a real `modelsync
//! lambdas` process that demands a bearer token: over plain HTTP, over TLS signed by a private
//! CA that only an extra trusted root makes acceptable, and behind mutual TLS; and the egress
//! rules, which refuse an address before any connection to it.

mod secure_lambda;

use std::time::Duration;

use modelsync_api::egress::{EgressRules, Rule};
use modelsync_api::lambda::AnswerError;
use modelsync_api::lambda_client::{
    Ask, CallError, ClientOptions, FailureKind, LambdaClient, SetupError,
};
use secure_lambda::{TOKEN, Tripwire, pki, start_lambdas, tls_front};

fn ask<'a>(url: &'a str, token: Option<&'a str>) -> Ask<'a> {
    Ask {
        url,
        namespace: "default",
        name: "trainer",
        last_run: None,
        timeout: Duration::from_secs(10),
        bearer_token: token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sends_the_token_and_trusts_an_extra_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_lambdas(dir.path()).await;
    let url = format!("http://127.0.0.1:{port}/retrain");
    let client = LambdaClient::new("modelsync-test");

    // Without the token, or with a wrong one: the server's 401 is a lambda error, not a "no".
    for token in [None, Some("wrong")] {
        let err = client.ask(&ask(&url, token)).await.unwrap_err();
        assert_eq!(err.kind(), FailureKind::Unavailable, "{err}");
        assert!(
            matches!(
                &err,
                CallError::Answer {
                    error: AnswerError::Status { code: 401, .. },
                    ..
                }
            ),
            "{err}"
        );
        let message = err.condition_message();
        assert!(
            message.starts_with(&format!("lambda GET {url}: lambda answered HTTP 401")),
            "{message}"
        );
        assert!(!message.contains(TOKEN), "{message}");
    }
    let answer = client.ask(&ask(&url, Some(TOKEN))).await.unwrap();
    assert!(answer.needs_sync);
    assert_eq!(answer.reason.as_deref(), Some("no model exists yet"));

    // Over TLS signed by a private CA: refused with the system roots alone, accepted with it.
    let pki = pki();
    let https = format!(
        "https://127.0.0.1:{}/retrain",
        tls_front(&pki, port, false).await
    );
    let err = client.ask(&ask(&https, Some(TOKEN))).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Unreachable { detail, .. } if detail.contains("certificate")),
        "{err}"
    );
    let trusting = LambdaClient::with_options(&ClientOptions {
        user_agent: "modelsync-test",
        extra_ca_pem: Some(pki.ca_pem.as_bytes()),
        ..ClientOptions::default()
    })
    .unwrap();
    let answer = trusting.ask(&ask(&https, Some(TOKEN))).await.unwrap();
    assert_eq!(answer.reason.as_deref(), Some("no model exists yet"));
    assert!(matches!(
        LambdaClient::with_options(&ClientOptions {
            user_agent: "modelsync-test",
            extra_ca_pem: Some(b"not a certificate"),
            ..ClientOptions::default()
        }),
        Err(SetupError::NoCertificate)
    ));

    // `modelsync lambda-check` speaks the same scheme through the same client.
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let token_file = dir.path().join("token");
    let check = |extra: Vec<String>| {
        let mut args = vec!["lambda-check".to_owned()];
        args.extend(extra);
        args.push(https.clone());
        tokio::process::Command::new(env!("CARGO_BIN_EXE_modelsync"))
            .args(args)
            .output()
    };
    let ok = check(vec![
        format!("--token-file={}", token_file.display()),
        format!("--ca-file={}", ca_file.display()),
        "--expect-needs-sync=true".into(),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success() && stdout.contains("reason: no model exists yet"),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = check(vec![format!("--ca-file={}", ca_file.display())])
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("lambda answered HTTP 401"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_gets_through_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_lambdas(dir.path()).await;
    let pki = pki();
    let https = format!(
        "https://127.0.0.1:{}/retrain",
        tls_front(&pki, port, true).await
    );
    let trusting = |identity: Option<&[u8]>| {
        LambdaClient::with_options(&ClientOptions {
            user_agent: "modelsync-test",
            extra_ca_pem: Some(pki.ca_pem.as_bytes()),
            client_identity_pem: identity,
            egress: None,
        })
    };
    // No certificate: the server ends the handshake, and that is a lambda error.
    let err = trusting(None)
        .unwrap()
        .ask(&ask(&https, Some(TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), FailureKind::Unavailable, "{err}");
    let identity = format!("{}{}", pki.client_cert_pem, pki.client_key_pem);
    let answer = trusting(Some(identity.as_bytes()))
        .unwrap()
        .ask(&ask(&https, Some(TOKEN)))
        .await
        .unwrap();
    assert_eq!(answer.reason.as_deref(), Some("no model exists yet"));
    // Half an identity is refused when the client is built, before any call.
    for half in [&pki.client_cert_pem, &pki.client_key_pem] {
        assert!(matches!(
            trusting(Some(half.as_bytes())),
            Err(SetupError::BadIdentity(_))
        ));
    }
}

/// A client connecting only where `allow` and `deny` (comma-separated CIDRs) let it.
fn guarded(allow: &str, deny: &str) -> LambdaClient {
    let rules = EgressRules {
        allow: allow.parse().unwrap(),
        deny: deny.parse().unwrap(),
    };
    LambdaClient::with_options(&ClientOptions {
        user_agent: "modelsync-test",
        egress: Some(&rules),
        ..ClientOptions::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_egress_rules_refuse_an_address_before_connecting_to_it() {
    let tripwire = Tripwire::on("127.0.0.1").await;
    let port = tripwire.addr.port();
    let denying = guarded("10.0.0.0/8", "127.0.0.0/8,::1/128");
    // (URL, refused address, rule): a literal address, a name the system resolver resolves
    // to a denied address, and an address outside the allow list.
    let cases = [
        (
            format!("http://127.0.0.1:{port}/x"),
            "127.0.0.1",
            "127.0.0.0/8",
        ),
        (
            format!("http://localhost:{port}/x"),
            "127.0.0.1",
            "127.0.0.0/8",
        ),
        (format!("http://[::1]:{port}/x"), "::1", "::1/128"),
    ];
    for (url, addr, cidr) in &cases {
        let err = denying.ask(&ask(url, Some(TOKEN))).await.unwrap_err();
        let CallError::Denied { refusal, .. } = &err else {
            panic!("{url}: {err}");
        };
        assert_eq!(refusal.addr.to_string(), *addr, "{url}");
        assert_eq!(refusal.rule, Rule::Denied(cidr.parse().unwrap()), "{url}");
        assert_eq!(err.kind(), FailureKind::Denied);
        assert!(
            err.condition_message().contains(&format!(
                "address {addr} is in {cidr} of --lambda-deny-cidrs"
            )),
            "{err}"
        );
    }
    let err = guarded("10.0.0.0/8", "")
        .ask(&ask(&format!("http://localhost:{port}/x"), None))
        .await
        .unwrap_err();
    assert!(
        err.condition_message()
            .contains("address 127.0.0.1 is in none of --lambda-allow-cidrs (10.0.0.0/8)"),
        "{err}"
    );
    // Give a connection that should not have been made time to land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        tripwire.connections(),
        0,
        "a refused address was connected to"
    );
    // Where the rules allow the address, the guarded client connects to it.
    let err = guarded("127.0.0.0/8", "127.0.0.2/32")
        .ask(&ask(&format!("http://localhost:{port}/x"), None))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Unreachable { .. }), "{err}");
    assert!(tripwire.connections() >= 1);
}

/// Answers every request on a fresh port with `response` (raw HTTP/1.1), like a lambda that
/// moved would.
async fn answering(response: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp.write_all(response.as_bytes()).await;
            });
        }
    });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_reported_with_its_location_and_not_followed() {
    let target = Tripwire::on("127.0.0.1").await;
    let body = format!("see {TOKEN}");
    let base = answering(format!(
        "HTTP/1.1 302 Found\r\nLocation: http://{}/elsewhere?token={TOKEN}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        target.addr,
        body.len()
    ))
    .await;

    let client = LambdaClient::new("modelsync-test");
    let err = client
        .ask(&ask(&format!("{base}/moved"), Some(TOKEN)))
        .await
        .unwrap_err();
    let CallError::Answer {
        error: AnswerError::Redirect {
            code: 302,
            location,
        },
        excerpt,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    // The token the lambda echoed is not carried into what status and events would show.
    assert_eq!(
        location.as_deref(),
        Some(format!("http://{}/elsewhere?token=[redacted]", target.addr).as_str())
    );
    assert_eq!(excerpt, "\"see [redacted]\"");
    assert!(!err.condition_message().contains(TOKEN), "{err}");
    assert_eq!(err.kind(), FailureKind::Unavailable);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(target.connections(), 0, "the redirect was followed");
}
