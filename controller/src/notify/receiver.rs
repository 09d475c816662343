//! What a receiver's Secret (`spec.notify[].secretRef`) holds. Pure; the delivery reads the
//! Secret. Values never reach a message: errors name the Secret and the key, and
//! [`Receiver`] is not `Debug`.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

/// The receiver's URL (required). For Slack, the incoming webhook's URL.
pub const KEY_ADDRESS: &str = "address";
/// Sent as `Authorization: Bearer <token>`.
pub const KEY_TOKEN: &str = "token";
/// `generic` signs each body with it: `X-Signature: sha256=<hex HMAC-SHA256>`.
pub const KEY_HMAC: &str = "hmacKey";

/// Where and how to deliver.
#[derive(Clone, PartialEq, Eq)]
pub struct Receiver {
    pub address: reqwest::Url,
    pub token: Option<String>,
    pub hmac_key: Option<Vec<u8>>,
}

impl Receiver {
    /// Scheme, host and port: what messages may show of the address. A Slack webhook's path
    /// is its credential.
    pub fn origin(&self) -> String {
        self.address.origin().ascii_serialization()
    }
}

/// Why a receiver's Secret cannot be used; `secret` is `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiverError {
    #[error(
        "Secret {secret} (spec.notify) does not exist; create it in the ModelSync's namespace \
         with key {KEY_ADDRESS} (the receiver's URL), and {KEY_TOKEN} or {KEY_HMAC} if the \
         receiver wants them"
    )]
    NotFound { secret: String },
    #[error(
        "the controller may not get Secret {secret} (spec.notify): {detail}; grant its service \
         account get on secrets in that namespace"
    )]
    Forbidden { secret: String, detail: String },
    #[error(
        "Secret {secret} (spec.notify) has no key {KEY_ADDRESS}; set it to the receiver's URL (it has: {present})"
    )]
    NoAddress { secret: String, present: String },
    #[error("Secret {secret} (spec.notify): key {key} is not usable: {problem}")]
    BadKey {
        secret: String,
        key: &'static str,
        problem: String,
    },
}

/// The receiver a Secret's `data` describes.
pub fn read(secret: &str, data: &BTreeMap<String, ByteString>) -> Result<Receiver, ReceiverError> {
    let bad = |key: &'static str, problem: &str| ReceiverError::BadKey {
        secret: secret.to_owned(),
        key,
        problem: problem.to_owned(),
    };
    let text = |key: &'static str| -> Result<Option<String>, ReceiverError> {
        match data.get(key) {
            None => Ok(None),
            Some(v) => match std::str::from_utf8(&v.0) {
                Ok(s) if s.trim().is_empty() => Err(bad(key, "it is empty")),
                Ok(s) => Ok(Some(s.trim().to_owned())),
                Err(_) => Err(bad(key, "it is not UTF-8 text")),
            },
        }
    };
    let Some(address) = text(KEY_ADDRESS)? else {
        let present: Vec<&str> = data.keys().map(String::as_str).collect();
        return Err(ReceiverError::NoAddress {
            secret: secret.to_owned(),
            present: match present.is_empty() {
                true => "no keys".to_owned(),
                false => present.join(", "),
            },
        });
    };
    let address = reqwest::Url::parse(&address)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| bad(KEY_ADDRESS, "it is not an http:// or https:// URL"))?;
    let hmac_key = match data.get(KEY_HMAC) {
        Some(v) if v.0.is_empty() => return Err(bad(KEY_HMAC, "it is empty")),
        other => other.map(|v| v.0.clone()),
    };
    Ok(Receiver {
        address,
        token: text(KEY_TOKEN)?,
        hmac_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn address_token_and_key_are_read() {
        let r = read(
            "ml/hook",
            &data(&[
                (
                    "address",
                    "https://hooks.example/services/T0/B0/secretpath\n",
                ),
                ("token", "t0k"),
                ("hmacKey", "k3y"),
            ]),
        )
        .unwrap();
        assert_eq!(r.address.path(), "/services/T0/B0/secretpath");
        assert_eq!(r.origin(), "https://hooks.example");
        assert_eq!(r.token.as_deref(), Some("t0k"));
        assert_eq!(r.hmac_key.as_deref(), Some(&b"k3y"[..]));
        let bare = read("ml/hook", &data(&[("address", "http://127.0.0.1:9/x")])).unwrap();
        assert!(bare.token.is_none() && bare.hmac_key.is_none());
    }

    #[test]
    fn errors_name_the_secret_and_the_key_but_never_a_value() {
        let err = read("ml/hook", &data(&[("adress", "http://x/")]))
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains("Secret ml/hook"), "{text}");
        assert!(text.contains("no key address"), "{text}");
        assert!(text.contains("it has: adress"), "{text}");
        assert!(!text.contains("http://x/"), "{text}");

        let err = read("ml/hook", &data(&[("address", "hooks.example/x")]))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("key address is not usable"),
            "{err}"
        );
        assert!(!err.to_string().contains("hooks.example"), "{err}");

        let err = read(
            "ml/hook",
            &data(&[("address", "http://x/"), ("token", " ")]),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .contains("key token is not usable: it is empty")
        );
        let err = read(
            "ml/hook",
            &data(&[("address", "http://x/"), ("hmacKey", "")]),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("key hmacKey"));
    }
}
