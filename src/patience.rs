//! One policy for patience: every wait and poll outside the Contabo
//! client's HTTP retry policy (`crate::contabo::retry`) goes through
//! [`poll_until`] (or [`poll`]), and every other pause between two tries
//! through [`Pauses`], so a reader finds in one place how long kiwi-infra
//! keeps asking, how the pause between two questions grows, and what
//! happens when the time is up.
//!
//! Rules the helpers keep for every caller:
//! - the check runs at once, then after each pause;
//! - the pause starts at [`Backoff::first`] and grows by [`Backoff::growth`]
//!   after each miss, never above [`Backoff::max`], never below
//!   [`MIN_PAUSE`];
//! - no pause runs past the deadline: the last check happens at the
//!   deadline, not a full pause after it;
//! - a deadline too far for the clock (from a flag, a variable or a server)
//!   becomes [`FAR_FUTURE`] from now instead of panicking on overflow;
//! - a loop that has no deadline (the status poller runs until it is
//!   stopped; the look-create-look stops after a number of tries) takes its
//!   pauses from [`Pauses`], whose pause a stop signal can cut short.
//!
//! What is this module's business: waiting for something to change (an
//! instance to run, a node to be Ready or to answer over SSH, a lock or a
//! lease to come free) and the pauses between tries of one operation.
//! What is not: the HTTP requests' retries and rate limits
//! (`crate::contabo::retry`, `crate::contabo::pace`, and the token request
//! in `crate::contabo::auth`, which follows the same retry policy), and
//! things done on a period rather than until something changes (the state
//! lease's renewal, `crate::state::lease`), or a deadline on waiting for a
//! message (the instance waits' watchdog in `crate::apply::wait`).
//!
//! A layer that uses these helpers does not retry what the layer below it
//! already retried: the check itself should make one attempt.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The longest wait any deadline stands for (thirty years): what a wait too
/// long for the clock is cut to.
pub const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// The deadline `wait` from now. A wait too long for the clock ends
/// [`FAR_FUTURE`] from now instead of panicking on overflow.
pub fn deadline_in(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// How the pause between two checks grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first pause.
    pub first: Duration,
    /// The longest pause.
    pub max: Duration,
    /// What each pause grows by after a miss, as the fraction
    /// `numerator / denominator` of it: `(0, 1)` constant pauses, `(1, 2)`
    /// half as long again (×1.5), `(1, 1)` doubling.
    pub growth: (u32, u32),
}

impl Backoff {
    /// The same pause every time.
    pub const fn constant(every: Duration) -> Self {
        Backoff {
            first: every,
            max: every,
            growth: (0, 1),
        }
    }

    /// Pauses doubling from `first` up to `max`.
    pub const fn doubling(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            growth: (1, 1),
        }
    }

    /// Pauses growing by half (×1.5) from `first` up to `max`: gentler than
    /// doubling, for a poll that runs for hours (the instance status poller).
    pub const fn by_half(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            growth: (1, 2),
        }
    }

    /// The pause after `pause`.
    pub fn next(&self, pause: Duration) -> Duration {
        let (numerator, denominator) = self.growth;
        pause
            .saturating_add(pause.saturating_mul(numerator) / denominator.max(1))
            .min(self.max)
    }
}

/// The pauses of a [`Backoff`], one after the other, for a loop that is not
/// a poll towards a deadline: a poller that runs until it is stopped, or a
/// bounded number of tries. Each pause is at least [`MIN_PAUSE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pauses {
    backoff: Backoff,
    next: Duration,
}

impl Pauses {
    /// Pauses starting at `backoff.first` (at most `backoff.max`, at
    /// least [`MIN_PAUSE`]).
    pub fn new(backoff: Backoff) -> Self {
        Pauses {
            backoff,
            next: Self::first_of(backoff),
        }
    }

    /// Starts again from the first pause (after a quiet spell, say).
    pub fn reset(&mut self) {
        self.next = Self::first_of(self.backoff);
    }

    /// The first pause: a pause is never above the maximum, whatever the
    /// settings say first.
    fn first_of(backoff: Backoff) -> Duration {
        backoff.first.min(backoff.max).max(MIN_PAUSE)
    }

    /// The pause the next [`Self::pause`] takes.
    pub fn upcoming(&self) -> Duration {
        self.next
    }

    /// Sleeps the next pause; the one after it grows as the back-off says.
    pub async fn pause(&mut self) {
        self.pause_unless(std::future::pending::<()>()).await;
    }

    /// Sleeps the next pause, or until `stop` resolves if that comes
    /// first (a poller told to end). The pause after it grows either way.
    /// True when the whole pause passed, false when `stop` cut it short.
    pub async fn pause_unless(&mut self, stop: impl Future<Output = ()>) -> bool {
        let pause = self.next;
        self.next = self.backoff.next(pause).max(MIN_PAUSE);
        tokio::select! {
            () = tokio::time::sleep(pause) => true,
            () = stop => false,
        }
    }
}

/// A poll whose deadline passed before the check said it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// How many times the check ran.
    pub checks: u32,
    /// How long the poll took, from its start to the deadline.
    pub waited: Duration,
}

/// Runs `check` until it returns `Some`, pausing as `backoff` says between
/// two runs, and gives up at `deadline` ([`Expired`]). The check runs at
/// once, and once more at the deadline when a pause would have passed it.
/// A check that must fail the poll early returns `Some(Err(..))`.
pub async fn poll_until<T, F, Fut>(
    deadline: Instant,
    backoff: Backoff,
    mut check: F,
) -> Result<T, Expired>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll(Polling::until(deadline, backoff), || {
        let checked = check();
        async move {
            match checked.await {
                Some(done) => Check::Done(done),
                None => Check::Pending(()),
            }
        }
    })
    .await
    .map_err(|unsettled| unsettled.expired)
}

/// What one check of [`poll`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<T, P> {
    /// The poll is over, with this.
    Done(T),
    /// Not yet; what was seen, kept for the caller should time run out.
    Pending(P),
}

/// How patiently [`poll`] asks: [`poll_until`]'s deadline and back-off,
/// and two things some callers need besides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polling {
    /// When to stop asking (see [`deadline_in`]).
    pub deadline: Instant,
    /// How the pause between two checks grows.
    pub backoff: Backoff,
    /// Checks run at the least, past the deadline if need be (without
    /// pauses then): a slow network or a loaded machine must not shrink a
    /// window that is meant to look several times to a single look.
    pub min_checks: u32,
    /// A pause before the first check, e.g. the `Retry-After` a server
    /// asked for; cut at the deadline like every other pause.
    pub first_check_after: Duration,
}

impl Polling {
    /// Check at once, then as `backoff` says, until `deadline`.
    pub const fn until(deadline: Instant, backoff: Backoff) -> Self {
        Polling {
            deadline,
            backoff,
            min_checks: 1,
            first_check_after: Duration::ZERO,
        }
    }
}

/// A [`poll`] whose deadline passed before a check said it was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled<P> {
    /// How many checks ran and for how long.
    pub expired: Expired,
    /// What the last check found.
    pub last: P,
}

/// Runs `check` until it is [`Check::Done`], as `polling` says: after
/// [`Polling::first_check_after`], then pausing as its back-off says, and
/// gives up once the deadline has passed and at least
/// [`Polling::min_checks`] checks ran, with what the last check found
/// ([`Unsettled`]). [`poll_until`] is this poll with its defaults.
pub async fn poll<T, P, F, Fut>(polling: Polling, mut check: F) -> Result<T, Unsettled<P>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Check<T, P>>,
{
    let started = Instant::now();
    let deadline = polling.deadline;
    if !polling.first_check_after.is_zero() {
        let wake = started
            .checked_add(polling.first_check_after)
            .map_or(deadline, |t| t.min(deadline));
        tokio::time::sleep_until(wake).await;
    }
    // A zero pause would spin on the check: one millisecond at the least.
    let mut pause = polling.backoff.first.max(MIN_PAUSE);
    let mut checks = 0u32;
    loop {
        checks = checks.saturating_add(1);
        let last = match check().await {
            Check::Done(done) => return Ok(done),
            Check::Pending(last) => last,
        };
        let now = Instant::now();
        if now >= deadline && checks >= polling.min_checks {
            return Err(Unsettled {
                expired: Expired {
                    checks,
                    waited: now.saturating_duration_since(started),
                },
                last,
            });
        }
        // Before the deadline no pause runs past it; past it (the minimum
        // number of checks not yet made) the checks keep their pauses, so
        // the extra looks still give what is polled time to change.
        let wake = match now.checked_add(pause) {
            Some(t) if now < deadline => t.min(deadline),
            Some(t) => t,
            None => deadline,
        };
        tokio::time::sleep_until(wake).await;
        pause = polling.backoff.next(pause).max(MIN_PAUSE);
    }
}

/// The shortest pause between two checks, whatever the back-off says.
pub const MIN_PAUSE: Duration = Duration::from_millis(1);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use tokio::sync::Notify;

    #[tokio::test(start_paused = true)]
    async fn the_minimum_checks_past_the_deadline_keep_their_pauses() {
        // The order look-up keeps looking at least three times so that a
        // slow network cannot shrink its window to one look: back-to-back
        // looks past the deadline would give Contabo's list no time.
        let started = Instant::now();
        let times = std::sync::Mutex::new(Vec::new());
        let got: Result<(), Unsettled<()>> = poll(
            Polling {
                min_checks: 3,
                ..Polling::until(started, Backoff::constant(Duration::from_secs(1)))
            },
            || async {
                times
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((Instant::now() - started).as_millis());
                Check::Pending(())
            },
        )
        .await;
        assert!(got.is_err());
        let times = times.into_inner().unwrap_or_default();
        assert_eq!(times, vec![0, 1000, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_answers_at_once_is_run_once() {
        let runs = AtomicU32::new(0);
        let got = poll_until(
            deadline_in(Duration::from_secs(5)),
            Backoff::constant(Duration::from_secs(1)),
            || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Some(7)
            },
        )
        .await;
        assert_eq!(got, Ok(7));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_double_up_to_the_maximum_and_the_last_check_is_at_the_deadline() {
        let started = Instant::now();
        let times = std::sync::Mutex::new(Vec::new());
        let got: Result<(), Expired> = poll_until(
            started + Duration::from_millis(1000),
            Backoff::doubling(Duration::from_millis(100), Duration::from_millis(300)),
            || async {
                times
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Instant::now() - started);
                None
            },
        )
        .await;
        let times: Vec<u128> = times
            .into_inner()
            .unwrap_or_default()
            .iter()
            .map(|d| d.as_millis())
            .collect();
        // 0, +100, +200, +300 (capped), +300 would pass 1000 → at 1000.
        assert_eq!(times, vec![0, 100, 300, 600, 900, 1000]);
        assert_eq!(
            got,
            Err(Expired {
                checks: 6,
                waited: Duration::from_millis(1000)
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_can_end_the_poll_with_its_own_error() {
        let got: Result<Result<(), &str>, Expired> = poll_until(
            deadline_in(Duration::from_secs(60)),
            Backoff::constant(Duration::from_secs(1)),
            || async { Some(Err("refused")) },
        )
        .await;
        assert_eq!(got, Ok(Err("refused")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_with_a_minimum_of_checks_looks_that_often_even_past_its_deadline() {
        let runs = AtomicU32::new(0);
        let got: Result<(), Unsettled<u32>> = poll(
            Polling {
                min_checks: 3,
                ..Polling::until(Instant::now(), Backoff::constant(Duration::from_secs(1)))
            },
            || async { Check::Pending(runs.fetch_add(1, Ordering::SeqCst) + 1) },
        )
        .await;
        let unsettled = got.expect_err("nothing is ever done");
        assert_eq!(unsettled.expired.checks, 3);
        assert_eq!(unsettled.last, 3, "the last check's finding is kept");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_check_waits_for_the_pause_asked_for_but_not_past_the_deadline() {
        let started = Instant::now();
        let first = std::sync::Mutex::new(None);
        let check = || async {
            first
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(Instant::now() - started);
            Check::Done(())
        };
        let polling = Polling {
            first_check_after: Duration::from_secs(5),
            ..Polling::until(
                started + Duration::from_secs(60),
                Backoff::constant(Duration::from_secs(1)),
            )
        };
        assert_eq!(poll::<(), (), _, _>(polling, check).await, Ok(()));
        assert_eq!(
            *first.lock().unwrap_or_else(|e| e.into_inner()),
            Some(Duration::from_secs(5))
        );

        let first_cut = std::sync::Mutex::new(None);
        let started = Instant::now();
        let polling = Polling {
            first_check_after: Duration::from_secs(500),
            ..Polling::until(
                started + Duration::from_secs(2),
                Backoff::constant(Duration::from_secs(1)),
            )
        };
        let _ = poll::<(), (), _, _>(polling, || async {
            first_cut
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(Instant::now() - started);
            Check::Done(())
        })
        .await;
        assert_eq!(
            *first_cut.lock().unwrap_or_else(|e| e.into_inner()),
            Some(Duration::from_secs(2))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_grow_by_half_up_to_the_maximum_and_start_again_after_a_reset() {
        let mut pauses = Pauses::new(Backoff::by_half(
            Duration::from_millis(20),
            Duration::from_millis(100),
        ));
        let mut taken = Vec::new();
        for _ in 0..6 {
            taken.push(pauses.upcoming().as_micros());
            let before = Instant::now();
            assert!(pauses.pause_unless(std::future::pending()).await);
            assert!(Instant::now() - before >= Duration::from_millis(20));
        }
        // 20, 30, 45, 67.5, then capped at 100 (ms).
        assert_eq!(
            taken,
            vec![20_000, 30_000, 45_000, 67_500, 100_000, 100_000]
        );
        pauses.reset();
        assert_eq!(pauses.upcoming(), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_cuts_a_pause_short_and_the_next_pause_still_grows() {
        let mut pauses = Pauses::new(Backoff::doubling(
            Duration::from_secs(10),
            Duration::from_secs(60),
        ));
        let before = Instant::now();
        let stop = tokio::time::sleep(Duration::from_secs(1));
        assert!(
            !pauses.pause_unless(stop).await,
            "the stop did not end the pause"
        );
        assert_eq!(Instant::now() - before, Duration::from_secs(1));
        assert_eq!(pauses.upcoming(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_pause_is_a_millisecond_not_a_spin() {
        let mut pauses = Pauses::new(Backoff::constant(Duration::ZERO));
        let before = Instant::now();
        pauses.pause().await;
        assert_eq!(Instant::now() - before, MIN_PAUSE);
    }

    #[test]
    fn a_deadline_too_far_for_the_clock_is_far_in_the_future_instead_of_a_panic() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let d = deadline_in(Duration::MAX);
            assert!(d > Instant::now() + Duration::from_secs(3600));
        });
    }

    // Edge cases found by an attacker of the `Pauses` change (issue 17).
    #[test]
    fn backoff_next_never_panics_on_extreme_settings() {
        for growth in [(0, 0), (u32::MAX, 0), (u32::MAX, 1), (1, u32::MAX), (0, 1)] {
            for first in [Duration::ZERO, Duration::from_nanos(1), Duration::MAX] {
                for max in [Duration::ZERO, Duration::from_secs(1), Duration::MAX] {
                    let b = Backoff { first, max, growth };
                    let n = b.next(first);
                    assert!(n <= max, "{growth:?} {first:?} {max:?}: {n:?}");
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_pause_does_not_panic_and_a_stop_still_ends_it() {
        let mut p = Pauses::new(Backoff::constant(Duration::MAX));
        let stop = Arc::new(Notify::new());
        let s2 = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            s2.notify_one();
        });
        assert!(!p.pause_unless(stop.notified()).await);
        assert_eq!(p.upcoming(), Duration::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_signalled_before_the_pause_starts_is_not_lost() {
        let mut p = Pauses::new(Backoff::constant(Duration::from_secs(3600)));
        let stop = Notify::new();
        stop.notify_one(); // permit stored before anyone waits
        let before = Instant::now();
        assert!(!p.pause_unless(stop.notified()).await);
        assert_eq!(Instant::now(), before);
    }

    /// `first > max`: a pause is never above the maximum.
    #[tokio::test(start_paused = true)]
    async fn a_first_pause_above_the_maximum_is_the_maximum() {
        let b = Backoff {
            first: Duration::from_secs(10),
            max: Duration::from_secs(1),
            growth: (1, 2),
        };
        let p = Pauses::new(b);
        assert!(
            p.upcoming() <= b.max,
            "first pause {:?} above max {:?}",
            p.upcoming(),
            b.max
        );
    }
}
