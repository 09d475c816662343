//! Delivery: a bounded queue the passes put notices into without waiting, a dispatcher that
//! sends them with a few attempts in flight at once, and retries that wait outside the queue
//! (a receiver that is down holds no slot while it waits). Failures raise a Warning event
//! `NotificationFailed` on the ModelSync, at most one per receiver per `warn_every`.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::Api;
use kube::runtime::events::{Event, EventType, Recorder};
use modelsync_api::ModelSync;
use modelsync_api::modelsync::{NotifyFormat, NotifyTarget};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use super::decide::Notice;
use super::receiver::{self, Receiver, ReceiverError};
use super::render::{self, Request};
use super::retry::{self, WarnLimit};
use crate::metrics::Metrics;

/// How delivery behaves; the controller's `--notify-*` flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Notices waiting to be sent, at most; beyond it new ones are dropped (and counted).
    pub queue: usize,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// How long one receiver may take to answer one attempt.
    pub timeout: Duration,
    /// Attempts per notice before giving up.
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// At most one `NotificationFailed` event per receiver per this period.
    pub warn_every: Duration,
    /// How far back the first pass over a ModelSync tells its runs again.
    pub replay_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            queue: 1000,
            concurrency: 8,
            timeout: Duration::from_secs(10),
            attempts: 10,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            warn_every: Duration::from_secs(300),
            replay_window: Duration::from_secs(3600),
        }
    }
}

/// One notice for one receiver.
struct Job {
    notice: Arc<Notice>,
    secret: String,
    format: NotifyFormat,
    /// Attempts made so far.
    attempts: u32,
}

impl Job {
    /// `namespace/secret` and format: one receiver as warnings and repeats are counted.
    fn receiver_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.notice.namespace,
            self.secret,
            self.format.as_str()
        )
    }
}

/// What went wrong with one attempt.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Secret(ReceiverError),
    #[error("reading Secret {secret} failed: {source}")]
    Api {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("{origin} answered {status} after {took:.1?}: {body}")]
    Status {
        origin: String,
        status: u16,
        took: Duration,
        body: String,
    },
    #[error("sending to {origin} failed after {took:.1?}: {error}")]
    Send {
        origin: String,
        took: Duration,
        error: String,
    },
}

impl Failure {
    fn retryable(&self) -> bool {
        match self {
            Failure::Status { status, .. } => retry::retryable_status(*status),
            // A Secret can be created or fixed, a receiver can come up.
            _ => true,
        }
    }
}

/// Ids queued per receiver by this process, the last [`SEEN_CAPACITY`] of them.
const SEEN_CAPACITY: usize = 10_000;

#[derive(Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// `false` when `key` was seen already.
    fn insert(&mut self, key: String) -> bool {
        if !self.set.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > SEEN_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

struct Shared {
    client: kube::Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    settings: Settings,
    warn_limit: Mutex<WarnLimit>,
}

/// The passes' handle on delivery.
pub struct Notifier {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    seen: Mutex<Seen>,
    replayed: Mutex<HashSet<String>>,
}

impl Notifier {
    /// Starts the dispatcher on the current tokio runtime.
    pub fn start(
        client: kube::Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with a timeout and no redirects builds");
        let shared = Arc::new(Shared {
            client,
            recorder,
            metrics,
            http,
            warn_limit: Mutex::new(WarnLimit::new(settings.warn_every)),
            settings,
        });
        tokio::spawn(dispatch(rx, tx.clone(), shared.clone()));
        Notifier {
            tx,
            shared,
            seen: Mutex::default(),
            replayed: Mutex::default(),
        }
    }

    pub fn replay_window(&self) -> Duration {
        self.shared.settings.replay_window
    }

    /// `true` the first time it is asked about a ModelSync: its pass then tells recent runs
    /// again.
    pub fn first_pass(&self, uid: &str) -> bool {
        self.replayed
            .lock()
            .expect("replayed lock")
            .insert(uid.to_owned())
    }

    /// Forgets a deleted ModelSync.
    pub fn forget(&self, uid: &str) {
        self.replayed.lock().expect("replayed lock").remove(uid);
    }

    /// Queues each notice for each receiver that wants its event. Never waits: a full queue
    /// drops the notice and says so in the log and metrics.
    pub fn enqueue(&self, targets: &[NotifyTarget], notices: Vec<Notice>) {
        for notice in notices.into_iter().map(Arc::new) {
            for target in targets.iter().filter(|t| t.events.contains(&notice.event)) {
                let job = Job {
                    notice: notice.clone(),
                    secret: target.secret_ref.name.clone(),
                    format: target.format,
                    attempts: 0,
                };
                let key = format!("{}/{}", job.receiver_key(), notice.id);
                if !self.seen.lock().expect("seen lock").insert(key) {
                    continue;
                }
                let format = job.format;
                match self.tx.try_send(job) {
                    Ok(()) => self.shared.metrics.notification_queued(),
                    Err(_) => {
                        self.shared.metrics.notification_dropped(format);
                        warn!(
                            modelsync = %format!("{}/{}", notice.namespace, notice.name),
                            event = notice.event.as_str(),
                            id = %notice.id,
                            "notification queue is full ({} waiting): notification dropped; \
                             raise --notify-queue-size or fix the receivers that do not answer",
                            self.shared.settings.queue
                        );
                    }
                }
            }
        }
    }
}

async fn dispatch(mut rx: mpsc::Receiver<Job>, tx: mpsc::Sender<Job>, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.settings.concurrency.max(1)));
    while let Some(mut job) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            job.attempts += 1;
            let result = attempt(&shared, &job).await;
            drop(slot);
            let failure = match result {
                Ok(()) => {
                    shared.metrics.notification_sent(job.format);
                    debug!(id = %job.notice.id, receiver = %job.receiver_key(), "notification delivered");
                    return;
                }
                Err(failure) => failure,
            };
            let settings = &shared.settings;
            let retry = failure.retryable() && job.attempts < settings.attempts;
            let wait = retry::delay(job.attempts, settings.first_backoff, settings.max_backoff);
            let what = match retry {
                true => format!(
                    "attempt {} of {} failed, retrying in {wait:?}",
                    job.attempts, settings.attempts
                ),
                false => format!("gave up after {} attempts", job.attempts),
            };
            let note = format!(
                "{} notification {} to Secret {} ({}): {what}: {failure}",
                job.notice.event.as_str(),
                job.notice.id,
                job.secret,
                job.format.as_str()
            );
            warn!(modelsync = %format!("{}/{}", job.notice.namespace, job.notice.name), "{note}");
            warn_event(&shared, &job, note).await;
            if !retry {
                shared.metrics.notification_failed(job.format);
                return;
            }
            shared.metrics.notification_retried(job.format);
            tokio::time::sleep(wait).await;
            // Back through the queue, waiting for room if need be: it was accepted once.
            if tx.send(job).await.is_err() {
                shared.metrics.notification_done();
            }
        });
    }
}

async fn attempt(shared: &Shared, job: &Job) -> Result<(), Failure> {
    let receiver = read_receiver(shared, &job.notice.namespace, &job.secret).await?;
    let request = render::render(&job.notice, job.format, &receiver);
    post(shared, &receiver, request).await
}

async fn read_receiver(shared: &Shared, ns: &str, name: &str) -> Result<Receiver, Failure> {
    let secret = format!("{ns}/{name}");
    let api = Api::<Secret>::namespaced(shared.client.clone(), ns);
    match api.get(name).await {
        Ok(s) => receiver::read(&secret, &s.data.unwrap_or_default()).map_err(Failure::Secret),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            Err(Failure::Secret(ReceiverError::NotFound { secret }))
        }
        Err(kube::Error::Api(s)) if s.code == 403 => {
            Err(Failure::Secret(ReceiverError::Forbidden {
                secret,
                detail: s.message,
            }))
        }
        Err(source) => Err(Failure::Api { secret, source }),
    }
}

async fn post(shared: &Shared, receiver: &Receiver, request: Request) -> Result<(), Failure> {
    let origin = receiver.origin();
    let mut call = shared.http.post(receiver.address.clone());
    for (name, value) in &request.headers {
        call = call.header(name, value);
    }
    let started = Instant::now();
    let response = call
        .body(request.body)
        .send()
        .await
        .map_err(|e| Failure::Send {
            origin: origin.clone(),
            took: started.elapsed(),
            // Without the URL: a webhook's path may be its credential.
            error: error_chain(&e.without_url()),
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(Failure::Status {
        origin,
        status: status.as_u16(),
        took: started.elapsed(),
        body: body.chars().take(200).collect(),
    })
}

/// reqwest's top error says only "error sending request"; the cause says what happened.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn warn_event(shared: &Shared, job: &Job, note: String) {
    let allowed = shared
        .warn_limit
        .lock()
        .expect("warn limit lock")
        .allow(&job.receiver_key(), Instant::now());
    if !allowed {
        return;
    }
    let n = &job.notice;
    let me = ObjectReference {
        api_version: Some(format!("{}/v1alpha1", modelsync_api::modelsync::GROUP)),
        kind: Some(<ModelSync as kube::Resource>::kind(&()).into_owned()),
        namespace: Some(n.namespace.clone()),
        name: Some(n.name.clone()),
        uid: Some(n.uid.clone()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "NotificationFailed".into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Notify".into(),
        // The receiver's Secret as related object: the recorder folds events that share
        // reason and objects into one series keeping the first note, so without it a second
        // failing receiver's warning would show the first one's text.
        secondary: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
            namespace: Some(n.namespace.clone()),
            name: Some(job.secret.clone()),
            ..Default::default()
        }),
    };
    if let Err(e) = shared.recorder.publish(&event, &me).await {
        warn!(modelsync = %format!("{}/{}", n.namespace, n.name), "could not publish event NotificationFailed: {e}");
    }
}
