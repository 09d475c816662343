//! The lambda end of the credential tests: a real `modelsync lambdas` process that demands a
//! bearer token, and TLS in front of it signed by a private CA, optionally demanding a client
//! certificate that CA signed (as an ingress in front of a lambda Service would).

#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelsync_testenv::process::{Guarded, free_port, log_tail};
use tokio_rustls::rustls;

/// The token `modelsync lambdas` demands.
pub const TOKEN: &str = "s3cret-lambda-token";

fn run_git(dir: &Path, args: &[&str]) {
    modelsync_testenv::git::git(dir, args).unwrap_or_else(|e| panic!("{e:#}"));
}

/// Starts `modelsync lambdas` over a one-commit repository with no models, so
/// `/retrain` answers "yes, no model exists yet" to a caller with [`TOKEN`].
pub async fn start_lambdas(dir: &Path) -> (Guarded, u16) {
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

/// A CA, a serving certificate for 127.0.0.1 and a client certificate, both signed by it.
pub struct Pki {
    pub ca_pem: String,
    ca_der: Vec<u8>,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

pub fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
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
    let client_key = KeyPair::generate().unwrap();
    let mut client_params =
        CertificateParams::new(vec!["modelsync-controller".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &issuer).unwrap();
    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().to_vec(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// Terminates TLS on a fresh port and passes the bytes on to `backend`. With
/// `client_certificates`, a client must show a certificate the CA signed.
pub async fn tls_front(pki: &Pki, backend: u16, client_certificates: bool) -> u16 {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if client_certificates {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca_der.clone().into()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
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

/// A listener that answers nothing and counts the connections made to it: what a test
/// points a URL at to prove nothing connected.
pub struct Tripwire {
    pub addr: std::net::SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Tripwire {
    pub async fn on(ip: &str) -> Tripwire {
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("listening on {ip}: {e}"));
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((_tcp, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        Tripwire { addr, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}
