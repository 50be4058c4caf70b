//! How many requests a target's worker may have in flight now: the adaptive limit.
//!
//! `delivery.in_flight_per_target` is the most. Under it the limit moves with what the
//! target's answers show, in the manner of TCP's congestion window and of Vector's
//! adaptive request concurrency, with one aim of its own: **the fewest requests at once
//! that keep deliveries from waiting**. A target answering in a millisecond is sent a
//! burst of alerts over one or two connections, one after the other; a target 100 ms
//! away is given as many as its backlog needs, up to the most.
//!
//! - **Raised** by one for every [`WAIT`] that deliveries wait while every slot is busy,
//!   as long as the target answers about as fast as it has lately at its quickest
//!   (recent answers at most twice the least of the last minute, plus a millisecond): a
//!   target whose answers slow as it is sent more is queueing them, and more at once
//!   would only lengthen the queue. No answer yet is no evidence against.
//! - **Lowered** by one for every [`LOWER_EVERY`] without a raise, down to one: a limit
//!   no longer needed goes, so a burst to a fast target is not sent on the connections
//!   the last busy hour needed.
//! - **Cut** by a tenth when an attempt is to be retried (a 429, 5xx, timeout or refused
//!   connection: the target is struggling or gone), at most once per recent answer
//!   time. The retry itself waits for its backoff.
//!
//! With `delivery.adaptive_in_flight: false` the limit stays at the most. Pure logic on
//! given instants, so its tests need no clock.

use std::time::Duration;

use tokio::time::Instant;

/// How long deliveries wait with every slot busy before the limit is raised by one (and
/// again after each further wait as long).
pub(super) const WAIT: Duration = Duration::from_millis(5);

/// The limit is lowered by one after this long without a raise.
pub(super) const LOWER_EVERY: Duration = Duration::from_secs(1);

/// The least answer time is kept over two windows this long (so it follows a target that
/// has become slower for good, within two windows).
const LEAST_WINDOW: Duration = Duration::from_secs(30);

/// The slack over twice the least answer time within which a target counts as not
/// queueing: on a local network, answers vary by more than their own length.
const SLACK: Duration = Duration::from_millis(1);

/// The weight of the newest answer in the recent answer time.
const RECENT_WEIGHT: f64 = 0.2;

/// One worker's limit of requests in flight.
#[derive(Debug)]
pub(super) struct Limit {
    /// The most (`in_flight_per_target`).
    most: usize,
    now: usize,
    adaptive: bool,
    /// Since when deliveries have waited with every slot busy (or since the last raise
    /// while they still wait).
    waiting_since: Option<Instant>,
    /// The last raise, cut or lowering: the lowering counts from here.
    last_change: Instant,
    /// The last cut: cuts are at least a recent answer time apart.
    last_cut: Option<Instant>,
    /// Recent answer time in seconds (a moving average of delivered attempts).
    recent: Option<f64>,
    least: Least,
}

/// The least answer time seen over the current window and the one before it.
#[derive(Debug)]
struct Least {
    current: Option<Duration>,
    previous: Option<Duration>,
    since: Instant,
}

impl Least {
    fn see(&mut self, now: Instant, took: Duration) {
        if now.saturating_duration_since(self.since) >= LEAST_WINDOW {
            self.previous = self.current.take();
            self.since = now;
        }
        self.current = Some(self.current.map_or(took, |c| c.min(took)));
    }

    fn get(&self) -> Option<Duration> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What an attempt told the limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Answer {
    /// Delivered, the request having taken this long.
    Took(Duration),
    /// To be retried: the target refused, failed, timed out or could not be reached.
    Struggling,
    /// Nothing about the target's load (given up for good, or not attempted).
    Other,
}

impl Limit {
    /// A limit of at most `most`; with `adaptive` false, always `most`.
    pub(super) fn new(most: usize, adaptive: bool, now: Instant) -> Limit {
        let most = most.max(1);
        Limit {
            most,
            now: if adaptive { 1 } else { most },
            adaptive,
            waiting_since: None,
            last_change: now,
            last_cut: None,
            recent: None,
            least: Least {
                current: None,
                previous: None,
                since: now,
            },
        }
    }

    /// How many requests may be in flight now.
    pub(super) fn get(&self) -> usize {
        self.now
    }

    /// An attempt finished at `now`.
    pub(super) fn answered(&mut self, now: Instant, answer: Answer) {
        if !self.adaptive {
            return;
        }
        match answer {
            Answer::Took(took) => {
                let secs = took.as_secs_f64();
                self.recent = Some(match self.recent {
                    Some(r) => r + RECENT_WEIGHT * (secs - r),
                    None => secs,
                });
                self.least.see(now, took);
            }
            Answer::Struggling => {
                let apart = self
                    .recent
                    .map_or(WAIT, |r| Duration::from_secs_f64(r).max(WAIT));
                let may = self
                    .last_cut
                    .is_none_or(|at| now.saturating_duration_since(at) >= apart);
                if may && self.now > 1 {
                    self.now = (self.now * 9 / 10).clamp(1, self.now - 1);
                    self.last_cut = Some(now);
                    self.last_change = now;
                    // A wait that began before the cut does not count towards a raise.
                    self.waiting_since = self.waiting_since.map(|_| now);
                }
            }
            Answer::Other => {}
        }
    }

    /// The worker's state at `now`, after it sent what it could: whether deliveries wait
    /// with every slot busy. Moves the limit as the module says.
    pub(super) fn tick(&mut self, now: Instant, waiting: bool) {
        if !self.adaptive {
            return;
        }
        // One for every period without a change, however long the worker slept.
        let quiet = now.saturating_duration_since(self.last_change);
        if self.now > 1 && quiet >= LOWER_EVERY {
            let periods =
                usize::try_from(quiet.as_millis() / LOWER_EVERY.as_millis()).unwrap_or(usize::MAX);
            self.now = self.now.saturating_sub(periods).max(1);
            self.last_change = now;
        }
        if !waiting {
            self.waiting_since = None;
        } else {
            let since = *self.waiting_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= WAIT && self.now < self.most {
                if self.answers_keep_pace() {
                    self.now += 1;
                    self.last_change = now;
                }
                // Raised or not, the next look is a full wait later.
                self.waiting_since = Some(now);
            }
        }
    }

    /// When the worker should look again (call [`Limit::tick`]) though nothing else
    /// happens: when deliveries will have waited long enough for a raise.
    pub(super) fn next_look(&self) -> Option<Instant> {
        if !self.adaptive || self.now >= self.most {
            return None;
        }
        self.waiting_since.map(|since| since + WAIT)
    }

    /// Whether recent answers are about as fast as the least of late.
    fn answers_keep_pace(&self) -> bool {
        match (self.recent, self.least.get()) {
            (Some(recent), Some(least)) => recent <= (2 * least + SLACK).as_secs_f64(),
            _ => true,
        }
    }
}

#[cfg(test)]
#[path = "limit_test.rs"]
mod limit_test;
