//! Account look-ups: the tags and secrets of the Contabo account, known from
//! the observation and from what this run created, and the one
//! look-create-look that makes sure a tag or a secret exists without ever
//! creating it twice.
//!
//! A creation whose answer is lost may have taken effect, so it is never
//! simply repeated: the name is looked up first, then created, and after a
//! failed creation looked up again before the next try. The Contabo client
//! already waited out rate limits (429) and retried transient failures;
//! this layer does not retry those again: only a conflict (409: it exists
//! after all) or a lost answer (5xx, transport) leads to another look.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};

use crate::contabo::models::{SecretId, TagId};
use crate::contabo::{CloudApi, ContaboError};
use crate::patience::{Backoff, Pauses};
use crate::plan::{Observed, Step};
use crate::report::StepOutcome;

use super::error::ApplyError;

/// Colour of the tags kiwi-infra creates (Contabo shows it in its panel).
pub const TAG_COLOR: &str = "#0A78C3";

/// The account's tags and secrets by name, as far as this run knows them.
#[derive(Debug, Default)]
struct Known {
    tags: BTreeMap<String, TagId>,
    secrets: BTreeMap<String, SecretId>,
}

/// Tags and secrets while applying: the steps that ensure them, and the
/// look-ups of their ids for the steps that use them.
pub(super) struct Account<'a, A> {
    api: &'a A,
    /// The pauses before another look after a failed creation.
    pauses: Backoff,
    known: Mutex<Known>,
}

impl<'a, A: CloudApi> Account<'a, A> {
    /// Starts from what `observed` saw of the account; `pauses` are those
    /// before another look after a failed creation.
    pub(super) fn new(api: &'a A, pauses: Backoff, observed: &Observed) -> Self {
        let known = Known {
            tags: observed
                .tags
                .iter()
                .map(|(n, id)| (n.clone(), *id))
                .collect(),
            secrets: observed
                .secrets
                .iter()
                .map(|(n, id)| (n.clone(), *id))
                .collect(),
        };
        Account {
            api,
            pauses,
            known: Mutex::new(known),
        }
    }

    /// The pauses before another look after a failed creation, for the
    /// other things apply makes sure exist (a cluster's private network).
    pub(super) fn pauses(&self) -> Backoff {
        self.pauses
    }

    fn known(&self) -> MutexGuard<'_, Known> {
        // A poisoned lock means a panic elsewhere; the data is still usable.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure the SSH key secret `name` holding `public_key` exists.
    pub(super) async fn ensure_secret(
        &self,
        step: &Step,
        name: &str,
        public_key: &str,
    ) -> Result<StepOutcome, ApplyError> {
        let ensured = look_create_look(
            self.pauses,
            || self.find_secret(step, name),
            || async {
                let secret = self.api.create_ssh_key(name, public_key.trim()).await?;
                Ok(secret.secret_id)
            },
        )
        .await;
        ensured_outcome(step, &format!("secret {name}"), ensured, |id| {
            self.known().secrets.insert(name.to_string(), id);
        })
    }

    /// Makes sure the tag `name` exists.
    pub(super) async fn ensure_tag(
        &self,
        step: &Step,
        name: &str,
    ) -> Result<StepOutcome, ApplyError> {
        let ensured = look_create_look(
            self.pauses,
            || self.find_tag(step, name),
            || self.api.create_tag(name, TAG_COLOR),
        )
        .await;
        ensured_outcome(step, &format!("tag {name}"), ensured, |id| {
            self.known().tags.insert(name.to_string(), id);
        })
    }

    /// The id of the secret `name`: known, or looked up; an error naming
    /// the step when it does not exist.
    pub(super) async fn secret_id(&self, step: &Step, name: &str) -> Result<SecretId, ApplyError> {
        let known = self.known().secrets.get(name).copied();
        match known {
            Some(id) => Ok(id),
            None => self
                .find_secret(step, name)
                .await?
                .ok_or_else(|| ApplyError::SecretMissing {
                    step: step.id.clone(),
                    name: name.to_string(),
                }),
        }
    }

    /// The id of the tag `name`: known, or looked up; an error naming the
    /// step when it does not exist.
    pub(super) async fn tag_id(&self, step: &Step, name: &str) -> Result<TagId, ApplyError> {
        let known = self.known().tags.get(name).copied();
        match known {
            Some(id) => Ok(id),
            None => self
                .find_tag(step, name)
                .await?
                .ok_or_else(|| ApplyError::TagMissing {
                    step: step.id.clone(),
                    name: name.to_string(),
                }),
        }
    }

    async fn find_secret(&self, step: &Step, name: &str) -> Result<Option<SecretId>, ApplyError> {
        let secrets = self
            .api
            .list_secrets()
            .await
            .map_err(ApplyError::contabo(step, "listing secrets"))?;
        let found = secrets
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.secret_id);
        if let Some(id) = found {
            self.known().secrets.insert(name.to_string(), id);
        }
        Ok(found)
    }

    /// Looks the tag `name` up in the account (never from what is known:
    /// it may have been deleted since).
    pub(super) async fn find_tag(
        &self,
        step: &Step,
        name: &str,
    ) -> Result<Option<TagId>, ApplyError> {
        let tags = self
            .api
            .list_tags()
            .await
            .map_err(ApplyError::contabo(step, "listing tags"))?;
        let found = tags.into_iter().find(|t| t.name == name).map(|t| t.tag_id);
        if let Some(id) = found {
            self.known().tags.insert(name.to_string(), id);
        }
        Ok(found)
    }
}

/// The outcome of a [`look_create_look`] for `what`; `remember` records a
/// created id.
pub(super) fn ensured_outcome<Id: std::fmt::Display + Copy>(
    step: &Step,
    what: &str,
    ensured: Result<Ensured<Id>, NotEnsured<ApplyError>>,
    remember: impl FnOnce(Id),
) -> Result<StepOutcome, ApplyError> {
    match ensured {
        Ok(Ensured::Found(id)) => Ok(StepOutcome::Done(format!("{what} exists (id {id})"))),
        Ok(Ensured::Created(id)) => {
            remember(id);
            Ok(StepOutcome::Done(format!("created {what} (id {id})")))
        }
        Err(NotEnsured::Look(e)) => Err(e),
        Err(NotEnsured::Create(source)) => Err(ApplyError::NotCreated {
            step: step.id.clone(),
            what: what.to_string(),
            source,
        }),
    }
}

/// Creations tried at most, each after a look.
pub(super) const CREATE_ATTEMPTS: u32 = 4;

/// How a look-create-look ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ensured<Id> {
    /// It existed (found by a look).
    Found(Id),
    /// This call created it.
    Created(Id),
}

/// Why a look-create-look gave up: a look failed (`E`), or creating failed
/// and a last look did not find it either.
#[derive(Debug)]
pub(super) enum NotEnsured<E> {
    /// A look-up failed.
    Look(E),
    /// The creation failed and the thing does not exist.
    Create(ContaboError),
}

/// Looks with `find`, creates with `create` when not found, and looks again
/// after a failed creation that may have taken effect, pausing as
/// `pauses` says before each new look ([`Pauses`]), at most
/// [`CREATE_ATTEMPTS`] creations: a bounded number of tries, not a wait
/// for a deadline.
pub(super) async fn look_create_look<Id, E, F, FFut, C, CFut>(
    pauses: Backoff,
    mut find: F,
    mut create: C,
) -> Result<Ensured<Id>, NotEnsured<E>>
where
    F: FnMut() -> FFut,
    FFut: Future<Output = Result<Option<Id>, E>>,
    C: FnMut() -> CFut,
    CFut: Future<Output = Result<Id, ContaboError>>,
{
    let mut pauses = Pauses::new(pauses);
    let mut attempt = 0u32;
    loop {
        if let Some(id) = find().await.map_err(NotEnsured::Look)? {
            return Ok(Ensured::Found(id));
        }
        attempt += 1;
        match create().await {
            Ok(id) => return Ok(Ensured::Created(id)),
            Err(e) if attempt < CREATE_ATTEMPTS && may_have_been_created(&e) => {
                tracing::debug!(error = %e, attempt, "creating failed; looking again");
                pauses.pause().await;
            }
            Err(e) => {
                // A last look: the failed answer may have been lost after
                // the creation took effect.
                return match find().await.map_err(NotEnsured::Look)? {
                    Some(id) => Ok(Ensured::Found(id)),
                    None => Err(NotEnsured::Create(e)),
                };
            }
        }
    }
}

/// True when a failed creation may have taken effect or may succeed when
/// looked at again: a conflict (409, it exists), or an answer that was lost
/// (5xx, transport). A refusal (4xx), a rate limit the client already
/// waited out (429) or a configuration error is final.
fn may_have_been_created(e: &ContaboError) -> bool {
    match e.status() {
        Some(s) => s.as_u16() == 409 || s.is_server_error(),
        None => !matches!(
            e,
            ContaboError::Config(_) | ContaboError::Credentials { .. }
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::contabo::RequestContext;
    use reqwest::{Method, StatusCode};
    use std::cell::Cell;
    use std::time::Duration;

    fn e500() -> ContaboError {
        ContaboError::Api {
            retry_after: None,
            context: Box::new(RequestContext {
                method: Method::POST,
                path: "/v1/tags".into(),
                request_id: "r".into(),
                trace_id: "t".into(),
                attempts: 1,
                elapsed: Duration::ZERO,
            }),
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "lost".into(),
        }
    }

    /// The creation took effect, its answer was lost: the next look must
    /// find it and nothing is created twice.
    #[tokio::test(start_paused = true)]
    async fn a_creation_whose_answer_was_lost_is_found_not_created_again() {
        let exists = Cell::new(false);
        let creations = Cell::new(0u32);
        let r = look_create_look::<u32, (), _, _, _, _>(
            Backoff::constant(Duration::from_secs(5)),
            || async { Ok(exists.get().then_some(7)) },
            || async {
                creations.set(creations.get() + 1);
                exists.set(true);
                Err(e500())
            },
        )
        .await;
        assert!(matches!(r, Ok(Ensured::Found(7))));
        assert_eq!(creations.get(), 1);
    }
}
