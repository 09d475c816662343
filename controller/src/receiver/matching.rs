//! Which ModelSyncs a "lambda changed" hook names: URLs compared after normalisation, so the
//! spelling a lambda server gives and the one a ModelSync uses need not be byte-equal.
//!
//! The rule, applied to both sides:
//! - scheme and host in lower case; the scheme's default port dropped (`:80` for http, `:443`
//!   for https); an empty path is `/`; the fragment dropped; surrounding spaces and a host's
//!   final dot dropped; path and query otherwise kept as written (a lambda may answer per
//!   query);
//! - a Service name in the cluster is one name however written: `svc.ns.svc.cluster.local`
//!   and `svc.ns.svc` are `svc.ns`, and a ModelSync's one-label host (`svc`, resolved in the
//!   ModelSync's own namespace) is `svc.<its namespace>`.
//!
//! A trailing slash is kept: `/retrain` and `/retrain/` are different routes to a server.

use std::collections::{BTreeMap, HashMap};

use url::{Host, Url};

/// The cluster domain Kubernetes gives Services by default.
const CLUSTER_SUFFIX: &str = ".svc.cluster.local";

/// `url` in the form compared, or why it is not a URL to compare. `namespace` qualifies a
/// one-label host: give the ModelSync's namespace for its `needsSyncUrl`, `None` for a URL a
/// hook names (a hook has no namespace to resolve in).
pub fn normalise(url: &str, namespace: Option<&str>) -> Result<String, String> {
    let mut parsed = Url::parse(url.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("scheme {} is not http or https", parsed.scheme()));
    }
    parsed.set_fragment(None);
    if let Some(Host::Domain(host)) = parsed.host() {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let short = host
            .strip_suffix(CLUSTER_SUFFIX)
            .or_else(|| host.strip_suffix(".svc"))
            .filter(|s| s.matches('.').count() == 1)
            .map(str::to_owned);
        let host = match (short, namespace) {
            (Some(short), _) => short,
            (None, Some(ns)) if !host.contains('.') && host != "localhost" => {
                format!("{host}.{ns}")
            }
            (None, _) => host,
        };
        parsed
            .set_host(Some(&host))
            .map_err(|e| format!("host {host}: {e}"))?;
    }
    // The URL standard already drops default ports and writes an empty path as `/`.
    Ok(parsed.to_string())
}

/// What a hook asks for, against the ModelSyncs a controller has.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Matches<K> {
    /// Per URL as the hook spelled it, the ModelSyncs whose `needsSyncUrl` is the same.
    pub matched: BTreeMap<String, Vec<K>>,
    /// URLs of the hook no ModelSync names.
    pub unknown: Vec<String>,
    /// URLs of the hook that could not be read, and why.
    pub invalid: BTreeMap<String, String>,
}

/// Matches the hook's `urls` against `modelsyncs` (key, namespace, `needsSyncUrl`). A ModelSync
/// whose URL does not parse matches nothing (its own passes report that URL).
pub fn match_urls<'a, K: Clone + Ord>(
    urls: &[String],
    modelsyncs: impl IntoIterator<Item = (K, &'a str, &'a str)>,
) -> Matches<K> {
    let mut out = Matches {
        matched: BTreeMap::new(),
        unknown: Vec::new(),
        invalid: BTreeMap::new(),
    };
    let mut wanted: HashMap<String, Vec<&String>> = HashMap::new();
    for url in urls {
        match normalise(url, None) {
            Ok(n) => wanted.entry(n).or_default().push(url),
            Err(e) => {
                out.invalid.insert(url.clone(), e);
            }
        }
    }
    for (key, namespace, url) in modelsyncs {
        let Ok(n) = normalise(url, Some(namespace)) else {
            continue;
        };
        for spelled in wanted.get(&n).into_iter().flatten() {
            out.matched
                .entry((*spelled).clone())
                .or_default()
                .push(key.clone());
        }
    }
    for url in urls {
        if !out.matched.contains_key(url) && !out.invalid.contains_key(url) {
            out.unknown.push(url.clone());
        }
    }
    out.unknown.dedup();
    for keys in out.matched.values_mut() {
        keys.sort();
        keys.dedup();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_url_are_one() {
        let same = [
            "http://modelsync-lambdas.modelsync/needsSync",
            "HTTP://Modelsync-Lambdas.modelsync:80/needsSync",
            "http://modelsync-lambdas.modelsync.svc/needsSync",
            "http://modelsync-lambdas.modelsync.svc.cluster.local/needsSync#x",
            "http://modelsync-lambdas.modelsync.svc.cluster.local./needsSync",
            " http://modelsync-lambdas.modelsync/needsSync",
        ];
        for url in same {
            assert_eq!(
                normalise(url, None).unwrap(),
                "http://modelsync-lambdas.modelsync/needsSync",
                "{url}"
            );
        }
        assert_eq!(
            normalise("https://l.example:443", None).unwrap(),
            "https://l.example/"
        );
        assert_eq!(
            normalise("http://127.0.0.1:8080/a?x=1", Some("ml")).unwrap(),
            "http://127.0.0.1:8080/a?x=1"
        );
    }

    #[test]
    fn a_short_service_name_is_in_the_modelsync_s_namespace() {
        assert_eq!(
            normalise("http://lambdas/r", Some("ml")).unwrap(),
            "http://lambdas.ml/r"
        );
        assert_eq!(
            normalise("http://lambdas/r", None).unwrap(),
            "http://lambdas/r"
        );
        assert_eq!(
            normalise("http://localhost:9/r", Some("ml")).unwrap(),
            "http://localhost:9/r"
        );
    }

    #[test]
    fn different_urls_stay_different() {
        let n = |u: &str| normalise(u, None).unwrap();
        assert_ne!(n("http://l.ns/r"), n("http://l.ns/r/"));
        assert_ne!(n("http://l.ns/r"), n("https://l.ns/r"));
        assert_ne!(n("http://l.ns/r"), n("http://l.ns:8080/r"));
        assert_ne!(n("http://l.ns/r?a=1"), n("http://l.ns/r"));
        assert_ne!(n("http://l.ns/R"), n("http://l.ns/r"));
        // Only the cluster's own suffix is folded, not any name with ".svc" in it.
        assert_eq!(
            n("http://a.b.svc.example.com/r"),
            "http://a.b.svc.example.com/r"
        );
        assert_eq!(n("http://a.svc/r"), "http://a.svc/r");
    }

    #[test]
    fn not_urls_say_why() {
        assert!(
            normalise("lambdas/r", None)
                .unwrap_err()
                .starts_with("not a URL")
        );
        assert_eq!(
            normalise("ftp://l/r", None).unwrap_err(),
            "scheme ftp is not http or https"
        );
    }

    #[test]
    fn a_hook_matches_every_modelsync_naming_its_urls() {
        let modelsyncs = [
            ("ml/trainer", "ml", "http://lambdas/needsTrain"),
            (
                "ml/deployer",
                "ml",
                "http://lambdas.ml.svc.cluster.local/needsSync",
            ),
            ("prod/deployer", "prod", "http://lambdas.ml/needsSync"),
            ("other/trainer", "other", "http://lambdas/needsTrain"),
            ("bad/x", "bad", "::"),
        ];
        let urls = vec![
            "http://lambdas.ml/needsSync".to_string(),
            "http://lambdas.ml.svc/needsTrain".into(),
            "http://lambdas.ml/nothing".into(),
            "nope".into(),
        ];
        let m = match_urls(&urls, modelsyncs);
        assert_eq!(
            m.matched["http://lambdas.ml/needsSync"],
            vec!["ml/deployer", "prod/deployer"]
        );
        assert_eq!(
            m.matched["http://lambdas.ml.svc/needsTrain"],
            vec!["ml/trainer"]
        );
        assert_eq!(m.unknown, vec!["http://lambdas.ml/nothing"]);
        assert!(m.invalid["nope"].starts_with("not a URL"));
        assert_eq!(m.matched.len(), 2);
    }

    #[test]
    fn two_spellings_in_one_hook_both_report_their_matches() {
        let urls = vec!["http://l.ns/r".to_string(), "http://L.ns:80/r".into()];
        let m = match_urls(&urls, [("ns/a", "ns", "http://l.ns/r")]);
        assert_eq!(m.matched.len(), 2);
        assert!(m.unknown.is_empty());
    }
}
