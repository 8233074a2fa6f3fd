//! Group commit: many callers' small writes of one kind go to the database together, as
//! one statement, and each caller gets its own answer only after that statement committed.
//!
//! A caller hands its item to a queue and waits; a writer task takes everything queued
//! while the previous batch was being written and writes it in one round trip. Nothing is
//! delayed on purpose: an idle store writes a lone item at once, a busy one writes what piled
//! up. So a webhook is still acknowledged only after its update is stored, but 64 concurrent
//! requests cost one commit instead of 64 — on SQLite's one connection the difference
//! between ~2,500 and well over 10,000 stores per second.
//!
//! When a batch fails (say a row references a bot deleted meanwhile), its items are written
//! one by one, so each caller gets the answer its own item deserves.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::{StoreError, StoreResult};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Job<T, R> = (T, oneshot::Sender<StoreResult<R>>);
type BatchFn<T, R> = Arc<dyn Fn(Arc<Vec<T>>) -> BoxFuture<StoreResult<Vec<R>>> + Send + Sync>;
type SingleFn<T, R> = Arc<dyn Fn(T) -> BoxFuture<StoreResult<R>> + Send + Sync>;

/// A queue of writes of one kind with its writer tasks (started on first use, in the
/// runtime of the first caller, and again if that runtime went away).
pub(super) struct GroupCommit<T, R> {
    queue: Mutex<Option<mpsc::UnboundedSender<Job<T, R>>>>,
    batch: BatchFn<T, R>,
    single: SingleFn<T, R>,
    max_batch: usize,
    writers: usize,
}

impl<T, R> std::fmt::Debug for GroupCommit<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("max_batch", &self.max_batch)
            .field("writers", &self.writers)
            .finish_non_exhaustive()
    }
}

impl<T, R> GroupCommit<T, R>
where
    T: Clone + Send + Sync + 'static,
    R: Send + 'static,
{
    /// `batch` writes many items in one go and answers one result per item, in order;
    /// `single` writes one (used when a batch failed: each item is cloned then, so a batch
    /// that succeeds copies nothing). At most `max_batch` items per batch;
    /// `writers` batches may be in flight at once (1 for SQLite: one writer anyway).
    pub(super) fn new<B, BF, S, SF>(
        max_batch: usize,
        writers: usize,
        batch: B,
        single: S,
    ) -> GroupCommit<T, R>
    where
        B: Fn(Arc<Vec<T>>) -> BF + Send + Sync + 'static,
        BF: Future<Output = StoreResult<Vec<R>>> + Send + 'static,
        S: Fn(T) -> SF + Send + Sync + 'static,
        SF: Future<Output = StoreResult<R>> + Send + 'static,
    {
        GroupCommit {
            queue: Mutex::new(None),
            batch: Arc::new(move |items| Box::pin(batch(items))),
            single: Arc::new(move |item| Box::pin(single(item))),
            max_batch: max_batch.max(1),
            writers: writers.max(1),
        }
    }

    /// Writes `item` with whatever else is queued; returns once it is committed.
    pub(super) async fn submit(&self, item: T) -> StoreResult<R> {
        let (done, answer) = oneshot::channel();
        let mut job = (item, done);
        loop {
            let queue = self.queue();
            match queue.send(job) {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => {
                    // The writers are gone (their runtime ended): start new ones.
                    job = back;
                    let mut slot = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                    if slot.as_ref().is_some_and(|q| q.same_channel(&queue)) {
                        *slot = None;
                    }
                }
            }
        }
        // The writer dropped the job without answering only when shutting down.
        answer
            .await
            .unwrap_or(Err(StoreError::Database(sqlx::Error::PoolClosed)))
    }

    fn queue(&self) -> mpsc::UnboundedSender<Job<T, R>> {
        let mut slot = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = slot.as_ref().filter(|q| !q.is_closed()) {
            return q.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..self.writers {
            tokio::spawn(write_loop(
                rx.clone(),
                self.batch.clone(),
                self.single.clone(),
                self.max_batch,
            ));
        }
        *slot = Some(tx.clone());
        tx
    }
}

async fn write_loop<T: Clone + Send + Sync, R>(
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Job<T, R>>>>,
    batch: BatchFn<T, R>,
    single: SingleFn<T, R>,
    max_batch: usize,
) {
    loop {
        let jobs = {
            let mut rx = queue.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut jobs = vec![first];
            while jobs.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            jobs
        };
        let (items, answers): (Vec<T>, Vec<_>) = jobs.into_iter().unzip();
        let items = Arc::new(items);
        match batch(items.clone()).await {
            Ok(results) if results.len() == answers.len() => {
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(Ok(result));
                }
            }
            Ok(results) => {
                let wrong = format!(
                    "a batch of {} writes answered {} results",
                    answers.len(),
                    results.len()
                );
                for answer in answers {
                    let _ = answer.send(Err(StoreError::Corrupt(wrong.clone())));
                }
            }
            Err(e) if answers.len() == 1 => {
                let _ = answers.into_iter().next().map(|a| a.send(Err(e)));
            }
            Err(e) => {
                tracing::debug!(error = %e, size = answers.len(), "a batch failed; writing its items one by one");
                for (item, answer) in items.iter().zip(answers) {
                    let _ = answer.send(single(item.clone()).await);
                }
            }
        }
    }
}
