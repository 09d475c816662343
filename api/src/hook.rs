//! The "lambda changed" hook between a lambda server and the controller, and the checks both
//! ends use to authenticate hooks: a bearer token, or an HMAC-SHA256 of the body.
//!
//! A lambda server POSTs [`LambdaChanged`] to the controller's [`LAMBDA_CHANGED_PATH`] when
//! some of its answers changed; the controller asks those lambdas at once instead of at the
//! next poll, and answers [`LambdaChangedReply`].

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Where the controller's receiver takes [`LambdaChanged`].
pub const LAMBDA_CHANGED_PATH: &str = "/hook/lambda-changed";
/// Header carrying `sha256=<hex HMAC-SHA256 of the body>`, keyed with the shared token: the
/// same form as `spec.notify`'s `generic` receivers and GitHub's `X-Hub-Signature-256`.
pub const SIGNATURE_HEADER: &str = "X-Signature";
/// At most this many URLs in one hook; a lambda server with more changed routes sends several.
pub const MAX_URLS: usize = 256;

/// The body of a "lambda changed" hook.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LambdaChanged {
    /// Lambda URLs whose answer changed, spelled as ModelSyncs' `needsSyncUrl` spell them.
    pub urls: Vec<String>,
}

/// The controller's answer to a hook.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaChangedReply {
    /// Per URL of the hook, the ModelSyncs (`namespace/name`) asked to check now.
    pub matched: BTreeMap<String, Vec<String>>,
    /// URLs no ModelSync of this controller names (ignored).
    pub unknown: Vec<String>,
    /// Why a URL could not be read, per URL (ignored too).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub invalid: BTreeMap<String, String>,
}

/// Whether `authorization` (the header's value) is `Bearer <token>`. Constant time in the
/// token's content, so the time taken does not tell how much of a guess was right.
pub fn bearer_matches(authorization: Option<&[u8]>, token: &[u8]) -> bool {
    let Some(given) = authorization.and_then(|v| v.strip_prefix(b"Bearer ")) else {
        return false;
    };
    bool::from(given.ct_eq(token))
}

/// Whether `signature` (a header's value, `sha256=<hex>`) is the HMAC-SHA256 of `body` keyed
/// with `key`. The comparison is constant time (the MAC library's own).
pub fn signature_matches(signature: Option<&[u8]>, key: &[u8], body: &[u8]) -> bool {
    let Some(hex_mac) = signature.and_then(|v| v.strip_prefix(b"sha256=")) else {
        return false;
    };
    let Ok(given) = hex::decode(hex_mac) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// `sha256=<hex HMAC-SHA256 of body>`, the value [`signature_matches`] accepts.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert!(bearer_matches(Some(b"Bearer t0k"), b"t0k"));
        assert!(!bearer_matches(Some(b"Bearer t0k"), b"t0kk"));
        assert!(!bearer_matches(Some(b"Bearer t0x"), b"t0k"));
        assert!(!bearer_matches(Some(b"bearer t0k"), b"t0k"));
        assert!(!bearer_matches(Some(b"t0k"), b"t0k"));
        assert!(!bearer_matches(None, b"t0k"));
    }

    #[test]
    fn signatures() {
        let body = br#"{"urls":["http://l/x"]}"#;
        let good = sign(b"key", body);
        assert!(good.starts_with("sha256=") && good.len() == 7 + 64);
        assert!(signature_matches(Some(good.as_bytes()), b"key", body));
        assert!(!signature_matches(Some(good.as_bytes()), b"other", body));
        assert!(!signature_matches(Some(good.as_bytes()), b"key", b"{}"));
        let bare = good.trim_start_matches("sha256=");
        assert!(!signature_matches(Some(bare.as_bytes()), b"key", body));
        assert!(!signature_matches(Some(b"sha256=zz"), b"key", body));
        assert!(!signature_matches(None, b"key", body));
    }

    // GitHub's documented example for X-Hub-Signature-256: secret "It's a Secret to
    // Everybody", payload "Hello, World!".
    #[test]
    fn github_s_documented_signature_verifies() {
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_matches(
            Some(sig.as_bytes()),
            b"It's a Secret to Everybody",
            b"Hello, World!"
        ));
    }
}
