//! Admission: at most `workers` answers are generated at once, at most `queue` more wait for a
//! worker, and a request beyond both is refused at once with 503 and a `Retry-After` estimate
//! instead of piling up. A request holds its place from [`Admission::enter`] until its
//! [`Running`] (or [`Waiting`], if it never started) is dropped, so a client that hangs up
//! frees its place.

use super::error::ApiError;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The gate every generating request passes.
pub struct Admission {
    workers: usize,
    queue: usize,
    permits: Arc<Semaphore>,
    /// Requests admitted and not finished: waiting plus running.
    admitted: AtomicUsize,
    /// Requests holding a worker.
    running: AtomicUsize,
    /// Moving average of how long a request holds a worker, in µs (for `Retry-After`).
    service_us: AtomicU64,
}

/// One admitted request's place; given back when dropped.
struct Place(Arc<Admission>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request with a place in the queue.
pub struct Waiting {
    place: Place,
    since: Instant,
}

/// A request holding a worker; dropping it frees the worker and the place.
pub struct Running {
    place: Place,
    _permit: OwnedSemaphorePermit,
    /// How long it waited for the worker.
    pub queued: Duration,
    started: Instant,
}

impl Admission {
    pub fn new(workers: usize, queue: usize) -> Arc<Admission> {
        Arc::new(Admission {
            workers,
            queue,
            permits: Arc::new(Semaphore::new(workers)),
            admitted: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            service_us: AtomicU64::new(1_000_000),
        })
    }

    /// Takes a place, or refuses with 503 when `workers + queue` requests are already in.
    pub fn enter(self: &Arc<Self>) -> Result<Waiting, ApiError> {
        let capacity = self.workers + self.queue;
        match self.admitted.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < capacity).then_some(n + 1)) {
            Ok(_) => Ok(Waiting { place: Place(self.clone()), since: Instant::now() }),
            Err(_) => Err(ApiError::overloaded(self.workers, self.queue, self.retry_after_s())),
        }
    }

    /// Seconds until a place is likely free: the queue ahead, served `workers` at a time at the
    /// recent mean service time; at least 1, at most 60.
    fn retry_after_s(&self) -> u64 {
        let rounds = (self.admitted.load(Ordering::Acquire) as f64 / self.workers as f64).max(1.0);
        let seconds = rounds * self.service_us.load(Ordering::Relaxed) as f64 / 1e6;
        (seconds.ceil() as u64).clamp(1, 60)
    }

    /// Requests waiting for a worker now.
    pub fn queue_depth(&self) -> usize {
        self.admitted.load(Ordering::Acquire).saturating_sub(self.running.load(Ordering::Acquire))
    }

    /// Requests holding a worker now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn queue_capacity(&self) -> usize {
        self.queue
    }
}

impl Waiting {
    /// Waits for a free worker.
    pub async fn start(self) -> Running {
        let gate = &self.place.0;
        let permit = gate.permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        gate.running.fetch_add(1, Ordering::AcqRel);
        Running { _permit: permit, queued: self.since.elapsed(), started: Instant::now(), place: self.place }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let gate = &self.place.0;
        // Moving average over roughly the last five requests: α = 0.2.
        let us = self.started.elapsed().as_micros() as u64;
        let old = gate.service_us.load(Ordering::Relaxed);
        gate.service_us.store((old * 4 + us) / 5, Ordering::Relaxed);
        gate.running.fetch_sub(1, Ordering::AcqRel);
        // Then `place` drops and gives the place back.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn workers_then_queue_then_refusal_and_places_come_back() {
        let gate = Admission::new(1, 1);
        let first = gate.enter().unwrap().start().await;
        assert_eq!((gate.running(), gate.queue_depth()), (1, 0));
        let second = gate.enter().unwrap();
        assert_eq!(gate.queue_depth(), 1);
        // One worker busy, one request waiting: the third is refused with the reason and a retry.
        let refused = gate.enter().err().unwrap();
        assert_eq!(refused.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.message.contains("all 1 workers are answering and 1 requests are already waiting"), "{}", refused.message);
        assert!((1..=60).contains(&refused.retry_after_s.unwrap()));
        // The waiting one starts only when the worker is free.
        let start = tokio::spawn(second.start());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!start.is_finished());
        drop(first);
        let second = start.await.unwrap();
        assert_eq!((gate.running(), gate.queue_depth()), (1, 0));
        // A request that gives up while waiting gives its place back.
        let waiting = gate.enter().unwrap();
        assert!(gate.enter().is_err());
        drop(waiting);
        let again = gate.enter().unwrap();
        drop((again, second));
        assert_eq!((gate.running(), gate.queue_depth()), (0, 0));
    }
}
