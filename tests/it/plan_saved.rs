//! Saved plans (`plan --out`): they round-trip, hold no secret, and are
//! refused once the inventory or the observed state has changed.
#![allow(clippy::unwrap_used)]

use kiwi_infra::inventory::{self, Desired};
use kiwi_infra::plan::{
    self, fingerprint, InstanceStatus, Observed, PlanOptions, SavedPlan, Stale,
};
use std::path::Path;

fn desired() -> Desired {
    inventory::load(Path::new("tests/fixtures/plan/inventory")).unwrap()
}

fn observed(name: &str) -> Observed {
    let text = std::fs::read_to_string(format!("tests/fixtures/plan/{name}.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The plan the planner makes now, as `apply FILE` recomputes it.
fn now(desired: &Desired, observed: &Observed) -> plan::Plan {
    plan::plan(desired, observed, &PlanOptions::default())
}

fn saved() -> (Desired, Observed, SavedPlan) {
    let desired = desired();
    let observed = observed("partial_order");
    let plan = plan::plan(&desired, &observed, &PlanOptions::default());
    let saved = SavedPlan::new(&desired, &observed, plan, PlanOptions::default());
    (desired, observed, saved)
}

#[test]
fn a_saved_plan_reads_back_identical_and_fresh() {
    let (desired, observed, saved) = saved();
    let text = saved.to_json();
    let back = SavedPlan::from_json(&text).unwrap();
    assert_eq!(back, saved);
    assert_eq!(
        back.check_fresh(
            &observed,
            &desired,
            &now(&desired, &observed),
            &PlanOptions::default(),
        ),
        Ok(())
    );
    assert!(back.created_by.starts_with("kiwi-infra "));
}

#[test]
fn a_saved_plan_holds_no_key_material() {
    let (desired, _, saved) = saved();
    let text = saved.to_json();
    let key_blob = desired
        .provider
        .ssh_public_key
        .split_whitespace()
        .nth(1)
        .unwrap();
    assert!(
        !text.contains(key_blob),
        "the plan should name the key's secret, not carry the key"
    );
    assert!(!text.contains("PRIVATE"));
    assert!(text.contains("kiwi-operator-ssh-"));
}

#[test]
fn a_changed_account_makes_a_saved_plan_stale() {
    let (desired, mut observed, saved) = saved();
    observed.instances[0].status = InstanceStatus::Error;
    assert_eq!(
        saved.check_fresh(
            &observed,
            &desired,
            &now(&desired, &observed),
            &PlanOptions::default(),
        ),
        Err(Stale::ObservedChanged)
    );
}

#[test]
fn a_changed_inventory_makes_a_saved_plan_stale() {
    let (mut desired, observed, saved) = saved();
    desired.clusters[0].pools[0].count += 1;
    assert_eq!(
        saved.check_fresh(
            &observed,
            &desired,
            &now(&desired, &observed),
            &PlanOptions::default(),
        ),
        Err(Stale::InventoryChanged)
    );
}

#[test]
fn listing_order_addresses_and_readiness_do_not_make_a_plan_stale() {
    // An address is a firewall peer of the nodes a plan orders into its
    // cluster (see the next test); where the plan orders nothing, as here,
    // it does not matter.
    let desired = desired();
    let mut observed = observed("in_sync");
    let plan = plan::plan(&desired, &observed, &PlanOptions::default());
    let saved = SavedPlan::new(&desired, &observed, plan, PlanOptions::default());
    observed.instances.reverse();
    observed.instances[0].ipv4 = Some(std::net::Ipv4Addr::new(192, 0, 2, 1));
    if let Some(Some(core)) = observed.clusters.get_mut("core") {
        core.nodes.reverse();
        core.nodes[0].ready = !core.nodes[0].ready;
    }
    assert_eq!(
        saved.check_fresh(
            &observed,
            &desired,
            &now(&desired, &observed),
            &PlanOptions::default(),
        ),
        Ok(())
    );
}

#[test]
fn a_member_whose_address_changed_makes_a_plan_that_orders_into_its_cluster_stale() {
    // The saved order would give the new node a firewall admitting the old
    // address and not the new one.
    let (desired, mut observed, saved) = saved();
    let member = observed
        .instances
        .iter_mut()
        .find(|i| i.display_name == "kiwi-acme-server-01")
        .unwrap();
    member.ipv4 = Some(std::net::Ipv4Addr::new(192, 0, 2, 1));
    let stale = saved.check_fresh(
        &observed,
        &desired,
        &now(&desired, &observed),
        &PlanOptions::default(),
    );
    assert!(
        matches!(&stale, Err(Stale::StepsDiffer { difference }) if difference.contains("order:kiwi-acme-")),
        "{stale:?}"
    );
}

#[test]
fn a_plan_from_another_format_version_is_refused() {
    let (desired, observed, mut saved) = saved();
    saved.format_version = 99;
    assert!(matches!(
        saved.check_fresh(
            &observed,
            &desired,
            &now(&desired, &observed),
            &PlanOptions::default(),
        ),
        Err(Stale::FormatVersion { found: 99, .. })
    ));
    assert_ne!(fingerprint(&observed), fingerprint(&Observed::default()));
}

#[test]
fn every_kind_of_step_and_warning_survives_a_save() {
    let desired = desired();
    for name in [
        "empty_account",
        "partial_order",
        "double_order",
        "label_drift",
        "adoption",
        "broken_instances",
        "scale_down",
    ] {
        let observed = observed(name);
        for adopt in [false, true] {
            let plan = plan::plan(
                &desired,
                &observed,
                &PlanOptions {
                    adopt,
                    allow_destroy: false,
                },
            );
            let options = PlanOptions {
                adopt,
                allow_destroy: false,
            };
            let saved = SavedPlan::new(&desired, &observed, plan, options);
            assert_eq!(
                SavedPlan::from_json(&saved.to_json()).unwrap(),
                saved,
                "{name}"
            );
        }
    }
}

#[test]
fn an_edited_saved_plan_is_refused_naming_the_step_that_differs() {
    let (desired, observed, saved) = saved();
    let text = saved.to_json();
    // Each edit changes what would be bought or done; every one is refused.
    for (from, to) in [
        ("\"region\": \"EU\"", "\"region\": \"US-east\""),
        ("\"period\": 1", "\"period\": 12"),
        ("\"product\": \"V94\"", "\"product\": \"V11\""),
        ("\"monthly_price_cents\": 849", "\"monthly_price_cents\": 1"),
    ] {
        assert!(text.contains(from), "the saved plan has no {from}");
        let edited = SavedPlan::from_json(&text.replacen(from, to, 1)).unwrap();
        let refused = edited
            .check_fresh(
                &observed,
                &desired,
                &now(&desired, &observed),
                &PlanOptions::default(),
            )
            .unwrap_err();
        let Stale::StepsDiffer { difference } = &refused else {
            panic!("{from} -> {to}: {refused:?}");
        };
        // The refusal names the order the edit touched.
        let touched = edited
            .plan
            .steps
            .iter()
            .zip(&saved.plan.steps)
            .find(|(a, b)| a != b)
            .map(|(a, _)| a.id.clone())
            .unwrap();
        assert!(touched.0.starts_with("order:"), "{touched}");
        assert!(difference.contains(&touched.0), "{difference}");
        assert!(refused
            .to_string()
            .contains("not the plan the inventory gives today"));
    }
    // A step removed or added is refused too.
    let mut shorter = saved.clone();
    shorter.plan.steps.pop();
    assert!(matches!(
        shorter.check_fresh(
            &observed,
            &desired,
            &now(&desired, &observed),
            &PlanOptions::default(),
        ),
        Err(Stale::StepsDiffer { .. })
    ));
    let mut longer = saved.clone();
    longer.plan.steps.push(longer.plan.steps[0].clone());
    assert!(matches!(
        longer.check_fresh(
            &observed,
            &desired,
            &now(&desired, &observed),
            &PlanOptions::default(),
        ),
        Err(Stale::StepsDiffer { .. })
    ));
}

#[test]
fn a_plan_saved_without_allow_destroy_is_not_carried_out_with_it() {
    let (desired, observed, saved) = saved();
    let destroy = PlanOptions {
        adopt: false,
        allow_destroy: true,
    };
    let now = plan::plan(&desired, &observed, &destroy);
    let refused = saved
        .check_fresh(&observed, &desired, &now, &destroy)
        .unwrap_err();
    assert!(matches!(refused, Stale::FlagsDiffer { .. }), "{refused:?}");
    assert!(
        refused.to_string().contains("--allow-destroy false"),
        "{refused}"
    );
}
