//! The lambda client for a ModelSync: one shared client for ModelSyncs without
//! `spec.lambdaSecretRef`, and one per Secret for the others. A Secret is read with `get` only
//! (the controller may read the Secrets ModelSyncs name, not list or watch them all), kept for
//! [`SECRET_TTL`], and its client rebuilt only when its resourceVersion changed. Every client
//! connects only where the egress rules allow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::ResourceExt;
use modelsync_api::ModelSync;
use modelsync_api::egress::EgressRules;
use modelsync_api::lambda::NeedsSyncAnswer;
use modelsync_api::lambda_client::{Ask, ClientOptions, LambdaClient};
use modelsync_api::modelsync::SecretRef;

use crate::actions::Error;
use crate::credentials::{self, Credentials, SecretError};
use crate::plan::{AskError, AskLambda};

/// How long a Secret read is trusted before it is read again. Short, so a rotated token is
/// used within seconds; a failed call also drops it at once (see [`LambdaClients::forget`]).
pub const SECRET_TTL: Duration = Duration::from_secs(10);

const USER_AGENT: &str = concat!("modelsync-controller/", env!("CARGO_PKG_VERSION"));

/// A client and the token to send with it. Deliberately not `Debug`: it holds the token.
pub struct Lambda {
    pub client: LambdaClient,
    token: Option<String>,
}

impl Lambda {
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// Why no client could be had for a ModelSync.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The Secret is missing, forbidden or unusable: the ModelSync's own problem.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The API server failed otherwise (unavailable, timeout): the pass is retried.
    #[error("reading Secret {secret}: {source}")]
    Api {
        secret: String,
        #[source]
        source: kube::Error,
    },
}

struct Cached {
    read_at: Instant,
    resource_version: Option<String>,
    lambda: Arc<Lambda>,
}

type Key = (String, String);

pub struct LambdaClients {
    api: kube::Client,
    egress: EgressRules,
    plain: Arc<Lambda>,
    by_secret: Mutex<HashMap<Key, Cached>>,
}

impl LambdaClients {
    pub fn new(api: kube::Client, egress: EgressRules) -> Self {
        let plain = build(&egress, &Credentials::default())
            .expect("a client without certificates always builds");
        LambdaClients {
            api,
            egress,
            plain: Arc::new(Lambda {
                client: plain,
                token: None,
            }),
            by_secret: Mutex::new(HashMap::new()),
        }
    }

    /// The client for a ModelSync in `namespace` naming `secret`, if any.
    pub async fn for_secret(
        &self,
        namespace: &str,
        secret: Option<&SecretRef>,
    ) -> Result<Arc<Lambda>, LookupError> {
        let Some(secret) = secret else {
            return Ok(self.plain.clone());
        };
        let key = (namespace.to_owned(), secret.name.clone());
        let now = Instant::now();
        if let Some(cached) = self.lock().get(&key)
            && now.duration_since(cached.read_at) < SECRET_TTL
        {
            return Ok(cached.lambda.clone());
        }
        let who = format!("{namespace}/{}", secret.name);
        let found = match Api::<Secret>::namespaced(self.api.clone(), namespace)
            .get(&secret.name)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                self.lock().remove(&key);
                return Err(match e {
                    kube::Error::Api(s) if s.code == 404 => {
                        SecretError::NotFound { secret: who }.into()
                    }
                    kube::Error::Api(s) if s.code == 403 => SecretError::Forbidden {
                        secret: who,
                        detail: s.message.clone(),
                    }
                    .into(),
                    source => LookupError::Api {
                        secret: who,
                        source,
                    },
                });
            }
        };
        let version = found.metadata.resource_version.clone();
        if let Some(cached) = self.lock().get_mut(&key)
            && version.is_some()
            && cached.resource_version == version
        {
            cached.read_at = now;
            return Ok(cached.lambda.clone());
        }
        let creds = credentials::read(&who, found.data.as_ref().unwrap_or(&Default::default()))?;
        let client = build(&self.egress, &creds).map_err(|e| credentials::unusable(&who, e))?;
        let lambda = Arc::new(Lambda {
            client,
            token: creds.token,
        });
        let mut cache = self.lock();
        // Entries of Secrets no pass asked for in a long while (their ModelSyncs were deleted
        // or changed to another Secret) are dropped, so the cache does not grow forever.
        cache.retain(|_, c| now.duration_since(c.read_at) < SECRET_TTL * 30);
        cache.insert(
            key,
            Cached {
                read_at: now,
                resource_version: version,
                lambda: lambda.clone(),
            },
        );
        Ok(lambda)
    }

    /// Asks a ModelSync's lambda as a pass does: the Secret's credentials, the protocol's
    /// headers, the egress rules, the plan's timeout. The outer `Err` only when the API server
    /// failed to hand out the Secret; everything else is the answer's outcome. Shared with
    /// `modelsync sync --dry-run`, so a dry run asks exactly as the controller would.
    pub async fn ask(
        &self,
        ms: &ModelSync,
        ask: &AskLambda,
    ) -> Result<Result<NeedsSyncAnswer, AskError>, Error> {
        let ns = ms.namespace().ok_or(Error::Incomplete("namespace"))?;
        let name = ms.name_any();
        let secret = ms.spec.lambda_secret_ref.as_ref();
        let lambda = match self.for_secret(&ns, secret).await {
            Ok(lambda) => lambda,
            Err(LookupError::Secret(e)) => return Ok(Err(AskError::Secret(e))),
            Err(LookupError::Api { secret, source }) => {
                return Err(Error::Kube {
                    doing: format!("reading Secret {secret}"),
                    source,
                });
            }
        };
        let result = lambda
            .client
            .ask(&Ask {
                url: &ms.spec.needs_sync_url,
                namespace: &ns,
                name: &name,
                last_run: ask.last_run.as_deref(),
                timeout: ask.timeout,
                bearer_token: lambda.token(),
            })
            .await;
        if let (Err(_), Some(secret)) = (&result, secret) {
            // A rotated token or certificate may be why it failed: the retry reads the Secret
            // again.
            self.forget(&ns, &secret.name);
        }
        Ok(result.map_err(AskError::Call))
    }

    /// Drops a Secret read, so the next call reads it again: after a failed call, since a
    /// rotated token or certificate may be the reason.
    pub fn forget(&self, namespace: &str, secret: &str) {
        self.lock()
            .remove(&(namespace.to_owned(), secret.to_owned()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Cached>> {
        self.by_secret.lock().expect("lambda client cache lock")
    }
}

fn build(
    egress: &EgressRules,
    creds: &Credentials,
) -> Result<LambdaClient, modelsync_api::lambda_client::SetupError> {
    LambdaClient::with_options(&ClientOptions {
        user_agent: USER_AGENT,
        extra_ca_pem: creds.ca_pem.as_deref(),
        client_identity_pem: creds.identity_pem.as_deref(),
        egress: Some(egress),
    })
}
