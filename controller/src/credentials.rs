//! The lambda credentials a Secret holds (`spec.lambdaSecretRef`): which key means what, and
//! what is wrong with a Secret that cannot be used. Pure; [`crate::lambda_clients`] reads the
//! Secret and builds the client. Values never reach a message: errors name the Secret and the
//! key, and [`Credentials`] is not `Debug`.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use modelsync_api::lambda_client::SetupError;

/// Sent as `Authorization: Bearer <token>`.
pub const KEY_TOKEN: &str = "token";
/// PEM certificates trusted for an https lambda, besides the system roots.
pub const KEY_CA: &str = "ca.crt";
/// The client certificate (PEM chain) for a lambda behind mutual TLS.
pub const KEY_CERT: &str = "tls.crt";
/// The client certificate's private key (PEM).
pub const KEY_KEY: &str = "tls.key";

/// What a Secret yields for calling a lambda.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub token: Option<String>,
    pub ca_pem: Option<Vec<u8>>,
    /// `tls.crt` then `tls.key`, one PEM bundle as the client takes it.
    pub identity_pem: Option<Vec<u8>>,
}

/// Why a ModelSync's lambda Secret cannot be used; `secret` is `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// No Secret of that name in the ModelSync's namespace.
    #[error(
        "Secret {secret} (spec.lambdaSecretRef) does not exist; create it in the ModelSync's \
         namespace with key {KEY_TOKEN}, and {KEY_CA} or {KEY_CERT} and {KEY_KEY} as the lambda \
         needs"
    )]
    NotFound { secret: String },
    /// RBAC refuses the controller `get` on it.
    #[error(
        "the controller may not get Secret {secret} (spec.lambdaSecretRef): {detail}; grant its \
         service account get on secrets in that namespace"
    )]
    Forbidden { secret: String, detail: String },
    /// None of the keys modelsync reads is there (a misspelt key, most likely).
    #[error(
        "Secret {secret} (spec.lambdaSecretRef) has none of the keys {KEY_TOKEN}, {KEY_CA}, \
         {KEY_CERT}, {KEY_KEY} (it has: {present})"
    )]
    NoKnownKey { secret: String, present: String },
    /// One half of a client certificate without the other.
    #[error("Secret {secret} has key {has} but no key {missing}: a client certificate needs both")]
    MissingKey {
        secret: String,
        has: &'static str,
        missing: &'static str,
    },
    /// A key is there but its value cannot be used; `keys` is like `key ca.crt`.
    #[error("Secret {secret}: {keys} not usable: {problem}")]
    BadKey {
        secret: String,
        keys: &'static str,
        problem: String,
    },
}

/// The credentials in a Secret's `data`, or what keeps them from being used.
pub fn read(secret: &str, data: &BTreeMap<String, ByteString>) -> Result<Credentials, SecretError> {
    let value = |key: &str| data.get(key).map(|v| v.0.as_slice());
    let known = [KEY_TOKEN, KEY_CA, KEY_CERT, KEY_KEY];
    if !known.iter().any(|k| data.contains_key(*k)) {
        let present: Vec<&str> = data.keys().map(String::as_str).collect();
        return Err(SecretError::NoKnownKey {
            secret: secret.to_owned(),
            present: match present.is_empty() {
                true => "no keys".to_owned(),
                false => present.join(", "),
            },
        });
    }
    let bad = |keys, problem: &str| SecretError::BadKey {
        secret: secret.to_owned(),
        keys,
        problem: problem.to_owned(),
    };
    let token = match value(KEY_TOKEN) {
        None => None,
        Some(raw) => {
            // `kubectl create secret --from-file` keeps the file's final newline.
            let token = std::str::from_utf8(raw)
                .map_err(|_| bad("key token is", "it is not UTF-8 text"))?
                .trim();
            if token.is_empty() {
                return Err(bad("key token is", "it is empty"));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(
                    "key token is",
                    "it holds characters an HTTP header cannot carry (spaces, control or \
                     non-ASCII characters)",
                ));
            }
            Some(token.to_owned())
        }
    };
    let identity_pem = match (value(KEY_CERT), value(KEY_KEY)) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let mut pem = cert.to_vec();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            Some(pem)
        }
        (Some(_), None) => return Err(missing(secret, KEY_CERT, KEY_KEY)),
        (None, Some(_)) => return Err(missing(secret, KEY_KEY, KEY_CERT)),
    };
    Ok(Credentials {
        token,
        ca_pem: value(KEY_CA).map(<[u8]>::to_vec),
        identity_pem,
    })
}

fn missing(secret: &str, has: &'static str, missing: &'static str) -> SecretError {
    SecretError::MissingKey {
        secret: secret.to_owned(),
        has,
        missing,
    }
}

/// The client's refusal of the certificates, told as the key that holds them.
pub fn unusable(secret: &str, error: SetupError) -> SecretError {
    let keys = match error {
        SetupError::NoCertificate | SetupError::BadCertificate(_) => "key ca.crt is",
        SetupError::BadIdentity(_) => "keys tls.crt and tls.key are",
        SetupError::Build(_) => "keys ca.crt, tls.crt and tls.key are",
    };
    SecretError::BadKey {
        secret: secret.to_owned(),
        keys,
        problem: error.to_string(),
    }
}

#[cfg(test)]
mod tests;
