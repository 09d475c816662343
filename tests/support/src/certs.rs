//! Key material for one control plane: a CA, the API server's serving certificate, the
//! service-account signing key and the admin token; in node mode also the certificates the API
//! server and the kubelet use to talk to each other.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// Paths of the files written by [`write`].
pub struct Files {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_public_key: PathBuf,
    pub token_file: PathBuf,
    pub admin_token: String,
    /// Written in node mode only.
    pub node: Option<NodeFiles>,
}

/// What a real node adds: `kubectl logs/exec` go from the API server to the kubelet over TLS,
/// each side checking the other against the same CA.
#[derive(Clone, Debug)]
pub struct NodeFiles {
    /// The API server's client certificate towards kubelets (group system:masters, so the
    /// kubelet's webhook authorization lets it read logs and exec).
    pub kubelet_client_cert: PathBuf,
    pub kubelet_client_key: PathBuf,
    /// The kubelet's serving certificate, for its address on the node bridge.
    pub kubelet_serving_cert: PathBuf,
    pub kubelet_serving_key: PathBuf,
}

/// Names and addresses a real node's pods use to reach the API server.
const NODE_SERVING_NAMES: &[&str] = &[
    "10.244.0.1",
    "10.96.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc.cluster.local",
];

/// Writes fresh key material into `dir`; with `node_name`, also the certificates a real node
/// named so needs.
pub fn write_with(dir: &Path, node_name: Option<&str>) -> Result<Files> {
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "modelsync local control plane CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let serving_key = KeyPair::generate()?;
    let mut names = vec![
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "kubernetes.default.svc".to_owned(),
    ];
    if node_name.is_some() {
        names.extend(NODE_SERVING_NAMES.iter().map(|n| (*n).to_owned()));
    }
    let mut serving_params = CertificateParams::new(names)?;
    serving_params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let serving_cert = serving_params.signed_by(&serving_key, &issuer)?;

    let sa_key = KeyPair::generate()?;
    let admin_token = format!("{:032x}", rand::random::<u128>());

    let files = Files {
        ca_cert: dir.join("ca.crt"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        service_account_key: dir.join("service-account.key"),
        service_account_public_key: dir.join("service-account.pub"),
        token_file: dir.join("tokens.csv"),
        admin_token,
        node: None,
    };
    std::fs::write(&files.ca_cert, ca_cert.pem())?;
    std::fs::write(&files.serving_cert, serving_cert.pem())?;
    std::fs::write(&files.serving_key, serving_key.serialize_pem())?;
    std::fs::write(&files.service_account_key, sa_key.serialize_pem())?;
    std::fs::write(&files.service_account_public_key, sa_key.public_key_pem())?;
    // token,user,uid,"group1,group2": system:masters bypasses RBAC, as a cluster admin would.
    std::fs::write(
        &files.token_file,
        format!("{},admin,admin,\"system:masters\"\n", files.admin_token),
    )?;
    let mut files = files;
    if let Some(node_name) = node_name {
        files.node = Some(write_node(dir, node_name, &issuer)?);
    }
    Ok(files)
}

fn write_node(dir: &Path, node_name: &str, issuer: &Issuer<'_, KeyPair>) -> Result<NodeFiles> {
    let files = NodeFiles {
        kubelet_client_cert: dir.join("apiserver-kubelet-client.crt"),
        kubelet_client_key: dir.join("apiserver-kubelet-client.key"),
        kubelet_serving_cert: dir.join("kubelet.crt"),
        kubelet_serving_key: dir.join("kubelet.key"),
    };
    let client_key = KeyPair::generate()?;
    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver-kubelet-client");
    client
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, issuer)?;
    std::fs::write(&files.kubelet_client_cert, client_cert.pem())?;
    std::fs::write(&files.kubelet_client_key, client_key.serialize_pem())?;

    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(vec![
        "10.244.0.1".to_owned(),
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        node_name.to_owned(),
    ])?;
    serving
        .distinguished_name
        .push(DnType::CommonName, node_name);
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving.signed_by(&serving_key, issuer)?;
    std::fs::write(&files.kubelet_serving_cert, serving_cert.pem())?;
    std::fs::write(&files.kubelet_serving_key, serving_key.serialize_pem())?;
    Ok(files)
}

/// A serving certificate for loopback under a CA of its own, for a TLS endpoint a test puts in
/// front of the API server; DER for the server, PEM of the CA for the client.
pub struct LoopbackServing {
    pub ca_pem: String,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

pub fn loopback_serving(common_name: &str) -> Result<LoopbackServing> {
    let ca_key = KeyPair::generate().context("generating a CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{common_name} CA"));
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer)?;
    Ok(LoopbackServing {
        ca_pem: ca_cert.pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    })
}
