//! Notification fan-out: a bounded queue per subscriber that never loses silently.
//!
//! The daemon's packet workers are plain threads; [`Notifier::notify`] is callable from any
//! thread, never waits for a consumer and never does I/O: it appends to each interested
//! subscriber's queue under a short lock (O(1), never held across an await or a syscall)
//! and wakes the subscriber's writer. When a queue is full the notification is counted
//! instead, and the subscriber later receives `MISSED {count}` exactly where the gap is.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::message::Notification;
use crate::schema::MissedNote;

enum Item {
    Note(Arc<Notification>),
    Missed(u64),
}

struct QueueState {
    items: VecDeque<Item>,
    /// Notifications in `items` (markers excluded): bounded by the capacity.
    notes: usize,
    /// Drops after the last queued item, not yet turned into a marker.
    tail_missed: u64,
    closed: bool,
}

/// A bounded queue of notifications with gap markers.
pub struct NotifyQueue {
    state: Mutex<QueueState>,
    wake: Notify,
    capacity: usize,
    dropped_total: AtomicU64,
}

impl NotifyQueue {
    /// A queue holding at most `capacity` notifications (at least 1).
    pub fn new(capacity: usize) -> Self {
        NotifyQueue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                notes: 0,
                tail_missed: 0,
                closed: false,
            }),
            wake: Notify::new(),
            capacity: capacity.max(1),
            dropped_total: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding this lock cannot leave the queue inconsistent (every
        // critical section is a few field updates), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Capacity in notifications.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Notifications dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Queues a notification, or counts it as missed if the queue is full. Never blocks on
    /// the consumer. Returns whether it was queued.
    pub fn push(&self, n: Arc<Notification>) -> bool {
        // A MISSED marker relayed from upstream (the daemon's queue) merges with local
        // gap counts, so a count is never reduced to one lost item.
        let relayed_gap = match &*n {
            Notification::Missed(m) => Some(m.count),
            _ => None,
        };
        let mut s = self.lock();
        if s.closed {
            return false;
        }
        if let Some(count) = relayed_gap {
            s.tail_missed = s.tail_missed.saturating_add(count);
            drop(s);
            self.wake.notify_one();
            return true;
        }
        if s.notes >= self.capacity {
            s.tail_missed += 1;
            drop(s);
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
            self.wake.notify_one();
            return false;
        }
        if s.tail_missed > 0 {
            let m = std::mem::take(&mut s.tail_missed);
            s.items.push_back(Item::Missed(m));
        }
        s.items.push_back(Item::Note(n));
        s.notes += 1;
        drop(s);
        self.wake.notify_one();
        true
    }

    fn take(&self) -> Option<Option<Arc<Notification>>> {
        let mut s = self.lock();
        match s.items.pop_front() {
            Some(Item::Note(n)) => {
                s.notes -= 1;
                Some(Some(n))
            }
            Some(Item::Missed(count)) => {
                Some(Some(Arc::new(Notification::Missed(MissedNote { count }))))
            }
            None if s.tail_missed > 0 => {
                let count = std::mem::take(&mut s.tail_missed);
                Some(Some(Arc::new(Notification::Missed(MissedNote { count }))))
            }
            None if s.closed => Some(None),
            None => None,
        }
    }

    /// The next notification (or `MISSED` marker); `None` once closed and drained.
    pub async fn pop(&self) -> Option<Arc<Notification>> {
        loop {
            if let Some(r) = self.take() {
                return r;
            }
            self.wake.notified().await;
        }
    }

    /// The next notification if one is ready.
    pub fn try_pop(&self) -> Option<Arc<Notification>> {
        self.take().flatten()
    }

    /// Stops accepting notifications; `pop` returns `None` once the queue is drained.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

/// One subscriber: its queue and which notification types it wants.
pub struct Subscriber {
    queue: Arc<NotifyQueue>,
    /// Wanted type numbers; empty = all.
    kinds: Vec<u64>,
    /// Connection it belongs to.
    pub(crate) conn: u64,
}

impl Subscriber {
    fn wants(&self, n: &Notification) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&n.number())
    }

    /// The subscriber's queue.
    pub fn queue(&self) -> &Arc<NotifyQueue> {
        &self.queue
    }
}

/// The daemon's handle to push notifications to every subscriber. Cheap to clone; usable
/// from any thread, async or not.
#[derive(Clone, Default)]
pub struct Notifier {
    subs: Arc<ArcSwap<Vec<Arc<Subscriber>>>>,
}

impl Notifier {
    /// A notifier with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers a notification to every subscriber that wants its type. Never blocks.
    /// Returns `true` if at least one subscriber queued it; a subscriber whose queue was
    /// full counts it and will be told with `MISSED`.
    pub fn notify(&self, n: Notification) -> bool {
        let subs = self.subs.load();
        if subs.is_empty() {
            return false;
        }
        let n = Arc::new(n);
        let mut queued = false;
        for s in subs.iter().filter(|s| s.wants(&n)) {
            queued |= s.queue.push(Arc::clone(&n));
        }
        queued
    }

    /// Number of subscribers that want notifications of type `number`.
    pub fn subscribers_for(&self, number: u64) -> usize {
        self.subs
            .load()
            .iter()
            .filter(|s| s.kinds.is_empty() || s.kinds.contains(&number))
            .count()
    }

    /// Number of subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.subs.load().len()
    }

    /// Adds a subscriber (replacing any earlier one of the same connection).
    pub fn subscribe(&self, conn: u64, kinds: Vec<u64>, capacity: usize) -> Arc<Subscriber> {
        let sub = Arc::new(Subscriber {
            queue: Arc::new(NotifyQueue::new(capacity)),
            kinds,
            conn,
        });
        let mut old = Vec::new();
        self.subs.rcu(|cur| {
            old = cur.iter().filter(|s| s.conn == conn).cloned().collect();
            let mut v: Vec<Arc<Subscriber>> =
                cur.iter().filter(|s| s.conn != conn).cloned().collect();
            v.push(Arc::clone(&sub));
            v
        });
        for o in old {
            o.queue.close();
        }
        sub
    }

    /// Removes a connection's subscriber, if any, and closes its queue.
    pub fn unsubscribe(&self, conn: u64) -> bool {
        let mut removed = Vec::new();
        self.subs.rcu(|cur| {
            removed = cur.iter().filter(|s| s.conn == conn).cloned().collect();
            cur.iter()
                .filter(|s| s.conn != conn)
                .cloned()
                .collect::<Vec<_>>()
        });
        for r in &removed {
            r.queue.close();
        }
        !removed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::PeerRef;

    fn rot(id: u32) -> Notification {
        Notification::RotateKey(PeerRef { peerid: id })
    }

    fn drain(q: &NotifyQueue) -> Vec<Notification> {
        std::iter::from_fn(|| q.try_pop().map(|a| (*a).clone())).collect()
    }

    #[test]
    fn overflow_is_marked_where_it_happened() {
        let q = NotifyQueue::new(2);
        assert!(q.push(Arc::new(rot(1))));
        assert!(q.push(Arc::new(rot(2))));
        assert!(!q.push(Arc::new(rot(3))));
        assert!(!q.push(Arc::new(rot(4))));
        assert_eq!(q.try_pop().map(|a| (*a).clone()), Some(rot(1)));
        // Space again: the gap marker goes before the next notification.
        assert!(q.push(Arc::new(rot(5))));
        let rest = drain(&q);
        assert_eq!(
            rest,
            vec![
                rot(2),
                Notification::Missed(MissedNote { count: 2 }),
                rot(5)
            ]
        );
        assert_eq!(q.dropped(), 2);
    }

    #[test]
    fn relayed_gaps_merge_with_local_ones() {
        let q = NotifyQueue::new(1);
        q.push(Arc::new(rot(1)));
        q.push(Arc::new(rot(2))); // dropped locally
        q.push(Arc::new(Notification::Missed(MissedNote { count: 500 })));
        q.push(Arc::new(rot(3))); // dropped locally
        assert_eq!(
            drain(&q),
            vec![rot(1), Notification::Missed(MissedNote { count: 502 })]
        );
    }

    #[test]
    fn trailing_loss_is_reported_without_a_later_notification() {
        let q = NotifyQueue::new(1);
        q.push(Arc::new(rot(1)));
        q.push(Arc::new(rot(2)));
        assert_eq!(
            drain(&q),
            vec![rot(1), Notification::Missed(MissedNote { count: 1 })]
        );
    }

    #[test]
    fn notify_from_plain_threads_counts_everything() {
        let n = Notifier::new();
        let sub = n.subscribe(1, vec![], 64);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let n = n.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        n.notify(rot(t * 1000 + i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut seen = 0u64;
        let mut missed = 0u64;
        for note in drain(sub.queue()) {
            match note {
                Notification::Missed(m) => missed += m.count,
                _ => seen += 1,
            }
        }
        assert_eq!(
            seen + missed,
            4000,
            "every notification is delivered or counted"
        );
        assert_eq!(seen, 64);
    }

    #[test]
    fn filters_and_unsubscribe() {
        let n = Notifier::new();
        let a = n.subscribe(1, vec![1], 8);
        let b = n.subscribe(2, vec![0], 8);
        assert!(n.notify(rot(9)));
        assert_eq!(drain(a.queue()), vec![rot(9)]);
        assert!(drain(b.queue()).is_empty());
        assert_eq!(n.subscribers_for(1), 1);
        assert!(n.unsubscribe(1));
        assert!(!n.notify(rot(10)));
        assert_eq!(n.subscriber_count(), 1);
    }
}
