//! A notice written for one receiver: headers and body. Pure. Each format is its own module;
//! what all share (the event id header, the bearer token) is added here.

pub mod cloudevents;
pub mod generic;
pub mod slack;

use modelsync_api::modelsync::NotifyFormat;

use super::decide::Notice;
use super::receiver::Receiver;

/// Every format carries the notice's id, so any receiver can drop repeats.
pub const HEADER_EVENT_ID: &str = "X-ModelSync-Event-Id";

/// An HTTP POST to make.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The request that tells `receiver` about `notice` in `format`.
pub fn render(notice: &Notice, format: NotifyFormat, receiver: &Receiver) -> Request {
    let mut request = match format {
        NotifyFormat::Slack => slack::render(notice),
        NotifyFormat::Cloudevents => cloudevents::render(notice),
        NotifyFormat::Generic => generic::render(notice, receiver.hmac_key.as_deref()),
    };
    request
        .headers
        .push((HEADER_EVENT_ID.into(), notice.id.clone()));
    if let Some(token) = &receiver.token {
        request
            .headers
            .push(("Authorization".into(), format!("Bearer {token}")));
    }
    request
}

/// The one-line summary every format shows.
pub fn headline(notice: &Notice) -> String {
    format!(
        "{}: ModelSync {}/{}: {}",
        notice.event.as_str(),
        notice.namespace,
        notice.name,
        notice.message
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::TimeZone;
    use modelsync_api::modelsync::{NotifyEvent, RunResult};

    use super::*;

    pub fn notice() -> Notice {
        Notice {
            id: "0123456789abcdef0123456789abcdef".into(),
            event: NotifyEvent::RunFailed,
            namespace: "ml".into(),
            name: "trainer".into(),
            uid: "ms-uid".into(),
            run: Some("trainer-3f2c9e1a07".into()),
            result: Some(RunResult::Failed),
            message: "PipelineRun trainer-3f2c9e1a07 failed".into(),
            time: chrono::Utc
                .with_ymd_and_hms(2026, 11, 27, 14, 0, 5)
                .unwrap(),
        }
    }

    pub fn receiver(token: Option<&str>, key: Option<&str>) -> Receiver {
        Receiver {
            address: "http://127.0.0.1:9/hook".parse().unwrap(),
            token: token.map(str::to_owned),
            hmac_key: key.map(|k| k.as_bytes().to_vec()),
        }
    }

    #[test]
    fn every_format_carries_the_id_and_the_token_when_there_is_one() {
        for format in [
            NotifyFormat::Slack,
            NotifyFormat::Cloudevents,
            NotifyFormat::Generic,
        ] {
            let r = render(&notice(), format, &receiver(Some("t0k"), None));
            assert_eq!(r.header("x-modelsync-event-id"), Some(notice().id.as_str()));
            assert_eq!(r.header("authorization"), Some("Bearer t0k"));
            assert_eq!(r.header("content-type"), Some("application/json"));
            let plain = render(&notice(), format, &receiver(None, None));
            assert_eq!(plain.header("authorization"), None);
        }
    }
}
