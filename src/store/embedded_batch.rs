//! Group commit for the embedded store's writes.
//!
//! redb fsyncs on every commit (about 0.4 ms here), so one transaction per
//! write caps a SCIM import at a couple of thousand users a second however
//! many requests arrive together. Writes queue here instead; one committer
//! at a time takes everything queued (up to `MAX_BATCH`), runs the writes
//! one after another in a single write transaction and commits once. Each
//! caller hears back only after that commit returned, so a 201 still means
//! "on disk".
//!
//! Every write stays atomic on its own. A write that fails may have changed
//! the transaction half-way and redb has no savepoint inside a transaction,
//! so a failure at position k aborts the transaction, re-runs the k writes
//! before it (deterministic: they succeeded on the same state before) and
//! commits them, then runs the failing write first in a fresh transaction,
//! where its error is its own, not an artefact of its neighbours. Writes are
//! therefore `FnMut` and must start from their own inputs each time.
//! A panicking write is treated like a failing one.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{Database, WriteTransaction};
use tokio::sync::oneshot;

use super::embedded::EmbeddedStore;
use super::StoreError;

/// Most writes in one transaction: bounds how long the first caller of a
/// large burst waits for its commit.
const MAX_BATCH: usize = 256;

/// A queued write with its result slot, type-erased so one queue carries
/// every kind of write.
trait Pending: Send {
    /// Runs the write in `txn`; false when it failed (or panicked).
    fn apply(&mut self, txn: &WriteTransaction) -> bool;
    /// Sends the result: the write's error if it failed, else the commit's
    /// error if the commit failed, else the write's value.
    fn finish(self: Box<Self>, commit: Option<&str>);
}

struct Job<T, E, F> {
    f: F,
    out: Option<Result<T, E>>,
    tx: oneshot::Sender<Result<T, E>>,
}

impl<T, E, F> Pending for Job<T, E, F>
where
    T: Send,
    E: From<StoreError> + Send,
    F: FnMut(&WriteTransaction) -> Result<T, E> + Send,
{
    fn apply(&mut self, txn: &WriteTransaction) -> bool {
        let out = catch_unwind(AssertUnwindSafe(|| (self.f)(txn)))
            .unwrap_or_else(|_| Err(StoreError::Task("store write panicked".into()).into()));
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn finish(self: Box<Self>, commit: Option<&str>) {
        let out = match (self.out, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Some(e)) => Err(StoreError::Embedded(e.to_string()).into()),
            (Some(Ok(v)), None) => Ok(v),
            (None, e) => {
                Err(StoreError::Embedded(e.unwrap_or("write was not run").to_string()).into())
            }
        };
        // The caller may have gone away (its request was cancelled): the
        // write is committed all the same, as it would be unbatched.
        let _ = self.tx.send(out);
    }
}

/// The queue of one store's pending writes.
#[derive(Default)]
pub(super) struct WriteQueue {
    state: Mutex<QueueState>,
    /// Transactions committed so far (each holding one or more writes).
    commits: AtomicU64,
}

#[derive(Default)]
struct QueueState {
    pending: VecDeque<Box<dyn Pending>>,
    /// A committer is running and will take what is queued.
    running: bool,
}

impl EmbeddedStore {
    /// Runs `f` in a write transaction shared with the writes queued at the
    /// same moment, and returns its value once that transaction is on disk.
    /// `f` may run more than once (see the module comment): it must not
    /// consume what it captures.
    pub(super) async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnMut(&WriteTransaction) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(Job { f, out: None, tx });
        let start = {
            let mut q = self.writes.state.lock().unwrap_or_else(|p| p.into_inner());
            q.pending.push_back(job);
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let (db, queue) = (self.db.clone(), self.writes.clone());
            tokio::task::spawn_blocking(move || commit_loop(db, queue));
        }
        rx.await
            .map_err(|_| StoreError::Task("store writer stopped".into()))?
    }
}

/// Commits batches until the queue is empty. The database handle is let go
/// before the last batch's callers hear back, so a caller that drops the
/// store can open the file again at once.
fn commit_loop(db: Arc<Database>, queue: Arc<WriteQueue>) {
    let mut db = Some(db);
    let mut batch: Vec<Box<dyn Pending>> = Vec::new();
    loop {
        let done = {
            let mut q = queue.state.lock().unwrap_or_else(|p| p.into_inner());
            let n = q.pending.len().min(MAX_BATCH);
            batch.extend(q.pending.drain(..n));
            if batch.is_empty() {
                q.running = false;
            }
            batch.is_empty()
        };
        if done {
            return;
        }
        let Some(handle) = db.as_deref() else { return };
        let results = run_batch(handle, std::mem::take(&mut batch), &queue.commits);
        // Stop now if nothing else is queued, and drop the handle first.
        let last = {
            let mut q = queue.state.lock().unwrap_or_else(|p| p.into_inner());
            if q.pending.is_empty() {
                q.running = false;
                true
            } else {
                false
            }
        };
        if last {
            db = None;
        }
        for (job, commit) in results {
            job.finish(commit.as_deref());
        }
        if last {
            return;
        }
    }
}

type Finished = (Box<dyn Pending>, Option<String>);

/// Runs `jobs` in as few transactions as failures allow (module comment)
/// and returns each with its commit error, if any, in queue order.
fn run_batch(db: &Database, jobs: Vec<Box<dyn Pending>>, commits: &AtomicU64) -> Vec<Finished> {
    let mut pending: VecDeque<Box<dyn Pending>> = jobs.into();
    let mut done = Vec::with_capacity(pending.len());
    let mut limit = pending.len();
    while !pending.is_empty() {
        let n = limit.min(pending.len());
        let txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                let e = e.to_string();
                done.extend(pending.drain(..).map(|j| (j, Some(e.clone()))));
                break;
            }
        };
        let failed = pending.iter_mut().take(n).position(|j| !j.apply(&txn));
        match failed {
            None => {
                let commit = txn.commit().err().map(|e| e.to_string());
                commits.fetch_add(1, Ordering::Relaxed);
                done.extend(pending.drain(..n).map(|j| (j, commit.clone())));
                limit = pending.len();
            }
            Some(0) => {
                // Alone at the start of a fresh transaction: its own error.
                drop(txn);
                let job = pending.pop_front().expect("failed job is queued");
                done.push((job, None));
                limit = pending.len();
            }
            Some(k) => {
                drop(txn);
                limit = k;
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreResult;
    use redb::{ReadableTable, TableDefinition};

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    /// One write transaction for `f` alone.
    fn solo<X>(
        db: &Database,
        f: impl FnOnce(&WriteTransaction) -> StoreResult<X>,
    ) -> StoreResult<X> {
        let txn = db.begin_write().map_err(e)?;
        let out = f(&txn)?;
        txn.commit().map_err(e)?;
        Ok(out)
    }

    fn store() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        solo(&s.db, |txn| {
            txn.open_table(T)
                .map_err(|e| StoreError::Embedded(e.to_string()))?;
            Ok(())
        })
        .unwrap();
        (dir, s)
    }

    fn e(x: impl std::fmt::Display) -> StoreError {
        StoreError::Embedded(x.to_string())
    }

    /// Writes key `k` = `v`, refusing (after writing!) when `k` is taken:
    /// a failure that leaves the transaction dirty.
    fn put_unique(k: u64, v: u64) -> impl FnMut(&WriteTransaction) -> StoreResult<u64> {
        move |txn| {
            let mut t = txn.open_table(T).map_err(e)?;
            let was = t.insert(k, v).map_err(e)?.map(|g| g.value());
            t.insert(1_000_000 + k, v).map_err(e)?;
            match was {
                Some(_) => Err(StoreError::Corrupt(format!("key {k} taken"))),
                None => Ok(v),
            }
        }
    }

    fn read(s: &EmbeddedStore) -> Vec<(u64, u64)> {
        let txn = s.db.begin_read().unwrap();
        let t = txn.open_table(T).unwrap();
        t.iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value(), v.value())
            })
            .collect()
    }

    /// Concurrent writes, some refused after writing half-way and one
    /// panicking: every success is on disk, every refusal left nothing
    /// (not even its half-written second key) and got its own error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_refused_write_leaves_nothing_and_its_neighbours_commit() {
        let (_dir, s) = store();
        let mut tasks = Vec::new();
        for i in 0..400u64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                if i == 123 {
                    let r: StoreResult<u64> = s.write(|_txn| panic!("boom")).await;
                    return (i, r);
                }
                // Keys repeat every 100: of each key's four writers, one wins.
                (i, s.write(put_unique(i % 100, i)).await)
            }));
        }
        let mut won = std::collections::BTreeMap::new();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            match r {
                Ok(v) => {
                    assert_eq!(v, i);
                    assert!(
                        won.insert(i % 100, i).is_none(),
                        "two winners for {}",
                        i % 100
                    );
                }
                Err(StoreError::Corrupt(m)) => assert_eq!(m, format!("key {} taken", i % 100)),
                Err(StoreError::Task(m)) => {
                    assert_eq!((i, m.as_str()), (123, "store write panicked"))
                }
                Err(other) => panic!("{i}: {other}"),
            }
        }
        assert_eq!(won.len(), 100);
        // Shared commits, or this test proved nothing about batching.
        let commits = s.writes.commits.load(Ordering::Relaxed);
        assert!(commits < 300, "{commits} commits for 400 writes");
        let mut want: Vec<(u64, u64)> = won.iter().map(|(k, v)| (*k, *v)).collect();
        want.extend(won.iter().map(|(k, v)| (1_000_000 + k, *v)));
        assert_eq!(read(&s), want);
    }

    /// The committer lets go of the database before the last caller hears
    /// back: dropping the store then reopens the file at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_file_reopens_right_after_the_last_write() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..20u64 {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            if round == 0 {
                solo(&s.db, |txn| {
                    txn.open_table(T).map_err(e)?;
                    Ok(())
                })
                .unwrap();
            }
            s.write(put_unique(round, round)).await.unwrap();
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(read(&s).len(), 40);
    }
}
