//! The executor against the stateful fake, with the real planner and the
//! example inventory: what the account looks like afterwards is what counts.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

use super::journal::{Event, OrderJournal};
use super::*;
use crate::contabo::fake::{self, FakeCloud};
use crate::contabo::models::InstanceStatus;
use crate::inventory::{self, slot_name, Desired};
use crate::observe::contabo::observe_account;
use crate::plan::{self, Observed, PlanOptions, StepId, StepKind};
use crate::reconcile::{reconcile, Operator, ReconcileSettings, Reconciled, World};
use crate::report::{Event as Reported, HoldBack, RecordingReporter, StepOutcome};

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
    let mut observed = observe_account(fake, d).await.unwrap().into_observed();
    crate::observe::contabo::complete_observation(fake, d, &mut observed)
        .await
        .unwrap();
    observed
}

fn settings(contabo_only: bool) -> ApplySettings {
    let mut s = ApplySettings::fast("trace-test".into());
    s.contabo_only = contabo_only;
    s.ssh_public_key = desired().provider.ssh_public_key;
    s.unlisted_order_wait = std::time::Duration::from_millis(100);
    s
}

struct Run {
    outcome: ApplyOutcome,
    reporter: RecordingReporter,
}

async fn apply(fake: &FakeCloud, journal: &OrderJournal, contabo_only: bool) -> Run {
    apply_with(fake, journal, &settings(contabo_only)).await
}

async fn apply_with(fake: &FakeCloud, journal: &OrderJournal, settings: &ApplySettings) -> Run {
    let d = desired();
    let reporter = RecordingReporter::default();
    let world = FakeWorld {
        cloud: fake,
        desired: &d,
        nodes: NoNodeAccess,
        clusters_joined_nothing: false,
    };
    let settings = ReconcileSettings {
        plan: PlanOptions::default(),
        apply: settings.clone(),
        saved: None,
    };
    let reconciled = reconcile(&d, &settings, &world, journal, &reporter, &Approve)
        .await
        .unwrap();
    let outcome = match reconciled {
        Reconciled::Applied { outcome, .. } => *outcome,
        // Nothing ran: an empty outcome.
        Reconciled::NothingToDo { .. } | Reconciled::Cancelled { .. } => ApplyOutcome {
            results: Vec::new(),
            deferred: Vec::new(),
            ordered: Vec::new(),
            instances: Default::default(),
            cancelled: Vec::new(),
        },
    };
    Run { outcome, reporter }
}

/// The fake account and fake node access: what the unit tests reconcile.
struct FakeWorld<'a, N> {
    cloud: &'a FakeCloud,
    desired: &'a Desired,
    nodes: N,
    /// Every cluster is observed and has no node yet; otherwise no cluster
    /// is observed (its node steps are unverified).
    clusters_joined_nothing: bool,
}

impl<N: NodeExecutor + Clone> World for FakeWorld<'_, N> {
    type Cloud = FakeCloud;
    type Nodes = N;
    type Error = crate::contabo::ContaboError;

    fn cloud(&self) -> &FakeCloud {
        self.cloud
    }

    async fn observe(
        &self,
        entries: &[super::journal::Entry],
    ) -> Result<(Observed, N), Self::Error> {
        let mut observed = observe_account(self.cloud, self.desired)
            .await?
            .into_observed();
        resume::record_journal_claims(entries, &mut observed);
        if self.clusters_joined_nothing {
            for cluster in &self.desired.clusters {
                observed
                    .clusters
                    .insert(cluster.name.clone(), Some(Default::default()));
            }
        }
        crate::observe::contabo::complete_observation(self.cloud, self.desired, &mut observed)
            .await?;
        Ok((observed, self.nodes.clone()))
    }

    async fn close(&self, _nodes: N) {}
}

/// An operator who approves every plan.
struct Approve;

impl<E> Operator<E> for Approve {
    fn show(&self, _plan: &plan::Plan) {}
    fn approve(&self, _plan: &plan::Plan) -> Result<bool, E> {
        Ok(true)
    }
    fn follow_up(&self, _plan: &plan::Plan) {}
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
async fn waits_poll_the_instances_they_wait_for_never_the_whole_account() {
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    // The executor alone (reconcile observes once more afterwards).
    let d = desired();
    let observed = observe(&fake, &d).await;
    let plan = plan::plan(&d, &observed, &PlanOptions::default());
    let outcome = execute(
        &fake,
        &NoNodeAccess,
        &RecordingReporter::default(),
        &j,
        &observed,
        ApplyInput { steps: plan.steps },
        &settings(true),
    )
    .await;
    assert!(outcome.results.iter().all(|r| r.outcome.is_done()));
    let s = fake.state.lock().unwrap();
    // The one listing is the observation before the plan; every wait for
    // the 15 new machines asked for their ids only.
    assert_eq!(s.account_lists, 1, "waits listed the whole account");
    assert!(s.id_polls > 0, "the waits never polled");
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
        // Cluster, class and ownership; and the protection mark for the
        // protected clusters' machines.
        let protected = ["kiwi-core-", "kiwi-praxis-lindner-"]
            .iter()
            .any(|p| i.display_name.starts_with(p));
        assert_eq!(
            tags.len(),
            3 + usize::from(protected),
            "{}: {tags:?}",
            i.display_name
        );
        assert_eq!(
            tags.contains(&"kiwi-protected".to_string()),
            protected,
            "{}",
            i.display_name
        );
        assert!(tags.contains(&"kiwi-managed".to_string()));
    }
    assert!(!run.outcome.deferred.is_empty(), "node steps are deferred");
    assert_eq!(run.outcome.ordered.len(), 15);
    // The user data was rendered for the slot and carries the operator key.
    let ud = fake.state.lock().unwrap().user_data.clone();
    let first = fake.instances()[0].clone();
    assert!(ud[&first.instance_id.0].contains(&format!("hostname: \"{}\"", first.display_name)));
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
async fn orders_start_before_bookkeeping_when_steps_compete() {
    // One step at a time: every order (the start of minutes of provisioning)
    // must go out before any tag assignment, whatever the plan's order.
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    let mut one_at_a_time = settings(true);
    one_at_a_time.concurrency = 1;
    let run = apply_with(&fake, &j, &one_at_a_time).await;
    let finished: Vec<String> = run
        .reporter
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Reported::StepFinished(id, StepOutcome::Done(_)) => Some(id.0),
            _ => None,
        })
        .collect();
    let last_order = finished
        .iter()
        .rposition(|id| id.starts_with("order:"))
        .unwrap();
    let first_assign = finished
        .iter()
        .position(|id| id.starts_with("assign:"))
        .unwrap();
    assert!(last_order < first_assign, "{finished:#?}");
    assert_one_instance_per_slot(&fake);
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
async fn an_order_answered_with_an_error_needs_the_operator_and_is_sent_again_once_confirmed() {
    // Two orders are answered 503 (nothing placed, as it happens): nothing
    // proves that, so those slots stop for the operator; no second order.
    let fake = FakeCloud::with(|s| s.fail_creates_unplaced = 2);
    let (_dir, j) = journal();
    let run = apply(&fake, &j, true).await;
    assert_eq!(fake.state.lock().unwrap().create_calls, 15);
    assert_eq!(fake.instances().len(), 13);
    let stopped: Vec<(String, String)> = run
        .outcome
        .results
        .iter()
        .filter_map(|r| match &r.outcome {
            StepOutcome::NeedsHuman(m) => Some((r.id.0.clone(), m.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(stopped.len(), 2, "{stopped:?}");
    let mut slots = BTreeSet::new();
    for (id, message) in &stopped {
        let slot = id.strip_prefix("order:").unwrap();
        assert!(message.contains(&format!("--reorder {slot}")), "{message}");
        assert!(message.contains("Nothing was ordered again"), "{message}");
        slots.insert(slot.to_string());
    }
    assert!(!run.outcome.all_done());

    // A plain rerun still does not order them: the journal remembers.
    let again = apply(&fake, &j, true).await;
    assert_eq!(fake.state.lock().unwrap().create_calls, 15);
    assert!(!again.outcome.all_done());

    // The operator checked the panel and confirms: each is sent once more.
    let mut confirmed = settings(true);
    confirmed.reorder = slots;
    let run = apply_with(&fake, &j, &confirmed).await;
    assert_one_instance_per_slot(&fake);
    assert_eq!(fake.state.lock().unwrap().create_calls, 17);
    assert!(run.outcome.all_done());
}

#[tokio::test]
async fn a_journaled_order_that_contabo_knows_but_does_not_list_is_never_ordered_again() {
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    assert!(apply(&fake, &j, true).await.outcome.all_done());
    let victim = fake.instances()[0].clone();
    // Its list lags (or an operator hid it behind a filter): the plan orders
    // the slot again, and a look-up by name does not find it; GET by id does.
    fake.state
        .lock()
        .unwrap()
        .unlisted
        .insert(victim.instance_id.0);
    // Waiting for an instance the list never shows ends at the limit.
    let mut patient = settings(true);
    patient.wait.other_limit = std::time::Duration::from_secs(1);
    let run = apply_with(&fake, &j, &patient).await;
    assert_eq!(
        fake.state.lock().unwrap().create_calls,
        15,
        "no second order"
    );
    let order = run
        .outcome
        .results
        .iter()
        .find(|r| r.id.0 == format!("order:{}", victim.display_name))
        .expect("the plan orders the unlisted slot");
    let StepOutcome::Done(text) = &order.outcome else {
        panic!("{:?}", order.outcome);
    };
    assert!(text.contains(&victim.instance_id.to_string()), "{text}");
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
        // Firewall steps act on nodes too (a new cluster's nodes admit each
        // other before it is bootstrapped).
        let node = r.id.0.starts_with("join:")
            || r.id.0.starts_with("bootstrap:")
            || r.id.0.starts_with("firewall:");
        match &r.outcome {
            StepOutcome::NotCarriedOut(why) => {
                assert!(node, "{}", r.id);
                assert!(why.to_string().contains("no node access"));
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
    let input = ApplyInput { steps: plan.steps };
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
            add_ons: None,
        };
        fake.create_instance(order).await.unwrap().instance_id
    };
    fake.state.lock().unwrap().hide_new_for_lookups = 0;
    let reporter = RecordingReporter::default();
    let mut s = settings(true);
    s.unlisted_order_wait = std::time::Duration::from_secs(5);
    let input = ApplyInput { steps: plan.steps };
    let outcome = execute(&fake, &NoNodeAccess, &reporter, &j, &observed, input, &s).await;
    assert!(outcome.all_done());
    assert_one_instance_per_slot(&fake);
    // Cluster, class, ownership and (core is protected) the protection mark.
    assert_eq!(fake.tags_of(early).len(), 4);
    assert!(reporter.events().iter().any(|e| matches!(e,
        Reported::Message(m) if m.contains("kiwi-core-general-01: an earlier apply sent an order"))));
}

#[tokio::test]
async fn an_owned_instance_in_error_is_reinstalled_not_reordered() {
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    assert!(apply(&fake, &j, true).await.outcome.all_done());
    let break_it = |name: &str| {
        let id = fake
            .instances()
            .into_iter()
            .find(|i| i.display_name == name)
            .unwrap()
            .instance_id;
        fake.state
            .lock()
            .unwrap()
            .instances
            .iter_mut()
            .find(|i| i.instance_id == id)
            .unwrap()
            .status = InstanceStatus::Error;
        id
    };
    let broken = break_it("kiwi-stadtwerke-nord-server-02");
    // The cluster cannot be checked here (no node access), so Contabo's
    // word alone does not wipe it: the reinstall needs --allow-destroy.
    let run = apply(&fake, &j, true).await;
    assert!(!run.outcome.all_done());
    let mut destroy = settings(true);
    destroy.allow_destroy = true;
    let run = apply_with(&fake, &j, &destroy).await;
    assert!(run.outcome.all_done(), "{:#?}", run.outcome.results);
    assert!(run
        .outcome
        .results
        .iter()
        .any(|r| r.id.0 == "reinstall:kiwi-stadtwerke-nord-server-02"));
    assert_one_instance_per_slot(&fake);
    let after = fake
        .instances()
        .into_iter()
        .find(|i| i.instance_id == broken)
        .unwrap();
    assert_eq!(after.status, InstanceStatus::Running);

    // In a protected cluster it is never reinstalled unchecked.
    let protected = break_it("kiwi-praxis-lindner-server-02");
    let run = apply_with(&fake, &j, &destroy).await;
    assert!(!run
        .outcome
        .results
        .iter()
        .any(|r| r.id.0 == "reinstall:kiwi-praxis-lindner-server-02"));
    let after = fake
        .instances()
        .into_iter()
        .find(|i| i.instance_id == protected)
        .unwrap();
    assert_eq!(after.status, InstanceStatus::Error);
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
    assert_eq!(tags.len(), 7, "{tags:?}");
    assert!(tags.contains("kiwi-protected"));
    assert_eq!(fake.state.lock().unwrap().secrets.len(), 1);
}

// ----- shrinking ---------------------------------------------------------------

/// Node steps as a cluster would take them: each drain and delete is
/// recorded, in the order they ran, and succeeds.
#[derive(Default)]
struct RecordingNodes {
    ran: std::sync::Mutex<Vec<String>>,
}

impl NodeExecutor for RecordingNodes {
    async fn run(&self, step: &crate::plan::Step) -> Result<NodeStepDone, ApplyError> {
        self.ran.lock().unwrap().push(step.id.0.clone());
        Ok(NodeStepDone::Done(format!("{} done", step.id)))
    }
}

/// An account where every slot of the example inventory exists, plus one
/// owned Mesh agent no slot wants any more (the pool shrank 2 → 1).
async fn account_with_one_surplus_agent() -> (FakeCloud, crate::contabo::models::InstanceId) {
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    let run = apply(&fake, &j, true).await;
    assert!(run.outcome.all_done());
    let surplus = fake.add_instance("kiwi-stadtwerke-nord-general-02", InstanceStatus::Running);
    {
        let mut s = fake.state.lock().unwrap();
        let tag = |name: &str| s.tags.iter().find(|t| t.name == name).unwrap().tag_id;
        let tags = [
            tag("kiwi-cluster-stadtwerke-nord"),
            tag("kiwi-class-vps"),
            tag("kiwi-managed"),
        ];
        for t in tags {
            s.assignments.push((t, surplus));
        }
    }
    (fake, surplus)
}

async fn shrink(
    fake: &FakeCloud,
    settings: &ApplySettings,
    nodes: &RecordingNodes,
) -> ApplyOutcome {
    let d = desired();
    let observed = observe(fake, &d).await;
    let plan = plan::plan(&d, &observed, &PlanOptions::default());
    let (_dir, j) = journal();
    let input = ApplyInput { steps: plan.steps };
    execute(
        fake,
        nodes,
        &RecordingReporter::default(),
        &j,
        &observed,
        input,
        settings,
    )
    .await
}

fn cancel_date_of(
    fake: &FakeCloud,
    id: crate::contabo::models::InstanceId,
) -> Option<chrono::NaiveDate> {
    fake.instances()
        .into_iter()
        .find(|i| i.instance_id == id)
        .unwrap()
        .cancel_date
}

#[tokio::test]
async fn without_allow_destroy_nothing_is_drained_deleted_or_cancelled() {
    let (fake, surplus) = account_with_one_surplus_agent().await;
    let nodes = RecordingNodes::default();
    let outcome = shrink(&fake, &settings(false), &nodes).await;

    let held: Vec<String> = outcome
        .results
        .iter()
        .filter(|r| r.outcome == StepOutcome::NotCarriedOut(HoldBack::NeedsAllowDestroy))
        .map(|r| r.id.0.clone())
        .collect();
    assert_eq!(
        held,
        [
            "drain:kiwi-stadtwerke-nord-general-02".to_string(),
            "delete-node:kiwi-stadtwerke-nord-general-02".to_string(),
            format!("cancel:{surplus}"),
        ]
    );
    assert!(nodes.ran.lock().unwrap().is_empty(), "no node was touched");
    assert_eq!(fake.state.lock().unwrap().cancel_calls, 0);
    assert_eq!(cancel_date_of(&fake, surplus), None);
    let text = summary::render(&summary::SummaryInput {
        outcome: &outcome,
        fresh: summary::FreshPlan::Unavailable("not observed in this test".into()),
        contabo_only: false,
        apply_command: "kiwi-infra apply".into(),
        cluster_of: Default::default(),
    });
    assert!(
        text.contains("3 step(s) not carried out: needs --allow-destroy"),
        "{text}"
    );
    assert!(
        text.contains("`kiwi-infra apply --allow-destroy`"),
        "{text}"
    );
}

#[tokio::test]
async fn with_allow_destroy_the_node_is_drained_deleted_and_its_instance_cancelled() {
    let (fake, surplus) = account_with_one_surplus_agent().await;
    let nodes = RecordingNodes::default();
    let mut s = settings(false);
    s.allow_destroy = true;
    let outcome = shrink(&fake, &s, &nodes).await;

    assert!(outcome.all_done(), "{:#?}", outcome.results);
    assert_eq!(
        *nodes.ran.lock().unwrap(),
        [
            "drain:kiwi-stadtwerke-nord-general-02",
            "delete-node:kiwi-stadtwerke-nord-general-02"
        ]
    );
    assert_eq!(cancel_date_of(&fake, surplus), Some(fake::FAKE_CANCEL_DATE));
    assert_eq!(
        outcome.cancelled,
        [Cancellation {
            slot: "kiwi-stadtwerke-nord-general-02".into(),
            instance: surplus,
            cancel_date: Some(fake::FAKE_CANCEL_DATE),
            monthly_price: desired().price("V94"),
        }]
    );
    // Every other instance is untouched.
    for i in fake.instances() {
        if i.instance_id != surplus {
            assert_eq!(i.cancel_date, None, "{}", i.display_name);
        }
    }
    // The fresh plan is empty; the cancelled instance is only a warning.
    let d = desired();
    let fresh = plan::plan(&d, &observe(&fake, &d).await, &PlanOptions::default());
    assert!(fresh.is_empty(), "{:?}", fresh.steps);
    assert!(fresh.warnings.iter().any(|w| matches!(
        w,
        crate::plan::Warning::CancelledInstance { instance, .. } if instance.0 == surplus.0
    )));
    let text = summary::render(&summary::SummaryInput {
        outcome: &outcome,
        fresh: summary::FreshPlan::Planned(&fresh),
        contabo_only: false,
        apply_command: "kiwi-infra apply --allow-destroy".into(),
        cluster_of: Default::default(),
    });
    assert!(text.contains("until 2031-01-31"), "{text}");
    assert!(text.contains("-€8.49/month"), "{text}");
    assert!(summary::complete(&summary::SummaryInput {
        outcome: &outcome,
        fresh: summary::FreshPlan::Planned(&fresh),
        contabo_only: false,
        apply_command: String::new(),
        cluster_of: Default::default(),
    }));
}

#[tokio::test]
async fn a_protected_cluster_gets_no_destructive_step_even_with_allow_destroy() {
    let (fake, surplus) = account_with_one_surplus_agent().await;
    let nodes = RecordingNodes::default();
    let mut s = settings(false);
    s.allow_destroy = true;
    s.protected_clusters.insert("stadtwerke-nord".into());
    let outcome = shrink(&fake, &s, &nodes).await;

    assert!(nodes.ran.lock().unwrap().is_empty());
    assert_eq!(cancel_date_of(&fake, surplus), None);
    for r in &outcome.results {
        match &r.outcome {
            StepOutcome::NotCarriedOut(why) => {
                assert!(why.to_string().contains("protected"), "{why}")
            }
            other => panic!("{} was {other}", r.id),
        }
    }
}

#[tokio::test]
async fn a_cancel_whose_answer_was_lost_is_not_sent_twice() {
    let (fake, surplus) = account_with_one_surplus_agent().await;
    fake.state.lock().unwrap().lose_cancel_answers = 1;
    let nodes = RecordingNodes::default();
    let mut s = settings(false);
    s.allow_destroy = true;
    let outcome = shrink(&fake, &s, &nodes).await;

    assert!(outcome.all_done(), "{:#?}", outcome.results);
    assert_eq!(fake.state.lock().unwrap().cancel_calls, 1);
    assert_eq!(cancel_date_of(&fake, surplus), Some(fake::FAKE_CANCEL_DATE));
    assert_eq!(
        outcome.cancelled[0].cancel_date,
        Some(fake::FAKE_CANCEL_DATE)
    );
}

#[tokio::test]
async fn an_instance_cancelled_meanwhile_counts_as_cancelled() {
    let (fake, surplus) = account_with_one_surplus_agent().await;
    let nodes = RecordingNodes::default();
    let d = desired();
    let observed = observe(&fake, &d).await;
    let plan = plan::plan(&d, &observed, &PlanOptions::default());
    // Cancelled in the panel after the plan was made.
    fake.state
        .lock()
        .unwrap()
        .instances
        .iter_mut()
        .find(|i| i.instance_id == surplus)
        .unwrap()
        .cancel_date = chrono::NaiveDate::from_ymd_opt(2030, 6, 30);
    let (_dir, j) = journal();
    let mut s = settings(false);
    s.allow_destroy = true;
    let outcome = execute(
        &fake,
        &nodes,
        &RecordingReporter::default(),
        &j,
        &observed,
        ApplyInput { steps: plan.steps },
        &s,
    )
    .await;
    assert!(outcome.all_done(), "{:#?}", outcome.results);
    assert_eq!(
        fake.state.lock().unwrap().cancel_calls,
        0,
        "no second cancel"
    );
    assert_eq!(
        outcome.cancelled[0].cancel_date,
        chrono::NaiveDate::from_ymd_opt(2030, 6, 30)
    );
}

#[test]
fn only_the_slots_latest_journal_event_within_the_horizon_claims_an_instance() {
    use super::journal::Entry;
    use super::order::journal_claims;
    use crate::contabo::models::InstanceId;
    let now = chrono::Utc::now();
    let slot = "kiwi-a-general-01";
    let entry = |minutes_ago: i64, event: Event| Entry {
        at: now - chrono::Duration::minutes(minutes_ago),
        slot: slot.to_string(),
        event,
    };
    let intent = || Event::Intent {
        trace_id: "t".into(),
        product: "V94".into(),
    };
    let hour = chrono::Duration::hours(1);
    let created = now - chrono::Duration::minutes(5);
    let claims = |entries: &[Entry]| journal_claims(entries, slot, InstanceId(42), created, hour);

    // An order whose outcome is unknown claims what appears after it.
    assert!(claims(&[entry(10, intent())]));
    assert!(claims(&[entry(10, intent()), entry(9, Event::Unresolved)]));
    // Found absent afterwards: a colleague's hand-made instance of that name
    // is not this tool's, whatever the older intent said.
    assert!(!claims(&[entry(10, intent()), entry(9, Event::Absent)]));
    assert!(!claims(&[
        entry(10, intent()),
        entry(9, Event::Refused { status: None })
    ]));
    // Placed claims exactly its own instance, after an intent it was
    // created after; a placed line alone (written by hand) claims nothing.
    assert!(claims(&[
        entry(10, intent()),
        entry(9, Event::Placed { instance_id: 42 })
    ]));
    assert!(!claims(&[
        entry(10, intent()),
        entry(9, Event::Placed { instance_id: 41 })
    ]));
    assert!(!claims(&[entry(10, Event::Placed { instance_id: 42 })]));
    let created_before = journal_claims(
        &[
            entry(10, intent()),
            entry(9, Event::Placed { instance_id: 42 }),
        ],
        slot,
        InstanceId(42),
        now - chrono::Duration::hours(5),
        hour,
    );
    assert!(
        !created_before,
        "an instance older than the intent is not its order"
    );
    // Another slot's events claim nothing, and an intent past the horizon
    // claims nothing.
    let mut other = entry(10, intent());
    other.slot = "kiwi-a-general-02".into();
    assert!(!claims(&[other]));
    assert!(!claims(&[entry(120, intent())]));
}

#[test]
fn with_contabo_only_a_cancel_waits_for_its_drain_and_is_left_for_later() {
    use crate::plan::{InstanceRef, Step, StepKind};
    let step = |id: &str, kind: StepKind, deps: &[&str]| Step {
        id: StepId(id.into()),
        cluster: Some("a".into()),
        kind,
        depends_on: deps.iter().map(|d| StepId((*d).into())).collect(),
        destructive: true,
    };
    let node = crate::plan::NodeName("kiwi-a-general-02".into());
    let steps = vec![
        step("drain:n", StepKind::DrainNode { node: node.clone() }, &[]),
        step("delete-node:n", StepKind::DeleteNode { node }, &["drain:n"]),
        step(
            "cancel:7",
            StepKind::CancelInstance {
                instance: InstanceRef {
                    name: "kiwi-a-general-02".into(),
                    id: Some(crate::plan::InstanceId(7)),
                },
                product: "V94".into(),
                monthly_price: None,
            },
            &["delete-node:n"],
        ),
    ];
    let input = ApplyInput { steps };
    let (tasks, deferred) = super::executor::build_tasks_for_test(input, true);
    assert!(tasks.is_empty(), "nothing runs: {:?}", tasks.len());
    assert_eq!(
        deferred,
        vec![
            StepId("drain:n".into()),
            StepId("delete-node:n".into()),
            StepId("cancel:7".into())
        ]
    );
}

#[tokio::test]
async fn a_journal_line_naming_someone_elses_instance_claims_nothing() {
    use crate::contabo::models::{CreateInstance, Period, Region};
    use crate::contabo::CloudApi;
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    // A colleague's hand-made machine, and a journal line (edited, or from
    // a mix-up) that names it as a slot's order.
    let colleague = fake
        .create_instance(CreateInstance {
            product_id: "V94".into(),
            region: Region::Eu,
            image_id: "img".into(),
            period: Period::OneMonth,
            display_name: "colleague-vm".into(),
            ssh_keys: Vec::new(),
            user_data: None,
            default_user: None,
            add_ons: None,
        })
        .await
        .unwrap()
        .instance_id;
    j.record(
        "kiwi-core-general-01",
        Event::Placed {
            instance_id: colleague.0,
        },
    )
    .unwrap();
    let run = apply(&fake, &j, true).await;
    let order = run
        .outcome
        .results
        .iter()
        .find(|r| r.id.0 == "order:kiwi-core-general-01")
        .unwrap();
    let StepOutcome::NeedsHuman(why) = &order.outcome else {
        panic!("{:?}", order.outcome);
    };
    assert!(why.contains("colleague-vm"), "{why}");
    assert!(
        !fake.tags_of(colleague).iter().any(|t| t == "kiwi-managed"),
        "the colleague's machine was not taken over"
    );
    assert!(!fake
        .instances()
        .iter()
        .any(|i| i.display_name == "kiwi-core-general-01"));
}

/// Node access that carries out every node step at once.
#[derive(Debug, Clone, Copy)]
struct DoneNodes;

impl NodeExecutor for DoneNodes {
    async fn run(&self, step: &crate::plan::Step) -> Result<NodeStepDone, ApplyError> {
        Ok(NodeStepDone::Done(format!("{} done", step.id)))
    }
}

/// Plans against `fake`, saves the plan, and reconciles with that saved
/// plan and a recording reporter: returns the plan and what ran.
async fn apply_saved_plan(
    fake: &FakeCloud,
    j: &OrderJournal,
) -> (plan::Plan, RecordingReporter, ApplyOutcome) {
    let d = desired();
    let world = FakeWorld {
        cloud: fake,
        desired: &d,
        nodes: DoneNodes,
        clusters_joined_nothing: true,
    };
    // The fake moves machines on with every listing; the account is put
    // back as it was, so the apply sees what the plan saw (as when nothing
    // happened at Contabo between `plan --out` and `apply`).
    let before = fake.state.lock().unwrap().instances.clone();
    let (observed, _) = world.observe(&j.entries()).await.unwrap();
    fake.state.lock().unwrap().instances = before;
    let options = PlanOptions::default();
    let made = plan::plan(&d, &observed, &options);
    let saved = plan::SavedPlan::new(&d, &observed, made.clone(), options);
    let saved = plan::SavedPlan::from_json(&saved.to_json()).unwrap();
    let reporter = RecordingReporter::default();
    let settings = ReconcileSettings {
        plan: options,
        apply: settings(false),
        saved: Some(saved),
    };
    let Reconciled::Applied { outcome, .. } =
        reconcile(&d, &settings, &world, j, &reporter, &Approve)
            .await
            .unwrap()
    else {
        panic!("the saved plan was not carried out");
    };
    (made, reporter, *outcome)
}

/// Step ids the reporter saw start, and finish, each sorted.
fn reported(reporter: &RecordingReporter) -> (Vec<String>, Vec<String>) {
    let mut started = Vec::new();
    let mut finished = Vec::new();
    for event in reporter.events() {
        match event {
            Reported::StepStarted(id) => started.push(id.0),
            Reported::StepFinished(id, _) => finished.push(id.0),
            _ => {}
        }
    }
    started.sort();
    finished.sort();
    (started, finished)
}

fn step_ids(plan: &plan::Plan) -> Vec<String> {
    let mut ids: Vec<String> = plan.steps.iter().map(|s| s.id.0.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_saved_plan_is_exactly_what_apply_carries_out() {
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    let (made, reporter, outcome) = apply_saved_plan(&fake, &j).await;
    // Orders, their waits, tags and node steps: the plan states them all.
    assert!(made
        .steps
        .iter()
        .any(|s| matches!(s.kind, StepKind::OrderInstance(_))));
    assert!(made
        .steps
        .iter()
        .any(|s| matches!(s.kind, StepKind::WaitForRunning { .. })));
    assert!(made.steps.iter().any(|s| s.kind.is_node_step()));
    let (started, finished) = reported(&reporter);
    assert_eq!(
        started,
        step_ids(&made),
        "apply ran other steps than the plan's"
    );
    assert_eq!(finished, step_ids(&made));
    assert!(outcome.all_done(), "{:#?}", outcome.results);
    let mut ran: Vec<String> = outcome.results.iter().map(|r| r.id.0.clone()).collect();
    ran.sort();
    assert_eq!(ran, step_ids(&made));
    assert_one_instance_per_slot(&fake);
}

#[tokio::test]
async fn finishing_an_interrupted_order_and_waiting_for_it_are_steps_of_the_saved_plan() {
    let fake = FakeCloud::default();
    let (_dir, j) = journal();
    let slot = "kiwi-praxis-lindner-server-02";
    j.record(
        slot,
        Event::Intent {
            trace_id: "killed-run".into(),
            product: "V94".into(),
        },
    )
    .unwrap();
    // The killed run's order: placed, not tagged, still provisioning.
    let earlier = fake.add_instance(slot, InstanceStatus::Provisioning);
    let (made, reporter, outcome) = apply_saved_plan(&fake, &j).await;
    assert!(
        made.finishing_orders.contains(slot),
        "{:?}",
        made.finishing_orders
    );
    let wait = made
        .steps
        .iter()
        .find(|s| s.id.0 == format!("wait:{slot}"))
        .expect("a wait for the earlier order");
    assert!(matches!(
        wait.kind,
        StepKind::WaitForRunning {
            cause: plan::WaitCause::Earlier,
            ..
        }
    ));
    assert!(
        made.steps
            .iter()
            .any(|s| s.id.0 == format!("assign:kiwi-managed:{slot}")),
        "the earlier order is tagged"
    );
    let join = made
        .steps
        .iter()
        .find(|s| s.kind.slot() == Some(slot) && s.kind.is_node_step())
        .expect("its node is joined");
    assert!(join.depends_on.contains(&wait.id), "{:?}", join.depends_on);
    let (started, _) = reported(&reporter);
    assert_eq!(started, step_ids(&made));
    assert!(outcome.all_done(), "{:#?}", outcome.results);
    assert!(!made.steps.iter().any(|s| s.id.0 == format!("order:{slot}")));
    assert!(fake.tags_of(earlier).len() >= 2);
    assert_one_instance_per_slot(&fake);
}

/// A hand-made `kiwi-cluster-*` tag whose text kiwi-infra never writes (not
/// a DNS label: uppercase, a dot, empty, a Cyrillic look-alike, an escape
/// sequence, a path) must not attribute a machine: the plan used to drain,
/// delete and cancel it in a cluster no node step accepts, failing run after
/// run with the machine never cancelled. It is reported, and nothing is
/// planned for it.
#[tokio::test]
async fn a_cluster_tag_kiwi_infra_never_writes_attributes_no_machine_and_plans_nothing() {
    for cluster in ["Acme", "a.b", "", "\u{430}cme", "a\u{1b}[2Jb", "a/../b"] {
        let fake = FakeCloud::default();
        let (_dir, j) = journal();
        assert!(apply(&fake, &j, true).await.outcome.all_done());
        let name = format!("kiwi-{cluster}-general-01");
        let odd = fake.add_instance(&name, InstanceStatus::Running);
        {
            let mut s = fake.state.lock().unwrap();
            let tag = crate::contabo::models::TagId(900_000);
            s.tags.push(crate::contabo::models::Tag {
                tag_id: tag,
                name: format!("kiwi-cluster-{cluster}"),
                color: None,
            });
            let id_of =
                |s: &fake::FakeState, n: &str| s.tags.iter().find(|t| t.name == n).unwrap().tag_id;
            let class = id_of(&s, "kiwi-class-vps");
            let managed = id_of(&s, "kiwi-managed");
            for t in [tag, class, managed] {
                s.assignments.push((t, odd));
            }
        }
        let d = desired();
        let observed = observe(&fake, &d).await;
        let p = plan::plan(
            &d,
            &observed,
            &PlanOptions {
                adopt: false,
                allow_destroy: true,
            },
        );
        let touching: Vec<&str> = p
            .steps
            .iter()
            .filter(|s| {
                s.cluster.as_deref() == Some(cluster)
                    || s.id.0.contains(&name)
                    || s.id.0.contains(&odd.to_string())
            })
            .map(|s| s.id.0.as_str())
            .collect();
        assert!(touching.is_empty(), "{cluster:?}: steps {touching:?}");
        assert!(
            p.warnings.iter().any(|w| matches!(
                w,
                plan::Warning::Unattributed { instance, cluster: None, reason, .. }
                    if *instance == odd && reason.contains("not one kiwi-infra writes")
            )),
            "{cluster:?}: {:?}",
            p.warnings
        );
    }
}
