//! The apply lock as a `coordination.k8s.io/v1` `Lease` in the Core cluster.
//!
//! The protocol, which needs nothing from the API but an atomic create and a
//! compare-and-swap on `metadata.resourceVersion`:
//! 1. Read the lease. None there: create it (two applies creating at once:
//!    the API lets exactly one create win, the other reads again).
//! 2. Free (no holder), or its holder's lease expired
//!    (`spec.renewTime + spec.leaseDurationSeconds` is past): replace it,
//!    carrying the resource version just read. If anyone wrote in between,
//!    the replace is a conflict and we read again: two applies cannot both
//!    take over the same expired lease.
//! 3. Held and live: say who holds it, or wait (`--lock-timeout`) and read
//!    again.
//!
//! While apply runs, a background task renews the lease every third of its
//! duration, again by compare-and-swap. A holder that dies stops renewing
//! and its lease expires on its own. A holder that cannot renew in time
//! counts its lock as lost, and the order journal then refuses to record
//! an order's intent, so nothing more is bought.
//!
//! Expiry compares the lease's `renewTime`, written by the holder's clock,
//! with the reader's clock: operators' clocks must agree to within a small
//! part of the lease duration (NTP does that).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::lock::Holder;
use super::objects::{ensure_namespace, KubeObjects, Object, ObjectKind, Written};
use super::{StateError, LEASE_NAME, NAMESPACE};

/// The annotation that records the holder's user, host, pid and time.
pub const HOLDER_ANNOTATION: &str = "kiwistack.io/holder";

/// A clock, passed in so tests can move time.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// How the lease is taken and kept.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    /// `leaseDurationSeconds`: how long the lease lives without renewal
    /// (whole seconds, at least 1). From the inventory's
    /// `[state] lease_seconds`.
    pub duration: Duration,
    /// How long to wait for a held lock (`--lock-timeout`); zero: not at all.
    pub wait: Duration,
    /// Pause between looks while waiting.
    pub poll: Duration,
}

impl LeaseSettings {
    /// Renewal interval: a third of the duration, so two renewals may fail
    /// before the lease runs out.
    pub fn renew_every(&self) -> Duration {
        (self.duration / 3).max(Duration::from_millis(200))
    }
}

/// What a lease says, read at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// Nobody holds it.
    Free,
    /// Somebody holds it.
    Held {
        /// `spec.holderIdentity`.
        identity: String,
        /// Who, as the holder annotation says (escaped for the terminal),
        /// or the identity when the annotation is missing.
        holder: String,
        /// Last renewal.
        renewed: DateTime<Utc>,
        /// `leaseDurationSeconds`.
        duration: chrono::Duration,
        /// `leaseTransitions`.
        transitions: i64,
    },
}

impl LeaseState {
    /// Reads a lease object. A held lease without a renewal time or a
    /// positive duration cannot be judged and is an error naming the field.
    pub fn parse(value: &Value) -> Result<LeaseState, StateError> {
        let malformed = |what: &str| StateError::Malformed {
            object: ObjectKind::Lease.describe(LEASE_NAME),
            what: what.to_string(),
        };
        let spec = &value["spec"];
        let identity = match &spec["holderIdentity"] {
            Value::Null => return Ok(LeaseState::Free),
            Value::String(s) if s.is_empty() => return Ok(LeaseState::Free),
            Value::String(s) => s.clone(),
            _ => return Err(malformed("spec.holderIdentity is not a string")),
        };
        let time = |field: &str| {
            spec[field]
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let renewed = time("renewTime")
            .or_else(|| time("acquireTime"))
            .ok_or_else(|| {
                malformed("it is held but has no spec.renewTime; expected an RFC 3339 time")
            })?;
        let duration = spec["leaseDurationSeconds"]
            .as_i64()
            .filter(|d| (1..=86_400).contains(d))
            .map(chrono::Duration::seconds)
            .ok_or_else(|| {
                malformed("spec.leaseDurationSeconds is missing or not within 1..=86400 seconds")
            })?;
        let holder = value["metadata"]["annotations"][HOLDER_ANNOTATION]
            .as_str()
            .and_then(|text| serde_json::from_str::<Holder>(text).ok())
            .map(|h| h.describe())
            .unwrap_or_else(|| {
                format!(
                    "\"{}\"",
                    crate::text::escape_for_terminal(
                        &identity.chars().take(200).collect::<String>()
                    )
                )
            });
        Ok(LeaseState::Held {
            identity,
            holder,
            renewed,
            duration,
            transitions: spec["leaseTransitions"].as_i64().unwrap_or(0),
        })
    }

    /// When a held lease expires unless renewed.
    pub fn expires(&self) -> Option<DateTime<Utc>> {
        match self {
            LeaseState::Free => None,
            LeaseState::Held {
                renewed, duration, ..
            } => Some(*renewed + *duration),
        }
    }

    fn transitions(&self) -> i64 {
        match self {
            LeaseState::Free => 0,
            LeaseState::Held { transitions, .. } => *transitions,
        }
    }
}

/// What to do about the lease as read (pure; see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is none: create it.
    Create,
    /// Free or expired: replace it, carrying `resource_version`.
    Take {
        /// The version read.
        resource_version: String,
        /// `leaseTransitions` to write.
        transitions: i64,
    },
    /// Held and live.
    Wait {
        /// Who holds it.
        holder: String,
        /// Until when, unless renewed.
        expires: DateTime<Utc>,
    },
}

/// Decides from the lease as read and the time now.
pub fn decide(current: Option<(&Object, &LeaseState)>, now: DateTime<Utc>) -> Decision {
    match current {
        None => Decision::Create,
        Some((object, state)) => match state.expires() {
            Some(expires) if now <= expires => Decision::Wait {
                holder: match state {
                    LeaseState::Held { holder, .. } => holder.clone(),
                    LeaseState::Free => String::new(),
                },
                expires,
            },
            _ => Decision::Take {
                resource_version: object.resource_version.clone(),
                transitions: state.transitions() + i64::from(state != &LeaseState::Free),
            },
        },
    }
}

/// Kubernetes `MicroTime`.
fn micro_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn shown_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The lease manifest this apply writes.
fn manifest(
    me: &Me,
    resource_version: Option<&str>,
    acquired: DateTime<Utc>,
    renewed: DateTime<Utc>,
    duration: Duration,
    transitions: i64,
) -> Value {
    let mut metadata = json!({
        "name": LEASE_NAME,
        "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/managed-by": "kiwi-infra"},
        "annotations": {HOLDER_ANNOTATION: me.annotation},
    });
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": me.identity,
            "leaseDurationSeconds": duration.as_secs().max(1),
            "acquireTime": micro_time(acquired),
            "renewTime": micro_time(renewed),
            "leaseTransitions": transitions,
        },
    })
}

/// The manifest of a free lease (released or broken).
fn free_manifest(resource_version: &str, transitions: i64) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": LEASE_NAME,
            "namespace": NAMESPACE,
            "resourceVersion": resource_version,
            "labels": {"app.kubernetes.io/managed-by": "kiwi-infra"},
        },
        "spec": {"leaseTransitions": transitions},
    })
}

/// This apply as a holder.
#[derive(Debug, Clone)]
struct Me {
    /// `user@host pid N #nonce`: unique per run.
    identity: String,
    /// The holder annotation (JSON of [`Holder`]).
    annotation: String,
}

impl Me {
    fn new(holder: &Holder) -> Me {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        Me {
            identity: format!(
                "{}@{} pid {} #{}",
                holder.user,
                holder.host,
                holder.pid,
                &nonce[..12]
            ),
            annotation: serde_json::to_string(holder).unwrap_or_default(),
        }
    }
}

/// What the renewal task shares with the guard and the journal.
#[derive(Debug)]
struct Shared {
    resource_version: String,
    acquired: DateTime<Utc>,
    renewed: DateTime<Utc>,
    transitions: i64,
    /// Set when another holder took the lease.
    lost: Option<String>,
}

/// Tells whether this apply still holds its lease; the cluster journal
/// asks before recording an order's intent.
#[derive(Clone)]
pub struct LeaseWatch {
    shared: Arc<Mutex<Shared>>,
    duration: chrono::Duration,
    clock: Clock,
}

impl std::fmt::Debug for LeaseWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseWatch").finish_non_exhaustive()
    }
}

impl LeaseWatch {
    /// `Some(what happened)` once the lock is no longer certainly ours: the
    /// lease was taken by another, or not renewed within half its duration
    /// (it is renewed every third of it). The half left is the margin in
    /// which a write already under way (an order's intent, then the order)
    /// still lands before anyone else may take the lease over.
    pub fn lost(&self) -> Option<String> {
        let shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(what) = &shared.lost {
            return Some(what.clone());
        }
        let now = (self.clock)();
        if now > shared.renewed + self.duration {
            Some(format!(
                "its lease was last renewed at {} and has run out",
                shown_time(shared.renewed)
            ))
        } else if now > shared.renewed + self.duration / 2 {
            Some(format!(
                "its lease was last renewed at {} and has less than half its duration left, \
                 so it is no longer certainly this apply's",
                shown_time(shared.renewed)
            ))
        } else {
            None
        }
    }
}

/// The held lease. Renewed in the background until [`LeaseGuard::release`];
/// dropped without release, it stops renewing and expires on its own.
pub struct LeaseGuard<S> {
    store: Arc<S>,
    watch: LeaseWatch,
    renewal: tokio::task::JoinHandle<()>,
    holder: String,
}

impl<S> std::fmt::Debug for LeaseGuard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl<S> Drop for LeaseGuard<S> {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

impl<S: KubeObjects> LeaseGuard<S> {
    /// The watch the journal checks.
    pub fn watch(&self) -> LeaseWatch {
        self.watch.clone()
    }

    /// Where the lock lives, and who holds it.
    pub fn describe(&self) -> String {
        format!(
            "Lease {NAMESPACE}/{LEASE_NAME} in the Core cluster ({}), held by {}",
            self.store.location(),
            self.holder
        )
    }

    /// Stops renewing and frees the lease (compare-and-swap; a lease
    /// another holder took meanwhile is left as it is).
    pub async fn release(&self) -> Result<(), StateError> {
        self.renewal.abort();
        let (rv, transitions, lost) = {
            let s = self.watch.shared.lock().unwrap_or_else(|p| p.into_inner());
            (s.resource_version.clone(), s.transitions, s.lost.is_some())
        };
        if lost {
            return Ok(());
        }
        match self
            .store
            .replace(ObjectKind::Lease, &free_manifest(&rv, transitions))
            .await?
        {
            Written::Done(_) => Ok(()),
            // Changed since this apply last renewed it (taken over after
            // expiring, or a renewal whose answer was cut off): not ours to
            // free. Left as it is, it expires on its own.
            _ => {
                tracing::warn!(
                    "the apply lock changed since this apply last renewed it; left to expire"
                );
                Ok(())
            }
        }
    }
}

impl<S: KubeObjects> super::lock::HeldLock for LeaseGuard<S> {
    fn describe(&self) -> String {
        LeaseGuard::describe(self)
    }

    fn release(&self) -> futures::future::BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move { LeaseGuard::release(self).await })
    }
}

/// Takes the lock, waiting up to `settings.wait` for a holder to finish
/// (or its lease to expire). Creates kiwi-infra's namespace first if needed.
pub async fn acquire<S: KubeObjects>(
    store: Arc<S>,
    holder: &Holder,
    settings: LeaseSettings,
    clock: Clock,
) -> Result<LeaseGuard<S>, StateError> {
    ensure_namespace(&*store).await?;
    let me = Me::new(holder);
    // The one wait here is for a live holder to finish: polled as every
    // wait is (`crate::patience`); a lost race is looked at again at once.
    let held = std::sync::Mutex::new(None);
    let taken = crate::patience::poll_until(
        crate::patience::deadline_in(settings.wait),
        crate::patience::Backoff::constant(settings.poll),
        || async {
            match try_take(&*store, &me, settings, &clock).await {
                Ok(Take::Won(won)) => Some(Ok(won)),
                Ok(Take::Held { holder, expires }) => {
                    tracing::info!(%holder, "waiting for the apply lock");
                    if let Ok(mut held) = held.lock() {
                        *held = Some((holder, expires));
                    }
                    None
                }
                Err(e) => Some(Err(e)),
            }
        },
    )
    .await;
    let (object, transitions, now) = match taken {
        Ok(won) => won?,
        Err(_) => {
            let (holder, expires) = held.into_inner().ok().flatten().unwrap_or_default();
            return Err(StateError::Held {
                holder,
                expires: shown_time(expires),
            });
        }
    };
    // The renewal time as written, not when the answer came: others judge
    // expiry from the lease, so this apply must not count on it any longer.
    let shared = Arc::new(Mutex::new(Shared {
        resource_version: object.resource_version,
        acquired: now,
        renewed: now,
        transitions,
        lost: None,
    }));
    let watch = LeaseWatch {
        shared: Arc::clone(&shared),
        duration: chrono::Duration::from_std(settings.duration)
            .unwrap_or(chrono::Duration::seconds(60)),
        clock: Arc::clone(&clock),
    };
    let renewal = tokio::spawn(renew(
        Arc::clone(&store),
        me.clone(),
        Arc::clone(&shared),
        settings,
        Arc::clone(&clock),
    ));
    Ok(LeaseGuard {
        store,
        watch,
        renewal,
        holder: holder.describe(),
    })
}

/// What one look at the lock found.
enum Take {
    /// This apply took it: the lease object, its transitions, and when.
    Won((Object, i64, DateTime<Utc>)),
    /// A live holder has it.
    Held {
        /// Who, and since when.
        holder: String,
        /// When its lease expires unless renewed.
        expires: DateTime<Utc>,
    },
}

/// Looks at the lock once and takes it if it is free or expired; a race
/// lost to another apply (a create or a compare-and-swap that failed) is
/// looked at again at once, up to 20 times.
async fn try_take<S: KubeObjects>(
    store: &S,
    me: &Me,
    settings: LeaseSettings,
    clock: &Clock,
) -> Result<Take, StateError> {
    let mut races = 0u32;
    loop {
        let current = store.get(ObjectKind::Lease, LEASE_NAME).await?;
        let state = current
            .as_ref()
            .map(|o| LeaseState::parse(&o.value))
            .transpose()?;
        let now = clock();
        let decision = decide(current.as_ref().zip(state.as_ref()), now);
        let written = match &decision {
            Decision::Create => {
                store
                    .create(
                        ObjectKind::Lease,
                        &manifest(me, None, now, now, settings.duration, 0),
                    )
                    .await?
            }
            Decision::Take {
                resource_version,
                transitions,
            } => {
                store
                    .replace(
                        ObjectKind::Lease,
                        &manifest(
                            me,
                            Some(resource_version),
                            now,
                            now,
                            settings.duration,
                            *transitions,
                        ),
                    )
                    .await?
            }
            Decision::Wait { holder, expires } => {
                return Ok(Take::Held {
                    holder: holder.clone(),
                    expires: *expires,
                });
            }
        };
        match written {
            Written::Done(object) => {
                let transitions = match decision {
                    Decision::Take { transitions, .. } => transitions,
                    _ => 0,
                };
                return Ok(Take::Won((object, transitions, now)));
            }
            // Another apply won the race: look again.
            Written::AlreadyExists | Written::Conflict | Written::NotFound => {
                races += 1;
                if races > 20 {
                    return Err(StateError::Contended {
                        object: ObjectKind::Lease.describe(LEASE_NAME),
                        attempts: races,
                    });
                }
            }
        }
    }
}

/// Renews the lease every third of its duration until aborted or lost.
async fn renew<S: KubeObjects>(
    store: Arc<S>,
    me: Me,
    shared: Arc<Mutex<Shared>>,
    settings: LeaseSettings,
    clock: Clock,
) {
    loop {
        // A period, not a poll: nothing is waited for (`crate::patience`).
        tokio::time::sleep(settings.renew_every()).await;
        let (rv, acquired, transitions) = {
            let s = shared.lock().unwrap_or_else(|p| p.into_inner());
            (s.resource_version.clone(), s.acquired, s.transitions)
        };
        let now = clock();
        let written = store
            .replace(
                ObjectKind::Lease,
                &manifest(
                    &me,
                    Some(&rv),
                    acquired,
                    now,
                    settings.duration,
                    transitions,
                ),
            )
            .await;
        let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
        match written {
            Ok(Written::Done(object)) => {
                s.resource_version = object.resource_version;
                s.renewed = now;
            }
            Ok(other) => {
                // Only this run writes the lease while it holds it: any other
                // write means another apply took it over.
                s.lost = Some(format!(
                    "renewing it found it changed by another client ({other:?})"
                ));
                tracing::error!("the apply lock was taken by another apply");
                return;
            }
            Err(e) => {
                // A passing failure (the control node restarting): try again
                // at the next interval; LeaseWatch::lost says when it is too late.
                tracing::warn!(error = %crate::secret::redact::error_chain(&e, ": "), "cannot renew the apply lock");
            }
        }
    }
}

/// What `kiwi-infra unlock` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlocked {
    /// There was no lease, or nobody held it.
    NotHeld,
    /// An expired (or unreadable) lease was freed; who held it.
    Broken(String),
}

/// Breaks the lock if, and only if, its holder's lease has expired (or the
/// lease cannot be read as kiwi-infra writes it). A live lease is refused
/// with [`StateError::StillHeld`].
pub async fn break_lock<S: KubeObjects>(store: &S, clock: Clock) -> Result<Unlocked, StateError> {
    for _ in 0..20 {
        let Some(object) = store.get(ObjectKind::Lease, LEASE_NAME).await? else {
            return Ok(Unlocked::NotHeld);
        };
        let (holder, transitions) = match LeaseState::parse(&object.value) {
            Ok(LeaseState::Free) => return Ok(Unlocked::NotHeld),
            Ok(state) => {
                let expires = state.expires().unwrap_or_else(|| clock());
                let LeaseState::Held {
                    holder,
                    transitions,
                    ..
                } = state
                else {
                    return Ok(Unlocked::NotHeld);
                };
                if clock() <= expires {
                    return Err(StateError::StillHeld {
                        holder,
                        expires: shown_time(expires),
                    });
                }
                (holder, transitions)
            }
            // Nothing kiwi-infra writes: no running apply renews it.
            Err(e) => (crate::secret::redact::error_chain(&e, ": "), 0),
        };
        match store
            .replace(
                ObjectKind::Lease,
                &free_manifest(&object.resource_version, transitions + 1),
            )
            .await?
        {
            Written::Done(_) => return Ok(Unlocked::Broken(holder)),
            // Renewed or taken meanwhile: judge again.
            _ => continue,
        }
    }
    Err(StateError::Contended {
        object: ObjectKind::Lease.describe(LEASE_NAME),
        attempts: 20,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::fake::FakeObjects;

    fn holder(pid: u32) -> Holder {
        Holder {
            pid,
            host: "laptop".into(),
            user: "anna".into(),
            since: "2026-03-01T10:00:00Z".parse().unwrap(),
        }
    }

    fn settings(secs: u64) -> LeaseSettings {
        LeaseSettings {
            duration: Duration::from_secs(secs),
            wait: Duration::ZERO,
            poll: Duration::from_millis(10),
        }
    }

    /// A clock the test moves.
    fn clock_at(t: DateTime<Utc>) -> (Arc<Mutex<DateTime<Utc>>>, Clock) {
        let now = Arc::new(Mutex::new(t));
        let read = Arc::clone(&now);
        (now, Arc::new(move || *read.lock().unwrap()))
    }

    #[tokio::test]
    async fn a_second_apply_is_refused_naming_the_holder() {
        let store = Arc::new(FakeObjects::default());
        let (_, clock) = clock_at(Utc::now());
        let first = acquire(Arc::clone(&store), &holder(11), settings(60), clock.clone())
            .await
            .unwrap();
        let err = acquire(Arc::clone(&store), &holder(22), settings(60), clock)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StateError::Held { .. }), "{text}");
        assert!(
            text.contains("pid 11") && text.contains("anna") && text.contains("laptop"),
            "{text}"
        );
        assert!(text.contains("2026-03-01 10:00:00 UTC"), "since: {text}");
        drop(first);
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_not_before() {
        let store = Arc::new(FakeObjects::default());
        let t0: DateTime<Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
        let (now, clock) = clock_at(t0);
        // The holder dies: its guard stops renewing.
        let dead = acquire(Arc::clone(&store), &holder(11), settings(30), clock.clone())
            .await
            .unwrap();
        drop(dead);
        // At exactly renewTime + duration the lease is still live.
        *now.lock().unwrap() = t0 + chrono::Duration::seconds(30);
        let err = acquire(Arc::clone(&store), &holder(22), settings(30), clock.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::Held { .. }), "{err}");
        // One moment later it has expired and is taken over.
        *now.lock().unwrap() = t0 + chrono::Duration::seconds(31);
        let second = acquire(Arc::clone(&store), &holder(22), settings(30), clock)
            .await
            .unwrap();
        let lease = store.object(ObjectKind::Lease, LEASE_NAME).unwrap();
        let identity = lease.value["spec"]["holderIdentity"].as_str().unwrap();
        assert!(identity.contains("pid 22"), "{identity}");
        assert_eq!(lease.value["spec"]["leaseTransitions"], 1);
        assert!(second.watch().lost().is_none());
    }

    #[tokio::test]
    async fn a_takeover_that_races_another_write_reads_again() {
        let store = Arc::new(FakeObjects::default());
        let t0: DateTime<Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
        let (now, clock) = clock_at(t0);
        drop(
            acquire(Arc::clone(&store), &holder(11), settings(30), clock.clone())
                .await
                .unwrap(),
        );
        *now.lock().unwrap() = t0 + chrono::Duration::seconds(60);
        // Another apply takes the expired lease between our read and our
        // write: our replace is a conflict, and the fresh read shows it held.
        store.conflict_next(1);
        let current = store.object(ObjectKind::Lease, LEASE_NAME).unwrap();
        let mut theirs = current.value.clone();
        theirs["spec"]["holderIdentity"] = json!("bert@ci pid 5 #x");
        theirs["spec"]["renewTime"] = json!(micro_time(t0 + chrono::Duration::seconds(60)));
        theirs["metadata"]["annotations"] = json!({});
        store.put(ObjectKind::Lease, LEASE_NAME, theirs);
        let err = acquire(Arc::clone(&store), &holder(22), settings(30), clock)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("bert@ci pid 5"), "{err}");
    }

    #[tokio::test]
    async fn release_frees_the_lease_for_the_next_apply() {
        let store = Arc::new(FakeObjects::default());
        let (_, clock) = clock_at(Utc::now());
        let first = acquire(Arc::clone(&store), &holder(11), settings(60), clock.clone())
            .await
            .unwrap();
        first.release().await.unwrap();
        let lease = store.object(ObjectKind::Lease, LEASE_NAME).unwrap();
        assert_eq!(LeaseState::parse(&lease.value).unwrap(), LeaseState::Free);
        acquire(Arc::clone(&store), &holder(22), settings(60), clock)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_lease_taken_by_another_counts_as_lost() {
        let store = Arc::new(FakeObjects::default());
        let (now, clock) = clock_at(Utc::now());
        let mut s = settings(3);
        s.duration = Duration::from_millis(600);
        let guard = acquire(Arc::clone(&store), &holder(11), s, clock)
            .await
            .unwrap();
        // Another client writes the lease: the next renewal sees it.
        let current = store.object(ObjectKind::Lease, LEASE_NAME).unwrap();
        store.put(ObjectKind::Lease, LEASE_NAME, current.value);
        for _ in 0..200 {
            if guard.watch().lost().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lost = guard.watch().lost().unwrap();
        assert!(lost.contains("another client"), "{lost}");
        // And a lease not renewed within its duration counts as lost too.
        let store = Arc::new(FakeObjects::default());
        let (_, clock2) = clock_at(*now.lock().unwrap());
        let guard = acquire(
            Arc::clone(&store),
            &holder(12),
            settings(30),
            clock2.clone(),
        )
        .await
        .unwrap();
        assert!(guard.watch().lost().is_none());
        let late = LeaseWatch {
            clock: Arc::new({
                let c = clock2.clone();
                move || c() + chrono::Duration::seconds(31)
            }),
            ..guard.watch()
        };
        assert!(late.lost().unwrap().contains("has run out"));
        // Half the duration without renewal is already too late to start
        // an order: a write under way must land before anyone may take over.
        let half = LeaseWatch {
            clock: Arc::new({
                let c = clock2.clone();
                move || c() + chrono::Duration::seconds(16)
            }),
            ..guard.watch()
        };
        assert!(half.lost().unwrap().contains("less than half"));
        let fresh = LeaseWatch {
            clock: Arc::new({
                let c = clock2.clone();
                move || c() + chrono::Duration::seconds(14)
            }),
            ..guard.watch()
        };
        assert!(fresh.lost().is_none());
    }

    #[tokio::test]
    async fn unlock_refuses_a_live_lease_and_breaks_an_expired_one() {
        let store = Arc::new(FakeObjects::default());
        let t0: DateTime<Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
        let (now, clock) = clock_at(t0);
        assert_eq!(
            break_lock(&*store, clock.clone()).await.unwrap(),
            Unlocked::NotHeld
        );
        drop(
            acquire(Arc::clone(&store), &holder(11), settings(30), clock.clone())
                .await
                .unwrap(),
        );
        *now.lock().unwrap() = t0 + chrono::Duration::seconds(10);
        let err = break_lock(&*store, clock.clone()).await.unwrap_err();
        assert!(matches!(err, StateError::StillHeld { .. }), "{err}");
        assert!(err.to_string().contains("pid 11"), "{err}");
        *now.lock().unwrap() = t0 + chrono::Duration::seconds(31);
        let broken = break_lock(&*store, clock.clone()).await.unwrap();
        assert!(
            matches!(broken, Unlocked::Broken(ref h) if h.contains("pid 11")),
            "{broken:?}"
        );
        assert_eq!(break_lock(&*store, clock).await.unwrap(), Unlocked::NotHeld);
    }

    proptest::proptest! {
        /// Whatever another client wrote into the lease, reading it never
        /// panics, and the holder it names reaches the terminal escaped.
        #[test]
        fn any_lease_reads_without_panic_and_shows_no_control_character(
            identity in proptest::option::of(".{0,40}"),
            renew in proptest::option::of(".{0,40}"),
            duration in proptest::option::of(proptest::num::i64::ANY),
            annotation in proptest::option::of(".{0,80}"),
            user in ".{0,20}",
        ) {
            let mut v = json!({"metadata": {}, "spec": {}});
            if let Some(i) = identity { v["spec"]["holderIdentity"] = json!(i); }
            if let Some(r) = renew { v["spec"]["renewTime"] = json!(r); }
            if let Some(d) = duration { v["spec"]["leaseDurationSeconds"] = json!(d); }
            if let Some(a) = annotation {
                v["metadata"]["annotations"] = json!({HOLDER_ANNOTATION: a});
            } else {
                let h = Holder { user, ..holder(1) };
                v["metadata"]["annotations"] =
                    json!({HOLDER_ANNOTATION: serde_json::to_string(&h).unwrap()});
            }
            if let Ok(LeaseState::Held { holder, .. }) = LeaseState::parse(&v) {
                proptest::prop_assert!(!holder.chars().any(crate::text::is_unsafe_for_terminal), "{holder:?}");
            }
            let now = Utc::now();
            let object = Object { resource_version: "1".into(), value: v.clone() };
            if let Ok(state) = LeaseState::parse(&v) {
                let _ = decide(Some((&object, &state)), now);
            }
        }
    }

    #[test]
    fn a_held_lease_that_cannot_be_judged_is_an_error_naming_the_field() {
        let v = json!({"spec": {"holderIdentity": "x", "leaseDurationSeconds": 30}});
        assert!(LeaseState::parse(&v)
            .unwrap_err()
            .to_string()
            .contains("renewTime"));
        let v = json!({"spec": {"holderIdentity": "x", "renewTime": "2026-03-01T10:00:00.000000Z", "leaseDurationSeconds": -1}});
        assert!(LeaseState::parse(&v)
            .unwrap_err()
            .to_string()
            .contains("leaseDurationSeconds"));
        let v = json!({"spec": {"holderIdentity": "x\u{1b}[31m", "renewTime": "2026-03-01T10:00:00.000000Z", "leaseDurationSeconds": 5}});
        let LeaseState::Held { holder, .. } = LeaseState::parse(&v).unwrap() else {
            panic!("held")
        };
        assert!(!holder.contains('\u{1b}'), "{holder}");
    }
}
