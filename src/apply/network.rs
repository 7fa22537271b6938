//! Private-network steps: creating a cluster's network (the one
//! look-create-look of [`super::account`], so a rerun or a second operator
//! never creates two) and adding an instance to it, after which the
//! member's private address is known and handed to the node steps
//! ([`NodeExecutor::learn_private_address`]).

use crate::contabo::models::{InstanceId, PrivateNetwork};
use crate::contabo::{CloudApi, ContaboError};
use crate::patience::Backoff;
use crate::plan::{InstanceRef, NodeName, Step};
use crate::report::StepOutcome;

use super::account::{ensured_outcome, look_create_look};
use super::error::ApplyError;
use super::instance::Slots;
use super::node::NodeExecutor;

/// What a private network step is told about the network's description.
const DESCRIPTION: &str = "kiwi-infra: cluster traffic of one cluster";

/// Looks the network `name` up; `None` when none exists, an error when
/// several do (kiwi-infra cannot tell which is the cluster's).
async fn find(
    api: &impl CloudApi,
    step: &Step,
    name: &str,
) -> Result<Option<PrivateNetwork>, ApplyError> {
    let mut found = api
        .find_private_networks_by_name(name)
        .await
        .map_err(ApplyError::contabo(
            step,
            format!("looking for private network {name}"),
        ))?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(ApplyError::PrivateNetwork {
            step: step.id.clone(),
            what: format!(
                "{n} private networks are named {name}; kiwi-infra cannot tell which is the \
                 cluster's. Delete or rename the extra ones in the Contabo panel"
            ),
        }),
    }
}

/// Makes sure the private network `name` exists in `region`; `pauses` are
/// those before another look after a failed creation.
pub(super) async fn ensure(
    api: &impl CloudApi,
    pauses: Backoff,
    step: &Step,
    name: &str,
    region: &str,
) -> Result<StepOutcome, ApplyError> {
    let ensured = look_create_look(
        pauses,
        || async { Ok(find(api, step, name).await?.map(|n| n.private_network_id)) },
        || async {
            api.create_private_network(name, region, DESCRIPTION)
                .await
                .map(|n| n.private_network_id)
        },
    )
    .await;
    // Nothing to remember: the assignment looks the network up by name.
    ensured_outcome(step, &format!("private network {name}"), ensured, |_| {})
}

/// Adds the instance to the network (idempotent: a member is left as it
/// is), then reads its private address back and tells `nodes`.
pub(super) async fn assign<A: CloudApi>(
    api: &A,
    slots: &Slots,
    nodes: &impl NodeExecutor,
    step: &Step,
    network: &str,
    instance: &InstanceRef,
) -> Result<StepOutcome, ApplyError> {
    let id = match instance.id {
        Some(id) => id,
        None => slots.instance_of(api, &step.id, &instance.name).await?,
    };
    let missing = || ApplyError::PrivateNetwork {
        step: step.id.clone(),
        what: format!("private network {network} does not exist"),
    };
    let net = find(api, step, network).await?.ok_or_else(missing)?;
    let was_member = net.instances.iter().any(|m| m.instance_id == id);
    if !was_member {
        api.assign_private_network(net.private_network_id, id)
            .await
            .map_err(|e| refused(step, network, id, &instance.name, e))?;
    }
    // The answer to the assignment names no address: read the network.
    let net = find(api, step, network).await?.ok_or_else(missing)?;
    let member = net
        .instances
        .iter()
        .find(|m| m.instance_id == id)
        .ok_or_else(|| ApplyError::PrivateNetwork {
            step: step.id.clone(),
            what: format!(
                "instance {id} ({}) is not listed in private network {network} after it was \
                 added",
                instance.name
            ),
        })?;
    let ip = member
        .private_ipv4()
        .map_err(|what| ApplyError::Contabo {
            step: step.id.clone(),
            action: format!("reading the private address of instance {id}"),
            source: ContaboError::Untrusted {
                path: format!("/v1/private-networks/{}", net.private_network_id),
                what,
            },
        })?
        .ok_or_else(|| ApplyError::PrivateNetwork {
            step: step.id.clone(),
            what: format!(
                "instance {id} ({}) has no private address in {network}",
                instance.name
            ),
        })?;
    nodes.learn_private_address(&NodeName(instance.name.clone()), ip);
    let how = if was_member {
        "was already"
    } else {
        "added to"
    };
    Ok(StepOutcome::Done(format!(
        "instance {id} {how} private network {network} at {ip} (status {}; its NIC works \
         after a reinstall)",
        member.status
    )))
}

/// The error for a failed assignment: a 402 means the instance lacks the
/// paid add-on, which kiwi-infra books only with new orders.
fn refused(step: &Step, network: &str, id: InstanceId, slot: &str, e: ContaboError) -> ApplyError {
    if e.status().map(|s| s.as_u16()) == Some(402) {
        return ApplyError::PrivateNetwork {
            step: step.id.clone(),
            what: format!(
                "instance {id} ({slot}) lacks Contabo's private-networking add-on (HTTP 402); \
                 kiwi-infra books it only with new orders. Book it for this instance \
                 (`cntb upgrade instance {id} --privateNetworking=true`, or in the Contabo \
                 panel; it is billed monthly), then apply again"
            ),
        };
    }
    ApplyError::Contabo {
        step: step.id.clone(),
        action: format!("adding instance {id} ({slot}) to private network {network}"),
        source: e,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::apply::NoNodeAccess;
    use crate::contabo::fake::FakeCloud;
    use crate::contabo::models::InstanceStatus;
    use crate::plan::{StepId, StepKind};
    use std::time::Duration;

    fn step(kind: StepKind) -> Step {
        Step {
            id: StepId("private-network:kiwi-acme".into()),
            cluster: Some("acme".into()),
            kind,
            depends_on: Vec::new(),
            destructive: false,
        }
    }

    #[tokio::test]
    async fn a_network_whose_creation_answer_was_lost_is_found_not_created_twice() {
        let fake = FakeCloud::with(|s| s.lose_network_create_answers = 1);
        let s = step(StepKind::EnsurePrivateNetwork {
            name: "kiwi-acme".into(),
            region: "EU".into(),
        });
        let done = ensure(
            &fake,
            Backoff::constant(Duration::ZERO),
            &s,
            "kiwi-acme",
            "EU",
        )
        .await
        .unwrap();
        assert!(matches!(done, StepOutcome::Done(_)), "{done:?}");
        // A rerun finds it.
        ensure(
            &fake,
            Backoff::constant(Duration::ZERO),
            &s,
            "kiwi-acme",
            "EU",
        )
        .await
        .unwrap();
        let state = fake.state.lock().unwrap();
        assert_eq!(state.network_create_calls, 1);
        assert_eq!(state.networks.len(), 1);
    }

    #[tokio::test]
    async fn an_instance_without_the_add_on_is_refused_with_what_to_do() {
        let fake = FakeCloud::default();
        let id = fake.add_instance("kiwi-acme-server-01", InstanceStatus::Running);
        let s = step(StepKind::EnsurePrivateNetwork {
            name: "kiwi-acme".into(),
            region: "EU".into(),
        });
        ensure(
            &fake,
            Backoff::constant(Duration::ZERO),
            &s,
            "kiwi-acme",
            "EU",
        )
        .await
        .unwrap();
        let instance = InstanceRef {
            name: "kiwi-acme-server-01".into(),
            id: Some(id),
        };
        let e = assign(
            &fake,
            &Slots::default(),
            &NoNodeAccess,
            &s,
            "kiwi-acme",
            &instance,
        )
        .await
        .unwrap_err();
        let text = e.chain();
        assert!(
            text.contains("lacks Contabo's private-networking add-on")
                && text.contains(&format!(
                    "cntb upgrade instance {id} --privateNetworking=true"
                )),
            "{text}"
        );
        // With the add-on it joins, and its address is read back.
        fake.state.lock().unwrap().private_networking.insert(id.0);
        let done = assign(
            &fake,
            &Slots::default(),
            &NoNodeAccess,
            &s,
            "kiwi-acme",
            &instance,
        )
        .await
        .unwrap();
        let StepOutcome::Done(text) = done else {
            panic!("{done:?}")
        };
        assert!(text.contains("status reinstall"), "{text}");
    }

    #[tokio::test]
    async fn a_private_address_that_is_not_an_ipv4_address_is_refused_naming_the_field() {
        let fake = FakeCloud::default();
        let id = fake.add_instance("kiwi-acme-server-01", InstanceStatus::Running);
        {
            let mut state = fake.state.lock().unwrap();
            state.networks.push(PrivateNetwork {
                private_network_id: 7,
                name: "kiwi-acme".into(),
                region: None,
                cidr: None,
                instances: vec![crate::contabo::models::PrivateNetworkMember {
                    instance_id: id,
                    display_name: String::new(),
                    private_ip_config: crate::contabo::models::PrivateIpConfig {
                        v4: vec![crate::contabo::models::PrivateIpv4 {
                            ip: "10.0.0.2; rm -rf /".into(),
                            netmask_cidr: None,
                        }],
                    },
                    status: crate::contabo::models::MemberStatus::Ok,
                }],
            });
        }
        let s = step(StepKind::AssignPrivateNetwork {
            network: "kiwi-acme".into(),
            instance: InstanceRef {
                name: "kiwi-acme-server-01".into(),
                id: Some(id),
            },
        });
        let instance = InstanceRef {
            name: "kiwi-acme-server-01".into(),
            id: Some(id),
        };
        let e = assign(
            &fake,
            &Slots::default(),
            &NoNodeAccess,
            &s,
            "kiwi-acme",
            &instance,
        )
        .await
        .unwrap_err();
        assert!(
            e.chain().contains("privateIpConfig.v4[0].ip"),
            "{}",
            e.chain()
        );
    }
}
