//! Key material for one control plane: a CA, the API server's serving certificate, the
//! service-account signing key and the admin token.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// Paths of the files written by [`write`].
pub struct Files {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_public_key: PathBuf,
    pub token_file: PathBuf,
    pub admin_token: String,
}

/// Writes fresh key material into `dir`.
pub fn write(dir: &Path) -> Result<Files> {
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "modelsync local control plane CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let serving_key = KeyPair::generate()?;
    let mut serving_params = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "kubernetes.default.svc".to_owned(),
    ])?;
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
    Ok(files)
}
