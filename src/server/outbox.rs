//! The bounded queue of lines waiting to be written to one connection, and the loop that
//! writes them. Producers (the hub, the session) never touch the socket; the writer drains
//! everything queued into one buffer and hands it to TLS in one write per wake-up.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::protocol::{ByeReason, LeaveReason, ServerLine};

/// Why an outbox stopped taking lines before its session closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The queue overflowed: the peer reads slower than the room talks.
    TooSlow,
    /// A write did not finish within the write timeout.
    WriteTimeout,
    /// The socket failed.
    Broken,
}

impl Failure {
    /// How the others see this session go.
    pub fn leave_reason(self) -> LeaveReason {
        match self {
            Self::WriteTimeout => LeaveReason::Timeout,
            Self::TooSlow | Self::Broken => LeaveReason::Disconnect,
        }
    }
}

/// The outbox takes no more lines: it overflowed (and the peer gets `BYE too-slow`), its
/// writer failed, or it was closed. The caller must treat the session as gone.
#[derive(Debug)]
pub struct Stopped;

/// What a queued line is, for the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Live traffic (room messages, presence, answers): bounded by the queue's limits.
    Live,
    /// Replies counted apart: replays, lists, history.
    Reply,
}

#[derive(Debug, Default)]
struct Queue {
    /// Ready for the writer, in order.
    ready: VecDeque<(Bytes, Class)>,
    /// Bytes in `ready`, for pacing.
    ready_bytes: usize,
    /// While a replay is being written, every other line for this connection waits here,
    /// in order, and follows the replay when it ends.
    held: Option<VecDeque<(Bytes, Class)>>,
    /// Live lines and bytes, ready or held: what the limits apply to.
    live_lines: usize,
    live_bytes: usize,
    /// Reply bytes, ready or held.
    reply_bytes: usize,
    /// No more lines are accepted; the writer sends `last_line` (if any) and closes.
    closing: bool,
    last_line: Option<Bytes>,
    failure: Option<Failure>,
    /// Lines made ready since the outbox was created, lines handed to the writer, and lines
    /// the writer has written and flushed: a line made ready as number n is written once
    /// `written >= n`. Survive [`Queue::clear`].
    made_ready: u64,
    handed_out: u64,
    written: u64,
}

impl Queue {
    fn enqueue(&mut self, line: Bytes, class: Class) {
        match class {
            Class::Live => {
                self.live_lines += 1;
                self.live_bytes += line.len();
            }
            Class::Reply => self.reply_bytes += line.len(),
        }
        match &mut self.held {
            Some(held) => held.push_back((line, class)),
            None => self.make_ready(line, class),
        }
    }

    fn make_ready(&mut self, line: Bytes, class: Class) {
        self.ready_bytes += line.len();
        self.ready.push_back((line, class));
        self.made_ready += 1;
    }

    fn release_held(&mut self) {
        for (line, class) in self.held.take().unwrap_or_default() {
            self.make_ready(line, class);
        }
    }

    fn clear(&mut self) {
        *self = Self {
            closing: true,
            failure: self.failure,
            made_ready: self.made_ready,
            handed_out: self.handed_out,
            written: self.written,
            ..Self::default()
        };
    }

    /// Room for a paced line: the ready queue at most half full.
    fn has_paced_room(&self, max_lines: usize, max_bytes: usize, len: usize) -> bool {
        self.ready.is_empty()
            || (self.ready.len() < max_lines / 2 && self.ready_bytes + len <= max_bytes / 2)
    }
}

/// One connection's outgoing queue, bounded in lines and bytes.
#[derive(Debug)]
pub struct Outbox {
    /// Held only to push or drain; never across an `.await` or a socket write.
    queue: Mutex<Queue>,
    max_lines: usize,
    max_bytes: usize,
    /// Wakes the writer.
    ready: Notify,
    /// Wakes producers waiting for room (replays and history).
    drained: Notify,
    /// Cancelled when the outbox stops taking lines, so the session's reader stops too.
    closed: CancellationToken,
}

/// Replies queued past the limits may take the queue to this many times its byte limit;
/// past that the connection is dropped like any reader that cannot keep up.
const REPLY_HEADROOM: usize = 4;

impl Outbox {
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            max_lines,
            max_bytes,
            ready: Notify::new(),
            drained: Notify::new(),
            closed: CancellationToken::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic elsewhere must not take every session down with a poisoned queue.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake(&self) {
        self.ready.notify_one();
    }

    /// Queues a live line. On overflow the queue is dropped and the peer will get
    /// `BYE too-slow`.
    pub fn push(&self, line: Bytes) -> Result<(), Stopped> {
        let mut queue = self.lock();
        if queue.closing {
            return Err(Stopped);
        }
        if queue.live_lines >= self.max_lines || queue.live_bytes + line.len() > self.max_bytes {
            drop(queue);
            self.overflow();
            return Err(Stopped);
        }
        queue.enqueue(line, Class::Live);
        drop(queue);
        self.wake();
        Ok(())
    }

    /// Drops what is queued and ends the connection with `BYE too-slow`.
    fn overflow(&self) {
        let mut queue = self.lock();
        queue.failure.get_or_insert(Failure::TooSlow);
        queue.clear();
        queue.last_line = Some(ServerLine::Bye(ByeReason::TooSlow).to_bytes());
        drop(queue);
        self.wake();
        self.closed.cancel();
        self.drained.notify_waiters();
    }

    /// Formats and queues one live line for this connection only.
    pub fn send(&self, line: &ServerLine) -> Result<(), Stopped> {
        self.push(line.to_bytes())
    }

    /// Queues a reply counted apart from live traffic (a room or member list). A reader that
    /// lets replies pile up beyond four times the byte limit is dropped as too
    /// slow; the session notices and logs itself out.
    pub fn push_reply(&self, line: Bytes) {
        let mut queue = self.lock();
        if queue.closing {
            return;
        }
        let total = queue.live_bytes + queue.reply_bytes + line.len();
        if total > self.max_bytes * REPLY_HEADROOM {
            drop(queue);
            return self.overflow();
        }
        queue.enqueue(line, Class::Reply);
        drop(queue);
        self.wake();
    }

    /// Waits until `may_push` says there is room, then queues `line` as a reply. A replay
    /// line is still taken after a close, while the replay lasts: the close waits for it.
    /// Returns the line's number, for [`Outbox::written`].
    async fn push_when(
        &self,
        line: Bytes,
        may_push: impl Fn(&Queue) -> bool,
        replay: bool,
    ) -> Result<u64, Stopped> {
        loop {
            // Every change that matters here (a drain, a replay's end, a close, a failure)
            // notifies `drained`; enabling first means none is missed.
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let mut queue = self.lock();
                let open = !queue.closing || (replay && queue.held.is_some());
                if !open {
                    return Err(Stopped);
                }
                if may_push(&queue) {
                    queue.reply_bytes += line.len();
                    queue.make_ready(line, Class::Reply);
                    let number = queue.made_ready;
                    drop(queue);
                    self.wake();
                    return Ok(number);
                }
            }
            drained.await;
        }
    }

    /// Queues a line once the queue is at most half full and no replay is being written,
    /// waiting for the writer otherwise, so a long answer (`/history 500`) follows the
    /// peer's pace instead of overflowing.
    pub async fn push_paced(&self, line: Bytes) -> Result<(), Stopped> {
        let (max_lines, max_bytes, len) = (self.max_lines, self.max_bytes, line.len());
        let may_push = |q: &Queue| q.held.is_none() && q.has_paced_room(max_lines, max_bytes, len);
        self.push_when(line, may_push, false).await.map(|_| ())
    }

    /// Starts a replay: until [`Outbox::end_replay`], other lines wait behind it.
    pub fn begin_replay(&self) {
        let mut queue = self.lock();
        if !queue.closing && queue.held.is_none() {
            queue.held = Some(VecDeque::new());
        }
    }

    /// Writes one replay line at the peer's pace, ahead of the lines being held. Returns
    /// the line's number, for [`Outbox::written`].
    pub async fn push_replay(&self, line: Bytes) -> Result<u64, Stopped> {
        let (max_lines, max_bytes, len) = (self.max_lines, self.max_bytes, line.len());
        let may_push = |q: &Queue| q.has_paced_room(max_lines, max_bytes, len);
        self.push_when(line, may_push, true).await
    }

    /// How many lines the writer has written to the peer and flushed: every line whose
    /// number is at most this.
    pub fn lines_written(&self) -> u64 {
        self.lock().written
    }

    /// Waits until line `number` has been written and flushed; fails if the writer gave up
    /// (or the queue was dropped) before.
    pub async fn written(&self, number: u64) -> Result<(), Stopped> {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let queue = self.lock();
                if queue.written >= number {
                    return Ok(());
                }
                // A closed outbox still writes what it holds; only a failure (an overflow, a
                // broken or stalled peer) drops lines for good.
                if queue.failure.is_some() {
                    return Err(Stopped);
                }
            }
            drained.await;
        }
    }

    /// Ends a replay: the lines held meanwhile follow it, in order.
    pub fn end_replay(&self) {
        let mut queue = self.lock();
        queue.release_held();
        drop(queue);
        self.wake();
        self.drained.notify_waiters();
    }

    /// Stops taking lines; the writer sends what is queued, the rest of a replay in
    /// progress and the lines held behind it, then `last`, then closes TLS. The session's
    /// reader is told to stop too.
    pub fn close(&self, last: Option<&ServerLine>) {
        let mut queue = self.lock();
        if queue.closing {
            return;
        }
        queue.closing = true;
        queue.last_line = last.map(ServerLine::to_bytes);
        drop(queue);
        self.wake();
        self.closed.cancel();
        self.drained.notify_waiters();
    }

    /// Everything handed to the writer so far has been written and flushed.
    fn flushed(&self) {
        let mut queue = self.lock();
        queue.written = queue.handed_out;
        drop(queue);
        self.drained.notify_waiters();
    }

    fn fail(&self, failure: Failure) {
        let mut queue = self.lock();
        queue.failure.get_or_insert(failure);
        queue.clear();
        drop(queue);
        self.closed.cancel();
        self.drained.notify_waiters();
    }

    /// Why the outbox stopped on its own, if it did.
    pub fn failure(&self) -> Option<Failure> {
        self.lock().failure
    }

    /// Resolves once the outbox takes no more lines: closed, overflowed, or its peer gone.
    pub async fn stopped(&self) {
        self.closed.cancelled().await
    }

    /// Moves every ready line into `buf`. Returns false once the outbox is closed and
    /// everything, including the last line, has been handed out.
    async fn next_batch(&self, buf: &mut Vec<u8>) -> bool {
        loop {
            {
                let mut queue = self.lock();
                if !queue.ready.is_empty() {
                    let ready = std::mem::take(&mut queue.ready);
                    queue.ready_bytes = 0;
                    queue.handed_out += ready.len() as u64;
                    for (line, class) in &ready {
                        buf.extend_from_slice(line);
                        match class {
                            Class::Live => {
                                queue.live_lines -= 1;
                                queue.live_bytes -= line.len();
                            }
                            Class::Reply => queue.reply_bytes -= line.len(),
                        }
                    }
                    drop(queue);
                    self.drained.notify_waiters();
                    return true;
                }
                // A replay still being written keeps a closing outbox open until it ends.
                if queue.closing && queue.held.is_none() {
                    if let Some(last) = queue.last_line.take() {
                        buf.extend_from_slice(&last);
                    }
                    return false;
                }
            }
            // An idle connection keeps no write buffer; thousands of them add up.
            *buf = Vec::new();
            self.ready.notified().await;
        }
    }
}

/// Writes an outbox to a peer until it closes, then sends TLS close_notify. A write that
/// takes longer than `write_timeout` or fails marks the outbox failed and stops.
pub async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    outbox: &Outbox,
    write_timeout: Duration,
) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let open = outbox.next_batch(&mut buf).await;
        if !buf.is_empty() {
            let write = async {
                writer.write_all(&buf).await?;
                writer.flush().await
            };
            match tokio::time::timeout(write_timeout, write).await {
                Ok(Ok(())) => outbox.flushed(),
                Ok(Err(_)) => return outbox.fail(Failure::Broken),
                Err(_) => return outbox.fail(Failure::WriteTimeout),
            }
        }
        if !open {
            break;
        }
    }
    let _ =
        tokio::time::timeout(write_timeout.min(Duration::from_secs(5)), writer.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn overflow_closes_with_too_slow() {
        let outbox = Outbox::new(3, 1024);
        for _ in 0..3 {
            outbox.push(Bytes::from_static(b"x\n")).unwrap();
        }
        assert!(outbox.push(Bytes::from_static(b"y\n")).is_err());
        assert_eq!(outbox.failure(), Some(Failure::TooSlow));
        let (client, server) = tokio::io::duplex(1024);
        write_loop(server, &outbox, Duration::from_secs(1)).await;
        let mut received = String::new();
        let mut client = client;
        client.read_to_string(&mut received).await.unwrap();
        assert_eq!(received, "BYE too-slow\n");
    }

    #[tokio::test]
    async fn replies_do_not_use_up_the_live_budget_but_have_a_cap() {
        let outbox = Outbox::new(4, 100);
        for _ in 0..10 {
            outbox.push_reply(Bytes::from_static(b"0123456789012345678\n"));
        }
        outbox.push(Bytes::from_static(b"live\n")).unwrap();
        assert_eq!(outbox.failure(), None);
        for _ in 0..10 {
            outbox.push_reply(Bytes::from_static(b"0123456789012345678\n"));
        }
        assert_eq!(
            outbox.failure(),
            Some(Failure::TooSlow),
            "past 4x the byte limit"
        );
    }

    async fn written(outbox: &Outbox) -> String {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        write_loop(server, outbox, Duration::from_secs(5)).await;
        let mut received = String::new();
        client.read_to_string(&mut received).await.unwrap();
        received
    }

    fn line(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[tokio::test]
    async fn a_replay_goes_first_and_held_lines_follow_in_order() {
        let outbox = Outbox::new(100, 1 << 20);
        outbox.push(line("before\n")).unwrap();
        outbox.begin_replay();
        outbox.push(line("live 1\n")).unwrap();
        outbox.push_reply(line("answer\n"));
        outbox.push_replay(line("replay 1\n")).await.unwrap();
        outbox.push_replay(line("replay 2\n")).await.unwrap();
        outbox.push(line("live 2\n")).unwrap();
        outbox.end_replay();
        outbox.close(Some(&ServerLine::Bye(ByeReason::Quit)));
        assert_eq!(
            written(&outbox).await,
            "before\nreplay 1\nreplay 2\nlive 1\nanswer\nlive 2\nBYE quit\n"
        );
    }

    #[tokio::test]
    async fn a_close_waits_for_the_replay_in_progress() {
        let outbox = Outbox::new(100, 1 << 20);
        outbox.begin_replay();
        outbox.push_replay(line("replay 1\n")).await.unwrap();
        outbox.close(Some(&ServerLine::Bye(ByeReason::Quit)));
        assert!(outbox.push(line("refused\n")).is_err());
        outbox.push_replay(line("replay 2\n")).await.unwrap();
        outbox.end_replay();
        assert!(outbox.push_replay(line("too late\n")).await.is_err());
        assert_eq!(written(&outbox).await, "replay 1\nreplay 2\nBYE quit\n");
    }

    #[tokio::test]
    async fn held_lines_count_against_the_limits() {
        let outbox = Outbox::new(2, 1 << 20);
        outbox.begin_replay();
        outbox.push(line("a\n")).unwrap();
        outbox.push(line("b\n")).unwrap();
        assert!(outbox.push(line("c\n")).is_err());
        assert_eq!(outbox.failure(), Some(Failure::TooSlow));
        assert!(outbox.push_replay(line("r\n")).await.is_err());
    }

    #[tokio::test]
    async fn byte_limit_counts_too() {
        let outbox = Outbox::new(100, 10);
        outbox.push(Bytes::from_static(b"12345\n")).unwrap();
        assert!(outbox.push(Bytes::from_static(b"12345\n")).is_err());
    }

    #[tokio::test]
    async fn lines_then_last_line_then_eof() {
        let outbox = Outbox::new(10, 1024);
        outbox.send(&ServerLine::info("one")).unwrap();
        outbox.send(&ServerLine::info("two")).unwrap();
        outbox.close(Some(&ServerLine::Bye(ByeReason::Quit)));
        assert!(outbox.send(&ServerLine::info("late")).is_err());
        let (mut client, server) = tokio::io::duplex(1024);
        write_loop(server, &outbox, Duration::from_secs(1)).await;
        let mut received = String::new();
        client.read_to_string(&mut received).await.unwrap();
        assert_eq!(received, "INFO one\nINFO two\nBYE quit\n");
    }

    #[tokio::test]
    async fn stalled_peer_times_out() {
        let outbox = Outbox::new(10, 1 << 20);
        outbox.push(Bytes::from(vec![b'x'; 4096])).unwrap();
        let (_client, server) = tokio::io::duplex(64);
        write_loop(server, &outbox, Duration::from_millis(50)).await;
        assert_eq!(outbox.failure(), Some(Failure::WriteTimeout));
    }
}
