//! A connection's outbound queue: the [`Outbox`] everyone who sends to the connection holds,
//! the [`Inbox`] its writer drains, and the [`Kick`] that asks the writer to close.
//!
//! The queue is bounded twice: in frames (`--outbound-queue`) and in bytes
//! (`--outbound-queue-bytes`, after Centrifugo's 1 MiB). Frames are shared bytes, so a
//! broadcast costs a reference per member, but one connection asking for large answers
//! (a join's history is up to `--max-answer-bytes`) and not reading them could otherwise pin
//! tens of megabytes for as long as the write timeout. Two rules keep it bounded:
//! - a live event that does not fit closes the connection as a slow consumer (4001): the
//!   instance cannot hold a room's traffic back for one reader;
//! - the answers to a connection's own requests are held back instead: before its next
//!   request is handled, the reader waits until the queue is at most half full
//!   ([`Outbox::room_for_answers`]). A client that stops reading stops being served (its
//!   requests wait in TCP's buffers), rather than piling answers up in memory.

use crate::metrics::Metrics;
use crate::wire::Frame;
use app::protocol::close;
use futures::task::AtomicWaker;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use tokio::sync::{mpsc, Notify};

/// How large a connection's queue may grow.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    pub frames: usize,
    pub bytes: usize,
}

/// Why and how a connection is to be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

/// What other tasks ask of a connection's writer: a one-shot close, and writing frames it
/// holds (write batching) before their delay is up.
#[derive(Default)]
pub struct Kick {
    reason: OnceLock<CloseReason>,
    flush_requested: AtomicBool,
    // Lock-free wake-up of the writer: it polls this on every pass, once per delivery.
    waker: AtomicWaker,
    // Wakes a reader waiting for room in the queue (`room_for_answers`) when a close comes.
    closing: Notify,
}

impl Kick {
    /// Asks the connection to close. The first reason wins.
    pub fn kick(&self, code: u16, reason: &'static str) {
        if self.reason.set(CloseReason { code, reason }).is_ok() {
            self.waker.wake();
            self.closing.notify_waiters();
        }
    }

    /// Waits until a close is requested, then returns the reason.
    pub async fn requested(&self) -> CloseReason {
        std::future::poll_fn(|cx| {
            if let Some(reason) = self.reason.get() {
                return Poll::Ready(*reason);
            }
            self.waker.register(cx.waker());
            // A kick between the check and the registration would otherwise be missed.
            match self.reason.get() {
                Some(reason) => Poll::Ready(*reason),
                None => Poll::Pending,
            }
        })
        .await
    }

    pub fn reason(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    /// Asks the writer to write what it holds now: its queue is filling up.
    fn request_flush(&self) {
        self.flush_requested.store(true, Ordering::Relaxed);
        self.waker.wake();
    }

    /// Whether a flush was requested since the last call. The writer is woken through the
    /// same waker as for a close, so it sees this on its next pass.
    pub fn take_flush_request(&self) -> bool {
        self.flush_requested.swap(false, Ordering::Relaxed)
    }
}

/// The bytes waiting in a connection's queue, shared by its outbox and its writer.
struct Queued {
    bytes: AtomicUsize,
    max: usize,
    /// Set while the reader waits for room ([`Outbox::room_for_answers`]): only then does
    /// the writer notify, so an ordinary delivery costs one atomic subtraction.
    waiting: AtomicBool,
    /// The writer is gone: nothing will drain the queue any more.
    closed: AtomicBool,
    room: Notify,
}

impl Queued {
    fn has_room_for_answers(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.bytes.load(Ordering::Acquire) * 2 <= self.max
    }
}

/// The sending side of a connection: its bounded queue and its close request.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Frame>,
    kick: Arc<Kick>,
    queued: Arc<Queued>,
    /// Counts frames dropped because the queue was full.
    drops: metrics::Counter,
}

/// The writer's side of the queue.
pub struct Inbox {
    rx: mpsc::Receiver<Frame>,
    queued: Arc<Queued>,
}

/// A new connection's queue: the outbox to send through, the inbox its writer drains, and
/// the close request both share.
pub fn queue(limits: QueueLimits, metrics: &Metrics) -> (Outbox, Inbox, Arc<Kick>) {
    let (tx, rx) = mpsc::channel(limits.frames.max(1));
    let kick = Arc::new(Kick::default());
    let queued = Arc::new(Queued {
        bytes: AtomicUsize::new(0),
        max: limits.bytes.max(1),
        waiting: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        room: Notify::new(),
    });
    let outbox = Outbox {
        tx,
        kick: kick.clone(),
        queued: queued.clone(),
        drops: metrics.queue_drops.clone(),
    };
    (outbox, Inbox { rx, queued }, kick)
}

impl Outbox {
    /// Queues a frame without waiting. A full queue (in frames or bytes) means the client
    /// does not keep up: it is disconnected (close 4001) and false is returned, as when the
    /// connection is gone. A queue more than half full asks the writer to stop holding
    /// frames: a hold must never make a client that keeps up look like a slow consumer.
    pub fn send(&self, frame: Frame) -> bool {
        let len = frame.len();
        let queued = &self.queued;
        let bytes = queued.bytes.fetch_add(len, Ordering::AcqRel) + len;
        if bytes > queued.max {
            queued.bytes.fetch_sub(len, Ordering::AcqRel);
            self.slow();
            return false;
        }
        match self.tx.try_send(frame) {
            Ok(()) => {
                if self.tx.capacity() * 2 < self.tx.max_capacity() || bytes * 2 > queued.max {
                    self.kick.request_flush();
                }
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                queued.bytes.fetch_sub(len, Ordering::AcqRel);
                self.slow();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                queued.bytes.fetch_sub(len, Ordering::AcqRel);
                false
            }
        }
    }

    fn slow(&self) {
        self.drops.increment(1);
        self.kick.kick(close::SLOW_CONSUMER, "slow consumer");
    }

    pub fn kick(&self, code: u16, reason: &'static str) {
        self.kick.kick(code, reason);
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.queued.bytes.load(Ordering::Relaxed)
    }

    /// Waits until the queue is at most half full (an answer of up to `--max-answer-bytes`,
    /// at most half the queue, then fits), or the connection is closing.
    pub async fn room_for_answers(&self) {
        let queued = &self.queued;
        // The common case, every request of a client that reads: no waiter to register.
        if queued.has_room_for_answers() {
            return;
        }
        loop {
            let room = queued.room.notified();
            let closing = self.kick.closing.notified();
            tokio::pin!(room, closing);
            room.as_mut().enable();
            closing.as_mut().enable();
            queued.waiting.store(true, Ordering::Release);
            if queued.has_room_for_answers() || self.kick.reason().is_some() {
                queued.waiting.store(false, Ordering::Release);
                return;
            }
            tokio::select! {
                () = room => {}
                () = closing => {}
            }
        }
    }
}

impl Inbox {
    /// The next frame, waiting for one; None when every outbox is gone.
    pub async fn recv(&mut self) -> Option<Frame> {
        let frame = self.rx.recv().await?;
        self.taken(frame.len());
        Some(frame)
    }

    /// The next frame if one is waiting.
    pub fn try_recv(&mut self) -> Option<Frame> {
        let frame = self.rx.try_recv().ok()?;
        self.taken(frame.len());
        Some(frame)
    }

    fn taken(&self, len: usize) {
        let queued = &self.queued;
        let left = queued.bytes.fetch_sub(len, Ordering::AcqRel) - len;
        if queued.waiting.load(Ordering::Acquire) && left * 2 <= queued.max {
            queued.room.notify_waiters();
        }
    }
}

impl Drop for Inbox {
    /// The writer ended: a reader waiting for room must not wait for ever.
    fn drop(&mut self) {
        self.queued.closed.store(true, Ordering::Release);
        self.queued.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(bytes: usize) -> Frame {
        Frame::from("x".repeat(bytes))
    }

    #[test]
    fn a_queue_is_bounded_in_bytes_as_well_as_frames() {
        let (outbox, mut inbox, kick) = queue(
            QueueLimits {
                frames: 10,
                bytes: 100,
            },
            &Metrics::off(),
        );
        assert!(outbox.send(frame(60)));
        assert_eq!(outbox.queued_bytes(), 60);
        assert!(kick.take_flush_request(), "more than half full in bytes");
        assert!(outbox.send(frame(40)));
        assert_eq!(kick.reason(), None);
        assert!(!outbox.send(frame(1)), "101 bytes do not fit");
        assert_eq!(kick.reason().map(|r| r.code), Some(close::SLOW_CONSUMER));
        assert_eq!(inbox.try_recv().map(|f| f.len()), Some(60));
        assert_eq!(outbox.queued_bytes(), 40);
    }

    #[tokio::test]
    async fn answers_wait_for_room_in_the_queue() {
        let (outbox, mut inbox, _kick) = queue(
            QueueLimits {
                frames: 10,
                bytes: 100,
            },
            &Metrics::off(),
        );
        outbox.send(frame(30));
        outbox.send(frame(30));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.room_for_answers().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "60 of 100 bytes: more than half full"
        );
        inbox.recv().await;
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("room once the writer took a frame")
            .unwrap();
    }

    #[tokio::test]
    async fn a_closing_or_gone_writer_releases_a_waiting_reader() {
        let (outbox, inbox, kick) = queue(
            QueueLimits {
                frames: 10,
                bytes: 100,
            },
            &Metrics::off(),
        );
        outbox.send(frame(80));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.room_for_answers().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        kick.kick(close::SHUTDOWN, "bye");
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("released by the close")
            .unwrap();
        drop(inbox);
        tokio::time::timeout(Duration::from_secs(1), outbox.room_for_answers())
            .await
            .expect("the writer is gone");
    }

    #[tokio::test]
    async fn a_kick_reaches_the_writer_before_or_while_it_waits() {
        let early = Kick::default();
        early.kick(close::SHUTDOWN, "bye");
        early.kick(close::SLOW_CONSUMER, "ignored: the first reason wins");
        assert_eq!(early.requested().await.code, close::SHUTDOWN);

        let late = Arc::new(Kick::default());
        let waiting = tokio::spawn({
            let late = late.clone();
            async move { late.requested().await }
        });
        tokio::task::yield_now().await;
        late.kick(close::NO_PONG, "ping timeout");
        let reason = tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reason.code, close::NO_PONG);
    }
}
