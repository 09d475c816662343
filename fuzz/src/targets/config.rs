//! The `lambdas.yaml` parser (`modelsync_lambdas::config::parse`): valid configurations mean
//! what they say; one broken field gives an error naming that field.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use modelsync_lambdas::config::{Lambda, parse};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::mutate::{self, Mutation};
use crate::target::{Target, Verdict};
use crate::yaml::{Layout, Node, Scalar, Style};

pub struct Configs;

/// A configuration as a YAML tree, laid out one way, with at most one field broken and maybe
/// its text mutated.
#[derive(Clone, Debug)]
pub struct Case {
    pub tree: Node,
    pub layout: Layout,
    pub fault: Option<Fault>,
    pub mutations: Vec<Mutation>,
    /// Route paths in the tree, and the maxAge of those that have one.
    pub routes: Vec<(String, Option<Duration>)>,
}

/// One broken field: what was done and the words the error must use (any one of them).
#[derive(Clone, Debug)]
pub struct Fault {
    pub what: String,
    pub names: Vec<String>,
}

impl Case {
    fn text(&self) -> String {
        mutate::apply(
            &crate::yaml::document(&self.tree, &self.layout),
            &self.mutations,
        )
    }
}

const TOKENS: &[&str] = &[
    "mirror", "routes", "lambda", "maxAge", ": ", "- ", "  ", "{", "}", "/", "..", "24h", "-1",
];

/// Words an error may use to say where in the file it is.
const PLACES: &[&str] = &[
    "listen",
    "mirror",
    "models",
    "auth",
    "routes",
    "route ",
    "field",
    "line ",
    "repo",
    "root",
    "lambda",
    "records",
    "mlflow",
    "unknown field",
    "missing field",
    "invalid type",
    "position ",
    "document",
];

impl Target for Configs {
    const NAME: &'static str = "config";
    const ABOUT: &'static str =
        "lambdas.yaml (config::parse): every error names the field; valid files mean what they say";
    type Input = Case;

    fn inputs() -> BoxedStrategy<Case> {
        let layout =
            (0usize..4, any::<bool>(), 0usize..3).prop_map(|(flow, compact_seq, c)| Layout {
                flow_from: if flow == 0 { 0 } else { flow + 1 },
                indent: 2,
                compact_seq,
                comment_every: c,
            });
        let mutations = prop_oneof![5 => Just(Vec::new()), 1 => mutate::mutations(TOKENS, 2)];
        let fault = prop_oneof![2 => Just(None), 3 => (0usize..FAULTS, any::<Index>(), any::<Index>()).prop_map(Some)];
        (config(), layout, fault, mutations)
            .prop_map(|((mut tree, routes), layout, fault, mutations)| {
                let fault = fault.and_then(|(n, a, b)| break_config(&mut tree, n, &a, &b));
                Case {
                    tree,
                    layout,
                    fault,
                    mutations,
                    routes,
                }
            })
            .boxed()
    }

    fn check(case: &Case) -> Verdict {
        let text = case.text();
        match parse(&text, base()) {
            Ok(config) => {
                if !case.mutations.is_empty() {
                    return Verdict::Accepted;
                }
                if let Some(fault) = &case.fault {
                    return Verdict::broken("fault-accepted", &fault.what);
                }
                let got: Vec<(String, Option<Duration>)> = config
                    .routes
                    .iter()
                    .map(|r| {
                        let age = match r.lambda {
                            Lambda::RetrainIfStale { max_age } => Some(max_age),
                            _ => None,
                        };
                        (r.path.clone(), age)
                    })
                    .collect();
                let mut want = case.routes.clone();
                want.sort();
                if got != want {
                    return Verdict::broken("meaning", format!("routes {got:?}, written {want:?}"));
                }
                Verdict::Accepted
            }
            Err(err) => {
                let message = err.to_string();
                let kind = format!("{err:?}");
                let kind = kind
                    .split([' ', '(', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                match (&case.fault, case.mutations.is_empty()) {
                    (Some(fault), true) => {
                        if !fault.names.iter().any(|n| message.contains(n.as_str())) {
                            return Verdict::broken(
                                "names",
                                format!(
                                    "{}: {message:?} does not say {:?}",
                                    fault.what, fault.names
                                ),
                            );
                        }
                    }
                    (None, true) => return Verdict::broken("valid-refused", message),
                    (_, false) => {
                        if !PLACES.iter().any(|p| message.contains(p)) {
                            return Verdict::broken("names", format!("{message:?} names no place"));
                        }
                    }
                }
                Verdict::Rejected(kind)
            }
        }
    }

    fn show(case: &Case) -> String {
        format!(
            "fault: {:?}\nfile:\n{}\n--- as a Rust string: {:?}\n",
            case.fault,
            case.text(),
            case.text()
        )
    }
}

/// A folder holding the token files a configuration may name.
fn base() -> &'static Path {
    static BASE: OnceLock<tempfile::TempDir> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(dir.path().join("token"), "s3cret\n").expect("write token");
        std::fs::write(dir.path().join("empty-token"), " \n").expect("write token");
        dir
    })
    .path()
}

fn s(text: &str) -> Node {
    let plain = text.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '/')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | ':'));
    Node::Scalar(Scalar {
        style: if plain { Style::Plain } else { Style::Double },
        ..Scalar::plain(text)
    })
}

fn map(entries: Vec<(&str, Node)>) -> Node {
    Node::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn duration() -> BoxedStrategy<(String, Duration)> {
    proptest::sample::select(vec![
        ("30s", 30),
        ("5m", 300),
        ("24h", 86400),
        ("1h 30m", 5400),
        ("2days", 172_800),
    ])
    .prop_map(|(t, secs)| (t.to_string(), Duration::from_secs(secs)))
    .boxed()
}

fn route() -> BoxedStrategy<(Node, Option<Duration>)> {
    prop_oneof![
        duration().prop_map(|(t, d)| (
            map(vec![("lambda", s("retrain-if-stale")), ("maxAge", s(&t))]),
            Some(d)
        )),
        Just((
            map(vec![
                ("lambda", s("retrain-on-new-data")),
                ("dataPath", s("data/"))
            ]),
            None
        )),
        (any::<bool>(), proptest::option::of(Just("name"))).prop_map(|(by_path, parameter)| {
            let mut e = vec![
                ("lambda", s("deploy-if-newer")),
                ("file", s("manifests/model.yaml")),
            ];
            e.push(if by_path {
                ("yamlPath", s("data.model"))
            } else {
                ("kptSetter", s("model"))
            });
            e.extend(parameter.map(|p| ("parameter", s(p))));
            (map(e), None)
        }),
    ]
    .boxed()
}

/// Route paths, and the maxAge of those that have one.
type Routes = Vec<(String, Option<Duration>)>;

/// A valid configuration and the routes it declares.
fn config() -> BoxedStrategy<(Node, Routes)> {
    let mirror = (
        proptest::sample::select(vec![
            "file:///srv/gitops.git",
            "https://git.example.com/o/r.git",
        ]),
        proptest::sample::select(vec!["mirror", "/var/lib/modelsync/mirror", "data/mirror"]),
        proptest::option::of(duration()),
        proptest::option::of(0u32..3),
        any::<bool>(),
    )
        .prop_map(|(repo, root, period, depth, creds)| {
            let mut e = vec![("repo", s(repo)), ("root", s(root)), ("ref", s("main"))];
            e.extend(period.map(|(t, _)| ("period", s(&t))));
            e.extend(depth.map(|d| ("depth", s(&d.to_string()))));
            if creds {
                e.push(("username", s("bot")));
                e.push(("passwordFile", s("token")));
            }
            map(e)
        });
    let models = prop_oneof![
        Just(map(vec![("records", s("models/"))])),
        (
            proptest::option::of(prop_oneof![Just("stage"), Just("alias")]),
            proptest::option::of(duration())
        )
            .prop_map(|(which, period)| {
                let mut e = vec![
                    ("url", s("http://127.0.0.1:5000")),
                    ("model", s("label-bot")),
                ];
                e.extend(which.map(|w| (w, s("Production"))));
                e.extend(period.map(|(t, _)| ("period", s(&t))));
                map(vec![("mlflow", map(e))])
            }),
    ];
    (
        proptest::option::of(proptest::sample::select(vec![
            "127.0.0.1:9000",
            "0.0.0.0:8080",
            "[::1]:8081",
        ])),
        mirror,
        models,
        any::<bool>(),
        proptest::collection::btree_map("/[a-z]{1,6}(/[a-z]{1,4})?", route(), 1..4),
    )
        .prop_map(|(listen, mirror, models, auth, routes)| {
            let mut e = Vec::new();
            e.extend(listen.map(|l| ("listen", s(l))));
            e.push(("mirror", mirror));
            e.push(("models", models));
            if auth {
                e.push(("auth", map(vec![("bearerTokenFile", s("token"))])));
            }
            let declared = routes
                .iter()
                .map(|(p, (_, age))| (p.clone(), *age))
                .collect();
            let routes = Node::Map(routes.into_iter().map(|(p, (node, _))| (p, node)).collect());
            e.push(("routes", routes));
            (map(e), declared)
        })
        .boxed()
}

/// How many kinds of fault [`break_config`] knows.
const FAULTS: usize = 16;

/// Breaks one field of the configuration; `None` when the tree has no such field.
fn break_config(tree: &mut Node, n: usize, a: &Index, b: &Index) -> Option<Fault> {
    let fault = |what: &str, names: &[&str]| Fault {
        what: what.to_string(),
        names: names.iter().map(|s| s.to_string()).collect(),
    };
    let Node::Map(top) = tree else { return None };
    let route_count = entry(top, "routes").and_then(as_map).map_or(0, Vec::len);
    let pick = a.index(route_count.max(1));
    match n {
        0 => {
            let field = ["repo", "root"][b.index(2)];
            remove(entry(top, "mirror")?, field)?;
            Some(fault(&format!("mirror.{field} removed"), &[field]))
        }
        1 => {
            let field = ["mirror", "models", "routes"][b.index(3)];
            let at = top.iter().position(|(k, _)| k == field)?;
            top.remove(at);
            Some(fault(&format!("{field} removed"), &[field]))
        }
        2 => {
            let bad = ["soon", "0s", "-1s", "1x", ""][b.index(5)];
            set(entry(top, "mirror")?, "period", s(bad));
            Some(fault(&format!("mirror.period {bad:?}"), &["period"]))
        }
        3 => {
            let bad = [".", "..", "../", "", "./", "sub/..", "/"][b.index(7)];
            set(entry(top, "mirror")?, "root", s(bad));
            Some(fault(
                &format!("mirror.root {bad:?} holds the config"),
                &["root"],
            ))
        }
        4 => {
            let bad = ["localhost", "1.2.3.4", ":80", "999.0.0.1:1", ""][b.index(5)];
            set_top(top, "listen", s(bad));
            Some(fault(&format!("listen {bad:?}"), &["listen"]))
        }
        5 => {
            let route = route_at(top, pick)?;
            let field = route_field(route, &["maxAge", "dataPath", "file", "yamlPath"])?;
            remove(route, &field)?;
            Some(fault(&format!("route field {field} removed"), &[&field]))
        }
        6 => {
            let route = route_at(top, pick)?;
            let (field, bad) = match route_field(
                route,
                &[
                    "maxAge",
                    "dataPath",
                    "file",
                    "yamlPath",
                    "kptSetter",
                    "parameter",
                ],
            )?
            .as_str()
            {
                "maxAge" => ("maxAge", ["soon", "-1h", "0s", "5", ""][b.index(5)]),
                "dataPath" => ("dataPath", ["../data", "/data", "a/../../b"][b.index(3)]),
                "file" => ("file", ["/etc/passwd", "../x.yaml", ""][b.index(3)]),
                "yamlPath" => ("yamlPath", ["data..model", "", "a[", "a]"][b.index(4)]),
                "kptSetter" => ("kptSetter", [""][0]),
                _ => ("parameter", [""][0]),
            };
            set(route, field, s(bad));
            Some(fault(&format!("route {field} {bad:?}"), &[field]))
        }
        7 => {
            let route = route_at(top, pick)?;
            set(route, "lambda", s(["nope", "retrain", "", "5"][b.index(4)]));
            Some(fault("route lambda unknown", &["lambda"]))
        }
        8 => {
            let routes = as_map_mut(entry(top, "routes")?)?;
            let bad = ["nopath", "/metrics", "/healthz", "/a?b", "/a#b"][b.index(5)];
            let (_, node) = routes.get(pick)?.clone();
            routes.remove(pick);
            routes.push((bad.to_string(), node));
            Some(fault(
                &format!("route path {bad:?}"),
                &[&format!("route {bad}")],
            ))
        }
        9 => {
            let route = route_at(top, pick)?;
            set(route, "maxAg", s("1h"));
            Some(fault("unknown route field", &["maxAg"]))
        }
        10 => {
            let section = ["mirror", "models"][b.index(2)];
            set(entry(top, section)?, "extra", s("x"));
            Some(fault(&format!("unknown field in {section}"), &["extra"]))
        }
        11 => {
            set(
                entry(top, "mirror")?,
                "depth",
                s(["-1", "x", "1.5"][b.index(3)]),
            );
            Some(fault("mirror.depth not a count", &["depth"]))
        }
        12 => {
            let route = route_at(top, pick)?;
            let field = route_field(
                route,
                &[
                    "maxAge",
                    "dataPath",
                    "file",
                    "yamlPath",
                    "kptSetter",
                    "lambda",
                ],
            )?;
            let value = [
                Node::Seq(vec![]),
                Node::Map(vec![]),
                Node::Seq(vec![s("a")]),
            ][b.index(3)]
            .clone();
            set(route, &field, value);
            Some(fault(
                &format!("route {field} of the wrong type"),
                &[&field],
            ))
        }
        13 => {
            set_top(
                top,
                "auth",
                map(vec![(
                    "bearerTokenFile",
                    s(["missing-token", "empty-token"][b.index(2)]),
                )]),
            );
            Some(fault(
                "auth token file missing or empty",
                &["bearerTokenFile"],
            ))
        }
        14 => {
            let models = entry(top, "models")?;
            if let Some(mlflow) = entry_of(models, "mlflow") {
                set(mlflow, "stage", s("Production"));
                set(mlflow, "alias", s("champion"));
                Some(fault("mlflow stage and alias", &["stage"]))
            } else {
                set(
                    models,
                    "mlflow",
                    map(vec![("url", s("http://m")), ("model", s("m"))]),
                );
                Some(fault("records and mlflow", &["models"]))
            }
        }
        _ => {
            let routes = as_map_mut(entry(top, "routes")?)?;
            let (_, node) = routes.get_mut(pick)?;
            *node = s("retrain-if-stale");
            Some(fault("a route that is not a mapping", &["mapping"]))
        }
    }
}

fn entry<'a>(entries: &'a mut [(String, Node)], key: &str) -> Option<&'a mut Node> {
    entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn entry_of<'a>(node: &'a mut Node, key: &str) -> Option<&'a mut Node> {
    entry(as_map_mut(node)?, key)
}

fn as_map(node: &mut Node) -> Option<&Vec<(String, Node)>> {
    match node {
        Node::Map(m) => Some(m),
        _ => None,
    }
}

fn as_map_mut(node: &mut Node) -> Option<&mut Vec<(String, Node)>> {
    match node {
        Node::Map(m) => Some(m),
        _ => None,
    }
}

fn route_at(top: &mut [(String, Node)], i: usize) -> Option<&mut Node> {
    as_map_mut(entry(top, "routes")?)?
        .get_mut(i)
        .map(|(_, v)| v)
}

/// The first of `fields` the route has.
fn route_field(route: &mut Node, fields: &[&str]) -> Option<String> {
    let m = as_map_mut(route)?;
    fields
        .iter()
        .find(|f| m.iter().any(|(k, _)| k == *f))
        .map(|f| f.to_string())
}

fn remove(node: &mut Node, key: &str) -> Option<()> {
    let m = as_map_mut(node)?;
    let at = m.iter().position(|(k, _)| k == key)?;
    m.remove(at);
    Some(())
}

fn set(node: &mut Node, key: &str, value: Node) {
    if let Some(m) = as_map_mut(node) {
        set_top(m, key, value);
    }
}

fn set_top(entries: &mut Vec<(String, Node)>, key: &str, value: Node) {
    match entries.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => entries.push((key.to_string(), value)),
    }
}
