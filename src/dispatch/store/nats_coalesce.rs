//! Reads of one state subject asked for at the same moment share one read: the batching
//! that makes repeats of one alert cheap on NATS.
//!
//! A repeat of an alert is answered "duplicate" on a read of its `dedup` entry from the
//! stream's leader. Senders repeat themselves at the same moment: two Prometheus replicas
//! send every alert twice, and a group of alerts is re-sent together. Without this, each
//! copy reads the entry for itself.
//!
//! The first caller for a subject waits a few rounds of the scheduler ([`GATHER_ROUNDS`])
//! before it sends the read. Copies arriving meanwhile join it.
//!
//! Why the answer stays as true as each copy's own read would be: a read already on its
//! way when a copy arrives may have left before a write the copy's sender already knows
//! of. For instance, the resolution, accepted a moment earlier through another replica.
//! So a copy never takes the answer of a read sent before it asked. It waits for the next
//! read of the subject, sent once the one on its way is answered, and so after every copy
//! waiting for it arrived. One read at a time per subject, and each caller's answer comes
//! from a read sent after it asked. It is no older than its own read would have been. A
//! caller may wait up to about two round trips instead of one; the submit's own time
//! limit still bounds it.
//!
//! Nothing is kept once a read is answered and nobody waits: this is not a cache.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// How many rounds of the scheduler a read waits, before it is sent, for the same key's
/// other callers (the copies of an alert sent together), as the outbox's group commit
/// waits for a round's operations (`gather.rs`): microseconds on an idle runtime.
const GATHER_ROUNDS: usize = 1;

/// The reads in flight, by key.
pub(crate) struct Coalesce<K, V> {
    /// A key is here while a read of it is on its way, with those waiting for the next.
    slots: Mutex<HashMap<K, Vec<oneshot::Sender<V>>>>,
}

impl<K, V> Default for Coalesce<K, V> {
    fn default() -> Self {
        Coalesce {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K, V> Coalesce<K, V>
where
    K: Hash + Eq + Copy + Send + Sync + 'static,
    V: Clone + Send + 'static,
{
    fn lock(&self) -> MutexGuard<'_, HashMap<K, Vec<oneshot::Sender<V>>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many callers wait for the next read of `key`; `None`: no read of it is on its
    /// way.
    #[cfg(test)]
    fn waiting(&self, key: &K) -> Option<usize> {
        self.lock().get(key).map(Vec::len)
    }

    /// What `read` answers for `key`, from a read sent after this call: this caller's own
    /// when no read of `key` is on its way, else the next one, shared with every caller
    /// that asks before it is sent. `lost` is the answer when that next read never comes
    /// (the runtime is stopping).
    pub(crate) async fn get<F, Fut>(self: &Arc<Self>, key: K, read: F, lost: V) -> V
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = V> + Send + 'static,
    {
        let waiting = {
            let mut slots = self.lock();
            match slots.get_mut(&key) {
                None => {
                    slots.insert(key, Vec::new());
                    None
                }
                Some(next) => {
                    let (tx, rx) = oneshot::channel();
                    next.push(tx);
                    Some(rx)
                }
            }
        };
        match waiting {
            Some(rx) => rx.await.unwrap_or(lost),
            None => {
                let read = Arc::new(read);
                // Whatever becomes of this caller (its request timed out, say), those
                // waiting get their read.
                let _next = Next {
                    coalesce: self.clone(),
                    key,
                    read: read.clone(),
                };
                // The copies of one alert that senders send together arrive in the same
                // rounds of the scheduler: they join this read before it is sent.
                for _ in 0..GATHER_ROUNDS {
                    tokio::task::yield_now().await;
                }
                let mut gathered = Gathered {
                    waiters: self
                        .lock()
                        .get_mut(&key)
                        .map(std::mem::take)
                        .unwrap_or_default(),
                    coalesce: self,
                    key,
                };
                let answer = read().await;
                for w in gathered.waiters.drain(..) {
                    let _ = w.send(answer.clone());
                }
                answer
            }
        }
    }

    /// The read of `key` on its way is answered: sends the next one for those waiting, or
    /// forgets the key when nobody is.
    fn answered<F, Fut>(self: &Arc<Self>, key: K, read: Arc<F>)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = V> + Send + 'static,
    {
        let waiting = {
            let mut slots = self.lock();
            match slots.get_mut(&key) {
                Some(next) if !next.is_empty() => std::mem::take(next),
                _ => {
                    slots.remove(&key);
                    return;
                }
            }
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to read on: those waiting hear `lost` (their senders drop).
            self.lock().remove(&key);
            return;
        };
        let coalesce = self.clone();
        runtime.spawn(async move {
            let _next = Next {
                coalesce,
                key,
                read: read.clone(),
            };
            let answer = read().await;
            for w in waiting {
                let _ = w.send(answer.clone());
            }
        });
    }
}

/// The callers that joined a read before it was sent. If that read is abandoned (its
/// first caller's request ended), they go back to wait for the next one: another request's
/// end is never their error.
struct Gathered<'c, K, V>
where
    K: Hash + Eq + Copy + Send + Sync + 'static,
    V: Clone + Send + 'static,
{
    waiters: Vec<oneshot::Sender<V>>,
    coalesce: &'c Arc<Coalesce<K, V>>,
    key: K,
}

impl<K, V> Drop for Gathered<'_, K, V>
where
    K: Hash + Eq + Copy + Send + Sync + 'static,
    V: Clone + Send + 'static,
{
    fn drop(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        if let Some(next) = self.coalesce.lock().get_mut(&self.key) {
            next.append(&mut self.waiters);
        }
    }
}

/// Sends the next read of its key when dropped: when the read it stands for was answered,
/// or abandoned.
struct Next<K, V, F, Fut>
where
    K: Hash + Eq + Copy + Send + Sync + 'static,
    V: Clone + Send + 'static,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = V> + Send + 'static,
{
    coalesce: Arc<Coalesce<K, V>>,
    key: K,
    read: Arc<F>,
}

impl<K, V, F, Fut> Drop for Next<K, V, F, Fut>
where
    K: Hash + Eq + Copy + Send + Sync + 'static,
    V: Clone + Send + 'static,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = V> + Send + 'static,
{
    fn drop(&mut self) {
        self.coalesce.answered(self.key, self.read.clone());
    }
}

#[cfg(test)]
#[path = "nats_coalesce_test.rs"]
mod tests;
