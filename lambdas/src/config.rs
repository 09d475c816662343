//! `lambdas.yaml`: the mirror, the model source, the token and the routes. Every mistake is
//! reported with the file, the route and the field before anything is served.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use modelsync_gitops::{PathError, YamlPath};

use crate::builtins::deploy_if_newer::Pin;
use crate::builtins::pin::Locator;
pub use crate::builtins::{LAMBDAS, Lambda, Route};
use crate::mirror::{Credentials, SyncSpec};
use crate::sources::mlflow::MlflowSpec;

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub mirror: MirrorConfig,
    pub models: SourceConfig,
    /// Requests to routes must carry `Authorization: Bearer <token>` when set.
    pub bearer_token: Option<String>,
    pub routes: Vec<Route>,
    /// Where to say which answers changed, when set.
    pub notify: Option<NotifyConfig>,
    /// Who may call `POST /hooks/git`; the route is off when unset.
    pub git_hook: Option<GitHookConfig>,
}

/// `notify`: the controller's hook receiver, told which routes' answers changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyConfig {
    /// The receiver, e.g. `http://modelsync-controller.modelsync:8081/hook/lambda-changed`.
    pub url: String,
    /// File holding the receiver's token (sent as a bearer token), read at each delivery.
    pub token_file: PathBuf,
    /// This server as ModelSyncs' `needsSyncUrl` name it, e.g.
    /// `http://modelsync-lambdas.modelsync`; a route's URL is this followed by its path.
    pub public_base_url: String,
}

/// `gitHook`: the secrets a git host's push webhook proves itself with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitHookConfig {
    /// Webhook secret for `X-Hub-Signature-256` (GitHub, Gitea, Forgejo, Gogs).
    pub secret_file: Option<PathBuf>,
    /// Plain token: `Authorization: Bearer <token>` or `X-Gitlab-Token: <token>`.
    pub token_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct MirrorConfig {
    pub spec: SyncSpec,
    pub period: Duration,
    pub webhook_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceConfig {
    /// Records in the mirrored repository, at this path.
    Records(String),
    Mlflow {
        spec: MlflowSpec,
        period: Duration,
    },
}

/// The path of the git host push webhook.
pub const GIT_HOOK_PATH: &str = "/hooks/git";

const RESERVED: [&str; 4] = ["/healthz", "/readyz", "/metrics", GIT_HOOK_PATH];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    listen: Option<String>,
    mirror: RawMirror,
    models: RawModels,
    #[serde(default)]
    auth: Option<RawAuth>,
    #[serde(default)]
    notify: Option<RawNotify>,
    #[serde(default)]
    git_hook: Option<RawGitHook>,
    routes: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNotify {
    url: String,
    token_file: PathBuf,
    public_base_url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawGitHook {
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default)]
    token_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMirror {
    repo: String,
    #[serde(default, rename = "ref")]
    git_ref: Option<String>,
    root: PathBuf,
    #[serde(default)]
    link: Option<PathBuf>,
    #[serde(default)]
    period: Option<String>,
    #[serde(default)]
    depth: Option<u32>,
    #[serde(default)]
    webhook_url: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    ssh_key_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawModels {
    #[serde(default)]
    records: Option<String>,
    #[serde(default)]
    mlflow: Option<RawMlflow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMlflow {
    url: String,
    model: String,
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    period: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAuth {
    bearer_token_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStale {
    max_age: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNewData {
    data_path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDeploy {
    file: String,
    #[serde(default)]
    yaml_path: Option<String>,
    #[serde(default)]
    kpt_setter: Option<String>,
    #[serde(default)]
    parameter: Option<String>,
}

/// What is wrong with `lambdas.yaml`; each message names the field and what it should be.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A mistake in the named file.
    #[error("{}: {problem}", path.display())]
    InFile {
        path: PathBuf,
        problem: Box<ConfigError>,
    },
    /// Not YAML, or fields of the wrong shape.
    #[error("{}", yaml_message(.0))]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("field listen: {0:?} is not an address like 0.0.0.0:8080")]
    Listen(String),
    /// The mirror's root would hold this file, and the mirror empties its root.
    #[error(
        "mirror: field root: {} holds this file, but the mirror empties its root: use a folder of its own",
        .0.display()
    )]
    RootHoldsConfig(PathBuf),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("models.mlflow: give stage or alias, not both")]
    StageAndAlias,
    #[error("models: give exactly one of records (a path in the repository) or mlflow")]
    ModelSource,
    #[error("auth: field bearerTokenFile: cannot read {}: {source}", path.display())]
    TokenUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("auth: field bearerTokenFile: {} is empty", .0.display())]
    TokenEmpty(PathBuf),
    #[error("{field}: {text:?} is not an http(s) URL{hint}")]
    NotifyUrl {
        field: &'static str,
        text: String,
        hint: &'static str,
    },
    #[error(
        "gitHook: give secretFile (the webhook secret, for X-Hub-Signature-256), tokenFile, or both"
    )]
    GitHookEmpty,
    #[error("{field}: cannot read {}: {source}", path.display())]
    SecretUnreadable {
        field: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{field}: {} is empty", path.display())]
    SecretEmpty { field: &'static str, path: PathBuf },
    #[error("routes: no route; add one like /retrain: {{lambda: retrain-if-stale, maxAge: 24h}}")]
    NoRoutes,
    #[error("route {path}: {problem}")]
    Route { path: String, problem: RouteError },
}

/// The YAML error with where it is: serde_yaml_ng leaves the place out of its message for a
/// mistake at the very start of the file.
fn yaml_message(e: &serde_yaml_ng::Error) -> String {
    let text = e.to_string();
    if text.contains("more than one document") {
        return "the file holds more than one YAML document; keep one (a `---` line, or text \
                after the end of the first, starts another)"
            .into();
    }
    match e.location() {
        Some(at) if !text.contains(" line ") && !text.contains(" position ") => {
            format!("{text} (at line {} column {})", at.line(), at.column())
        }
        _ => text,
    }
}

/// A field whose value has the wrong form.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("{field}: {text:?} is not a duration like 30s, 5m, 24h")]
    Duration { field: &'static str, text: String },
    #[error("{field}: {text:?} must be a path inside the repository, like models/")]
    RepoPath { field: &'static str, text: String },
}

/// What is wrong with one route.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("a route is a URL path starting with /")]
    NotAPath,
    #[error("{0} is served by the server itself; pick another path")]
    Reserved(String),
    #[error("expected a mapping with a field lambda")]
    NotAMapping,
    #[error("field lambda is missing; it names a built-in: {}", LAMBDAS.join(", "))]
    MissingLambda,
    #[error("field lambda: expected the name of a built-in ({}), not a list, mapping or number", LAMBDAS.join(", "))]
    LambdaNotAName,
    #[error("field lambda: {name:?} is not a built-in lambda (one of {})", LAMBDAS.join(", "))]
    UnknownLambda { name: String },
    /// The lambda's settings are not the ones it takes: a field of the wrong type (named),
    /// a missing or an unknown one.
    #[error("lambda {lambda}: {}{source}", field.as_ref().map(|f| format!("field {f}: ")).unwrap_or_default())]
    Settings {
        lambda: String,
        field: Option<String>,
        source: serde_yaml_ng::Error,
    },
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The path grammar's own message.
    #[error("field yamlPath: {0}")]
    YamlPath(#[from] PathError),
    #[error("give exactly one of yamlPath (like data.model) or kptSetter")]
    Locator,
    #[error("field parameter: must not be empty")]
    EmptyParameter,
}

/// Reads and checks the file; errors start with the file's name.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parse(&text, base).map_err(|problem| ConfigError::InFile {
        path: path.to_path_buf(),
        problem: Box::new(problem),
    })
}

/// Checks a configuration's text; relative secret files are relative to `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = serde_yaml_ng::from_str(text)?;
    let listen = match raw.listen.as_deref() {
        None => SocketAddr::from(([0, 0, 0, 0], 8080)),
        Some(l) => l.parse().map_err(|_| ConfigError::Listen(l.to_owned()))?,
    };
    let m = raw.mirror;
    let root = base.join(&m.root);
    if holds(&root, base) {
        return Err(ConfigError::RootHoldsConfig(m.root));
    }
    let link = m.link.unwrap_or_else(|| PathBuf::from("repo"));
    let mirror = MirrorConfig {
        period: duration(
            "mirror: field period",
            m.period.as_deref(),
            Duration::from_secs(10),
        )?,
        webhook_url: m.webhook_url,
        spec: SyncSpec {
            repo: m.repo,
            git_ref: m.git_ref.unwrap_or_else(|| "HEAD".into()),
            root,
            link,
            depth: m.depth.unwrap_or(0),
            credentials: Credentials {
                username: m.username,
                password_file: m.password_file.map(|p| base.join(p)),
                ssh_key_file: m.ssh_key_file.map(|p| base.join(p)),
            },
        },
    };
    let models = match (raw.models.records, raw.models.mlflow) {
        (Some(path), None) => SourceConfig::Records(repo_path("models: field records", &path)?),
        (None, Some(ml)) => {
            if ml.stage.is_some() && ml.alias.is_some() {
                return Err(ConfigError::StageAndAlias);
            }
            SourceConfig::Mlflow {
                period: duration(
                    "models.mlflow: field period",
                    ml.period.as_deref(),
                    Duration::from_secs(60),
                )?,
                spec: MlflowSpec {
                    url: ml.url,
                    model: ml.model,
                    stage: ml.stage,
                    alias: ml.alias,
                },
            }
        }
        _ => {
            return Err(ConfigError::ModelSource);
        }
    };
    let bearer_token = match raw.auth {
        None => None,
        Some(a) => {
            let file = base.join(&a.bearer_token_file);
            let token = match std::fs::read_to_string(&file) {
                Ok(token) => token.trim().to_owned(),
                Err(source) => return Err(ConfigError::TokenUnreadable { path: file, source }),
            };
            if token.is_empty() {
                return Err(ConfigError::TokenEmpty(file));
            }
            Some(token)
        }
    };
    let notify = raw.notify.map(|n| notify(n, base)).transpose()?;
    let git_hook = match raw.git_hook {
        None => None,
        Some(RawGitHook {
            secret_file: None,
            token_file: None,
        }) => return Err(ConfigError::GitHookEmpty),
        Some(g) => {
            let secret_file = g.secret_file.map(|p| base.join(p));
            let token_file = g.token_file.map(|p| base.join(p));
            if let Some(f) = &secret_file {
                read_secret("gitHook: field secretFile", f)?;
            }
            if let Some(f) = &token_file {
                read_secret("gitHook: field tokenFile", f)?;
            }
            Some(GitHookConfig {
                secret_file,
                token_file,
            })
        }
    };
    if raw.routes.is_empty() {
        return Err(ConfigError::NoRoutes);
    }
    let mut routes = Vec::new();
    for (path, value) in raw.routes {
        let lambda = match route(&path, value) {
            Ok(lambda) => lambda,
            Err(problem) => return Err(ConfigError::Route { path, problem }),
        };
        routes.push(Route { path, lambda });
    }
    Ok(Config {
        listen,
        mirror,
        models,
        bearer_token,
        routes,
        notify,
        git_hook,
    })
}

fn notify(n: RawNotify, base: &Path) -> Result<NotifyConfig, ConfigError> {
    let http = |field, text: &str, hint| match reqwest::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
        _ => Err(ConfigError::NotifyUrl {
            field,
            text: text.to_owned(),
            hint,
        }),
    };
    http(
        "notify: field url",
        &n.url,
        ", like http://modelsync-controller.modelsync:8081/hook/lambda-changed",
    )?;
    http(
        "notify: field publicBaseUrl",
        &n.public_base_url,
        ", like http://modelsync-lambdas.modelsync (this server as ModelSyncs name it)",
    )?;
    let token_file = base.join(&n.token_file);
    read_secret("notify: field tokenFile", &token_file)?;
    Ok(NotifyConfig {
        url: n.url,
        token_file,
        public_base_url: n.public_base_url.trim_end_matches('/').to_owned(),
    })
}

/// Reads a secret file, trimmed; empty is a mistake. Read again at each use, so rotated
/// Secrets are picked up; this first read only proves the file is there.
pub fn read_secret(field: &'static str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretUnreadable {
        field,
        path: path.to_path_buf(),
        source,
    })?;
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(ConfigError::SecretEmpty {
            field,
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

fn route(path: &str, value: serde_yaml_ng::Value) -> Result<Lambda, RouteError> {
    if !path.starts_with('/') || path.contains(['?', '#']) {
        return Err(RouteError::NotAPath);
    }
    if RESERVED.contains(&path) {
        return Err(RouteError::Reserved(path.to_owned()));
    }
    let serde_yaml_ng::Value::Mapping(mut fields) = value else {
        return Err(RouteError::NotAMapping);
    };
    let lambda = match fields.remove("lambda") {
        Some(serde_yaml_ng::Value::String(s)) => s,
        Some(_) => return Err(RouteError::LambdaNotAName),
        None => return Err(RouteError::MissingLambda),
    };
    let rest = serde_yaml_ng::Value::Mapping(fields);
    // Read through serde_path_to_error: from a Value, serde_yaml_ng's own errors do not say
    // which field was of the wrong type.
    let settings = |e: serde_path_to_error::Error<serde_yaml_ng::Error>| {
        let field = e.path().to_string();
        let source = e.into_inner();
        // An unknown field's message names it already.
        let named = field == "." || source.to_string().starts_with("unknown field");
        RouteError::Settings {
            lambda: lambda.clone(),
            field: (!named).then_some(field),
            source,
        }
    };
    match lambda.as_str() {
        "retrain-if-stale" => {
            let raw: RawStale = serde_path_to_error::deserialize(rest).map_err(settings)?;
            Ok(Lambda::RetrainIfStale {
                max_age: parse_duration("field maxAge", &raw.max_age)?,
            })
        }
        "retrain-on-new-data" => {
            let raw: RawNewData = serde_path_to_error::deserialize(rest).map_err(settings)?;
            Ok(Lambda::RetrainOnNewData {
                data_path: repo_path("field dataPath", &raw.data_path)?,
            })
        }
        "deploy-if-newer" => {
            let raw: RawDeploy = serde_path_to_error::deserialize(rest).map_err(settings)?;
            let locator = match (raw.yaml_path, raw.kpt_setter) {
                (Some(p), None) => Locator::Path(YamlPath::parse(&p)?),
                (None, Some(s)) if !s.is_empty() => Locator::KptSetter(s),
                _ => return Err(RouteError::Locator),
            };
            let parameter = raw.parameter.unwrap_or_else(|| "model".into());
            if parameter.is_empty() {
                return Err(RouteError::EmptyParameter);
            }
            Ok(Lambda::DeployIfNewer(Pin {
                file: repo_path("field file", &raw.file)?,
                locator,
                parameter,
            }))
        }
        other => Err(RouteError::UnknownLambda {
            name: other.to_owned(),
        }),
    }
}

fn duration(
    field: &'static str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, FieldError> {
    text.map_or(Ok(default), |t| parse_duration(field, t))
}

fn parse_duration(field: &'static str, text: &str) -> Result<Duration, FieldError> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(FieldError::Duration {
            field,
            text: text.to_owned(),
        }),
    }
}

/// Whether the folder `root` is `dir` or holds it. Compared as absolute paths with `.` and
/// `..` resolved by their text (neither may exist yet), so `root: ..` is caught too.
fn holds(root: &Path, dir: &Path) -> bool {
    fn resolved(path: &Path) -> PathBuf {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut out = PathBuf::new();
        for part in absolute.components() {
            match part {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    }
    resolved(dir).starts_with(resolved(root))
}

/// A path inside the repository: relative and never climbing out of it. Kept as written
/// (`models/`), as answers quote it back.
fn repo_path(field: &'static str, text: &str) -> Result<String, FieldError> {
    match modelsync_gitops::repo_path(text) {
        Ok(_) => Ok(text.to_owned()),
        Err(_) => Err(FieldError::RepoPath {
            field,
            text: text.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen: 127.0.0.1:9000
mirror: {repo: "file:///srv/gitops.git", root: mirror, ref: main, period: 30s}
models: {records: models/}
routes:
  /retrain: {lambda: retrain-if-stale, maxAge: 24h}
  /retrain-on-data: {lambda: retrain-on-new-data, dataPath: data/}
  /deploy: {lambda: deploy-if-newer, file: manifests/model.yaml, yamlPath: data.model}
  /deploy-kpt: {lambda: deploy-if-newer, file: Kptfile, kptSetter: automl-model, parameter: name}
"#;

    #[test]
    fn a_full_config_parses() {
        let c = parse(GOOD, Path::new("/etc/lambdas")).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.mirror.spec.root, Path::new("/etc/lambdas/mirror"));
        assert_eq!(
            c.mirror.spec.depth, 0,
            "lambdas read history, so the default is a full clone"
        );
        assert_eq!(c.mirror.period, Duration::from_secs(30));
        assert_eq!(c.models, SourceConfig::Records("models/".into()));
        assert_eq!(c.routes.len(), 4);
        let retrain = c.routes.iter().find(|r| r.path == "/retrain").unwrap();
        assert_eq!(
            retrain.lambda,
            Lambda::RetrainIfStale {
                max_age: Duration::from_secs(86400)
            }
        );
    }

    #[test]
    fn errors_name_the_route_and_field() {
        let cases = [
            (
                "maxAge: 24h",
                "maxAge: 3x",
                "route /retrain: field maxAge: \"3x\" is not a duration like 30s, 5m, 24h",
            ),
            (
                "maxAge: 24h",
                "maxAg: 1h",
                "route /retrain: lambda retrain-if-stale: unknown field `maxAg`, expected `maxAge`",
            ),
            (
                "lambda: retrain-if-stale",
                "lambda: retrain",
                "route /retrain: field lambda: \"retrain\" is not a built-in",
            ),
            (
                "yamlPath: data.model",
                "yamlPath: data..model",
                "route /deploy: field yamlPath: \"data..model\" has an empty key",
            ),
            (
                "dataPath: data/",
                "dataPath: ../data",
                "route /retrain-on-data: field dataPath: \"../data\" must be a path inside",
            ),
            (
                "/deploy:",
                "/metrics:",
                "route /metrics: /metrics is served by the server itself",
            ),
            (
                "period: 30s",
                "period: soon",
                "mirror: field period: \"soon\" is not a duration",
            ),
            (
                "models: {records: models/}",
                "models: {}",
                "models: give exactly one of records",
            ),
            (
                "root: mirror",
                "root: .",
                "mirror: field root: . holds this file",
            ),
        ];
        for (from, to, want) in cases {
            let text = GOOD.replacen(from, to, 1);
            let err = parse(&text, Path::new(".")).unwrap_err().to_string();
            assert!(
                err.starts_with(want),
                "replacing {from:?} by {to:?}: got {err:?}"
            );
        }
    }

    // Found by the config fuzz target: `root: ..` named the folder holding this file, which
    // the mirror empties, and was accepted because `..` was compared as text.
    #[test]
    fn a_root_holding_the_config_is_refused_however_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("etc");
        let name = base.file_name().unwrap().to_str().unwrap().to_owned();
        let holding = [
            ".".to_string(),
            "..".into(),
            "../".into(),
            "./".into(),
            "sub/..".into(),
            format!("../{name}"),
            base.display().to_string(),
            "/".into(),
        ];
        for root in holding {
            let text = GOOD.replacen("root: mirror", &format!("root: \"{root}\""), 1);
            let err = parse(&text, &base).unwrap_err().to_string();
            assert!(err.starts_with("mirror: field root:"), "{root}: {err}");
        }
        for root in ["mirror", "../mirror", "sub/../mirror"] {
            let text = GOOD.replacen("root: mirror", &format!("root: \"{root}\""), 1);
            assert!(parse(&text, &base).is_ok(), "{root}");
        }
        assert!(
            parse(
                &GOOD.replacen("root: mirror", "root: ..", 1),
                Path::new(".")
            )
            .is_err()
        );
    }

    // Found by the config fuzz target: a mistake at the start of the file gave a message
    // with no place in it.
    #[test]
    fn yaml_errors_say_where() {
        let err = parse("\0mirror: {}\n", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("(at line 1 column 1)"), "{err}");
        let two = format!("{GOOD}---\nlisten: 1.2.3.4:1\n");
        let err = parse(&two, Path::new(".")).unwrap_err().to_string();
        assert!(
            err.starts_with("the file holds more than one YAML document"),
            "{err}"
        );
        let err = parse("routes:\n  /a: {lambda: x\n", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains(" line 3 ") && !err.contains("(at"), "{err}");
    }

    // Found by the config fuzz target: read from a Value, a setting of the wrong type gave
    // "invalid type: sequence, expected a string" without saying which field.
    #[test]
    fn settings_of_the_wrong_type_are_named() {
        let cases = [
            (
                "maxAge: 24h",
                "maxAge: []",
                "route /retrain: lambda retrain-if-stale: field maxAge: invalid type: sequence",
            ),
            (
                "maxAge: 24h",
                "maxAge: 5",
                "route /retrain: lambda retrain-if-stale: field maxAge: invalid type: integer",
            ),
            (
                "dataPath: data/",
                "dataPath: {a: b}",
                "route /retrain-on-data: lambda retrain-on-new-data: field dataPath: invalid type: map",
            ),
            (
                "parameter: name",
                "parameter: [a]",
                "route /deploy-kpt: lambda deploy-if-newer: field parameter: invalid type: sequence",
            ),
            (
                "lambda: retrain-if-stale",
                "lambda: [retrain-if-stale]",
                "route /retrain: field lambda: expected the name of a built-in",
            ),
        ];
        for (from, to, want) in cases {
            let text = GOOD.replacen(from, to, 1);
            let err = parse(&text, Path::new(".")).unwrap_err().to_string();
            assert!(
                err.starts_with(want),
                "replacing {from:?} by {to:?}: got {err:?}"
            );
        }
    }

    #[test]
    fn notify_and_git_hook_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "t0k\n").unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let with = |extra: &str| {
            parse(
                &GOOD.replacen("routes:", &format!("{extra}\nroutes:"), 1),
                dir.path(),
            )
        };
        let c = with(
            "notify: {url: \"http://ctl.modelsync:8081/hook/lambda-changed\", tokenFile: token, \
             publicBaseUrl: \"http://lambdas.modelsync/\"}\ngitHook: {secretFile: token}",
        )
        .unwrap();
        let n = c.notify.unwrap();
        assert_eq!(n.public_base_url, "http://lambdas.modelsync");
        assert_eq!(n.token_file, dir.path().join("token"));
        assert_eq!(
            c.git_hook.unwrap().secret_file,
            Some(dir.path().join("token"))
        );
        let cases = [
            (
                "notify: {url: ctl, tokenFile: token, publicBaseUrl: \"http://l\"}",
                "notify: field url: \"ctl\" is not an http(s) URL, like http://",
            ),
            (
                "notify: {url: \"http://c\", tokenFile: token, publicBaseUrl: \"lambdas\"}",
                "notify: field publicBaseUrl: \"lambdas\" is not an http(s) URL",
            ),
            (
                "notify: {url: \"http://c\", tokenFile: nope, publicBaseUrl: \"http://l\"}",
                "notify: field tokenFile: cannot read",
            ),
            ("gitHook: {tokenFile: empty}", "gitHook: field tokenFile: "),
            ("gitHook: {}", "gitHook: give secretFile"),
        ];
        for (extra, want) in cases {
            let err = with(extra).unwrap_err().to_string();
            assert!(err.starts_with(want), "{extra}: {err}");
        }
        let err = parse(&GOOD.replacen("/deploy:", "/hooks/git:", 1), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/hooks/git is served by the server itself"),
            "{err}"
        );
    }

    #[test]
    fn load_prefixes_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lambdas.yaml");
        std::fs::write(&file, GOOD.replace("maxAge: 24h", "maxAge: 3x")).unwrap();
        let err = load(&file).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: route /retrain: field maxAge", file.display())),
            "{err}"
        );
        std::fs::write(
            &file,
            GOOD.replace("routes:", "auth: {bearerTokenFile: token}\nroutes:"),
        )
        .unwrap();
        assert!(
            load(&file)
                .unwrap_err()
                .to_string()
                .contains("auth: field bearerTokenFile: cannot read")
        );
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        assert_eq!(load(&file).unwrap().bearer_token.as_deref(), Some("s3cret"));
    }
}
