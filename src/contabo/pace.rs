//! The client's own pace, lowered when Contabo answers 429.
//!
//! The configured rate (`--rate-limit`, enforced by `governor`) is a
//! ceiling. Contabo does not publish its limit, and an account's limit may
//! be lower than the ceiling, or shared with other tools. So each 429 halves
//! the pace (down to [`MIN_RPS`]) and each success raises it again by a
//! small step (additive increase, multiplicative decrease, as TCP does):
//! after a burst of 429s the client settles just under the account's real
//! limit instead of spending its retries against it.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The slowest pace 429s can push the client to, in requests per second
/// (unless the configured ceiling is lower). Below it, `Retry-After` and
/// back-off still space the retries of what was refused.
pub const MIN_RPS: f64 = 0.05;

/// How long without a 429 before the pace is raised one step (and how long
/// an order waits after the last 429 before it is sent).
const CALM: Duration = Duration::from_secs(3);

/// Each raise multiplies the pace by this.
const RAISE: f64 = 1.25;

/// After a 429 at pace `p`, the pace is never raised above this share of
/// `p` again in this run: the account's limit lies below `p`.
const BELOW_LAST_THROTTLE: f64 = 0.9;

/// The adaptive gate every request passes after the ceiling.
#[derive(Debug)]
pub struct Pace {
    ceiling: f64,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// Current pace in requests per second (≤ the ceiling).
    rps: f64,
    /// The highest pace the pace may climb back to (lowered by 429s).
    cap: f64,
    /// Earliest start of the next request while the pace is below the ceiling.
    next: Instant,
    /// The last 429, and the last raise.
    last_throttle: Option<Instant>,
    last_raise: Instant,
}

impl Pace {
    /// A pace at `ceiling` requests per second (already validated by the
    /// client as a positive, finite number).
    pub fn new(ceiling: f64) -> Self {
        let now = Instant::now();
        Self {
            ceiling,
            state: Mutex::new(State {
                rps: ceiling,
                cap: ceiling,
                next: now,
                last_throttle: None,
                last_raise: now,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain numbers: a panic elsewhere cannot leave them half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current pace, in requests per second.
    #[cfg(test)]
    pub fn rps(&self) -> f64 {
        self.state().rps
    }

    /// Waits for this request's turn. At the ceiling, untouched by 429s, it
    /// returns at once (the ceiling's own limiter paces); below it, requests
    /// are spaced `1/rps`. A request that must not meet a 429 (an order,
    /// `careful`) takes two turns, and first waits until no 429 was seen
    /// for [`CALM`].
    pub async fn until_ready(&self, careful: bool) {
        loop {
            match self.reserve(Instant::now(), careful) {
                Turn::Go(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    return;
                }
                Turn::NotCalm(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Takes the next turn as of `now`, or says how long until it is calm
    /// enough for a careful request to take one.
    fn reserve(&self, now: Instant, careful: bool) -> Turn {
        let mut s = self.state();
        if careful {
            if let Some(calm_at) = s.last_throttle.map(|t| t + CALM) {
                if calm_at > now {
                    return Turn::NotCalm(calm_at - now);
                }
            }
        }
        if s.rps >= self.ceiling && s.last_throttle.is_none() {
            return Turn::Go(Duration::ZERO);
        }
        let turns = if careful { 2 } else { 1 };
        let start = s.next.max(now);
        s.next = start + interval(s.rps) * turns;
        Turn::Go(start - now)
    }

    /// A 429: halve the pace, remember that the account's limit is below
    /// the pace that met it, and push the next start out by one interval.
    /// 429s answering requests sent before the last halving took effect
    /// (within one interval of it) do not halve it again.
    pub fn throttled(&self) {
        let mut s = self.state();
        let now = Instant::now();
        if let Some(last) = s.last_throttle {
            if now.duration_since(last) < interval(s.rps) {
                s.last_throttle = Some(now);
                return;
            }
        }
        let lowered = (s.rps / 2.0).max(MIN_RPS).min(self.ceiling);
        if lowered < s.rps {
            tracing::debug!(
                from = s.rps,
                to = lowered,
                "Contabo answered 429; slowing down"
            );
        }
        s.cap = (s.rps * BELOW_LAST_THROTTLE).max(lowered);
        s.rps = lowered;
        s.last_throttle = Some(now);
        s.last_raise = now;
        s.next = s.next.max(now) + interval(lowered);
    }

    /// A request that was not throttled: after [`CALM`] without a 429 (and
    /// since the last raise), raise the pace one step, up to its cap.
    pub fn succeeded(&self) {
        let mut s = self.state();
        let now = Instant::now();
        if s.rps >= s.cap || now.duration_since(s.last_raise) < CALM {
            return;
        }
        if s.last_throttle
            .is_some_and(|t| now.duration_since(t) < CALM)
        {
            return;
        }
        s.rps = (s.rps * RAISE).min(s.cap);
        s.last_raise = now;
    }
}

/// What [`Pace::reserve`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// A turn is taken: go after this wait.
    Go(Duration),
    /// No turn taken: ask again after this wait.
    NotCalm(Duration),
}

fn interval(rps: f64) -> Duration {
    Duration::try_from_secs_f64(1.0 / rps).unwrap_or(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_halves_the_pace_down_to_a_floor() {
        let pace = Pace::new(10.0);
        pace.throttled();
        assert!((pace.rps() - 5.0).abs() < 1e-9);
        pace.throttled();
        assert!(
            (pace.rps() - 5.0).abs() < 1e-9,
            "a 429 within one interval of the last halving answers an earlier request"
        );
        for _ in 0..20 {
            pace.state().last_throttle = Some(Instant::now() - Duration::from_secs(60));
            pace.throttled();
        }
        assert!((pace.rps() - MIN_RPS).abs() < 1e-9);
    }

    #[test]
    fn the_pace_rises_only_after_calm_and_never_back_to_where_it_met_a_429() {
        let pace = Pace::new(10.0);
        pace.throttled(); // met a 429 at 10/s: cap 9, pace 5
        pace.succeeded();
        assert!(
            (pace.rps() - 5.0).abs() < 1e-9,
            "no raise right after a 429"
        );
        {
            let mut s = pace.state();
            let long_ago = Instant::now() - Duration::from_secs(60);
            s.last_throttle = Some(long_ago);
            s.last_raise = long_ago;
        }
        pace.succeeded();
        assert!((pace.rps() - 6.25).abs() < 1e-9, "{}", pace.rps());
        for _ in 0..50 {
            let mut s = pace.state();
            s.last_raise = Instant::now() - Duration::from_secs(60);
            drop(s);
            pace.succeeded();
        }
        assert!(
            (pace.rps() - 9.0).abs() < 1e-9,
            "capped below 10: {}",
            pace.rps()
        );
    }

    #[test]
    fn a_ceiling_below_the_floor_is_kept() {
        let pace = Pace::new(0.5);
        pace.throttled();
        assert!(pace.rps() <= 0.5);
    }

    #[test]
    fn below_the_ceiling_requests_are_spaced_and_careful_ones_wait_for_calm() {
        let pace = Pace::new(10.0);
        let now = Instant::now();
        assert_eq!(
            pace.reserve(now, false),
            Turn::Go(Duration::ZERO),
            "untouched"
        );
        assert_eq!(
            pace.reserve(now, true),
            Turn::Go(Duration::ZERO),
            "untouched"
        );
        pace.throttled(); // 5/s: 200 ms apart
        let now = Instant::now();
        let go = |t: Turn| match t {
            Turn::Go(d) => d,
            Turn::NotCalm(_) => panic!("a plain request never waits for calm"),
        };
        let waits: Vec<Duration> = (0..3).map(|_| go(pace.reserve(now, false))).collect();
        assert_eq!(waits[1] - waits[0], Duration::from_millis(200));
        assert_eq!(waits[2] - waits[1], Duration::from_millis(200));
        // An order right after a 429 waits for calm, taking no turn yet.
        match pace.reserve(now, true) {
            Turn::NotCalm(calm) => assert!(calm > Duration::from_secs(2), "{calm:?}"),
            Turn::Go(_) => panic!("an order right after a 429 must wait for calm"),
        }
        assert_eq!(
            go(pace.reserve(now, false)) - waits[2],
            Duration::from_millis(200)
        );
    }
}
