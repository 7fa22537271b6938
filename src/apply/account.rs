//! Account look-ups: the one look-create-look that makes sure a tag or a
//! secret exists without ever creating it twice.
//!
//! A creation whose answer is lost may have taken effect, so it is never
//! simply repeated: the name is looked up first, then created, and after a
//! failed creation looked up again before the next try. The Contabo client
//! already waited out rate limits (429) and retried transient failures;
//! this layer does not retry those again: only a conflict (409: it exists
//! after all) or a lost answer (5xx, transport) leads to another look.

use std::future::Future;

use crate::contabo::ContaboError;

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
/// after a failed creation that may have taken effect, pausing `pause`
/// before each new look, at most [`CREATE_ATTEMPTS`] creations. (A bounded
/// number of tries, not a wait for a deadline: `crate::patience` is for
/// those.)
pub(super) async fn look_create_look<Id, E, F, FFut, C, CFut>(
    pause: std::time::Duration,
    mut find: F,
    mut create: C,
) -> Result<Ensured<Id>, NotEnsured<E>>
where
    F: FnMut() -> FFut,
    FFut: Future<Output = Result<Option<Id>, E>>,
    C: FnMut() -> CFut,
    CFut: Future<Output = Result<Id, ContaboError>>,
{
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
                tokio::time::sleep(pause).await;
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
