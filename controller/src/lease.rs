//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never reconcile at
//! once. Optimistic concurrency (resourceVersion) decides races; a leader that cannot renew
//! within the lease duration stops, as controller-runtime's do, and a leader that stops
//! cleanly releases the Lease so another replica takes over at once.
//!
//! Whether another holder's Lease has expired is not judged by comparing its `renewTime`
//! (written with the holder's clock) with this machine's clock: clocks of two nodes may be
//! seconds apart. A candidate instead watches the Lease as the API server stores it and
//! counts, on its own monotonic clock, how long the record has gone unchanged; a holder that
//! renews changes it (new `renewTime`, new resourceVersion) every few seconds.
//!
//! A holder that cannot renew stops leading after two thirds of the duration, counted from the
//! start of its last renewal that succeeded, whether its calls fail or hang: any renewal is
//! stored after its call started, and seen by a candidate after it was stored, so the holder
//! has stopped a third of a duration before a candidate may take over.

use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;
use tracing::{info, warn};

/// Who competes for which Lease, and how long a silent holder keeps it.
#[derive(Debug)]
pub struct Elector {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    observed: Mutex<Observed>,
    /// When the last call that took or renewed the Lease started.
    renewed: Mutex<Option<Instant>>,
}

/// How often a holder retries a renewal that failed.
const RENEW_RETRY: Duration = Duration::from_secs(1);

/// How many times a stopping holder tries to release the Lease when its write conflicts.
const RELEASE_ATTEMPTS: u32 = 3;

/// How long after the start of its last good renewal a holder stops leading: two thirds of the
/// lease duration (client-go's 10 s of 15 s).
pub fn renew_deadline(lease_duration: Duration) -> Duration {
    lease_duration * 2 / 3
}

/// Another holder's record as last seen, and since when it has not changed.
#[derive(Debug, Default)]
struct Observed(Option<(Record, Instant)>);

impl Observed {
    /// Whether `record` has stayed the same for `duration` of this process's observation.
    /// The first sight of a record starts the count, so a candidate that just started waits a
    /// full duration before taking a Lease someone else wrote, as client-go's elector does.
    fn unchanged_for(&mut self, record: Record, duration: Duration, now: Instant) -> bool {
        match &self.0 {
            Some((seen, since)) if *seen == record => now.duration_since(*since) >= duration,
            _ => {
                self.0 = Some((record, now));
                false
            }
        }
    }
}

/// What changes each time a holder renews.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<String>,
    resource_version: Option<String>,
}

/// The namespace the Lease lives in: the flag, else the pod's own namespace, else `default`.
pub fn namespace(flag: Option<&str>) -> String {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok()
        })
        .unwrap_or_else(|| "default".to_owned())
}

/// This replica's name in the Lease: the pod's name, else host and process id.
pub fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "modelsync".to_owned());
        format!("{host}-{}", std::process::id())
    })
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    pub fn new(api: Api<Lease>, name: String, identity: String, lease_duration: Duration) -> Self {
        Elector {
            api,
            name,
            identity,
            lease_duration,
            observed: Mutex::default(),
            renewed: Mutex::default(),
        }
    }

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

    /// Renews the Lease until it cannot for [`renew_deadline`]; then returns, and the caller
    /// must stop reconciling at once (another replica may take over). A renewal call that
    /// hangs (a partition that drops packets) counts as failing: the deadline does not wait
    /// for it.
    pub async fn hold(&self) {
        let mut renewed = self.last_renewal().unwrap_or_else(Instant::now);
        let mut wait = self.lease_duration / 3;
        loop {
            let deadline = renewed + renew_deadline(self.lease_duration);
            tokio::time::sleep_until((Instant::now() + wait).min(deadline)).await;
            if Instant::now() >= deadline {
                warn!(lease = %self.name, "could not renew the lease for {:?}; stopping before it can expire", renew_deadline(self.lease_duration));
                return;
            }
            match tokio::time::timeout_at(deadline, self.try_take()).await {
                Ok(Ok(true)) => {
                    renewed = self.last_renewal().unwrap_or(renewed);
                    wait = self.lease_duration / 3;
                }
                Ok(Ok(false)) => {
                    warn!(lease = %self.name, "lost the lease to another replica");
                    return;
                }
                Ok(Err(e)) => {
                    warn!(lease = %self.name, "renewing the lease failed: {e}");
                    wait = RENEW_RETRY;
                }
                // The call outlived the deadline: the top of the loop says so and stops.
                Err(_) => {}
            }
        }
    }

    fn last_renewal(&self) -> Option<Instant> {
        *self.renewed.lock().expect("lease renewal lock")
    }

    /// Takes or renews the Lease if free, expired or ours; false if someone else holds it.
    async fn try_take(&self) -> Result<bool, kube::Error> {
        let started = Instant::now();
        let taken = self.try_take_call().await;
        if let Ok(true) = taken {
            *self.renewed.lock().expect("lease renewal lock") = Some(started);
        }
        taken
    }

    async fn try_take_call(&self) -> Result<bool, kube::Error> {
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
        let record = Record {
            holder: lease.spec.as_ref().and_then(|s| s.holder_identity.clone()),
            renew_time: lease
                .spec
                .as_ref()
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0.to_string()),
            resource_version: lease.metadata.resource_version.clone(),
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        // An empty holder is a Lease released on shutdown: free at once.
        let released = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        let held_for =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(secs).max(1) as u64);
        let expired = self
            .observed
            .lock()
            .expect("lease observation lock")
            .unchanged_for(record, held_for, Instant::now());
        if !ours && !released && !expired {
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

    /// Gives the Lease up if this process holds it, so another replica need not wait for it
    /// to expire. Best effort: a failure is logged, and the Lease then expires as usual.
    pub async fn release(&self) {
        // A renewal aborted on its way out may still land between this read and this write;
        // the write then conflicts, and reading again sees the Lease still ours.
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            match self.try_release().await {
                Err(kube::Error::Api(s)) if s.code == 409 && attempts < RELEASE_ATTEMPTS => {}
                other => break other,
            }
        };
        match result {
            Ok(true) => info!(lease = %self.name, "released the lease"),
            Ok(false) => {}
            Err(e) => {
                warn!(lease = %self.name, "could not release the lease; it expires in {:?}: {e}", self.lease_duration)
            }
        }
    }

    async fn try_release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str, renewed: &str) -> Record {
        Record {
            holder: Some(holder.into()),
            renew_time: Some(renewed.into()),
            resource_version: Some(renewed.into()),
        }
    }

    #[test]
    fn a_lease_expires_after_a_full_duration_without_change_whatever_the_clocks_say() {
        let d = Duration::from_secs(15);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut seen = Observed::default();
        // First sight: even a renewTime from last year (a skewed clock) is not trusted at once.
        assert!(!seen.unchanged_for(record("a", "2025-01-01T00:00:00Z"), d, at(0)));
        assert!(!seen.unchanged_for(record("a", "2025-01-01T00:00:00Z"), d, at(14)));
        // A renewal restarts the count, however its renewTime compares with this clock.
        assert!(!seen.unchanged_for(record("a", "2025-01-01T00:00:05Z"), d, at(15)));
        assert!(!seen.unchanged_for(record("a", "2025-01-01T00:00:05Z"), d, at(29)));
        assert!(seen.unchanged_for(record("a", "2025-01-01T00:00:05Z"), d, at(30)));
        // A new holder is a change too.
        assert!(!seen.unchanged_for(record("b", "2025-01-01T00:00:05Z"), d, at(31)));
    }

    #[test]
    fn a_holder_that_cannot_renew_stops_well_before_a_candidate_may_take_over() {
        let d = Duration::from_secs(15);
        let t0 = Instant::now();
        // The holder's last good renewal call started at t0; it stops leading by then + this.
        let holder_stops = t0 + renew_deadline(d);
        // The earliest a candidate can see that renewal is t0 itself (stored at once, read at
        // once); it takes over when the record has stood still for a whole duration.
        let mut seen = Observed::default();
        let renewal = record("holder", "2025-01-01T00:00:00Z");
        let takeover = (0..=400)
            .map(|tenths| t0 + Duration::from_millis(tenths * 100))
            .find(|&t| seen.unchanged_for(renewal.clone(), d, t))
            .expect("an unchanged record expires");
        assert!(
            takeover.duration_since(holder_stops) >= d / 3,
            "only {:?} between the holder stopping and a takeover",
            takeover.duration_since(holder_stops)
        );
    }

    /// An API server that takes every call and never answers: packets dropped by a partition.
    fn unanswering_api() -> Api<Lease> {
        let service = tower::service_fn(|_: axum::http::Request<kube::client::Body>| {
            std::future::pending::<
                Result<axum::http::Response<kube::client::Body>, std::convert::Infallible>,
            >()
        });
        Api::namespaced(kube::Client::new(service, "default"), "default")
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_whose_renewals_hang_stops_at_the_renew_deadline() {
        let d = Duration::from_secs(15);
        let elector = Elector::new(unanswering_api(), "lease".into(), "me".into(), d);
        let started = Instant::now();
        tokio::time::timeout(d * 4, elector.hold())
            .await
            .expect("hold() must return while its renewal call still hangs");
        assert_eq!(started.elapsed(), renew_deadline(d));
    }
}
