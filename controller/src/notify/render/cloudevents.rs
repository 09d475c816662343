//! CloudEvents 1.0 in binary HTTP mode: the attributes as `ce-` headers, the data as the JSON
//! body.

use chrono::SecondsFormat;
use modelsync_api::modelsync::GROUP;
use serde_json::json;

use super::Request;
use crate::notify::decide::Notice;

/// `dev.modelsync.<event in lower case>.v1`.
pub fn event_type(notice: &Notice) -> String {
    format!(
        "dev.modelsync.{}.v1",
        notice.event.as_str().to_ascii_lowercase()
    )
}

/// The ModelSync's API path, which names it uniquely.
pub fn source(notice: &Notice) -> String {
    format!(
        "/apis/{GROUP}/v1alpha1/namespaces/{}/modelsyncs/{}",
        notice.namespace, notice.name
    )
}

pub fn render(notice: &Notice) -> Request {
    let mut headers = vec![
        ("ce-specversion".into(), "1.0".into()),
        ("ce-type".into(), event_type(notice)),
        ("ce-source".into(), source(notice)),
        ("ce-id".into(), notice.id.clone()),
        (
            "ce-time".into(),
            notice.time.to_rfc3339_opts(SecondsFormat::Secs, true),
        ),
        ("Content-Type".into(), "application/json".into()),
    ];
    if let Some(run) = &notice.run {
        headers.push(("ce-subject".into(), run.clone()));
    }
    let data = json!({
        "namespace": notice.namespace,
        "name": notice.name,
        "uid": notice.uid,
        "event": notice.event.as_str(),
        "run": notice.run,
        "result": notice.result,
        "message": notice.message,
    });
    Request {
        headers,
        body: serde_json::to_vec(&data).expect("JSON values serialize"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::render::tests::notice;

    #[test]
    fn attributes_are_headers_and_data_is_the_body() {
        let r = render(&notice());
        assert_eq!(r.header("ce-specversion"), Some("1.0"));
        assert_eq!(r.header("ce-type"), Some("dev.modelsync.runfailed.v1"));
        assert_eq!(
            r.header("ce-source"),
            Some("/apis/modelsync.dev/v1alpha1/namespaces/ml/modelsyncs/trainer")
        );
        assert_eq!(r.header("ce-id"), Some("0123456789abcdef0123456789abcdef"));
        assert_eq!(r.header("ce-time"), Some("2026-11-27T14:00:05Z"));
        assert_eq!(r.header("ce-subject"), Some("trainer-3f2c9e1a07"));
        let data: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(data["result"], "Failed");
        assert_eq!(data["event"], "RunFailed");
        let mut lambda = notice();
        lambda.run = None;
        assert_eq!(render(&lambda).header("ce-subject"), None);
    }
}
