//! The load itself: connecting many clients, receiving on each, sending from some, and
//! waiting until everything sent has arrived.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Mutex, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{parse_payload, write_payload, Connection, LineBuffer, Target, Tls};
use crate::stats::{ReceiverStats, Traffic};

/// Who is where: every client's room, and which clients send.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rooms: Vec<String>,
    /// Per client, its index into `rooms`.
    pub room_of: Vec<usize>,
    /// Per sender, its client.
    pub senders: Vec<usize>,
    /// Per sender, the client whose receipt acknowledges its messages (closed loop).
    pub observers: Vec<usize>,
    /// Client `i` logs in as `{prefix}{first_user + i}`.
    pub prefix: String,
    pub first_user: usize,
}

impl Plan {
    /// `clients` in one room (`room_size` 0) or in rooms of `room_size`; the first
    /// `senders_per_room` members of each room send, and the member after them
    /// acknowledges.
    pub fn new(
        clients: usize,
        room_size: usize,
        senders_per_room: usize,
        room: &str,
        prefix: &str,
    ) -> Self {
        let room_size = if room_size == 0 {
            clients.max(1)
        } else {
            room_size
        };
        let room_count = clients.div_ceil(room_size);
        let rooms = if room_count == 1 {
            vec![room.to_owned()]
        } else {
            (0..room_count).map(|k| format!("{room}-{k}")).collect()
        };
        let room_of = (0..clients).map(|i| i / room_size).collect();
        let mut senders = Vec::new();
        let mut observers = Vec::new();
        for first in (0..clients).step_by(room_size) {
            let members = room_size.min(clients - first);
            let sending = senders_per_room.min(members);
            for s in 0..sending {
                senders.push(first + s);
                // A member that does not send, if there is one; else the next sender (IRC
                // servers do not echo a message to its sender, so never the sender itself).
                let observer = if sending < members {
                    sending
                } else {
                    (s + 1) % members
                };
                observers.push(first + observer);
            }
        }
        Self {
            rooms,
            room_of,
            senders,
            observers,
            prefix: prefix.to_owned(),
            first_user: 0,
        }
    }

    pub fn clients(&self) -> usize {
        self.room_of.len()
    }

    pub fn nick(&self, client: usize) -> String {
        format!("{}{}", self.prefix, self.first_user + client)
    }

    fn room(&self, client: usize) -> &str {
        &self.rooms[self.room_of[client]]
    }
}

/// State shared by every task of one run.
pub struct Shared {
    pub target: Target,
    pub plan: Plan,
    pub start: Instant,
    pub payload_size: usize,
    /// The measurement window, in µs since `start` (nothing counts until it is set).
    window_from: AtomicU64,
    window_to: AtomicU64,
    /// Per sender: the highest sequence its observer has received, and a wake-up for it.
    acked: Vec<AtomicU64>,
    wake: Vec<Notify>,
    /// Per sender: messages sent.
    sent: Vec<AtomicU64>,
    sent_in_window: AtomicU64,
    /// Per client: distinct payloads received so far.
    unique: Vec<AtomicU64>,
    /// Payloads received by everyone, for the progress line.
    pub delivered: AtomicU64,
    pub errors: AtomicU64,
    /// Tells every receiver to stop.
    stop: CancellationToken,
    /// Tells every sender to stop before its own deadline.
    senders_stop: CancellationToken,
    /// Sends that failed or timed out, with the first few reasons.
    send_failures: std::sync::Mutex<Vec<String>>,
}

impl Shared {
    pub fn new(target: Target, plan: Plan, payload_size: usize) -> Arc<Self> {
        let senders = plan.senders.len();
        let clients = plan.clients();
        Arc::new(Self {
            target,
            plan,
            start: Instant::now(),
            payload_size,
            window_from: AtomicU64::new(u64::MAX),
            window_to: AtomicU64::new(u64::MAX),
            acked: (0..senders).map(|_| AtomicU64::new(0)).collect(),
            wake: (0..senders).map(|_| Notify::new()).collect(),
            sent: (0..senders).map(|_| AtomicU64::new(0)).collect(),
            sent_in_window: AtomicU64::new(0),
            unique: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            delivered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stop: CancellationToken::new(),
            senders_stop: CancellationToken::new(),
            send_failures: std::sync::Mutex::new(Vec::new()),
        })
    }

    pub fn micros(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    pub fn micros_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_micros() as u64
    }

    /// Counts what arrives between `from` and `to`.
    pub fn set_window(&self, from: Instant, to: Instant) {
        self.window_to.store(self.micros_at(to), Ordering::Relaxed);
        self.window_from
            .store(self.micros_at(from), Ordering::Relaxed);
    }

    fn in_window(&self, at_us: u64) -> bool {
        at_us >= self.window_from.load(Ordering::Relaxed)
            && at_us < self.window_to.load(Ordering::Relaxed)
    }

    /// Stops every sender now.
    pub fn stop_senders(&self) {
        self.senders_stop.cancel();
    }

    fn send_failed(&self, reason: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut failures = self.send_failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.push(reason);
    }

    pub fn total_sent(&self) -> u64 {
        self.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    /// How many payloads client `client` should receive, once the senders have stopped.
    pub fn expected(&self, client: usize) -> u64 {
        let room = self.plan.room_of[client];
        let echoes = self.target.dialect.echoes();
        self.plan
            .senders
            .iter()
            .zip(&self.sent)
            .filter(|(&sender, _)| {
                self.plan.room_of[sender] == room && (echoes || sender != client)
            })
            .map(|(_, sent)| sent.load(Ordering::Relaxed))
            .sum()
    }
}

/// A joined client, its receiver running.
pub struct Client {
    pub writer: Arc<Mutex<WriteHalf<Tls>>>,
    receiver: JoinHandle<ReceiverStats>,
}

/// Connects and joins every client of the plan, `concurrency` at a time, starting each
/// one's receiver as soon as it has joined (so presence traffic never piles up unread).
/// Returns the clients in plan order and the failures.
pub async fn connect_all(
    shared: &Arc<Shared>,
    clients: std::ops::Range<usize>,
    concurrency: usize,
    timeout: Duration,
) -> (Vec<Option<Client>>, Vec<String>) {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut joins = Vec::with_capacity(clients.len());
    for client in clients {
        let shared = shared.clone();
        let permits = permits.clone();
        joins.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            let nick = shared.plan.nick(client);
            let connection = shared
                .target
                .join(&nick, shared.plan.room(client), timeout)
                .await?;
            Ok::<_, anyhow::Error>(start_receiver(&shared, client, connection))
        }));
    }
    let mut clients = Vec::with_capacity(joins.len());
    let mut failures = Vec::new();
    for join in joins {
        match join.await {
            Ok(Ok(client)) => clients.push(Some(client)),
            Ok(Err(error)) => {
                failures.push(format!("{error:#}"));
                clients.push(None);
            }
            Err(error) => {
                failures.push(error.to_string());
                clients.push(None);
            }
        }
    }
    (clients, failures)
}

fn start_receiver(shared: &Arc<Shared>, client: usize, connection: Connection) -> Client {
    let (reader, writer) = tokio::io::split(connection.stream);
    let writer = Arc::new(Mutex::new(writer));
    let receiver = tokio::spawn(receive(
        shared.clone(),
        client,
        reader,
        connection.buffer,
        writer.clone(),
    ));
    Client { writer, receiver }
}

/// Reads one client's lines until told to stop, checking every payload's order and timing.
async fn receive(
    shared: Arc<Shared>,
    me: usize,
    mut reader: ReadHalf<Tls>,
    mut buffer: LineBuffer,
    writer: Arc<Mutex<WriteHalf<Tls>>>,
) -> ReceiverStats {
    let dialect = shared.target.dialect;
    let mut stats = ReceiverStats::new(shared.plan.senders.len());
    loop {
        let now_us = shared.micros();
        // Throughput counts what arrives in the window; latency, what was sent in it, so
        // the slowest messages of an overloaded run still count when they arrive late.
        let counting = shared.in_window(now_us);
        let before = stats.received;
        let mut pongs = Vec::new();
        while let Some(line) = buffer.next_line() {
            if let Some(payload) = dialect.live_payload(line) {
                let Some((sender, seq, sent_us)) = parse_payload(payload) else {
                    stats.error(format!(
                        "unreadable payload: {}",
                        String::from_utf8_lossy(line)
                    ));
                    continue;
                };
                if !stats.record_sequence(sender, seq) {
                    continue;
                }
                if counting {
                    stats.deliveries += 1;
                }
                if shared.in_window(sent_us) {
                    // Beyond the histogram's minute, a sample counts as a minute.
                    stats
                        .latency_us
                        .saturating_record(now_us.saturating_sub(sent_us).max(1));
                }
                if shared.plan.observers.get(sender) == Some(&me) {
                    shared.acked[sender].fetch_max(seq, Ordering::Release);
                    shared.wake[sender].notify_one();
                }
            } else if let Some(pong) = dialect.pong(line) {
                pongs.push(pong);
            } else if dialect.is_error(line) {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                stats.error(String::from_utf8_lossy(line).into_owned());
            }
        }
        let received = stats.received - before;
        if received > 0 {
            shared.delivered.fetch_add(received, Ordering::Relaxed);
            shared.unique[me].store(stats.unique(), Ordering::Relaxed);
        }
        for pong in pongs {
            let answer = async {
                let mut writer = writer.lock().await;
                let _ = writer.write_all(&pong).await;
                let _ = writer.flush().await;
            };
            tokio::select! {
                _ = tokio::time::timeout(SEND_TIMEOUT, answer) => {}
                _ = shared.stop.cancelled() => return stats,
            }
        }
        tokio::select! {
            read = buffer.fill(&mut reader) => match read {
                Ok(0) | Err(_) if shared.stop.is_cancelled() => break,
                Ok(0) => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    stats.error("the server closed the connection".into());
                    break;
                }
                Err(error) => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    stats.error(format!("read failed: {error}"));
                    break;
                }
                Ok(_) => {}
            },
            _ = shared.stop.cancelled() => break,
        }
    }
    stats
}

/// How a sender paces itself.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Closed loop: at most this many messages sent but not yet seen by the observer.
    Window(u64),
    /// Open loop: this many messages per second, stamped with their scheduled time so a
    /// stalled server shows as latency rather than as a slower schedule.
    Rate(f64),
    /// A fixed number of messages, all at once.
    Count(u64),
}

/// Runs every sender until `stop_at`, then returns.
pub async fn send_all(
    shared: &Arc<Shared>,
    clients: &[Option<Client>],
    pace: Pace,
    begin: Instant,
    stop_at: Instant,
) {
    let mut tasks = Vec::new();
    let senders = shared.plan.senders.len().max(1);
    for (sender, &client) in shared.plan.senders.iter().enumerate() {
        let Some(Some(client)) = clients.get(client) else {
            continue;
        };
        let shared = shared.clone();
        let writer = client.writer.clone();
        // Senders at a fixed rate start spread over one interval, not all at once.
        let offset = match pace {
            Pace::Rate(rate) => Duration::from_secs_f64(sender as f64 / senders as f64 / rate),
            _ => Duration::ZERO,
        };
        tasks.push(tokio::spawn(async move {
            send(&shared, sender, &writer, pace, begin + offset, stop_at).await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn send(
    shared: &Shared,
    sender: usize,
    writer: &Mutex<WriteHalf<Tls>>,
    pace: Pace,
    begin: Instant,
    stop_at: Instant,
) {
    let room = shared.plan.room(shared.plan.senders[sender]).to_owned();
    let dialect = shared.target.dialect;
    let mut out = Vec::with_capacity(4096);
    let size = shared.payload_size;
    // Writes message `seq`, stamped `sent_us`, straight into the outgoing batch.
    let add = |out: &mut Vec<u8>, seq: u64, sent_us: u64| {
        dialect.push_message(out, &room, |out| {
            write_payload(out, sender, seq, sent_us, size)
        });
    };
    let mut sent = 0u64;
    tokio::time::sleep_until(begin.into()).await;
    loop {
        let now = Instant::now();
        if now >= stop_at || shared.senders_stop.is_cancelled() {
            break;
        }
        out.clear();
        let batch_start = sent;
        match pace {
            Pace::Window(window) => {
                let acked = shared.acked[sender].load(Ordering::Acquire);
                let room_left = window.saturating_sub(sent.saturating_sub(acked));
                if room_left == 0 {
                    tokio::select! {
                        _ = shared.wake[sender].notified() => {}
                        _ = tokio::time::sleep_until(stop_at.into()) => break,
                        _ = shared.senders_stop.cancelled() => break,
                    }
                    continue;
                }
                let now_us = shared.micros();
                for _ in 0..room_left {
                    sent += 1;
                    add(&mut out, sent, now_us);
                }
            }
            Pace::Rate(rate) => {
                let due = |n: u64| begin + Duration::from_secs_f64(n as f64 / rate);
                let next = due(sent);
                if next >= stop_at {
                    break;
                }
                if next > now {
                    tokio::select! {
                        _ = tokio::time::sleep_until(next.into()) => {}
                        _ = shared.senders_stop.cancelled() => break,
                    }
                }
                let now = Instant::now();
                while due(sent) <= now && due(sent) < stop_at {
                    let scheduled = shared.micros_at(due(sent));
                    sent += 1;
                    add(&mut out, sent, scheduled);
                }
            }
            Pace::Count(count) => {
                let now_us = shared.micros();
                while sent < count {
                    sent += 1;
                    add(&mut out, sent, now_us);
                }
            }
        }
        if out.is_empty() {
            if matches!(pace, Pace::Count(_)) {
                break;
            }
            continue;
        }
        let write = async {
            let mut writer = writer.lock().await;
            writer.write_all(&out).await?;
            writer.flush().await
        };
        match tokio::time::timeout(SEND_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                shared.send_failed(format!("sender {sender}: write failed: {error}"));
                break;
            }
            Err(_) => {
                shared.send_failed(format!(
                    "sender {sender}: a write took over {SEND_TIMEOUT:?} (the server stopped reading)"
                ));
                break;
            }
        }
        shared.sent[sender].store(sent, Ordering::Relaxed);
        if shared.in_window(shared.micros()) {
            shared
                .sent_in_window
                .fetch_add(sent - batch_start, Ordering::Relaxed);
        }
    }
    shared.sent[sender].store(sent, Ordering::Relaxed);
}

/// Waits (up to `timeout`) until every client has received everything sent to its room,
/// then stops the receivers and merges what they saw.
pub async fn finish(
    shared: &Arc<Shared>,
    clients: Vec<Option<Client>>,
    timeout: Duration,
    seconds: f64,
) -> Traffic {
    let expected: Vec<u64> = (0..shared.plan.clients())
        .map(|c| shared.expected(c))
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let waiting = clients.iter().enumerate().any(|(c, client)| {
            client
                .as_ref()
                .is_some_and(|client| !client.receiver.is_finished())
                && shared.unique[c].load(Ordering::Relaxed) < expected[c]
        });
        if !waiting || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shared.stop.cancel();
    let mut receivers = Vec::new();
    let mut expectations = Vec::new();
    let mut writers = Vec::new();
    let mut lost_receivers = 0;
    for (c, client) in clients.into_iter().enumerate() {
        let Some(mut client) = client else { continue };
        match tokio::time::timeout(SEND_TIMEOUT, &mut client.receiver).await {
            Ok(Ok(stats)) => {
                receivers.push(stats);
                expectations.push(expected[c]);
            }
            Ok(Err(_)) | Err(_) => {
                client.receiver.abort();
                lost_receivers += 1;
            }
        }
        writers.push(client.writer);
    }
    if lost_receivers > 0 {
        shared.send_failed(format!(
            "{lost_receivers} receivers did not stop (or failed) and are not counted"
        ));
    }
    let target = shared.target.clone();
    let quits = writers.into_iter().map(|writer| {
        let target = target.clone();
        tokio::spawn(async move {
            let quit = async {
                let mut writer = writer.lock().await;
                target.quit(&mut *writer).await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), quit).await;
        })
    });
    for quit in quits.collect::<Vec<_>>() {
        let _ = quit.await;
    }
    let mut traffic = Traffic::merge(
        &receivers,
        &expectations,
        shared.total_sent(),
        shared.sent_in_window.load(Ordering::Relaxed),
        seconds,
    );
    let failures = shared
        .send_failures
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    traffic.add_errors(&failures);
    traffic
}

/// The longest a single write (or a stopping receiver) may take before it counts as failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Prints a progress line every second until `done` is cancelled.
pub fn progress(
    shared: Arc<Shared>,
    label: String,
    quiet: bool,
    done: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if quiet {
            return;
        }
        let mut last = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = done.cancelled() => break,
            }
            let delivered = shared.delivered.load(Ordering::Relaxed);
            eprintln!(
                "[{:>6.1}s] {label}: {}/s delivered, {} sent, {} errors",
                shared.start.elapsed().as_secs_f64(),
                crate::stats::human((delivered - last) as f64),
                shared.total_sent(),
                shared.errors.load(Ordering::Relaxed),
            );
            last = delivered;
        }
    })
}
