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

#[derive(Debug, Default)]
struct Queue {
    lines: VecDeque<Bytes>,
    bytes: usize,
    /// Of `lines` and `bytes`, what replies queued past the limits account for; live
    /// traffic is measured without them, so a login replay never makes the next message
    /// look like an overflow.
    reply_lines: usize,
    reply_bytes: usize,
    /// No more lines are accepted; the writer sends `last_line` (if any) and closes.
    closing: bool,
    last_line: Option<Bytes>,
    failure: Option<Failure>,
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
    /// Wakes producers waiting for room (history replays).
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

    /// Queues a line. On overflow the queued lines are dropped and the peer will get
    /// `BYE too-slow`.
    pub fn push(&self, line: Bytes) -> Result<(), Stopped> {
        {
            let mut queue = self.lock();
            if queue.closing {
                return Err(Stopped);
            }
            let live_lines = queue.lines.len() - queue.reply_lines;
            let live_bytes = queue.bytes - queue.reply_bytes;
            if live_lines >= self.max_lines || live_bytes + line.len() > self.max_bytes {
                drop(queue);
                self.overflow();
                return Err(Stopped);
            }
            queue.bytes += line.len();
            queue.lines.push_back(line);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Drops what is queued and ends the connection with `BYE too-slow`.
    fn overflow(&self) {
        let mut queue = self.lock();
        queue.lines.clear();
        queue.bytes = 0;
        queue.reply_lines = 0;
        queue.reply_bytes = 0;
        queue.closing = true;
        queue.failure.get_or_insert(Failure::TooSlow);
        queue.last_line = Some(ServerLine::Bye(ByeReason::TooSlow).to_bytes());
        drop(queue);
        self.ready.notify_one();
        self.closed.cancel();
        self.drained.notify_waiters();
    }

    /// Formats and queues one line for this connection only.
    pub fn send(&self, line: &ServerLine) -> Result<(), Stopped> {
        self.push(line.to_bytes())
    }

    /// Queues a reply past the usual limits: the replay of a login or a `/join`, a room or
    /// member list. A reader that lets such replies pile up beyond [`REPLY_HEADROOM`] times
    /// the byte limit is dropped as too slow; the session notices and logs itself out.
    pub fn push_reply(&self, line: Bytes) {
        let mut queue = self.lock();
        if queue.closing {
            return;
        }
        if queue.bytes + line.len() > self.max_bytes * REPLY_HEADROOM {
            drop(queue);
            return self.overflow();
        }
        queue.bytes += line.len();
        queue.reply_bytes += line.len();
        queue.reply_lines += 1;
        queue.lines.push_back(line);
        drop(queue);
        self.ready.notify_one();
    }

    /// Queues a line once the queue is at most half full, waiting for the writer otherwise,
    /// so long replies (`/history 500`) follow the peer's pace instead of overflowing.
    pub async fn push_paced(&self, line: Bytes) -> Result<(), Stopped> {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let queue = self.lock();
                if queue.closing {
                    return Err(Stopped);
                }
                let has_room = queue.lines.len() < self.max_lines / 2
                    && queue.bytes + line.len() <= self.max_bytes / 2;
                if has_room || queue.lines.is_empty() {
                    drop(queue);
                    return self.push(line);
                }
            }
            tokio::select! {
                _ = drained => {}
                _ = self.closed.cancelled() => return Err(Stopped),
            }
        }
    }

    /// Stops taking lines; the writer sends what is queued, then `last`, then closes TLS.
    /// The session's reader is told to stop too.
    pub fn close(&self, last: Option<&ServerLine>) {
        let mut queue = self.lock();
        if queue.closing {
            return;
        }
        queue.closing = true;
        queue.last_line = last.map(ServerLine::to_bytes);
        drop(queue);
        self.ready.notify_one();
        self.closed.cancel();
        self.drained.notify_waiters();
    }

    fn fail(&self, failure: Failure) {
        let mut queue = self.lock();
        queue.closing = true;
        queue.lines.clear();
        queue.bytes = 0;
        queue.reply_lines = 0;
        queue.reply_bytes = 0;
        queue.last_line = None;
        queue.failure.get_or_insert(failure);
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

    /// Moves every queued line into `buf`. Returns false once the outbox is closed and
    /// everything, including the last line, has been handed out.
    async fn next_batch(&self, buf: &mut Vec<u8>) -> bool {
        loop {
            {
                let mut queue = self.lock();
                if !queue.lines.is_empty() {
                    for line in queue.lines.drain(..) {
                        buf.extend_from_slice(&line);
                    }
                    queue.bytes = 0;
                    queue.reply_lines = 0;
                    queue.reply_bytes = 0;
                    drop(queue);
                    self.drained.notify_waiters();
                    return true;
                }
                if queue.closing {
                    if let Some(last) = queue.last_line.take() {
                        buf.extend_from_slice(&last);
                    }
                    return false;
                }
            }
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
    const KEEP_CAPACITY: usize = 16 * 1024;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if buf.capacity() > KEEP_CAPACITY {
            buf.shrink_to(KEEP_CAPACITY);
        }
        let open = outbox.next_batch(&mut buf).await;
        if !buf.is_empty() {
            let write = async {
                writer.write_all(&buf).await?;
                writer.flush().await
            };
            match tokio::time::timeout(write_timeout, write).await {
                Ok(Ok(())) => {}
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
