//! What each Secret shape yields, and what the message says when it cannot be used.

use super::*;

const SECRET: &str = "ns/lambda-auth";

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

#[test]
fn each_key_is_optional_and_the_token_is_trimmed() {
    let only_token = read(SECRET, &data(&[("token", "s3cret\n")])).unwrap();
    assert_eq!(only_token.token.as_deref(), Some("s3cret"));
    assert!(only_token.ca_pem.is_none() && only_token.identity_pem.is_none());

    let tls = read(
        SECRET,
        &data(&[("ca.crt", "CA"), ("tls.crt", "CERT"), ("tls.key", "KEY")]),
    )
    .unwrap();
    assert_eq!(tls.token, None);
    assert_eq!(tls.ca_pem.as_deref(), Some(&b"CA"[..]));
    assert_eq!(tls.identity_pem.as_deref(), Some(&b"CERT\nKEY"[..]));
}

#[test]
fn unusable_secrets_name_the_secret_and_the_key_never_a_value() {
    // (data, the message says)
    let cases: [(&[(&str, &str)], &str); 7] = [
        (
            &[],
            "Secret ns/lambda-auth (spec.lambdaSecretRef) has none of the keys token, ca.crt, \
             tls.crt, tls.key (it has: no keys)",
        ),
        (
            &[("Token", "s3cret")],
            "has none of the keys token, ca.crt, tls.crt, tls.key (it has: Token)",
        ),
        (
            &[("token", " \n")],
            "Secret ns/lambda-auth: key token is not usable: it is empty",
        ),
        (
            &[("token", "s3 cret")],
            "Secret ns/lambda-auth: key token is not usable: it holds characters an HTTP header \
             cannot carry",
        ),
        (
            &[("token", "s3cr\u{e9}t")],
            "it holds characters an HTTP header cannot carry",
        ),
        (
            &[("tls.crt", "CERT")],
            "Secret ns/lambda-auth has key tls.crt but no key tls.key: a client certificate \
             needs both",
        ),
        (
            &[("token", "s3cret"), ("tls.key", "KEY")],
            "has key tls.key but no key tls.crt",
        ),
    ];
    for (pairs, want) in cases {
        let err = match read(SECRET, &data(pairs)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{pairs:?} accepted"),
        };
        assert!(err.contains(want), "{pairs:?}: {err}");
        for (_, value) in pairs {
            if value.trim().len() > 3 {
                assert!(!err.contains(value.trim()), "{pairs:?} leaked into {err}");
            }
        }
    }
}

#[test]
fn messages_say_what_to_do_for_a_missing_or_forbidden_secret() {
    let missing = SecretError::NotFound {
        secret: SECRET.into(),
    };
    assert_eq!(
        missing.to_string(),
        "Secret ns/lambda-auth (spec.lambdaSecretRef) does not exist; create it in the \
         ModelSync's namespace with key token, and ca.crt or tls.crt and tls.key as the lambda \
         needs"
    );
    let forbidden = SecretError::Forbidden {
        secret: SECRET.into(),
        detail: "secrets \"lambda-auth\" is forbidden".into(),
    };
    assert!(
        forbidden
            .to_string()
            .ends_with("grant its service account get on secrets in that namespace")
    );
}

#[test]
fn certificates_the_client_refuses_are_told_by_their_key() {
    let cases = [
        (
            SetupError::NoCertificate,
            "Secret ns/lambda-auth: key ca.crt is not usable: the CA bundle holds no PEM",
        ),
        (
            SetupError::BadCertificate("bad base64".into()),
            "Secret ns/lambda-auth: key ca.crt is not usable",
        ),
        (
            SetupError::BadIdentity("private key or certificate not found".into()),
            "Secret ns/lambda-auth: keys tls.crt and tls.key are not usable: the client \
             certificate is not usable: private key or certificate not found",
        ),
    ];
    for (error, want) in cases {
        let told = unusable(SECRET, error).to_string();
        assert!(told.starts_with(want), "{told}");
    }
}
