//! The lambda client the controller and `lambda-check` share, against a real `modelsync
//! lambdas` process that demands a bearer token: over plain HTTP, and over TLS signed by a
//! private CA that only an extra trusted root makes acceptable.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelsync_api::lambda::AnswerError;
use modelsync_api::lambda_client::{
    Ask, CallError, ClientOptions, FailureKind, LambdaClient, SetupError,
};
use modelsync_testenv::process::{Guarded, free_port, log_tail};
use tokio_rustls::rustls;

const TOKEN: &str = "s3cret";

fn run_git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@localhost"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `modelsync lambdas` over a one-commit repository with no models, so
/// `/retrain` answers "yes, no model exists yet" to a caller with the token.
async fn start_lambdas(dir: &Path) -> (Guarded, u16) {
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("models")).unwrap();
    std::fs::write(repo.join("models/.keep"), "").unwrap();
    run_git(&repo, &["init", "-q", "-b", "main"]);
    run_git(&repo, &["add", "."]);
    run_git(&repo, &["commit", "-q", "-m", "empty"]);
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let port = free_port().unwrap();
    let config = dir.join("lambdas.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\n\
             mirror: {{repo: \"file://{}\", ref: main, root: \"{}\", period: 1s}}\n\
             models: {{records: models/}}\n\
             auth: {{bearerTokenFile: token}}\n\
             routes:\n  /retrain: {{lambda: retrain-if-stale, maxAge: 24h}}\n",
            repo.display(),
            dir.join("mirror").display()
        ),
    )
    .unwrap();
    let log = dir.join("lambdas.log");
    let mut server = Guarded::spawn(
        "lambdas",
        Path::new(env!("CARGO_BIN_EXE_modelsync")),
        &[
            "lambdas".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &log,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let http = reqwest::Client::new();
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return (server, port);
        }
        assert!(
            server.exited().is_none() && Instant::now() < deadline,
            "modelsync lambdas never became ready:\n{}",
            log_tail(&log, 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A CA, and a serving certificate for 127.0.0.1 that it signed.
struct Pki {
    ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    }
}

/// Terminates TLS on a fresh port and passes the bytes on to `backend`, as an ingress in
/// front of a lambda Service would.
async fn tls_front(pki: &Pki, backend: u16) -> u16 {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.cert_der.clone().into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(pki.key_der.clone().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A handshake the client aborts (untrusted certificate) is part of the test.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    port
}

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
    let https = format!("https://127.0.0.1:{}/retrain", tls_front(&pki, port).await);
    let err = client.ask(&ask(&https, Some(TOKEN))).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Unreachable { detail, .. } if detail.contains("certificate")),
        "{err}"
    );
    let trusting = LambdaClient::with_options(&ClientOptions {
        user_agent: "modelsync-test",
        extra_ca_pem: Some(pki.ca_pem.as_bytes()),
    })
    .unwrap();
    let answer = trusting.ask(&ask(&https, Some(TOKEN))).await.unwrap();
    assert_eq!(answer.reason.as_deref(), Some("no model exists yet"));
    assert!(matches!(
        LambdaClient::with_options(&ClientOptions {
            user_agent: "modelsync-test",
            extra_ca_pem: Some(b"not a certificate"),
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
