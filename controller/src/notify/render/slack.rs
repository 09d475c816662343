//! Slack's incoming-webhook message: `text` for notifications and clients without blocks,
//! and a section block with the details as fields.

use serde_json::json;

use super::{Request, headline};
use crate::notify::decide::Notice;

pub fn render(notice: &Notice) -> Request {
    let icon = if notice.is_error() {
        ":x:"
    } else {
        ":white_check_mark:"
    };
    let text = format!("{icon} {}", headline(notice));
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*ModelSync*\n{}/{}", notice.namespace, notice.name)}),
        json!({"type": "mrkdwn", "text": format!("*Event*\n{}", notice.event.as_str())}),
    ];
    if let Some(run) = &notice.run {
        fields.push(json!({"type": "mrkdwn", "text": format!("*PipelineRun*\n{run}")}));
    }
    if let Some(result) = notice.result {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Result*\n{result:?}")}));
    }
    let body = json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "section", "fields": fields},
        ],
    });
    Request {
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: serde_json::to_vec(&body).expect("JSON values serialize"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::render::tests::notice;

    #[test]
    fn the_text_names_event_modelsync_run_and_result() {
        let r = render(&notice());
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body["text"],
            ":x: RunFailed: ModelSync ml/trainer: PipelineRun trainer-3f2c9e1a07 failed"
        );
        let fields = body["blocks"][1]["fields"].to_string();
        assert!(fields.contains("*Result*\\nFailed"), "{fields}");
        assert!(
            fields.contains("*PipelineRun*\\ntrainer-3f2c9e1a07"),
            "{fields}"
        );
    }
}
