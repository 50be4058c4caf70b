//! Gathers the outbox operations of one scheduler round into one hand-over to the writer
//! thread, so that one group commit (one fsync) takes them all.
//!
//! Handing each operation to the writer at once starts a commit as soon as the first one
//! arrives; the requests the runtime has already read then wait for the next commit. On one
//! core that made commits of about 11 operations at 32 connections, and the fsync of each
//! commit is the largest cost of a durable ingest. Here the first operation after a
//! hand-over starts a small task that yields to the runtime until a round of the scheduler
//! brings no new operation (at most [`ROUNDS`]); every task that was ready, and every
//! socket that became readable, has then had its turn, and the gathered operations go to
//! the writer together. The wait is a few scheduler rounds, microseconds when the runtime
//! is idle. Measured on one core (docs/benchmarks.md): commits of about 19 operations
//! instead of 11, ingest 1.14-1.37x, and end to end about 0.7x the CPU per alert with a
//! lower p99.
//!
//! An operation nobody waits on in a hurry (a finished attempt's outcome: [`Gather::push_lazy`])
//! waits up to [`LINGER`] for others instead, so that the outcomes of every target's
//! worker share one commit; an ordinary operation pushed meanwhile takes them along at the
//! end of its round. Measured end to end to one target on one core at 20,000 deliveries a
//! second (docs/benchmarks.md): commits of about 46 outcomes instead of 12, and the
//! writer's CPU per delivery from about 10 to 5 µs. A linger of 2 ms made commits of about
//! 58, and with ten targets seemed to lengthen the tail of accepted alerts' latency (the
//! machine's spread was larger than the difference): 1 ms keeps most of the gain.
//!
//! Outside a tokio runtime, or once the waiting operations weigh [`MAX_WEIGHT`] (an
//! operation weighs the deliveries it writes, at least 1), they are handed over at once: a
//! commit that large already shares its fsync widely, and making it wait for the round to
//! end would leave the writer idle while the runtime parses large requests (ingest of 100
//! alerts per request lost 20% that way). Nothing waits here unseen: a round's task hands
//! over when it is dropped, even unfinished, and [`Gather::close`] hands over what is
//! gathered before it closes the channel.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};

/// The most scheduler rounds an operation waits for others.
const ROUNDS: usize = 3;

/// Operations weighing this much together are handed over without waiting for the round
/// to end.
pub(crate) const MAX_WEIGHT: usize = 256;

/// How long an operation pushed with [`Gather::push_lazy`] waits for others.
pub(crate) const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// A channel to a thread that takes operations in groups.
pub(crate) struct Gather<T> {
    inner: Arc<Mutex<Gathered<T>>>,
}

struct Gathered<T> {
    items: Vec<T>,
    /// The weight of `items`.
    weight: usize,
    /// A round's task is waiting to hand `items` over.
    round: bool,
    /// A lazy operation's timer is waiting to hand `items` over.
    timer: bool,
    /// `None` once closed.
    tx: Option<mpsc::Sender<Vec<T>>>,
}

impl<T> Gathered<T> {
    /// Hands the gathered items over; if the receiver is gone they are dropped, and with
    /// them whatever their senders wait on.
    fn flush(&mut self) {
        if self.items.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.items);
        self.weight = 0;
        if let Some(tx) = &self.tx {
            let _ = tx.send(items);
        }
    }
}

fn lock<T>(inner: &Mutex<Gathered<T>>) -> MutexGuard<'_, Gathered<T>> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T: Send + 'static> Gather<T> {
    pub(crate) fn new(tx: mpsc::Sender<Vec<T>>) -> Gather<T> {
        Gather {
            inner: Arc::new(Mutex::new(Gathered {
                items: Vec::new(),
                weight: 0,
                round: false,
                timer: false,
                tx: Some(tx),
            })),
        }
    }

    /// Queues `item`, of `weight` (see [`MAX_WEIGHT`]), for the receiver at the end of this
    /// scheduler round; gives it back once the channel is closed.
    pub(crate) fn push(&self, item: T, weight: usize) -> Result<(), T> {
        self.queue(item, weight, false)
    }

    /// [`Gather::push`] for an operation that may wait up to [`LINGER`] for others (an
    /// ordinary push meanwhile takes it along sooner).
    pub(crate) fn push_lazy(&self, item: T, weight: usize) -> Result<(), T> {
        self.queue(item, weight, true)
    }

    fn queue(&self, item: T, weight: usize, lazy: bool) -> Result<(), T> {
        let mut inner = lock(&self.inner);
        if inner.tx.is_none() {
            return Err(item);
        }
        inner.items.push(item);
        inner.weight += weight.max(1);
        if inner.weight >= MAX_WEIGHT {
            inner.flush();
            return Ok(());
        }
        // What will hand this item over: a round already waiting does; a lazy item also
        // rides with a timer already waiting; otherwise a new one starts.
        if inner.round || (lazy && inner.timer) {
            return Ok(());
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let waiter = Waiter {
                    inner: Arc::clone(&self.inner),
                    lazy,
                };
                if lazy {
                    inner.timer = true;
                } else {
                    inner.round = true;
                }
                runtime.spawn(async move { waiter.wait().await });
            }
            Err(_) => inner.flush(),
        }
        Ok(())
    }

    /// Hands over what is gathered and closes the channel: the receiver ends once it has
    /// taken everything, and later pushes are refused.
    pub(crate) fn close(&self) {
        let mut inner = lock(&self.inner);
        inner.flush();
        inner.tx = None;
    }
}

/// The task that ends a gathering round, or a lazy operation's wait. Its drop hands the
/// items over, so they go even if the runtime drops the task unfinished or never runs it
/// (a runtime shutting down).
struct Waiter<T> {
    inner: Arc<Mutex<Gathered<T>>>,
    /// A lazy operation's timer, not a round.
    lazy: bool,
}

impl<T> Waiter<T> {
    /// A round yields until a scheduler round adds nothing, or for [`ROUNDS`] rounds; a
    /// timer waits [`LINGER`].
    async fn wait(&self) {
        if self.lazy {
            tokio::time::sleep(LINGER).await;
            return;
        }
        let mut seen = 0;
        for _ in 0..ROUNDS {
            tokio::task::yield_now().await;
            let now = lock(&self.inner).items.len();
            if now == seen {
                break;
            }
            seen = now;
        }
    }
}

impl<T> Drop for Waiter<T> {
    fn drop(&mut self) {
        let mut inner = lock(&self.inner);
        if self.lazy {
            inner.timer = false;
        } else {
            inner.round = false;
        }
        inner.flush();
    }
}

#[cfg(test)]
#[path = "gather_test.rs"]
mod tests;
