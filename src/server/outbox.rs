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

/// The queue was full; the outbox has been closed with `BYE too-slow`.
#[derive(Debug)]
pub struct Overflowed;

#[derive(Debug, Default)]
struct Queue {
    lines: VecDeque<Bytes>,
    bytes: usize,
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
    /// Cancelled when the outbox stops for good, so the session's reader stops too.
    closed: CancellationToken,
}

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

    /// Queues a line. On overflow the queued lines are dropped, the peer will get
    /// `BYE too-slow`, and the caller must treat the session as gone.
    pub fn push(&self, line: Bytes) -> Result<(), Overflowed> {
        {
            let mut queue = self.lock();
            if queue.closing {
                return Ok(());
            }
            if queue.lines.len() >= self.max_lines || queue.bytes + line.len() > self.max_bytes {
                queue.lines.clear();
                queue.bytes = 0;
                queue.closing = true;
                queue.failure = Some(Failure::TooSlow);
                queue.last_line = Some(ServerLine::Bye(ByeReason::TooSlow).to_bytes());
                drop(queue);
                self.ready.notify_one();
                self.closed.cancel();
                return Err(Overflowed);
            }
            queue.bytes += line.len();
            queue.lines.push_back(line);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Formats and queues one line for this connection only.
    pub fn send(&self, line: &ServerLine) -> Result<(), Overflowed> {
        self.push(line.to_bytes())
    }

    /// Queues a line past the limits. Only for replies whose size is bounded by design (the
    /// replay of a login or a `/join`), which must not cost the session its connection.
    pub fn push_bounded_reply(&self, line: Bytes) {
        let mut queue = self.lock();
        if !queue.closing {
            queue.bytes += line.len();
            queue.lines.push_back(line);
            drop(queue);
            self.ready.notify_one();
        }
    }

    /// Queues a line once the queue is at most half full, waiting for the writer otherwise,
    /// so long replies (`/history 500`) follow the peer's pace instead of overflowing.
    pub async fn push_paced(&self, line: Bytes) -> Result<(), Overflowed> {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let queue = self.lock();
                if queue.closing {
                    return Err(Overflowed);
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
                _ = self.closed.cancelled() => return Err(Overflowed),
            }
        }
    }

    /// Stops taking lines; the writer sends what is queued, then `last`, then closes TLS.
    pub fn close(&self, last: Option<&ServerLine>) {
        let mut queue = self.lock();
        if queue.closing {
            return;
        }
        queue.closing = true;
        queue.last_line = last.map(ServerLine::to_bytes);
        drop(queue);
        self.ready.notify_one();
    }

    fn fail(&self, failure: Failure) {
        let mut queue = self.lock();
        queue.closing = true;
        queue.lines.clear();
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

    /// Resolves when the outbox stopped on its own (overflow, write timeout, broken socket).
    pub async fn failed(&self) {
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
        outbox.send(&ServerLine::info("late")).unwrap();
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
