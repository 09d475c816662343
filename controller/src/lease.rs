//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never reconcile at
//! once. Optimistic concurrency (resourceVersion) decides races; a leader that cannot renew
//! within the lease duration stops, as controller-runtime's do.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::{info, warn};

/// Who competes for which Lease, and how long a silent holder keeps it.
#[derive(Clone, Debug)]
pub struct Elector {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    /// Waits until this process holds the Lease.
    pub async fn acquire(&self) -> Result<(), kube::Error> {
        let mut waiting_logged = false;
        loop {
            match self.try_take().await? {
                true => {
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    return Ok(());
                }
                false if !waiting_logged => {
                    info!(lease = %self.name, "another replica leads; waiting for its lease to lapse");
                    waiting_logged = true;
                }
                false => {}
            }
            tokio::time::sleep(self.lease_duration / 3).await;
        }
    }

    /// Renews the Lease until renewal fails for a whole lease duration; then returns, and
    /// the caller must stop reconciling (another replica may take over).
    pub async fn hold(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.lease_duration / 3).await;
            match self.try_take().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.name, "lost the lease to another replica");
                    return;
                }
                Err(e) => warn!(lease = %self.name, "renewing the lease failed: {e}"),
            }
            if last_ok.elapsed() >= self.lease_duration {
                warn!(lease = %self.name, "could not renew the lease for {:?}", self.lease_duration);
                return;
            }
        }
    }

    /// Takes or renews the Lease if free, expired or ours; false if someone else holds it.
    async fn try_take(&self) -> Result<bool, kube::Error> {
        let secs = self.lease_duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            let held = spec.lease_duration_seconds.unwrap_or(secs) as i64;
            t.0.as_second() + held < Utc::now().timestamp()
        });
        if !ours && !expired {
            return Ok(false);
        }
        if !ours {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(secs);
        // `replace` sends the resourceVersion read above: a competing writer makes this a 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
