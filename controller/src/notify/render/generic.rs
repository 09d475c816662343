//! A JSON document shaped like Flux's notification events (`involvedObject`, `severity`,
//! `timestamp`, `message`, `reason`, `metadata`), signed with HMAC-SHA256 when the receiver's
//! Secret has an `hmacKey`.

use chrono::SecondsFormat;
use hmac::{Hmac, Mac};
use modelsync_api::modelsync::GROUP;
use serde_json::json;
use sha2::Sha256;

use super::Request;
use crate::notify::decide::Notice;

/// `sha256=<hex HMAC-SHA256 of the body>`.
pub const HEADER_SIGNATURE: &str = "X-Signature";

pub fn render(notice: &Notice, hmac_key: Option<&[u8]>) -> Request {
    let mut metadata = serde_json::Map::new();
    metadata.insert("id".into(), json!(notice.id));
    if let Some(run) = &notice.run {
        metadata.insert("run".into(), json!(run));
    }
    if let Some(result) = notice.result {
        metadata.insert("result".into(), json!(result));
    }
    let body = json!({
        "involvedObject": {
            "apiVersion": format!("{GROUP}/v1alpha1"),
            "kind": "ModelSync",
            "namespace": notice.namespace,
            "name": notice.name,
            "uid": notice.uid,
        },
        "severity": if notice.is_error() { "error" } else { "info" },
        "timestamp": notice.time.to_rfc3339_opts(SecondsFormat::Secs, true),
        "message": notice.message,
        "reason": notice.event.as_str(),
        "reportingController": "modelsync-controller",
        "metadata": metadata,
    });
    let body = serde_json::to_vec(&body).expect("JSON values serialize");
    let mut headers = vec![("Content-Type".into(), "application/json".into())];
    if let Some(key) = hmac_key {
        headers.push((HEADER_SIGNATURE.into(), signature(key, &body)));
    }
    Request { headers, body }
}

pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={:x}", mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::render::tests::notice;

    #[test]
    fn the_document_names_object_reason_and_severity() {
        let r = render(&notice(), None);
        let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(doc["involvedObject"]["kind"], "ModelSync");
        assert_eq!(doc["involvedObject"]["namespace"], "ml");
        assert_eq!(doc["involvedObject"]["name"], "trainer");
        assert_eq!(doc["severity"], "error");
        assert_eq!(doc["reason"], "RunFailed");
        assert_eq!(doc["timestamp"], "2026-11-27T14:00:05Z");
        assert_eq!(doc["metadata"]["run"], "trainer-3f2c9e1a07");
        assert_eq!(r.header(HEADER_SIGNATURE), None);
    }

    // RFC 4231 test case 2, so the signature is HMAC-SHA256 as anyone computes it.
    #[test]
    fn signatures_are_standard_hmac_sha256() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let r = render(&notice(), Some(b"k3y"));
        assert_eq!(
            r.header(HEADER_SIGNATURE),
            Some(signature(b"k3y", &r.body).as_str())
        );
    }
}
