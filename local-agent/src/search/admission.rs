//! Who computes next when searches queue for the CPU: requests from the cloud go first.
//!
//! A cloud request carries a deadline (the cloud gives up after a few seconds and answers from
//! cache or template); a local HTTP caller can wait, or is turned away by the API's concurrency
//! cap. So searches run through one gate of `capacity` slots (about one per core: the work is
//! CPU-bound, more at once only lengthens every one of them), and a local search may take a
//! free slot only while no cloud search is waiting for one. A flood of local requests therefore
//! delays a cloud request by at most the searches already running.

use std::sync::{Condvar, Mutex, MutexGuard};

/// Where a search came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Through the tunnel, with the cloud waiting on a deadline: served first.
    Cloud,
    /// The loopback HTTP API or the CLI.
    Local,
}

#[derive(Debug, Default)]
struct Slots {
    running: usize,
    cloud_waiting: usize,
}

/// The gate; blocking (searches run on blocking threads).
#[derive(Debug)]
pub struct Admission {
    capacity: usize,
    slots: Mutex<Slots>,
    freed: Condvar,
}

impl Admission {
    /// A gate running at most `capacity` searches at once (at least one).
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), slots: Mutex::new(Slots::default()), freed: Condvar::new() }
    }

    /// A gate with a slot per available core.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Runs `work` in a slot of `lane`, waiting for one as the lane's priority allows.
    pub fn run<T>(&self, lane: Lane, work: impl FnOnce() -> T) -> T {
        let _slot = self.enter(lane);
        work()
    }

    fn enter(&self, lane: Lane) -> Slot<'_> {
        let mut slots = self.lock();
        match lane {
            Lane::Cloud => {
                slots.cloud_waiting += 1;
                while slots.running >= self.capacity {
                    slots = self.freed.wait(slots).unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                slots.cloud_waiting -= 1;
            }
            Lane::Local => {
                while slots.running >= self.capacity || slots.cloud_waiting > 0 {
                    slots = self.freed.wait(slots).unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            }
        }
        slots.running += 1;
        Slot(self)
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A taken slot; freed when dropped, also when the work panics.
struct Slot<'a>(&'a Admission);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.lock().running -= 1;
        // Every waiter re-checks: a waiting cloud search must see the slot before local ones.
        self.0.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_waiting_cloud_search_goes_before_waiting_local_ones() {
        let gate = Arc::new(Admission::new(1));
        let (order_tx, order) = mpsc::channel();
        let (release_tx, release) = mpsc::channel::<()>();
        // One local search holds the only slot until released.
        let holder = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.run(Lane::Local, || release.recv().unwrap()))
        };
        std::thread::sleep(Duration::from_millis(50));
        let mut waiters = Vec::new();
        for (lane, name) in [(Lane::Local, "local-1"), (Lane::Local, "local-2"), (Lane::Cloud, "cloud")] {
            let (gate, order_tx) = (gate.clone(), order_tx.clone());
            waiters.push(std::thread::spawn(move || gate.run(lane, || order_tx.send(name).unwrap())));
            std::thread::sleep(Duration::from_millis(50));
        }
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        waiters.into_iter().for_each(|waiter| waiter.join().unwrap());
        let order: Vec<&str> = order.try_iter().collect();
        assert_eq!(order[0], "cloud", "{order:?}");
        assert_eq!(order.len(), 3);
    }

    #[test]
    fn a_panicking_search_frees_its_slot() {
        let gate = Admission::new(1);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gate.run(Lane::Local, || panic!("x"))));
        assert!(panicked.is_err());
        assert_eq!(gate.run(Lane::Cloud, || 7), 7, "the slot came back");
    }
}
