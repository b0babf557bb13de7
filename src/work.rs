//! Heavy work off the async workers: bounded pools with a time budget.
//!
//! The async workers answer `/healthz`, cached tiles and the live streams;
//! they must never be busy for long. Everything that can take a while (a
//! query over a district, an export's rows, a tile render, a plan's
//! validation, stats) runs here instead, on one of two lanes:
//!
//! - [`Lane::Tiles`]: tile renders. Short jobs at normal priority, so a
//!   cold tile never waits behind a district-wide query.
//! - [`Lane::Heavy`]: queries, exports, validation, stats. Its threads run
//!   at a lower scheduling priority (nice 10 on Linux), so while they
//!   saturate the cores the async workers and the tile lane still get the
//!   CPU the moment they need it.
//!
//! Each lane has a fixed number of threads and a bounded queue: a job that
//! finds the queue full is refused at once ([`WorkError::Busy`], a 503 with
//! `Retry-After`), never queued without end. Each job has a time budget:
//! when it runs out the caller gets [`WorkError::OverBudget`] at once, and
//! the job stops at its next [`checkpoint`]. A job whose caller went away
//! (the client closed the connection, so the handler's future was dropped)
//! stops the same way.
//!
//! Stopping is cooperative: long loops call [`checkpoint`], which unwinds
//! the job (with `resume_unwind`, so no panic message is printed) once its
//! budget is spent or it was cancelled. The pool catches the unwind. Jobs
//! hold only immutable snapshots (`Arc<Catalog>`), so an unwound job leaves
//! nothing half-changed; no job may hold a lock across a checkpoint.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Which pool a job runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Tiles,
    Heavy,
}

/// Sizes and budgets of the two lanes.
#[derive(Clone, Debug)]
pub struct WorkConfig {
    /// Threads per lane (default: the number of cores).
    pub threads: usize,
    /// Jobs that may wait per lane beyond those running.
    pub queue: usize,
    /// Time budget of a heavy job (queries, exports, validation).
    pub heavy_budget: Duration,
    /// Time budget of a tile render.
    pub tile_budget: Duration,
}

impl Default for WorkConfig {
    fn default() -> Self {
        WorkConfig {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            queue: 64,
            heavy_budget: Duration::from_secs(30),
            tile_budget: Duration::from_secs(10),
        }
    }
}

/// Why a job gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkError {
    /// The lane's queue is full: try again in a moment.
    Busy { lane: Lane, queued: usize },
    /// The job ran out of its budget and was stopped.
    OverBudget { budget: Duration },
    /// The job failed (a bug: it panicked).
    Failed(String),
}

impl std::fmt::Display for WorkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkError::Busy { lane, queued } => write!(
                f,
                "the server is busy: {queued} {} jobs are already waiting; try again shortly",
                match lane {
                    Lane::Tiles => "tile",
                    Lane::Heavy => "query",
                }
            ),
            WorkError::OverBudget { budget } => write!(
                f,
                "the request took longer than its budget of {} s and was stopped; \
                 narrow the area, the layers or the filter, or try again later",
                budget.as_secs_f64()
            ),
            WorkError::Failed(m) => write!(f, "the work failed: {m}"),
        }
    }
}

/// The unwind payload of a stopped job.
struct Stopped;

/// One job's budget and cancel flag.
struct Ticket {
    deadline: Instant,
    cancelled: AtomicBool,
}

impl Ticket {
    fn spent(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Ticket>>> = const { RefCell::new(None) };
    static TICKS: Cell<u32> = const { Cell::new(0) };
}

/// Stops the current job if its budget is spent or its caller went away.
/// Cheap: it looks at the clock once every 64 calls. Outside a job (tests,
/// the live writer) it does nothing.
pub fn checkpoint() {
    let n = TICKS.with(|t| {
        let n = t.get().wrapping_add(1);
        t.set(n);
        n
    });
    if n % 64 != 0 {
        return;
    }
    let spent = CURRENT.with(|c| c.borrow().as_ref().is_some_and(|t| t.spent()));
    if spent {
        std::panic::resume_unwind(Box::new(Stopped));
    }
}

/// One lane: threads, a bounded queue and a budget.
struct Pool {
    threads: rayon::ThreadPool,
    slots: Arc<tokio::sync::Semaphore>,
    capacity: usize,
    budget: Duration,
}

/// The two lanes, shared by every request.
pub struct Work {
    tiles: Pool,
    heavy: Pool,
    /// Jobs stopped for their budget or their caller (for logs and tests).
    pub stopped: AtomicU64,
}

impl Work {
    pub fn new(cfg: &WorkConfig) -> Work {
        let threads = cfg.threads.max(1);
        Work {
            tiles: Pool::new(Lane::Tiles, threads, cfg.queue, cfg.tile_budget, 0),
            heavy: Pool::new(Lane::Heavy, threads, cfg.queue, cfg.heavy_budget, 10),
            stopped: AtomicU64::new(0),
        }
    }

    /// The budget of a lane's jobs.
    pub fn budget(&self, lane: Lane) -> Duration {
        self.pool(lane).budget
    }

    fn pool(&self, lane: Lane) -> &Pool {
        match lane {
            Lane::Tiles => &self.tiles,
            Lane::Heavy => &self.heavy,
        }
    }

    /// Runs `f` on `lane` and waits for its answer. Dropping the returned
    /// future (the client went away) cancels the job.
    pub async fn run<T, F>(&self, lane: Lane, f: F) -> Result<T, WorkError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.run_inner(lane, f, true).await
    }

    /// Like [`Work::run`], but the job goes on when the caller goes away
    /// (a tile render that other requests are waiting for).
    pub async fn run_detached<T, F>(&self, lane: Lane, f: F) -> Result<T, WorkError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.run_inner(lane, f, false).await
    }

    async fn run_inner<T, F>(&self, lane: Lane, f: F, cancel_on_drop: bool) -> Result<T, WorkError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let pool = self.pool(lane);
        let permit = pool
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| WorkError::Busy {
                lane,
                queued: pool.capacity,
            })?;
        let ticket = Arc::new(Ticket {
            deadline: Instant::now() + pool.budget,
            cancelled: AtomicBool::new(false),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, Option<String>>>();
        let job = ticket.clone();
        pool.threads.spawn(move || {
            let _permit = permit;
            if job.spent() {
                // Waited out its budget in the queue, or nobody wants it.
                let _ = tx.send(Err(None));
                return;
            }
            CURRENT.with(|c| *c.borrow_mut() = Some(job));
            let r = std::panic::catch_unwind(AssertUnwindSafe(f));
            CURRENT.with(|c| *c.borrow_mut() = None);
            let r = match r {
                Ok(v) => Ok(v),
                Err(p) if p.is::<Stopped>() => Err(None),
                Err(p) => Err(Some(
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panicked".to_string()),
                )),
            };
            let _ = tx.send(r);
        });
        let guard = CancelOnDrop {
            ticket: cancel_on_drop.then(|| ticket.clone()),
        };
        let out = match tokio::time::timeout(pool.budget, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(None))) => {
                self.stopped.fetch_add(1, Ordering::Relaxed);
                Err(WorkError::OverBudget {
                    budget: pool.budget,
                })
            }
            Ok(Ok(Err(Some(m)))) => Err(WorkError::Failed(m)),
            Ok(Err(_)) => Err(WorkError::Failed("the job was lost".into())),
            Err(_) => {
                ticket.cancelled.store(true, Ordering::Relaxed);
                self.stopped.fetch_add(1, Ordering::Relaxed);
                Err(WorkError::OverBudget {
                    budget: pool.budget,
                })
            }
        };
        drop(guard);
        out
    }
}

/// Cancels a job when the future waiting for it is dropped before it ends.
struct CancelOnDrop {
    ticket: Option<Arc<Ticket>>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.ticket {
            t.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

impl Pool {
    fn new(lane: Lane, threads: usize, queue: usize, budget: Duration, nice: i32) -> Pool {
        let name = match lane {
            Lane::Tiles => "onemap-tiles",
            Lane::Heavy => "onemap-heavy",
        };
        let built = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("{name}-{i}"))
            .start_handler(move |_| lower_priority(nice))
            .build();
        let threads_pool = match built {
            Ok(p) => p,
            // Only fails when threads cannot be spawned at all; one more
            // try with rayon's defaults, else there is nothing to run on.
            Err(e) => {
                tracing::error!("cannot start the {name} pool: {e}");
                rayon::ThreadPoolBuilder::new()
                    .build()
                    .unwrap_or_else(|e| panic!("no threads for the {name} pool: {e}"))
            }
        };
        let capacity = threads + queue;
        Pool {
            threads: threads_pool,
            slots: Arc::new(tokio::sync::Semaphore::new(capacity)),
            capacity,
            budget,
        }
    }
}

/// Lowers the calling thread's scheduling priority (Linux keeps a nice
/// value per thread).
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority with PRIO_PROCESS and who = 0 changes only the
    // calling thread's nice value on Linux; it touches no memory of ours.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, nice) != 0 {
            tracing::debug!("setpriority: {}", std::io::Error::last_os_error());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(budget_ms: u64, queue: usize) -> Work {
        Work::new(&WorkConfig {
            threads: 1,
            queue,
            heavy_budget: Duration::from_millis(budget_ms),
            tile_budget: Duration::from_millis(budget_ms),
        })
    }

    #[tokio::test]
    async fn answers_and_stops_over_budget() {
        let w = small(200, 4);
        assert_eq!(w.run(Lane::Heavy, || 41 + 1).await, Ok(42));
        let stopped = Arc::new(AtomicBool::new(false));
        let s2 = stopped.clone();
        let t0 = Instant::now();
        let r = w
            .run(Lane::Heavy, move || {
                struct Mark(Arc<AtomicBool>);
                impl Drop for Mark {
                    fn drop(&mut self) {
                        self.0.store(true, Ordering::SeqCst);
                    }
                }
                let _m = Mark(s2);
                loop {
                    checkpoint();
                    std::hint::spin_loop();
                }
            })
            .await;
        assert!(matches!(r, Err(WorkError::OverBudget { .. })), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        // The job itself unwinds soon after.
        for _ in 0..100 {
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(stopped.load(Ordering::SeqCst), "the job did not stop");
        // The lane is usable again.
        assert_eq!(w.run(Lane::Heavy, || "ok").await, Ok("ok"));
    }

    #[tokio::test]
    async fn a_dropped_caller_cancels_its_job() {
        let w = Arc::new(small(60_000, 4));
        let ran = Arc::new(AtomicBool::new(false));
        let r2 = ran.clone();
        let w2 = w.clone();
        let h = tokio::spawn(async move {
            w2.run(Lane::Heavy, move || {
                loop {
                    r2.store(true, Ordering::SeqCst);
                    checkpoint();
                }
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.abort();
        let _ = h.await;
        // The one thread is free again: a new job answers.
        let r = tokio::time::timeout(Duration::from_secs(5), w.run(Lane::Heavy, || 7)).await;
        assert_eq!(r, Ok(Ok(7)));
        assert!(ran.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let w = Arc::new(small(2_000, 1));
        let release = Arc::new(AtomicBool::new(false));
        let mut hs = Vec::new();
        // One running (waiting for the release) and one queued fill the lane.
        for _ in 0..2 {
            let (w, r) = (w.clone(), release.clone());
            hs.push(tokio::spawn(async move {
                w.run(Lane::Heavy, move || {
                    while !r.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
                .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = w.run(Lane::Heavy, || ()).await;
        assert!(matches!(r, Err(WorkError::Busy { .. })), "{r:?}");
        // The tile lane is separate.
        assert_eq!(w.run(Lane::Tiles, || 1).await, Ok(1));
        release.store(true, Ordering::SeqCst);
        for h in hs {
            assert_eq!(h.await.ok(), Some(Ok(())));
        }
    }

    #[tokio::test]
    async fn a_panic_is_a_failure_not_a_crash() {
        // A generous budget: the panic hook may print a backtrace first.
        let w = small(60_000, 1);
        let r: Result<(), _> = w.run(Lane::Heavy, || panic!("bug")).await;
        assert_eq!(r, Err(WorkError::Failed("bug".into())));
        assert_eq!(w.run(Lane::Heavy, || 1).await, Ok(1));
    }
}
