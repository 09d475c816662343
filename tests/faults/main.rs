//! Faults on the real local control plane, the controller a real process. Each test runs a
//! fleet of ModelSyncs (`Forbid` and `Replace` mixed, one-second polls) whose lambda keeps
//! deciding for newer models, puts one fault on it, and ends with every ModelSync back to its
//! expected state, no duplicate active run at any moment (checked on every PipelineRun watch
//! event, not only at the end), every decision led to exactly one run, and no stuck
//! condition. Each prints its figures (recovery time to all-Ready, decisions delayed,
//! duplicates seen) as a table row, also appended to `faults-report.md` in Cargo's temporary
//! folder for tests. A failing test keeps its control plane's folder, with the controllers'
//! logs, and says where; `MODELSYNC_FAULTS_KEEP=1` keeps it for passing tests too.
//!
//! Each test has a control plane of its own, since it stops parts of it, and the tests run
//! one at a time: they time leases and outages, which a machine busy with another control
//! plane would blur.

mod controller;
mod fleet;
mod invariants;
mod lambda;
mod report;
mod tekton_play;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use modelsync_api::modelsync::RunResult;
use modelsync_testenv::Component;
use modelsync_testenv::faults::http::{Call, Hook, HttpFaults, Verdict};
use modelsync_testenv::faults::tcp::{Mode, TcpProxy};
use tokio::sync::Notify;

use crate::controller::Killer;
use crate::fleet::Fleet;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn apiserver_addr(fleet: &Fleet) -> SocketAddr {
    fleet
        .cp
        .server()
        .trim_start_matches("https://")
        .parse()
        .expect("the API server listens on an IP address and port")
}

/// The runs going now (active and started by Tekton), by name, with their ModelSync and
/// model. A run Tekton has not started cannot end while the API server is down: starting it
/// takes API calls.
fn runs_going(fleet: &Fleet) -> Vec<(String, String, String)> {
    fleet
        .checker
        .runs()
        .into_iter()
        .filter(|r| r.active() && r.started)
        .map(|r| (r.name, r.modelsync, r.model))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_stopped_for_20s_mid_run() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut fleet = Fleet::start("apiserver", 2, 2).await;
    let kubeconfig = fleet.cp.kubeconfig().to_owned();
    let ctl = fleet.controller(&kubeconfig, &[], &[]);
    fleet.wait_steady(&ctl).await;
    fleet.wait_mid_run(2, &ctl).await;

    let going = runs_going(&fleet);
    fleet.cp.stop(Component::ApiServer).await.unwrap();
    let down = Instant::now();
    // Those still going as the API server went away (the checker's last view): a run may
    // have ended or been replaced while it shut down.
    let still = runs_going(&fleet);
    let mid_run: Vec<_> = going.into_iter().filter(|r| still.contains(r)).collect();
    assert!(
        !mid_run.is_empty(),
        "no run was going when the API server stopped"
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    // Every run going when the API server stopped has done its work by now (runs take 1.5 to
    // 2.5 s): it ended while the API server was down; Tekton writes so once it is back.
    for (run, ms, model) in &mid_run {
        assert_eq!(
            fleet.lambda.pinned(ms).as_deref(),
            Some(model.as_str()),
            "{run} should have finished while the API server was down"
        );
    }
    fleet.cp.start_again(Component::ApiServer).await.unwrap();
    let back = Instant::now();
    let outage = down.elapsed();
    let recovery = fleet.settle(&ctl.log_tail()).await;

    let mut reported = Vec::new();
    for (run, _, _) in &mid_run {
        let seen = fleet.checker.runs().into_iter().find(|r| &r.name == run);
        assert_eq!(
            seen.as_ref().map(|r| r.result),
            Some(RunResult::Succeeded),
            "{run} ended while the API server was down"
        );
        if let Some(t) = seen.and_then(|r| r.ended_seen) {
            reported.push(t.saturating_duration_since(back).as_secs_f64());
        }
    }
    let mut f = fleet.figures("kube-apiserver stopped 20 s mid-run", recovery);
    f.note = format!(
        "down {:.1} s (stop to ready); {} runs going when it stopped, all ended while it was down, their status written {:.1?} s after it was back",
        outage.as_secs_f64(),
        mid_run.len(),
        reported
    );
    f.print();
    f.assert_clean(&ctl.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stopped_and_restarted_on_its_data() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut fleet = Fleet::start("etcd", 2, 2).await;
    let kubeconfig = fleet.cp.kubeconfig().to_owned();
    let ctl = fleet.controller(&kubeconfig, &[], &[]);
    fleet.wait_steady(&ctl).await;
    fleet.wait_mid_run(1, &ctl).await;

    fleet.cp.stop(Component::Etcd).await.unwrap();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    fleet.cp.start_again(Component::Etcd).await.unwrap();
    let outage = down.elapsed();
    let recovery = fleet.settle(&ctl.log_tail()).await;

    let mut f = fleet.figures("etcd stopped and restarted (same data)", recovery);
    f.note = format!(
        "down {:.1} s (stop to the API server ready again)",
        outage.as_secs_f64()
    );
    f.print();
    f.assert_clean(&ctl.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_at_random_for_30s() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let fleet = Fleet::start("cuts", 2, 2).await;
    let proxy = TcpProxy::start(apiserver_addr(&fleet)).await.unwrap();
    let kubeconfig = fleet.kubeconfig_via(&format!("https://{}", proxy.addr()), "cuts");
    let ctl = fleet.controller(&kubeconfig, &[], &[]);
    fleet.wait_steady(&ctl).await;

    let cuts = proxy.cut_randomly(Duration::from_millis(200)..Duration::from_secs(3));
    tokio::time::sleep(Duration::from_secs(30)).await;
    drop(cuts);
    let recovery = fleet.settle(&ctl.log_tail()).await;

    let mut f = fleet.figures("watch and API connections cut at random (30 s)", recovery);
    f.note = format!(
        "{} connections reset, every 0.2 to 3 s",
        proxy.connections_reset()
    );
    f.print();
    f.assert_clean(&ctl.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_failing_writes_then_slow() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let fleet = Fleet::start("errors", 2, 2).await;
    let proxy = HttpFaults::start(&fleet.cp).await.unwrap();
    let kubeconfig = fleet.logs().join("kubeconfig-errors");
    proxy.write_kubeconfig(&fleet.cp, &kubeconfig).unwrap();
    let ctl = fleet.controller(&kubeconfig, &[], &[]);
    fleet.wait_steady(&ctl).await;

    // Half the writes answered 429 (with Retry-After, as priority and fairness does) or 500.
    let phase = Instant::now();
    proxy.set_hook(|call: &Call| {
        if call.is_write() && rand::random::<bool>() {
            match rand::random::<bool>() {
                true => Verdict::Fail(StatusCode::TOO_MANY_REQUESTS),
                false => Verdict::Fail(StatusCode::INTERNAL_SERVER_ERROR),
            }
        } else {
            Verdict::Forward
        }
    });
    tokio::time::sleep(Duration::from_secs(20)).await;
    proxy.clear_hook();
    let failed = proxy.stats().failed;
    assert!(
        failed > 0,
        "no write was failed: the controller bypassed the proxy"
    );
    let recovery = fleet.settle(&ctl.log_tail()).await;
    let mut f = fleet.figures_since("429 / 500 on half the writes (20 s)", recovery, phase);
    f.note = format!("{failed} writes answered 429 or 500");
    f.print();
    f.assert_clean(&ctl.log_tail());

    // Then every call, reads and watches included, takes 2 s longer.
    fleet.drive(true);
    let phase = Instant::now();
    proxy.set_hook(|_: &Call| Verdict::Delay(Duration::from_secs(2)));
    tokio::time::sleep(Duration::from_secs(20)).await;
    proxy.clear_hook();
    let delayed = proxy.stats().delayed;
    assert!(
        delayed > 0,
        "no call was delayed: the controller bypassed the proxy"
    );
    let recovery = fleet.settle(&ctl.log_tail()).await;
    let mut f = fleet.figures_since("API server slow: 2 s per call (20 s)", recovery, phase);
    f.note = format!("{delayed} calls delayed 2 s");
    f.print();
    f.assert_clean(&ctl.log_tail());
}

/// The steps of a pass at which the controller is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// While the lambda is being asked.
    AskingLambda,
    /// The create call sent, before it reaches the API server.
    BeforeCreate,
    /// The run created, before the controller hears so.
    AfterCreate,
    /// A `Replace` cancel done, before the controller hears so (the new run not created yet).
    AfterCancel,
    BeforeStatus,
    AfterStatus,
    /// An old run garbage-collected, before the controller hears so.
    AfterCollect,
    /// An event published (the last thing a pass does).
    AfterEvent,
    /// Any moment at all, start-up included.
    AnyMoment,
}

const STEPS: [Step; 9] = [
    Step::AskingLambda,
    Step::BeforeCreate,
    Step::AfterCreate,
    Step::AfterCancel,
    Step::BeforeStatus,
    Step::AfterStatus,
    Step::AfterCollect,
    Step::AfterEvent,
    Step::AnyMoment,
];

fn is_create(c: &Call) -> bool {
    c.method == Method::POST && c.path.ends_with("/pipelineruns")
}

fn is_cancel(c: &Call) -> bool {
    c.method == Method::PATCH && c.path.contains("/pipelineruns/") && !c.path.ends_with("/status")
}

fn is_status(c: &Call) -> bool {
    c.method == Method::PATCH && c.path.contains("/modelsyncs/") && c.path.ends_with("/status")
}

fn is_collect(c: &Call) -> bool {
    c.method == Method::DELETE && c.path.contains("/pipelineruns/")
}

fn is_event(c: &Call) -> bool {
    c.method == Method::POST && c.path.ends_with("/events")
}

impl Step {
    fn before(self, c: &Call) -> bool {
        match self {
            Step::BeforeCreate => is_create(c),
            Step::BeforeStatus => is_status(c),
            _ => false,
        }
    }

    fn after(self, c: &Call) -> bool {
        match self {
            Step::AfterCreate => is_create(c),
            Step::AfterCancel => is_cancel(c),
            Step::AfterStatus => is_status(c),
            Step::AfterCollect => is_collect(c),
            Step::AfterEvent => is_event(c),
            _ => false,
        }
    }
}

/// Kills the controller when the armed step comes, once.
struct KillSwitch {
    armed: Mutex<Option<Step>>,
    killer: Killer,
    fired: Notify,
}

impl KillSwitch {
    fn fire_if(&self, at: impl Fn(Step) -> bool) -> bool {
        let mut armed = self.armed.lock().unwrap();
        match *armed {
            Some(step) if at(step) => {
                *armed = None;
                drop(armed);
                self.killer.kill();
                self.fired.notify_one();
                true
            }
            _ => false,
        }
    }
}

struct KillHook(Arc<KillSwitch>);

impl Hook for KillHook {
    fn before(&self, call: &Call) -> Verdict {
        match self.0.fire_if(|s| s.before(call)) {
            // The caller is dead; the answer goes nowhere.
            true => Verdict::Fail(StatusCode::SERVICE_UNAVAILABLE),
            false => Verdict::Forward,
        }
    }

    fn after(&self, call: &Call, status: StatusCode) {
        if status.is_success() {
            self.0.fire_if(|s| s.after(call));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_50_times_at_every_step_of_a_pass() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let fleet = Fleet::start("sigkill", 3, 3).await;
    let proxy = HttpFaults::start(&fleet.cp).await.unwrap();
    let kubeconfig = fleet.logs().join("kubeconfig-sigkill");
    proxy.write_kubeconfig(&fleet.cp, &kubeconfig).unwrap();
    let mut ctl = fleet.controller(&kubeconfig, &[], &[]);
    fleet.wait_steady(&ctl).await;

    let switch = Arc::new(KillSwitch {
        armed: Mutex::new(None),
        killer: ctl.killer(),
        fired: Notify::new(),
    });
    proxy.set_hook(KillHook(switch.clone()));
    let asking = switch.clone();
    fleet.lambda.set_hook(Some(Arc::new(move |_: &str| {
        asking.fire_if(|s| s == Step::AskingLambda);
    })));

    let mut hit: BTreeMap<Step, u32> = BTreeMap::new();
    let mut missed: BTreeMap<Step, u32> = BTreeMap::new();
    let kills = 50;
    for i in 0..kills {
        let step = STEPS[i % STEPS.len()];
        // Let the restarted controller get going: its list, its first passes.
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..800))).await;
        if step == Step::AnyMoment {
            tokio::time::sleep(Duration::from_millis(rand::random_range(0..1500))).await;
            ctl.kill9();
            *hit.entry(step).or_default() += 1;
        } else {
            *switch.armed.lock().unwrap() = Some(step);
            let fired = tokio::time::timeout(Duration::from_secs(10), switch.fired.notified())
                .await
                .is_ok();
            let disarmed = switch.armed.lock().unwrap().take().is_some();
            if fired || !disarmed {
                if !fired {
                    // It fired between the timeout and the disarming: take its notice.
                    switch.fired.notified().await;
                }
                *hit.entry(step).or_default() += 1;
            } else {
                *missed.entry(step).or_default() += 1;
            }
            ctl.kill9();
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..300))).await;
        ctl.restart();
    }
    proxy.clear_hook();
    fleet.lambda.set_hook(None);
    let recovery = fleet.settle(&ctl.log_tail()).await;

    let per_step: Vec<String> = STEPS
        .iter()
        .map(|s| {
            let missed = missed.get(s).map_or(String::new(), |m| {
                format!(" (+{m} at a random moment, the step did not come)")
            });
            format!("{s:?} {}{missed}", hit.get(s).copied().unwrap_or(0))
        })
        .collect();
    let mut f = fleet.figures("controller SIGKILLed 50 times (Forbid + Replace)", recovery);
    f.note = format!("kills per step: {}", per_step.join(", "));
    f.print();
    f.assert_clean(&ctl.log_tail());
    for step in STEPS {
        assert!(
            hit.get(&step).copied().unwrap_or(0) >= 1,
            "no kill landed at {step:?}: {}",
            f.note
        );
    }
}

/// The Lease's holder and the times its holders wrote in it, each with its own clock (the
/// replicas here share this machine's, so the times compare).
#[derive(Clone, Debug)]
struct LeaseSeen {
    holder: Option<String>,
    renewed: Option<Timestamp>,
    acquired: Option<Timestamp>,
}

async fn lease_now(leases: &Api<Lease>) -> Option<LeaseSeen> {
    let spec = leases.get_opt("modelsync-controller").await.ok()??.spec?;
    Some(LeaseSeen {
        holder: spec.holder_identity,
        renewed: spec.renew_time.map(|t| t.0),
        acquired: spec.acquire_time.map(|t| t.0),
    })
}

fn holder_is(seen: &Option<LeaseSeen>, who: &str) -> bool {
    seen.as_ref().and_then(|s| s.holder.as_deref()) == Some(who)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_partitioned_from_the_api_server_stops_before_the_other_takes_over() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let fleet = Fleet::start("leader", 2, 2).await;
    let proxy_a = TcpProxy::start(apiserver_addr(&fleet)).await.unwrap();
    let proxy_b = TcpProxy::start(apiserver_addr(&fleet)).await.unwrap();
    let kubeconfig_a = fleet.kubeconfig_via(&format!("https://{}", proxy_a.addr()), "a");
    let kubeconfig_b = fleet.kubeconfig_via(&format!("https://{}", proxy_b.addr()), "b");
    let ns_flag = format!("--leader-election-namespace={}", fleet.ns);
    let flags = ["--leader-elect", ns_flag.as_str()];
    let leases: Api<Lease> = Api::namespaced(fleet.client.clone(), &fleet.ns);

    let mut a = fleet.controller(&kubeconfig_a, &flags, &[("POD_NAME", "replica-a")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !holder_is(&lease_now(&leases).await, "replica-a") {
        assert!(
            Instant::now() < deadline,
            "replica-a never led:\n{}",
            a.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = fleet.controller(&kubeconfig_b, &flags, &[("POD_NAME", "replica-b")]);
    fleet.wait_steady(&a).await;

    // Partitioned, not killed: A's calls go into a blackhole and hang.
    let mut a_renewed = lease_now(&leases).await.and_then(|l| l.renewed);
    proxy_a.partition(Mode::Blackhole);
    let partitioned = Instant::now();
    fleet.drive(false);
    let mut a_stopped: Option<(Instant, Timestamp)> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (took_over, b_acquired) = loop {
        let seen = lease_now(&leases).await;
        if holder_is(&seen, "replica-b") {
            let acquired = seen.and_then(|l| l.acquired);
            break (
                Instant::now(),
                acquired.expect("a taken Lease has an acquireTime"),
            );
        }
        if holder_is(&seen, "replica-a") {
            a_renewed = seen.and_then(|l| l.renewed).or(a_renewed);
        }
        if a_stopped.is_none() && a.exited() {
            a_stopped = Some((Instant::now(), Timestamp::now()));
        }
        assert!(
            Instant::now() < deadline,
            "replica-b never took over:\n{}",
            b.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let a_renewed = a_renewed.expect("replica-a renewed the Lease");
    let Some((a_stopped, a_stopped_wall)) = a_stopped else {
        panic!(
            "replica-a, partitioned, still ran when replica-b took over:\n{}",
            a.log_tail()
        )
    };
    // B counts 15 s on its own clock from its first sight of A's last renewal, which came
    // after A wrote that renewTime; its acquireTime is written after it decided.
    let expired_after = b_acquired.duration_since(a_renewed);
    assert!(
        expired_after.as_secs_f64() >= 15.0,
        "replica-b took over {expired_after} after replica-a's last renewal: before the 15 s lease expired"
    );
    // Noticed at most 20 ms after A exited.
    assert!(
        a_stopped_wall < b_acquired,
        "replica-a stopped at {a_stopped_wall}, after replica-b took over at {b_acquired}"
    );
    assert!(
        a.log().contains("stopping at once: no longer the leader"),
        "replica-a did not say why it stopped:\n{}",
        a.log_tail()
    );

    // Counted from the partition: B must first wait out A's lease.
    fleet.settle(&b.log_tail()).await;
    let recovery = partitioned.elapsed();

    // The partition heals and A comes back (as its pod would): it follows, it does not lead.
    proxy_a.heal();
    a.restart();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        holder_is(&lease_now(&leases).await, "replica-b"),
        "the lease moved after replica-a came back"
    );
    assert_eq!(
        a.log().matches("became leader").count(),
        1,
        "replica-a led again while replica-b held the lease:\n{}",
        a.log_tail()
    );

    let mut f = fleet.figures(
        "leader partitioned from the API server (2 replicas)",
        recovery,
    );
    f.note = format!(
        "recovery counted from the partition; A stopped {:.1} s after it ({:.1} s after its last renewal), B took over {:.1} s after it ({:.1} s after A's last renewal, {:.1} s after A stopped)",
        a_stopped.duration_since(partitioned).as_secs_f64(),
        a_stopped_wall.duration_since(a_renewed).as_secs_f64(),
        took_over.duration_since(partitioned).as_secs_f64(),
        expired_after.as_secs_f64(),
        b_acquired.duration_since(a_stopped_wall).as_secs_f64(),
    );
    f.print();
    f.assert_clean(&format!("{}\n--- b:\n{}", a.log_tail(), b.log_tail()));
    drop(a);
}
