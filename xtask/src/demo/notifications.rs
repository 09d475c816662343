//! The trainer tells three receivers about its runs, one per format: a CloudEvents receiver
//! (the official Python SDK parses each event), a Slack-style one, and a Go program that
//! accepts `generic` documents only with a valid HMAC signature. They listen where the
//! controller reaches them: on loopback beside the played control plane, on the node's bridge
//! address when the controller is a pod.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use modelsync_testenv::notify::{Kind, Planned, Receiver};
use serde_json::{Value, json};

use crate::demo::narrate::Narrator;

const HMAC_KEY: &str = "demo-hmac-key-not-secret";

pub struct Receivers {
    cloudevents: Receiver,
    slack: Receiver,
    generic: Receiver,
}

/// Starts the receivers on `ip` and writes a Secret for each (`<format>-receiver`) in `ns`.
pub async fn start(
    say: Narrator,
    client: &kube::Client,
    ns: &str,
    ip: IpAddr,
    logs: &Path,
) -> Result<Receivers> {
    let start = |kind| async move { Planned::on(kind, ip)?.start(logs).await };
    let receivers = Receivers {
        cloudevents: start(Kind::CloudEvents).await?,
        slack: start(Kind::Slack).await?,
        generic: start(Kind::Generic {
            hmac_key: HMAC_KEY.into(),
        })
        .await?,
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for (name, address, hmac) in [
        ("cloudevents-receiver", &receivers.cloudevents.url, None),
        ("slack-receiver", &receivers.slack.url, None),
        ("generic-receiver", &receivers.generic.url, Some(HMAC_KEY)),
    ] {
        let mut data = BTreeMap::from([("address".to_owned(), address.clone())]);
        if let Some(key) = hmac {
            data.insert("hmacKey".into(), key.into());
        }
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            string_data: Some(data),
            ..Default::default()
        };
        secrets
            .patch(
                name,
                &PatchParams::apply("modelsync-demo"),
                &Patch::Apply(&secret),
            )
            .await
            .with_context(|| format!("applying Secret {name}"))?;
    }
    say.say(
        "notify",
        format!(
            "receivers on {ip}: CloudEvents (Python SDK) {}, Slack-style {}, generic (Go, checks \
             the HMAC) {}; a Secret with each address",
            receivers.cloudevents.url, receivers.slack.url, receivers.generic.url
        ),
    );
    Ok(receivers)
}

/// The trainer's `spec.notify`: each receiver, each told when a run starts and ends.
pub fn spec() -> Value {
    let events = json!([
        "RunStarted",
        "RunSucceeded",
        "RunFailed",
        "LambdaFailing",
        "Recovered"
    ]);
    json!([
        {"secretRef": {"name": "cloudevents-receiver"}, "format": "cloudevents", "events": events},
        {"secretRef": {"name": "slack-receiver"}, "format": "slack", "events": events},
        {"secretRef": {"name": "generic-receiver"}, "format": "generic", "events": events},
    ])
}

/// Waits until each receiver has the trainer's `RunSucceeded`, then shows what each got.
pub async fn show(say: Narrator, receivers: &Receivers) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let is_success = |format: &str, v: &Value| match format {
        "cloudevents" => v["type"] == "dev.modelsync.runsucceeded.v1",
        "slack" => v["text"]
            .as_str()
            .is_some_and(|t| t.contains("RunSucceeded")),
        _ => v["reason"] == "RunSucceeded",
    };
    for (format, receiver) in [
        ("cloudevents", &receivers.cloudevents),
        ("slack", &receivers.slack),
        ("generic", &receivers.generic),
    ] {
        let got = loop {
            let got = receiver.received().await.unwrap_or_default();
            if let Some(found) = got.iter().find(|v| is_success(format, v)) {
                break found.clone();
            }
            if Instant::now() > deadline {
                bail!(
                    "the {format} receiver got no RunSucceeded within 60s (it got {} notifications)",
                    got.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        say.say(&format!("{format}*"), describe(format, &got));
    }
    Ok(())
}

fn describe(format: &str, got: &Value) -> String {
    match format {
        "cloudevents" => format!(
            "the CloudEvents SDK parsed: type {} source {} id {} subject {} data {}",
            got["type"].as_str().unwrap_or_default(),
            got["source"].as_str().unwrap_or_default(),
            got["id"].as_str().unwrap_or_default(),
            got["subject"].as_str().unwrap_or_default(),
            got["data"]
        ),
        "slack" => format!("message text: {}", got["text"].as_str().unwrap_or_default()),
        _ => format!(
            "X-Signature verified; reason {} severity {} message {:?} run {}",
            got["reason"].as_str().unwrap_or_default(),
            got["severity"].as_str().unwrap_or_default(),
            got["message"].as_str().unwrap_or_default(),
            got["metadata"]["run"].as_str().unwrap_or_default()
        ),
    }
}
