use super::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A read that counts the reads sent (its answer is its number) and answers only when the
/// test lets it.
struct Reads {
    sent: Arc<AtomicU64>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Reads {
    fn new() -> Reads {
        Reads {
            sent: Arc::new(AtomicU64::new(0)),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }

    fn read(
        &self,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = u64> + Send>> + Send + Sync + 'static
    {
        let (sent, gate) = (self.sent.clone(), self.gate.clone());
        move || {
            let n = sent.fetch_add(1, Ordering::SeqCst) + 1;
            let gate = gate.clone();
            Box::pin(async move {
                gate.acquire().await.map(|p| p.forget()).ok();
                n
            })
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// A caller of `c` for `key`, on a task of its own; `0` is its answer if its read
    /// never comes.
    fn ask(&self, c: &Arc<Coalesce<u8, u64>>, key: u8) -> tokio::task::JoinHandle<u64> {
        let (c, read) = (c.clone(), self.read());
        tokio::spawn(async move { c.get(key, read, 0).await })
    }
}

/// Waits (at most 5 s) until `done` holds.
async fn until(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Four callers, three reads: a caller that arrives while a read is on its way gets the
/// next read, sent after it asked, never the one on its way; those that arrive together
/// share it. Once all are answered, nothing is kept.
#[tokio::test]
async fn a_caller_never_gets_a_read_sent_before_it_asked() {
    let c: Arc<Coalesce<u8, u64>> = Arc::default();
    let reads = Reads::new();
    let a = reads.ask(&c, 7);
    until(|| reads.sent() == 1).await;
    let (b, d) = (reads.ask(&c, 7), reads.ask(&c, 7));
    until(|| c.waiting(&7) == Some(2)).await;
    reads.gate.add_permits(1);
    assert_eq!(a.await.unwrap(), 1, "the first caller's own read");
    until(|| reads.sent() == 2).await;
    let e = reads.ask(&c, 7);
    until(|| c.waiting(&7) == Some(1)).await;
    reads.gate.add_permits(1);
    assert_eq!(
        (b.await.unwrap(), d.await.unwrap()),
        (2, 2),
        "the read sent after both asked, shared"
    );
    until(|| reads.sent() == 3).await;
    reads.gate.add_permits(1);
    assert_eq!(e.await.unwrap(), 3, "not the read on its way when it asked");
    until(|| c.waiting(&7).is_none()).await;
    assert_eq!(reads.sent(), 3);
}

/// A caller whose request is abandoned while its read is on its way (its submit timed
/// out) does not strand those waiting for the next read; other keys read on their own.
#[tokio::test]
async fn an_abandoned_read_still_sends_the_next_and_keys_are_apart() {
    let c: Arc<Coalesce<u8, u64>> = Arc::default();
    let reads = Reads::new();
    let first = reads.ask(&c, 1);
    until(|| reads.sent() == 1).await;
    let waiting = reads.ask(&c, 1);
    until(|| c.waiting(&1) == Some(1)).await;
    // Another key does not wait for key 1.
    let other = reads.ask(&c, 2);
    until(|| reads.sent() == 2).await;
    first.abort();
    let _ = first.await;
    until(|| reads.sent() == 3).await;
    reads.gate.add_permits(2);
    let mut got = [waiting.await.unwrap(), other.await.unwrap()];
    got.sort_unstable();
    assert_eq!(got, [2, 3]);
    until(|| c.waiting(&1).is_none() && c.waiting(&2).is_none()).await;
}

/// Copies of one alert that arrive together (in the same rounds of the scheduler, as two
/// replicated senders' copies do) share one read.
#[tokio::test]
async fn copies_that_arrive_together_share_one_read() {
    let c: Arc<Coalesce<u8, u64>> = Arc::default();
    let reads = Reads::new();
    let copies: Vec<_> = (0..3).map(|_| reads.ask(&c, 5)).collect();
    until(|| reads.sent() == 1).await;
    reads.gate.add_permits(1);
    for copy in copies {
        assert_eq!(copy.await.unwrap(), 1);
    }
    assert_eq!(reads.sent(), 1, "one read for the three copies");
    until(|| c.waiting(&5).is_none()).await;
}

/// Copies that joined a read whose first caller's request then ended (its read abandoned)
/// get the next read, not an error of that other request.
#[tokio::test]
async fn copies_that_joined_an_abandoned_read_get_the_next_one() {
    let c: Arc<Coalesce<u8, u64>> = Arc::default();
    let reads = Reads::new();
    let first = reads.ask(&c, 9);
    let copy = reads.ask(&c, 9);
    until(|| reads.sent() == 1).await;
    first.abort();
    let _ = first.await;
    until(|| reads.sent() == 2).await;
    reads.gate.add_permits(2);
    assert_eq!(copy.await.unwrap(), 2, "the next read, not `lost` (0)");
    until(|| c.waiting(&9).is_none()).await;
}
