//! The connection event stream behind `ovpnctl ct watch`.
//!
//! Subscribers get a bounded queue each. The tracker publishes NEW, UPDATE and
//! DESTROY events (never per-packet ones); with no subscriber the cost is one
//! relaxed load. A full queue drops the new event and counts it, so a slow
//! reader is told how many it missed and never slows the data path down.

use crate::snapshot::CtEvent;
use arc_swap::ArcSwap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

struct Sub {
    queue: Mutex<VecDeque<CtEvent>>,
    capacity: usize,
    missed: AtomicU64,
    ready: Condvar,
}

pub(crate) struct EventHub {
    subs: ArcSwap<Vec<Arc<Sub>>>,
    active: AtomicUsize,
}

impl EventHub {
    pub(crate) fn new() -> EventHub {
        EventHub {
            subs: ArcSwap::from_pointee(Vec::new()),
            active: AtomicUsize::new(0),
        }
    }

    /// Whether anyone listens (check before building an event).
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn publish(&self, ev: CtEvent) {
        let subs = self.subs.load();
        let n = subs.len();
        for (i, s) in subs.iter().enumerate() {
            let mut q = s.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if q.len() >= s.capacity {
                s.missed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if i + 1 == n {
                q.push_back(ev);
                drop(q);
                s.ready.notify_one();
                return;
            }
            q.push_back(ev.clone());
            drop(q);
            s.ready.notify_one();
        }
    }
}

/// A subscription to connection events. Dropping it unsubscribes.
pub struct EventSubscription {
    sub: Arc<Sub>,
    hub: Arc<EventHub>,
}

impl EventHub {
    pub(crate) fn subscribe(self: &Arc<Self>, capacity: usize) -> EventSubscription {
        let sub = Arc::new(Sub {
            queue: Mutex::new(VecDeque::with_capacity(capacity.min(65536))),
            capacity: capacity.max(1),
            missed: AtomicU64::new(0),
            ready: Condvar::new(),
        });
        self.subs.rcu(|v| {
            let mut v = Vec::clone(v);
            v.push(sub.clone());
            v
        });
        self.active.fetch_add(1, Ordering::Relaxed);
        EventSubscription {
            sub,
            hub: self.clone(),
        }
    }
}

impl EventSubscription {
    /// Next event, if one is queued.
    pub fn try_recv(&self) -> Option<CtEvent> {
        self.sub
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    /// Next event, waiting up to `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<CtEvent> {
        let q = self
            .sub
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (mut q, _) = self
            .sub
            .ready
            .wait_timeout_while(q, timeout, |q| q.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        q.pop_front()
    }

    /// Move every queued event into `out`; returns how many.
    pub fn drain_into(&self, out: &mut Vec<CtEvent>) -> usize {
        let mut q = self
            .sub
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = q.len();
        out.extend(q.drain(..));
        n
    }

    /// Events dropped because the queue was full since the last call (resets to 0).
    pub fn take_missed(&self) -> u64 {
        self.sub.missed.swap(0, Ordering::Relaxed)
    }
}

impl Drop for EventSubscription {
    fn drop(&mut self) {
        let me = self.sub.clone();
        self.hub.subs.rcu(|v| {
            v.iter()
                .filter(|s| !Arc::ptr_eq(s, &me))
                .cloned()
                .collect::<Vec<_>>()
        });
        self.hub.active.fetch_sub(1, Ordering::Relaxed);
    }
}
