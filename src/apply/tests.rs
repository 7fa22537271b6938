//! The executor against the stateful fake, with the real planner and the
//! example inventory: what the account looks like afterwards is what counts.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

use super::fake::FakeCloud;
use super::journal::{Event, OrderJournal};
use super::*;
use crate::contabo::models::InstanceStatus;
use crate::inventory::{self, slot_name, Desired};
use crate::observe::contabo::observe_account;
use crate::plan::{self, Observed, PlanOptions, StepId};
use crate::report::{Event as Reported, RecordingReporter, StepOutcome};

fn desired() -> Desired {
    inventory::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory")).unwrap()
}

fn slots(d: &Desired) -> BTreeSet<String> {
    d.clusters
        .iter()
        .flat_map(|c| {
            c.pools
                .iter()
                .flat_map(move |p| (1..=p.count).map(move |i| slot_name(&c.name, &p.name, i)))
        })
        .collect()
}

async fn observe(fake: &FakeCloud, d: &Desired) -> Observed {
    observe_account(fake, &d.provider.image)
        .await
        .unwrap()
        .into_observed(&d.provider.image)
}

fn settings(contabo_only: bool) -> ApplySettings {
    let mut s = ApplySettings::fast("trace-test".into());
    s.contabo_only = contabo_only;
    s.unlisted_order_wait = std::time::Duration::from_millis(100);
    s
}

struct Run {
    outcome: ApplyOutcome,
    reporter: RecordingReporter,
}

async fn apply(fake: &FakeCloud, journal: &OrderJournal, contabo_only: bool) -> Run {
    let d = desired();
    let observed = observe(fake, &d).await;
    let plan = plan::plan(&d, &observed, &PlanOptions::default());
    let reporter = RecordingReporter::default();
    let input = ApplyInput {
        settle: resume::settle_targets(&d, &observed, &BTreeSet::new(), &plan.steps),
        steps: plan.steps,
        ssh_public_key: d.provider.ssh_public_key.clone(),
    };
    let outcome = execute(
        fake,
        &NoNodeAccess,
        &reporter,
        journal,
        &observed,
        input,
        &settings(contabo_only),
    )
    .await;
    Run { outcome, reporter }
}

fn journal() -> (tempfile::TempDir, OrderJournal) {
    let dir = tempfile::tempdir().unwrap();
    let j = OrderJournal::open(dir.path()).unwrap();
    (dir, j)
}

fn names(fake: &FakeCloud) -> Vec<String> {
    let mut n: Vec<String> = fake
        .instances()
        .into_iter()
        .map(|i| i.display_name)
        .collect();
    n.sort();
    n
}

fn assert_one_instance_per_slot(fake: &FakeCloud) {
    let d = desired();
    let names = names(fake);
    let unique: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(
        names.len(),
        unique.len(),
        "a slot was ordered twice: {names:?}"
    );
    assert_eq!(unique, slots(&d));
}

async fn fresh_plan_is_empty(fake: &FakeCloud) -> bool {
    let d = desired();
    let observed = observe(fake, &d).await;
    plan::plan(&d, &observed, &PlanOptions::default()).is_empty()
}

#[tokio::test]
async fn contabo_only_apply_orders_tags_and_runs_every_slot_once() {
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    let run = apply(&fake, &j, true).await;
    let failures: Vec<_> = run
        .outcome
        .results
        .iter()
        .filter(|r| !r.outcome.is_done())
        .map(|r| format!("{}: {}", r.id, r.outcome))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_one_instance_per_slot(&fake);
    for i in fake.instances() {
        assert_eq!(i.status, InstanceStatus::Running, "{}", i.display_name);
        let tags = fake.tags_of(i.instance_id);
        assert_eq!(tags.len(), 3, "{}: {tags:?}", i.display_name);
        assert!(tags.contains(&"kiwi-managed".to_string()));
    }
    assert!(!run.outcome.deferred.is_empty(), "node steps are deferred");
    assert_eq!(run.outcome.ordered.len(), 15);
    // The user data was rendered for the slot and carries the operator key.
    let ud = fake.state.lock().unwrap().user_data.clone();
    let first = fake.instances()[0].clone();
    assert!(ud[&first.instance_id.0].contains(&format!("hostname: {}", first.display_name)));
    assert!(fresh_plan_is_empty(&fake).await);
    // The journal has an intent and a placed line per slot.
    let placed = j
        .entries()
        .iter()
        .filter(|e| matches!(e.event, Event::Placed { .. }))
        .count();
    assert_eq!(placed, 15);
}

#[tokio::test]
async fn kiwi_managed_is_assigned_after_the_other_tags_of_its_instance() {
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    let run = apply(&fake, &j, true).await;
    let finished: Vec<StepId> = run
        .reporter
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Reported::StepFinished(id, StepOutcome::Done(_)) => Some(id),
            _ => None,
        })
        .collect();
    for slot in slots(&desired()) {
        let pos = |prefix: &str| {
            finished
                .iter()
                .position(|id| id.0.starts_with(prefix) && id.0.ends_with(&format!(":{slot}")))
        };
        let managed = pos("assign:kiwi-managed:").unwrap();
        assert!(pos("assign:kiwi-cluster-").unwrap() < managed, "{slot}");
        assert!(pos("assign:kiwi-class-").unwrap() < managed, "{slot}");
    }
}

#[tokio::test]
async fn every_order_answer_lost_and_listed_late_still_buys_each_slot_once() {
    let fake = FakeCloud::with(|s| {
        s.lose_create_answers = u32::MAX;
        s.hide_new_for_lookups = 2;
    });
    let (_dir, j) = journal();
    let run = apply(&fake, &j, true).await;
    assert_one_instance_per_slot(&fake);
    assert_eq!(fake.state.lock().unwrap().create_calls, 15);
    assert!(run.outcome.all_done());
    assert!(fresh_plan_is_empty(&fake).await);
}

#[tokio::test]
async fn an_order_confirmed_absent_is_sent_again_once() {
    let fake = FakeCloud::with(|s| s.fail_creates_unplaced = 2);
    let (_dir, j) = journal();
    let run = apply(&fake, &j, true).await;
    assert_one_instance_per_slot(&fake);
    assert_eq!(fake.state.lock().unwrap().create_calls, 17);
    assert!(run.outcome.all_done());
}

#[tokio::test]
async fn a_held_product_needs_the_operator_and_the_others_finish() {
    let fake = FakeCloud::with(|s| {
        s.holds
            .insert("V9".into(), InstanceStatus::ProductNotAvailable);
    });
    let (_dir, j) = journal();
    let run = apply(&fake, &j, true).await;
    assert_one_instance_per_slot(&fake);
    let human: Vec<_> = run
        .outcome
        .results
        .iter()
        .filter_map(|r| match &r.outcome {
            StepOutcome::NeedsHuman(m) => Some((r.id.0.clone(), m.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(human.len(), 2, "{human:?}");
    for (id, message) in &human {
        assert!(id.starts_with("wait:kiwi-core-realtime-"), "{id}");
        assert!(message.contains("cannot deliver V9 in EU"), "{message}");
        assert!(message.contains("kiwi-infra apply"), "{message}");
    }
    let others_done = run
        .outcome
        .results
        .iter()
        .filter(|r| !r.id.0.starts_with("wait:kiwi-core-realtime-"))
        .all(|r| r.outcome.is_done());
    assert!(others_done);
    assert!(!run.outcome.all_done());
    // A rerun after the hold is lifted (Contabo moves the order on) completes.
    {
        let mut s = fake.state.lock().unwrap();
        s.holds.clear();
        for i in &mut s.instances {
            if i.status == InstanceStatus::ProductNotAvailable {
                i.status = InstanceStatus::Provisioning;
            }
        }
    }
    let rerun = apply(&fake, &j, true).await;
    assert!(rerun.outcome.all_done());
    assert_eq!(
        rerun
            .outcome
            .results
            .iter()
            .filter(|r| r.id.0.starts_with("wait:"))
            .count(),
        2,
        "the rerun waits for the two held instances"
    );
    assert!(fake
        .instances()
        .iter()
        .all(|i| i.status == InstanceStatus::Running));
}

#[tokio::test]
async fn node_steps_are_reported_not_carried_out_and_never_done() {
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    let run = apply(&fake, &j, false).await;
    assert!(run.outcome.deferred.is_empty());
    let mut not_carried = 0;
    let mut skipped = 0;
    for r in &run.outcome.results {
        let node = r.id.0.starts_with("join:") || r.id.0.starts_with("bootstrap:");
        match &r.outcome {
            StepOutcome::NotCarriedOut(why) => {
                assert!(node, "{}", r.id);
                assert!(why.contains("node access is not implemented yet"));
                not_carried += 1;
            }
            StepOutcome::Skipped { .. } => {
                assert!(node, "{}", r.id);
                skipped += 1;
            }
            StepOutcome::Done(_) => assert!(!node, "{} claims to be done", r.id),
            other => panic!("{}: {other}", r.id),
        }
    }
    assert!(not_carried > 0 && skipped > 0, "{not_carried} {skipped}");
    assert!(!run.outcome.all_done());
    assert_one_instance_per_slot(&fake);
}

#[tokio::test]
async fn an_instance_that_appears_unannounced_is_left_alone() {
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    let d = desired();
    let observed = observe(&fake, &d).await;
    let plan = plan::plan(&d, &observed, &PlanOptions::default());
    // Someone else creates an instance with a slot's name after the plan.
    let foreign = fake.add_instance("kiwi-core-general-01", InstanceStatus::Running);
    let reporter = RecordingReporter::default();
    let input = ApplyInput {
        steps: plan.steps,
        settle: Vec::new(),
        ssh_public_key: d.provider.ssh_public_key.clone(),
    };
    let outcome = execute(
        &fake,
        &NoNodeAccess,
        &reporter,
        &j,
        &observed,
        input,
        &settings(true),
    )
    .await;
    let order = outcome
        .results
        .iter()
        .find(|r| r.id.0 == "order:kiwi-core-general-01")
        .unwrap();
    assert!(
        matches!(&order.error, Some(ApplyError::ForeignInstance { instance, .. }) if *instance == foreign),
        "{:?}",
        order.outcome
    );
    assert!(
        fake.tags_of(foreign).is_empty(),
        "the foreign instance was tagged"
    );
    assert_eq!(
        names(&fake)
            .iter()
            .filter(|n| *n == "kiwi-core-general-01")
            .count(),
        1
    );
}

#[tokio::test]
async fn an_earlier_intent_makes_apply_wait_for_the_late_listing_instead_of_ordering() {
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    let d = desired();
    let observed = observe(&fake, &d).await;
    let plan = plan::plan(&d, &observed, &PlanOptions::default());
    // A killed run: intent written, order placed, answer never read; and
    // Contabo lists the new instance only after a few look-ups.
    j.record(
        "kiwi-core-general-01",
        Event::Intent {
            trace_id: "old".into(),
            product: "V97".into(),
        },
    )
    .unwrap();
    fake.state.lock().unwrap().hide_new_for_lookups = 3;
    let early = {
        use crate::contabo::models::{CreateInstance, Period, Region};
        use crate::contabo::CloudApi;
        let order = CreateInstance {
            product_id: "V97".into(),
            region: Region::Eu,
            image_id: "img".into(),
            period: Period::OneMonth,
            display_name: "kiwi-core-general-01".into(),
            ssh_keys: Vec::new(),
            user_data: None,
            default_user: None,
        };
        fake.create_instance(order).await.unwrap().instance_id
    };
    fake.state.lock().unwrap().hide_new_for_lookups = 0;
    let reporter = RecordingReporter::default();
    let mut s = settings(true);
    s.unlisted_order_wait = std::time::Duration::from_secs(5);
    let input = ApplyInput {
        steps: plan.steps,
        settle: Vec::new(),
        ssh_public_key: d.provider.ssh_public_key.clone(),
    };
    let outcome = execute(&fake, &NoNodeAccess, &reporter, &j, &observed, input, &s).await;
    assert!(outcome.all_done());
    assert_one_instance_per_slot(&fake);
    assert_eq!(fake.tags_of(early).len(), 3);
    assert!(reporter.events().iter().any(|e| matches!(e,
        Reported::Message(m) if m.contains("kiwi-core-general-01: an earlier apply sent an order"))));
}

#[tokio::test]
async fn an_owned_instance_in_error_is_reinstalled_not_reordered() {
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    assert!(apply(&fake, &j, true).await.outcome.all_done());
    let broken = fake
        .instances()
        .into_iter()
        .find(|i| i.display_name == "kiwi-praxis-lindner-server-02")
        .unwrap()
        .instance_id;
    fake.state
        .lock()
        .unwrap()
        .instances
        .iter_mut()
        .find(|i| i.instance_id == broken)
        .unwrap()
        .status = InstanceStatus::Error;
    let run = apply(&fake, &j, true).await;
    assert!(run.outcome.all_done(), "{:#?}", run.outcome.results);
    assert!(run
        .outcome
        .results
        .iter()
        .any(|r| r.id.0 == "reinstall:kiwi-praxis-lindner-server-02"));
    assert_one_instance_per_slot(&fake);
    let after = fake
        .instances()
        .into_iter()
        .find(|i| i.instance_id == broken)
        .unwrap();
    assert_eq!(after.status, InstanceStatus::Running);
}

#[tokio::test]
async fn tags_and_secrets_whose_creation_failed_are_created_after_looking_again() {
    // Regression: a 500 on POST /v1/tags failed the step and every
    // assignment of that tag, although creating it again is safe once a
    // look-up shows it does not exist.
    let fake = FakeCloud::with(|s| s.fail_account_creates = 3);
    let (_dir, j) = journal();
    let run = apply(&fake, &j, true).await;
    assert!(run.outcome.all_done(), "{:#?}", run.outcome.results);
    let tags: BTreeSet<String> = fake
        .state
        .lock()
        .unwrap()
        .tags
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(tags.len(), 6, "{tags:?}");
    assert_eq!(fake.state.lock().unwrap().secrets.len(), 1);
}
