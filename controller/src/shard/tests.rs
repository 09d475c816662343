use super::*;
use k8s_openapi::api::core::v1::ObjectReference;
use modelsync_api::modelsync::{RunResult, RunSummary};

fn summary(name: &str) -> Option<RunSummary> {
    Some(RunSummary {
        name: name.into(),
        start_time: None,
        completion_time: None,
        result: RunResult::Succeeded,
    })
}

fn labels(shard: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([(LABEL_NAME.to_owned(), "m".to_owned())]);
    if let Some(s) = shard {
        l.insert(LABEL_SHARD.to_owned(), s.to_owned());
    }
    l
}

fn run(name: &str, shard: Option<&str>, owner: &str) -> ListedRun {
    ListedRun {
        name: name.into(),
        labels: labels(shard),
        controller_uid: Some(owner.into()),
    }
}

#[test]
fn selectors_pick_a_named_shard_or_the_unlabelled_objects() {
    let a = Shard::named("a").unwrap();
    assert_eq!(a.modelsync_selector(), "modelsync.dev/shard=a");
    assert_eq!(a.run_selector(), "modelsync.dev/name,modelsync.dev/shard=a");
    let none = Shard::unlabelled();
    assert_eq!(none.modelsync_selector(), "!modelsync.dev/shard");
    assert_eq!(
        none.run_selector(),
        "modelsync.dev/name,!modelsync.dev/shard"
    );
    assert!(a.owns(&labels(Some("a"))));
    assert!(!a.owns(&labels(Some("b"))));
    assert!(!a.owns(&labels(None)));
    assert!(none.owns(&labels(None)));
    assert!(!none.owns(&labels(Some("a"))));
}

#[test]
fn each_shard_has_its_own_lease_and_the_unlabelled_one_keeps_the_plain_id() {
    assert_eq!(
        Shard::named("gpu-2")
            .unwrap()
            .lease_name("modelsync-controller"),
        "modelsync-controller-gpu-2"
    );
    assert_eq!(
        Shard::unlabelled().lease_name("modelsync-controller"),
        "modelsync-controller"
    );
}

#[test]
fn shard_names_must_fit_a_label_value_and_a_lease_name() {
    for good in ["a", "gpu-2", "0", &"x".repeat(63)] {
        assert!(Shard::named(good).is_ok(), "{good}");
    }
    for bad in ["", "A", "a_b", "a.b", "-a", "a-", "a b", &"x".repeat(64)] {
        let err = Shard::named(bad).unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{bad}: {err}");
    }
}

#[test]
fn runs_moved_in_from_another_shard_are_relabelled_then_awaited() {
    let b = Shard::named("b").unwrap();
    let listed = [
        run("m-1", Some("a"), "uid"),
        run("m-2", None, "uid"),
        run("m-3", Some("b"), "uid"),
        // An earlier ModelSync of the same name: not ours, left alone.
        run("m-old", Some("a"), "other"),
    ];
    let nothing_indexed = |_: &str| false;
    assert_eq!(
        adoption(&b, "uid", &listed, nothing_indexed),
        Adoption::Relabel(vec!["m-1".into(), "m-2".into()])
    );
    let relabelled = [
        run("m-1", Some("b"), "uid"),
        run("m-2", Some("b"), "uid"),
        run("m-3", Some("b"), "uid"),
    ];
    assert_eq!(
        adoption(&b, "uid", &relabelled, |n: &str| n == "m-3"),
        Adoption::WaitForWatch
    );
    assert_eq!(
        adoption(&b, "uid", &relabelled, |_: &str| true),
        Adoption::Complete
    );
}

#[test]
fn moving_to_the_unlabelled_shard_removes_the_label() {
    let none = Shard::unlabelled();
    let listed = [run("m-1", Some("a"), "uid"), run("m-2", None, "uid")];
    assert_eq!(
        adoption(&none, "uid", &listed, |n: &str| n == "m-2"),
        Adoption::Relabel(vec!["m-1".into()])
    );
    // Runs deleted by hand: nothing to adopt, the pass goes on.
    assert_eq!(
        adoption(&none, "uid", &[], |_: &str| false),
        Adoption::Complete
    );
}

#[test]
fn only_runs_named_in_status_and_missing_from_the_index_call_for_a_look() {
    let indexed = |n: &str| n == "m-1";
    assert!(unknown_runs(None, indexed).is_empty());
    let mut status = ModelSyncStatus {
        last_run: summary("m-1"),
        ..Default::default()
    };
    assert!(unknown_runs(Some(&status), indexed).is_empty());
    status.active = vec![ObjectReference {
        name: Some("m-2".into()),
        ..Default::default()
    }];
    assert_eq!(
        unknown_runs(Some(&status), indexed),
        BTreeSet::from(["m-2".to_owned()])
    );
    status.active.clear();
    status.last_successful_run = summary("m-0");
    assert_eq!(
        unknown_runs(Some(&status), indexed),
        BTreeSet::from(["m-0".to_owned()])
    );
}
