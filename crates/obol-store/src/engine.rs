//! The server's writer: one thread that coalesces concurrent requests into one record, persists
//! it with one sync (group commit), applies it, and answers every request in it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use obol_core::codec::{RECORD_EVENTS_MAX, RECORD_PUT_BYTES_MAX};
use obol_core::ledger::{Ledger, OpResults};
use obol_core::record::{Op, Record};
use tokio::sync::oneshot;

use crate::{Node, Store};

/// Requests that may wait for the writer before new ones are refused as overloaded.
pub const QUEUE_DEPTH_MAX: usize = 4096;

/// How long the writer sleeps when idle before it checks for expiring pending transfers.
const IDLE_WAKE_MS: u64 = 100;

/// Why a request got no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The queue is full; the caller should retry later.
    #[error("the ledger is overloaded; retry shortly")]
    Overloaded,
    /// The store failed and the engine stopped; nothing more is accepted.
    #[error("the ledger stopped after a storage failure")]
    Stopped,
    /// A metadata read or write failed; the ledger goes on.
    #[error("metadata storage failed: {0}")]
    Meta(String),
    /// The request cannot be written to the log exactly as it is (a field too long, too many
    /// events); nothing was written.
    #[error("{0}")]
    Unencodable(obol_core::codec::EncodeError),
}

/// Ops that go into one record together, and who waits for their results.
struct Submission {
    ops: Vec<Op>,
    reply: Reply,
}

enum Reply {
    One(oneshot::Sender<Result<OpResults, EngineError>>),
    All(oneshot::Sender<Result<Vec<OpResults>, EngineError>>),
}

impl Submission {
    fn events(&self) -> usize {
        self.ops.iter().map(Op::len).sum()
    }

    fn put_bytes(&self) -> usize {
        self.ops.iter().map(Op::put_bytes).sum()
    }
}

impl Reply {
    fn fail(self, error: EngineError) {
        match self {
            Reply::One(reply) => {
                let _ = reply.send(Err(error));
            }
            Reply::All(reply) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    fn answer(self, results: Vec<OpResults>) {
        match self {
            Reply::One(reply) => {
                let _ = reply.send(results.into_iter().next().ok_or(EngineError::Stopped));
            }
            Reply::All(reply) => {
                let _ = reply.send(Ok(results));
            }
        }
    }
}

type MetaReply<T> = oneshot::Sender<Result<T, EngineError>>;

/// A metadata read or write. The writer does it between records, so it is ordered with them and
/// the store is only ever touched by one thread.
enum MetaJob {
    Get { key: String, reply: MetaReply<Option<Vec<u8>>> },
    Put { key: String, value: Vec<u8>, reply: MetaReply<()> },
    Scan { prefix: String, reply: MetaReply<Vec<(String, Vec<u8>)>> },
    Erase { keys: Vec<String>, reply: MetaReply<()> },
}

enum Job {
    Op(Submission),
    Meta(MetaJob),
    /// Sent by `shutdown` after everything queued before it: the writer stops on it at once.
    Close,
}

impl Job {
    fn refuse(self) {
        match self {
            Job::Op(submission) => submission.reply.fail(EngineError::Stopped),
            Job::Meta(MetaJob::Get { reply, .. }) => {
                let _ = reply.send(Err(EngineError::Stopped));
            }
            Job::Meta(MetaJob::Put { reply, .. }) => {
                let _ = reply.send(Err(EngineError::Stopped));
            }
            Job::Meta(MetaJob::Scan { reply, .. }) => {
                let _ = reply.send(Err(EngineError::Stopped));
            }
            Job::Meta(MetaJob::Erase { reply, .. }) => {
                let _ = reply.send(Err(EngineError::Stopped));
            }
            Job::Close => {}
        }
    }
}

fn run_meta<S: Store>(node: &mut Node<S>, job: MetaJob) {
    let failed = |error: crate::StoreError| EngineError::Meta(error.to_string());
    match job {
        MetaJob::Get { key, reply } => {
            let _ = reply.send(node.store_mut().meta_get(&key).map_err(failed));
        }
        MetaJob::Put { key, value, reply } => {
            let _ = reply.send(node.store_mut().meta_put(&key, &value).map_err(failed));
        }
        MetaJob::Scan { prefix, reply } => {
            let _ = reply.send(node.store_mut().meta_scan(&prefix).map_err(failed));
        }
        MetaJob::Erase { keys, reply } => {
            let _ = reply.send(node.store_mut().meta_erase(&keys).map_err(failed));
        }
    }
}

/// Counters the engine keeps for metrics and benchmarks.
#[derive(Default, Debug)]
pub struct EngineStats {
    /// Records committed.
    pub records: AtomicU64,
    /// Events committed.
    pub events: AtomicU64,
}

/// Handle to the writer thread. Cloning is cheap; the thread stops when every handle is gone.
#[derive(Clone)]
pub struct Engine {
    sender: SyncSender<Job>,
    ledger: Arc<RwLock<Ledger>>,
    audit: Arc<RwLock<obol_core::audit::Log>>,
    stopped: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    stats: Arc<EngineStats>,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Engine {
    /// Starts the writer thread over an opened node.
    #[expect(
        clippy::expect_used,
        reason = "a process that cannot start its writer thread cannot serve; it stops at start, before any request"
    )]
    pub fn start<S: Store + 'static>(node: Node<S>) -> Engine {
        let (sender, receiver) = sync_channel(QUEUE_DEPTH_MAX);
        let ledger = node.ledger();
        // A node measured without its audit log leaves the engine's empty.
        let audit = node.audit().unwrap_or_default();
        let stopped = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(EngineStats::default());
        let closing = Arc::new(AtomicBool::new(false));
        let thread = {
            let stopped = Arc::clone(&stopped);
            let closing = Arc::clone(&closing);
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name("obol-writer".into())
                .spawn(move || {
                    // However the writer ends (a store failure, a bug that panics), the engine
                    // is marked stopped, so every later request answers "unavailable" and
                    // `/readyz` turns 503 instead of the server looking healthy with no writer.
                    let _stop_on_exit = StopOnExit(Arc::clone(&stopped));
                    writer(node, receiver, stopped, closing, stats)
                })
                .expect("spawning the writer thread")
        };
        Engine { sender, ledger, audit, stopped, closing, stats, thread: Arc::new(std::sync::Mutex::new(Some(thread))) }
    }

    /// Submits one request without blocking; the answer arrives when its record is durable.
    pub fn submit(&self, op: Op) -> Result<oneshot::Receiver<Result<OpResults, EngineError>>, EngineError> {
        op.check_encodable().map_err(EngineError::Unencodable)?;
        if self.stopped.load(Ordering::Acquire) {
            return Err(EngineError::Stopped);
        }
        let (reply, receiver) = oneshot::channel();
        match self.sender.try_send(Job::Op(Submission { ops: vec![op], reply: Reply::One(reply) })) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => Err(EngineError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(EngineError::Stopped),
        }
    }

    /// Submits one request, waiting for room in the queue (for benchmarks and batch tools).
    pub fn submit_blocking(&self, op: Op) -> Result<oneshot::Receiver<Result<OpResults, EngineError>>, EngineError> {
        op.check_encodable().map_err(EngineError::Unencodable)?;
        let (reply, receiver) = oneshot::channel();
        let submission = Submission { ops: vec![op], reply: Reply::One(reply) };
        self.sender.send(Job::Op(submission)).map_err(|_| EngineError::Stopped)?;
        Ok(receiver)
    }

    async fn meta<T>(&self, job: impl FnOnce(MetaReply<T>) -> MetaJob) -> Result<T, EngineError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(EngineError::Stopped);
        }
        let (reply, receiver) = oneshot::channel();
        match self.sender.try_send(Job::Meta(job(reply))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(EngineError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(EngineError::Stopped),
        }
        receiver.await.unwrap_or(Err(EngineError::Stopped))
    }

    /// Reads a metadata value (through the writer, after everything submitted before it).
    pub async fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, EngineError> {
        let key = key.to_string();
        self.meta(|reply| MetaJob::Get { key, reply }).await
    }

    /// Writes a metadata value durably (through the writer, after everything submitted before it).
    pub async fn meta_put(&self, key: &str, value: Vec<u8>) -> Result<(), EngineError> {
        let key = key.to_string();
        self.meta(|reply| MetaJob::Put { key, value, reply }).await
    }

    /// Every metadata entry whose key starts with `prefix`, in key order.
    pub async fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, EngineError> {
        let prefix = prefix.to_string();
        self.meta(|reply| MetaJob::Scan { prefix, reply }).await
    }

    /// Deletes metadata values and scrubs every copy of them from the store's files, once for
    /// all of them ([`crate::Store::meta_erase`]), through the writer, after everything
    /// submitted before it.
    pub async fn meta_erase(&self, keys: Vec<String>) -> Result<(), EngineError> {
        self.meta(|reply| MetaJob::Erase { keys, reply }).await
    }

    /// Writes `value` under `key` in the state table through the log: durable, in the log's
    /// order, and replayed at start (an empty value removes the key).
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), EngineError> {
        let op = Op::Put(obol_core::table::Put { key: key.to_string(), value });
        self.execute(op).await.map(|_| ())
    }

    /// A value of the state table (what every applied, hence durable, put left).
    pub fn table_get(&self, key: &str) -> Option<Vec<u8>> {
        let ledger = self.ledger.read().unwrap_or_else(|p| p.into_inner());
        ledger.table().get(key).map(<[u8]>::to_vec)
    }

    /// Every state-table entry whose key starts with `prefix`, in key order.
    pub fn table_scan(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let ledger = self.ledger.read().unwrap_or_else(|p| p.into_inner());
        ledger.table().scan(prefix).map(|(key, value)| (key.to_string(), value.to_vec())).collect()
    }

    /// Up to `limit` values under `prefix` whose key sorts before `before`, last key first
    /// ([`obol_core::table::Table::scan_back`]): one page, without copying the rest.
    pub fn table_scan_back(&self, prefix: &str, before: Option<&str>, limit: usize) -> Vec<(String, Vec<u8>)> {
        let ledger = self.ledger.read().unwrap_or_else(|p| p.into_inner());
        ledger.table().scan_back(prefix, before, limit).map(|(key, value)| (key.to_string(), value.to_vec())).collect()
    }

    /// Submits `ops` to be applied in one record, in order, all durable or none, and waits for
    /// their results (one per op).
    pub async fn execute_together(&self, ops: Vec<Op>) -> Result<Vec<OpResults>, EngineError> {
        for op in &ops {
            op.check_encodable().map_err(EngineError::Unencodable)?;
        }
        let submission_events: usize = ops.iter().map(Op::len).sum();
        let put_bytes: usize = ops.iter().map(Op::put_bytes).sum();
        if submission_events > RECORD_EVENTS_MAX || put_bytes > RECORD_PUT_BYTES_MAX {
            return Err(EngineError::Unencodable(obol_core::codec::EncodeError::TooManyEvents));
        }
        if self.stopped.load(Ordering::Acquire) {
            return Err(EngineError::Stopped);
        }
        let (reply, receiver) = oneshot::channel();
        match self.sender.try_send(Job::Op(Submission { ops, reply: Reply::All(reply) })) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(EngineError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(EngineError::Stopped),
        }
        receiver.await.unwrap_or(Err(EngineError::Stopped))
    }

    /// Submits and waits for the result (async).
    pub async fn execute(&self, op: Op) -> Result<OpResults, EngineError> {
        let receiver = self.submit(op)?;
        receiver.await.unwrap_or(Err(EngineError::Stopped))
    }

    /// The audit log, one entry per durable record (readers take the read lock).
    pub fn audit(&self) -> &Arc<RwLock<obol_core::audit::Log>> {
        &self.audit
    }

    /// The shared ledger (readers take the read lock).
    pub fn ledger(&self) -> &Arc<RwLock<Ledger>> {
        &self.ledger
    }

    /// Whether the engine stopped after a storage failure.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Records and events committed so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Lets the writer finish what is queued, then stops it and waits for it. Requests
    /// submitted after the queue drains are answered `Stopped`.
    pub fn shutdown(self) {
        self.closing.store(true, Ordering::Release);
        // Wakes the writer now rather than at its next idle check (a full queue wakes it anyway).
        let _ = self.sender.try_send(Job::Close);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        self.stopped.store(true, Ordering::Release);
    }
}

/// Marks the engine stopped when dropped: at the writer's end, panics included.
struct StopOnExit(Arc<AtomicBool>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the writer thread panicked; the ledger stops");
        }
        self.0.store(true, Ordering::Release);
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

fn writer<S: Store>(
    mut node: Node<S>,
    receiver: Receiver<Job>,
    stopped: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    stats: Arc<EngineStats>,
) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match receiver.recv_timeout(Duration::from_millis(IDLE_WAKE_MS)) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) if closing.load(Ordering::Acquire) => return,
                Err(RecvTimeoutError::Timeout) => {
                    let due = node.ledger().read().map(|l| l.next_expiry_ns()).unwrap_or(None);
                    let now = now_ns();
                    if due.is_some_and(|at| at <= now) {
                        let record = Record { now_ns: now, ops: Vec::new() };
                        if let Err(error) = node.commit(&record) {
                            tracing::error!(%error, "storage failed; the ledger stops");
                            stopped.store(true, Ordering::Release);
                            fail_all(&receiver, &closing);
                            return;
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            },
        };
        let first = match first {
            Job::Meta(job) => {
                run_meta(&mut node, job);
                continue;
            }
            Job::Close if closing.load(Ordering::Acquire) => return,
            Job::Close => continue,
            Job::Op(submission) => submission,
        };
        let mut events_count = first.events();
        let mut put_bytes = first.put_bytes();
        let mut batch = vec![first];
        while events_count < RECORD_EVENTS_MAX {
            match receiver.try_recv() {
                Ok(job @ (Job::Meta(_) | Job::Close)) => {
                    carried = Some(job);
                    break;
                }
                Ok(Job::Op(submission))
                    if events_count + submission.events() > RECORD_EVENTS_MAX
                        || put_bytes + submission.put_bytes() > RECORD_PUT_BYTES_MAX =>
                {
                    carried = Some(Job::Op(submission));
                    break;
                }
                Ok(Job::Op(submission)) => {
                    events_count += submission.events();
                    put_bytes += submission.put_bytes();
                    batch.push(submission);
                }
                Err(_) => break,
            }
        }
        let mut ops = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for submission in batch {
            let Submission { ops: these, reply } = submission;
            waiting.push((these.len(), reply));
            ops.extend(these);
        }
        let record = Record { now_ns: now_ns(), ops };
        match node.commit(&record) {
            Ok(results) => {
                stats.records.fetch_add(1, Ordering::Relaxed);
                stats.events.fetch_add(events_count as u64, Ordering::Relaxed);
                metrics::histogram!("obol_batch_events").record(events_count as f64);
                metrics::histogram!("obol_batch_requests").record(waiting.len() as f64);
                let mut results = results.into_iter();
                for (count, reply) in waiting {
                    let these: Vec<OpResults> = results.by_ref().take(count).collect();
                    reply.answer(these);
                }
            }
            Err(error) => {
                tracing::error!(%error, "storage failed; the ledger stops");
                stopped.store(true, Ordering::Release);
                for (_, reply) in waiting {
                    reply.fail(EngineError::Stopped);
                }
                if let Some(job) = carried.take() {
                    job.refuse();
                }
                fail_all(&receiver, &closing);
                return;
            }
        }
    }
}

/// After a storage failure: refuses every job until the engine is shut down (or every handle is
/// gone). `shutdown` holds a handle itself, so waiting only for the handles would never end.
fn fail_all(receiver: &Receiver<Job>, closing: &AtomicBool) {
    loop {
        match receiver.recv_timeout(Duration::from_millis(IDLE_WAKE_MS)) {
            Ok(Job::Close) if closing.load(Ordering::Acquire) => return,
            Ok(job) => job.refuse(),
            Err(RecvTimeoutError::Timeout) if closing.load(Ordering::Acquire) => {
                while let Ok(job) = receiver.try_recv() {
                    job.refuse();
                }
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
