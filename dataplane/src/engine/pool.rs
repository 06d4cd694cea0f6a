//! The crypto pool: a few threads that seal or open the packets of one batch in parallel.
//!
//! [`CryptoPool::for_each_mut`] splits a batch into contiguous chunks, hands all but the first
//! to the pool, does the first itself and returns once every chunk is done. The caller then
//! sends (or writes) the batch in its original order, so the packets of one peer leave in the
//! order they were read, whatever thread sealed them: parallel crypto without reordering.
//
// The only unsafe code of this crate besides `udp::batch`: a lifetime-erased pointer to the
// caller's closure and disjoint element pointers, sound because `run` waits for every task.
#![allow(unsafe_code)]

use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use super::{lock, POLL};

/// Fewest packets worth a chunk of their own: below this, handing work to another thread costs
/// more than the crypto it saves.
pub(crate) const MIN_CHUNK: usize = 8;

type Body = dyn Fn(usize) + Sync;

/// Counts chunks still running; wakes the caller at zero.
struct Latch {
    remaining: AtomicUsize,
    panicked: AtomicBool,
    waiter: Thread,
}

/// One chunk of a batch. The pointers refer to the caller's stack frame, which outlives the task:
/// the caller does not return before the latch reaches zero.
struct Task {
    body: *const Body,
    chunk: usize,
    latch: *const Latch,
}

// SAFETY: `body` is Sync and both pointees outlive the task (see `Task`).
unsafe impl Send for Task {}

/// A raw pointer into a slice, to hand disjoint elements to several threads.
#[derive(Clone, Copy)]
struct Items<T>(*mut T);
// SAFETY: every index is given to exactly one thread (chunks do not overlap), and T is Send.
unsafe impl<T: Send> Send for Items<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Items<T> {}

impl<T> Items<T> {
    /// # Safety
    /// `i` is in bounds and no other reference to element `i` exists while the result lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self, i: usize) -> &mut T {
        // SAFETY: the caller's promise.
        unsafe { &mut *self.0.add(i) }
    }
}

/// The pool. With no threads, everything runs on the caller.
pub(crate) struct CryptoPool {
    tasks: Sender<Task>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    workers: usize,
    stop: Arc<AtomicBool>,
}

impl CryptoPool {
    /// A pool of `workers` threads (0: none).
    pub(crate) fn new(workers: usize) -> Self {
        // Bounded: no allocation per task (an unbounded channel allocates a block every 31).
        let (tasks, rx) = bounded::<Task>(64);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..workers {
            let (rx, stop) = (rx.clone(), Arc::clone(&stop));
            match std::thread::Builder::new().name(format!("crypto-{i}")).spawn(move || worker(&rx, &stop)) {
                Ok(h) => threads.push(h),
                Err(e) => tracing::warn!(error = %e, "cannot start a crypto thread"),
            }
        }
        let workers = threads.len();
        Self { tasks, threads: Mutex::new(threads), workers, stop }
    }

    /// Threads in the pool.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Calls `f(i, &mut a[i], &mut b[i])` for every `i`, in parallel chunks when the batch is
    /// long enough, and returns when all calls are done.
    pub(crate) fn for_each_mut<A: Send, B: Send>(&self, a: &mut [A], b: &mut [B], f: impl Fn(usize, &mut A, &mut B) + Sync) {
        let n = a.len().min(b.len());
        let chunks = (n / MIN_CHUNK).clamp(1, self.workers + 1);
        if chunks == 1 {
            for (i, (x, y)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
                f(i, x, y);
            }
            return;
        }
        let size = n.div_ceil(chunks);
        let (pa, pb) = (Items(a.as_mut_ptr()), Items(b.as_mut_ptr()));
        let body = move |c: usize| {
            let range: Range<usize> = c * size..((c + 1) * size).min(n);
            for i in range {
                // SAFETY: i < n and the chunks are disjoint, so this is the only reference to
                // element i; the slices outlive the call (we wait below).
                let (x, y) = unsafe { (pa.get(i), pb.get(i)) };
                f(i, x, y);
            }
        };
        self.run(chunks, &body);
    }

    fn run<'a>(&self, chunks: usize, body: &'a (dyn Fn(usize) + Sync + 'a)) {
        let latch = Latch { remaining: AtomicUsize::new(chunks - 1), panicked: AtomicBool::new(false), waiter: std::thread::current() };
        // SAFETY: erases the borrow's lifetime for the task; this function does not return (nor
        // unwind) before every task has finished with it.
        let body_ptr: *const Body = unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + 'a), *const Body>(body) };
        for c in 1..chunks {
            if let Err(e) = self.tasks.send(Task { body: body_ptr, chunk: c, latch: &latch }) {
                // No worker left (never happens while the pool lives): run it here.
                run_task(e.into_inner());
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| body(0)));
        while latch.remaining.load(Ordering::Acquire) != 0 {
            std::thread::park();
        }
        if let Err(p) = mine {
            resume_unwind(p);
        }
        assert!(!latch.panicked.load(Ordering::Relaxed), "a crypto task panicked");
    }

    /// Stops and joins the threads.
    pub(crate) fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut *lock(&self.threads)) {
            let _ = t.join();
        }
    }
}

impl Drop for CryptoPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run_task(task: Task) {
    // SAFETY: see `Task`: both pointees are alive until the latch reaches zero, which happens
    // only below.
    let latch = unsafe { &*task.latch };
    // SAFETY: as above, for the closure.
    let r = catch_unwind(AssertUnwindSafe(|| unsafe { (*task.body)(task.chunk) }));
    if r.is_err() {
        latch.panicked.store(true, Ordering::Relaxed);
    }
    let waiter = latch.waiter.clone();
    if latch.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        waiter.unpark();
    }
}

fn worker(rx: &Receiver<Task>, stop: &AtomicBool) {
    loop {
        match rx.recv_timeout(POLL) {
            Ok(task) => run_task(task),
            Err(RecvTimeoutError::Disconnected) => return,
            // Stop only with the queue empty: a caller waits for every task it queued.
            Err(RecvTimeoutError::Timeout) if stop.load(Ordering::Relaxed) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_element_is_visited_once_in_place() {
        for workers in [0, 1, 3] {
            let pool = CryptoPool::new(workers);
            for n in [0, 1, 7, 8, 16, 33, 128] {
                let mut a: Vec<u64> = (0..n as u64).collect();
                let mut b = vec![0usize; n];
                pool.for_each_mut(&mut a, &mut b, |i, x, y| {
                    *x *= 2;
                    *y = i;
                });
                assert_eq!(a, (0..n as u64).map(|v| v * 2).collect::<Vec<_>>());
                assert_eq!(b, (0..n).collect::<Vec<_>>());
            }
            pool.shutdown();
        }
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_after_all_chunks_finish() {
        let pool = CryptoPool::new(2);
        let mut a = vec![0u8; 64];
        let mut b = vec![0u8; 64];
        let r = catch_unwind(AssertUnwindSafe(|| pool.for_each_mut(&mut a, &mut b, |i, _, _| assert!(i != 40))));
        assert!(r.is_err());
        // The pool still works.
        pool.for_each_mut(&mut a, &mut b, |_, x, _| *x = 1);
        assert!(a.iter().all(|&x| x == 1));
        pool.shutdown();
    }
}
