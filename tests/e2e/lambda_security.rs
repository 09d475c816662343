//! What the controller sends to lambdas and where it may connect, end to end: the real
//! `modelsync controller` reading `spec.lambdaSecretRef` Secrets from the real API server and
//! calling real lambda processes (`modelsync lambdas` demanding a token, behind mutual TLS; the
//! scripted Python lambda), and its egress rules refusing addresses that test listeners
//! prove were never connected to.

mod common;
mod secure_lambda;

use std::time::Duration;

use common::{Env, Lambda, modelsync, ready};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use secure_lambda::{TOKEN, Tripwire, pki, start_lambdas, tls_front};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    }))
    .unwrap()
}

/// Waits for `name`'s `Ready` condition to have `reason` and a message that says `says`.
async fn condition(env: &Env, name: &str, reason: &str, says: &str) -> (String, String) {
    env.eventually(
        WAIT,
        &format!("{name}: Ready reason {reason} saying {says:?}"),
        || async {
            let (status, got, message) = ready(&env.get(name).await)?;
            (got == reason && message.contains(says)).then_some((status, message))
        },
    )
    .await
}

#[tokio::test]
async fn the_secret_s_token_and_certificates_reach_the_lambda_and_a_missing_secret_waits() {
    let env = Env::new("creds").await;
    let (_server, port) = start_lambdas(env.logs.path()).await;
    let pki = pki();
    let mtls = tls_front(&pki, port, true).await;
    let _controller = env.controller();
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    // `retrain-if-stale` answers a bare "yes": no parameter to map.
    let spec = |secret: &str| json!({"parameters": [], "lambdaSecretRef": {"name": secret}});
    let plain = format!("http://127.0.0.1:{port}/retrain");
    let tls = format!("https://127.0.0.1:{mtls}/retrain");
    env.apply(modelsync("plain", &plain, spec("lambda-token")))
        .await;
    env.apply(modelsync("mtls", &tls, spec("lambda-tls"))).await;

    // No Secret yet: not ready, the message names the Secret, no run.
    let (status, _) = condition(
        &env,
        "plain",
        "LambdaSecretError",
        &format!(
            "Secret {}/lambda-token (spec.lambdaSecretRef) does not exist",
            env.ns
        ),
    )
    .await;
    assert_eq!(status, "False");
    // Half a client certificate: the message names the missing key.
    secrets
        .create(
            &PostParams::default(),
            &secret(
                "lambda-tls",
                &[
                    ("token", TOKEN),
                    ("ca.crt", &pki.ca_pem),
                    ("tls.crt", &pki.client_cert_pem),
                ],
            ),
        )
        .await
        .unwrap();
    condition(
        &env,
        "mtls",
        "LambdaSecretError",
        &format!(
            "Secret {}/lambda-tls has key tls.crt but no key tls.key",
            env.ns
        ),
    )
    .await;
    for name in ["plain", "mtls"] {
        assert!(env.runs_of(name).await.is_empty(), "{name} started a run");
    }

    // The Secret is created, the other completed: both are read again, and the lambda, which
    // refuses callers without the token (and, over TLS, without the certificate), says yes.
    secrets
        .create(
            &PostParams::default(),
            &secret("lambda-token", &[("token", TOKEN)]),
        )
        .await
        .unwrap();
    secrets
        .patch(
            "lambda-tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"tls.key": pki.client_key_pem}})),
        )
        .await
        .unwrap();
    for name in ["plain", "mtls"] {
        env.eventually(WAIT, &format!("a run for {name}"), || async {
            env.runs_of(name).await.pop()
        })
        .await;
        let (status, _) = condition(&env, name, "RunActive", "").await;
        assert_eq!(status, "True");
    }
}

#[tokio::test]
async fn tokens_are_sent_re_read_when_rotated_and_never_shown() {
    const FIRST: &str = "tok-first-7f3a9c";
    const SECOND: &str = "tok-second-2b8d41";
    const ECHOED: &str = "tok-echoed-5e1f07";
    let env = Env::new("tokens").await;
    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .answer("quiet", json!({"needsSync": false, "reason": "fresh"}))
        .await;
    // A lambda that quotes the credential it refuses, as careless servers do.
    lambda
        .script(
            "echoing",
            json!({"status": 401, "body": format!("token {ECHOED} is not valid here")}),
        )
        .await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    for (name, token) in [("quiet-auth", FIRST), ("echoing-auth", ECHOED)] {
        secrets
            .create(&PostParams::default(), &secret(name, &[("token", token)]))
            .await
            .unwrap();
    }
    let controller = env.controller();
    for (name, auth) in [("quiet", "quiet-auth"), ("echoing", "echoing-auth")] {
        env.apply(modelsync(
            name,
            &lambda.url(name),
            json!({"lambdaSecretRef": {"name": auth}}),
        ))
        .await;
    }

    let bearer = |token: &str| json!(format!("Bearer {token}"));
    env.eventually(WAIT, "the first token sent", || async {
        (lambda.last_headers("quiet").await["authorization"] == bearer(FIRST)).then_some(())
    })
    .await;
    condition(&env, "quiet", "Idle", "").await;
    let (_, message) = condition(&env, "echoing", "LambdaError", "HTTP 401").await;
    assert!(
        message.contains("token [redacted] is not valid here"),
        "{message}"
    );

    // Rotated in the Secret: the next calls carry the new token.
    secrets
        .patch(
            "quiet-auth",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": SECOND}})),
        )
        .await
        .unwrap();
    env.eventually(WAIT, "the rotated token sent", || async {
        (lambda.last_headers("quiet").await["authorization"] == bearer(SECOND)).then_some(())
    })
    .await;

    // No token in status, events, the controller's log or its metrics.
    let statuses: Vec<Value> = env
        .modelsyncs()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|ms| serde_json::to_value(&ms.status).unwrap())
        .collect();
    let events = Api::<Event>::namespaced(env.client.clone(), &env.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let metrics = reqwest::get(format!("{}/metrics", controller.admin_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("modelsync_lambda_requests_total"));
    let shown = [
        ("status", serde_json::to_string(&statuses).unwrap()),
        ("events", serde_json::to_string(&events.items).unwrap()),
        ("log", controller.log()),
        ("metrics", metrics),
    ];
    assert!(shown[1].1.contains("LambdaError"), "{}", shown[1].1);
    for (where_, text) in &shown {
        for token in [FIRST, SECOND, ECHOED] {
            assert!(!text.contains(token), "{token} appears in the {where_}");
        }
    }
}

#[tokio::test]
async fn the_egress_rules_refuse_before_connecting_and_redirects_are_not_followed() {
    let env = Env::new("egress").await;
    // The rules: 127.0.0.0/30 only, less 127.0.0.1 and 127.0.0.2; the lambda listens on
    // 127.0.0.3. Every other address a ModelSync names has a listener counting connections.
    let lambda = Lambda::start_on(env.logs.path(), "127.0.0.3".parse().unwrap()).await;
    let by_name = Tripwire::on("127.0.0.1").await;
    let denied = Tripwire::on("127.0.0.2").await;
    let outside = Tripwire::on("127.0.0.5").await;
    let redirect_target = Tripwire::on("127.0.0.3").await;
    lambda.answer("fine", json!({"needsSync": false})).await;
    let location = format!("http://{}/next", redirect_target.addr);
    lambda
        .script(
            "moved",
            json!({"status": 302, "headers": {"Location": location}, "body": ""}),
        )
        .await;
    let _controller = env.controller_with(&[
        "--lambda-allow-cidrs=127.0.0.0/30",
        "--lambda-deny-cidrs=127.0.0.1/32,127.0.0.2/32",
    ]);
    let cases = [
        ("fine", lambda.url("fine"), "Idle", String::new()),
        (
            "byname",
            format!("http://localhost:{}/x", by_name.addr.port()),
            "LambdaURLDenied",
            "address 127.0.0.1 is in 127.0.0.1/32 of --lambda-deny-cidrs".to_owned(),
        ),
        (
            "denied",
            format!("http://{}/x", denied.addr),
            "LambdaURLDenied",
            "address 127.0.0.2 is in 127.0.0.2/32 of --lambda-deny-cidrs".to_owned(),
        ),
        (
            "outside",
            format!("http://{}/x", outside.addr),
            "LambdaURLDenied",
            "address 127.0.0.5 is in none of --lambda-allow-cidrs (127.0.0.0/30)".to_owned(),
        ),
        (
            "moved",
            lambda.url("moved"),
            "LambdaError",
            format!("answered HTTP 302 redirecting to {location}; redirects are not followed"),
        ),
    ];
    for (name, url, _, _) in &cases {
        env.apply(modelsync(name, url, json!({}))).await;
    }
    for (name, url, reason, says) in &cases {
        let (status, message) = condition(&env, name, reason, says).await;
        let want = if *reason == "Idle" { "True" } else { "False" };
        assert_eq!(status, want, "{name}");
        if *reason != "Idle" {
            assert!(message.contains(url.as_str()), "{name}: {message}");
        }
    }
    let events = Api::<Event>::namespaced(env.client.clone(), &env.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    for name in ["byname", "denied", "outside"] {
        assert!(
            events
                .items
                .iter()
                .any(|e| e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some("LambdaURLDenied")
                    && e.type_.as_deref() == Some("Warning")),
            "no LambdaURLDenied warning for {name}"
        );
    }
    // Retried with backoff meanwhile (every second at most), and never once connected.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (what, wire) in [
        ("the name resolving to a denied address", &by_name),
        ("the denied address", &denied),
        ("the address outside the allow list", &outside),
        ("the redirect's target", &redirect_target),
    ] {
        assert_eq!(wire.connections(), 0, "{what} was connected to");
    }
    assert!(
        lambda.calls("moved").await >= 2,
        "the redirect was not retried"
    );
    for name in ["byname", "denied", "outside", "moved"] {
        assert!(env.runs_of(name).await.is_empty(), "{name} started a run");
    }
}
