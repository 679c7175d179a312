//! The chat server: accept, TLS handshake, session, hub, outbox.
//!
//! The caller binds the listener and owns the shutdown token, so a test binds `127.0.0.1:0`
//! and reads the port back, and `chat-server` wires the token to SIGINT and SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinHandle};
use tokio_rustls::LazyConfigAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthError, Passwords};
use crate::config::Config;
use crate::store::Store;

#[cfg(feature = "fault-injection")]
pub mod fault;
mod flood;
mod housekeeping;
mod hub;
mod limits;
mod log_limit;
mod outbox;
mod session;
mod throttle;

pub use flood::{FloodGuard, TokenBucket, Verdict};
pub use limits::{AddressKey, AddressLimitSettings, ConnectionLimits, ConnectionPermit, Refusal};
pub use outbox::{write_loop, Failure, Outbox, Stopped};
pub use throttle::{Attempt, LoginThrottle, Refused, ThrottleSettings};

use hub::{HubHandle, SessionId};
use log_limit::LogLimit;
use session::Session;

/// Why the server could not start, or why it stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    TaskEnded(#[from] TaskEnded),
}

/// A task the server cannot live without ended while the server was running. None of them
/// ends on an error it can retry, so this is a bug; the server shuts down and reports it,
/// and the process manager's restart is the recovery.
#[derive(Debug, thiserror::Error)]
#[error("the {task} task {how}")]
pub struct TaskEnded {
    /// Which task, as the log names it.
    pub task: &'static str,
    how: String,
    panicked: bool,
}

impl TaskEnded {
    fn of(task: &'static str, result: Result<(), JoinError>) -> Self {
        let (how, panicked) = match result {
            Ok(()) => ("stopped unexpectedly".to_owned(), false),
            Err(error) if error.is_panic() => {
                let payload = error.into_panic();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned());
                match message {
                    Some(message) => (format!("panicked: {message}"), true),
                    None => ("panicked".to_owned(), true),
                }
            }
            Err(_) => ("was cancelled".to_owned(), false),
        };
        Self {
            task,
            how,
            panicked,
        }
    }
}

/// A task the server cannot live without, started outside [`run`] (the binary's certificate
/// reloader). [`run`] watches it like its own and aborts it when it returns.
#[derive(Debug)]
pub struct EssentialTask {
    name: &'static str,
    handle: JoinHandle<()>,
    /// One of the server's own, which ends when told to (after finishing what is queued);
    /// one from outside runs until it is aborted.
    own: bool,
}

impl EssentialTask {
    /// `handle` is a task meant to run as long as the server; `name` is how the log names it.
    pub fn new(name: &'static str, handle: JoinHandle<()>) -> Self {
        Self {
            name,
            handle,
            own: false,
        }
    }

    fn own(name: &'static str, handle: JoinHandle<()>) -> Self {
        Self {
            name,
            handle,
            own: true,
        }
    }
}

/// Waits until the first of `tasks` ends, takes it out of the list and says how it ended.
/// Polling a handle is cheap, so the list is polled afresh each time.
async fn first_to_end(tasks: &mut Vec<EssentialTask>) -> TaskEnded {
    let (result, index, _) =
        futures_util::future::select_all(tasks.iter_mut().map(|task| &mut task.handle)).await;
    TaskEnded::of(tasks.swap_remove(index).name, result)
}

/// State every connection task shares, read-only after start.
pub(crate) struct Shared {
    hub: HubHandle,
    store: Store,
    passwords: Passwords,
    throttle: LoginThrottle,
    /// Lines about failed password checks and busy hashing, which guessers cause.
    auth_log: LogLimit,
    config: Config,
    shutdown: CancellationToken,
    /// TLS handshakes computing the server's flight. A burst of new connections would
    /// otherwise put hundreds of CPU-bound handshakes in the scheduler's queue ahead of the
    /// chat's own tasks.
    handshakes: Arc<Semaphore>,
}

/// Serves TLS chat on `listener` until `shutdown` is cancelled, then says `BYE
/// server-shutdown` to everyone, lets their queues drain for up to the grace period, and
/// returns once every accepted message is stored.
///
/// If a task the server cannot live without ends first (the hub, a background task of its
/// own or one of `essential`), it shuts down the same way, cancelling `shutdown`, and returns
/// [`ServerError::TaskEnded`] naming the task and why.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    store: Store,
    config: Config,
    shutdown: CancellationToken,
    essential: Vec<EssentialTask>,
) -> Result<(), ServerError> {
    config.validate().map_err(ServerError::Config)?;
    let (hash_concurrency, hash_wait) = (config.hash_concurrency, config.hash_wait);
    let passwords =
        tokio::task::spawn_blocking(move || Passwords::new(hash_concurrency, hash_wait))
            .await
            .map_err(|error| TaskEnded::of("password hasher start", Err(error)))??;
    let tracker = TaskTracker::new();
    let stop_hub = CancellationToken::new();
    let (hub, hub_task, presence) = hub::spawn(
        store.clone(),
        &config,
        shutdown.clone(),
        stop_hub.clone(),
        tracker.clone(),
    );
    let listen = listener
        .local_addr()
        .map_or_else(|_| "unknown".to_owned(), |addr| addr.to_string());
    // Each of these ends only when `stop_hub` tells it to; see docs/ARCHITECTURE.md for why
    // losing any one of them is worth a restart.
    let mut tasks = vec![
        EssentialTask::own("hub", hub_task),
        EssentialTask::own(
            "WAL checkpoint",
            tokio::spawn(checkpoint_regularly(store.clone(), stop_hub.clone())),
        ),
        EssentialTask::own(
            "account event",
            tokio::spawn(housekeeping::forward_account_events(
                store.clone(),
                hub.clone(),
                stop_hub.clone(),
            )),
        ),
        EssentialTask::own(
            "status",
            tokio::spawn(housekeeping::publish_status(
                store.clone(),
                presence,
                listen,
                stop_hub.clone(),
            )),
        ),
        EssentialTask::own(
            "history retention",
            tokio::spawn(housekeeping::sweep_regularly(
                store.clone(),
                config.history_days,
                stop_hub.clone(),
            )),
        ),
    ];
    tasks.extend(essential);
    let grace = config.shutdown_grace;
    let limits = ConnectionLimits::new(AddressLimitSettings {
        max_connections: config.max_connections,
        max_per_address: config.max_per_address,
        new_per_address_burst: config.new_per_address_burst,
        new_per_address_per_second: config.new_per_address_per_second,
    });
    let throttle = LoginThrottle::new(ThrottleSettings {
        base_delay: config.login_failure_delay,
        max_address_delay: config.login_max_address_delay,
        max_account_delay: config.login_max_account_delay,
        refuse_after: config.login_refuse_after,
        forget_after: config.login_forget_after,
    });
    let shared = Arc::new(Shared {
        hub,
        store: store.clone(),
        passwords,
        throttle,
        auth_log: LogLimit::new(),
        handshakes: Arc::new(Semaphore::new(config.max_handshakes)),
        config,
        shutdown: shutdown.clone(),
    });

    let mut failure = tokio::select! {
        () = accept_connections(&listener, &limits, &tls, &shared, &tracker) => None,
        ended = first_to_end(&mut tasks) => Some(ended),
    };
    match &failure {
        Some(ended) => {
            tracing::error!("{ended}; saying goodbye to every session and exiting");
            shutdown.cancel();
        }
        None => tracing::info!("shutting down: saying goodbye to every session"),
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            ?grace,
            "some sessions did not finish within the grace period"
        );
    }
    drop(shared);
    stop_hub.cancel();
    for task in tasks {
        if !task.own {
            task.handle.abort();
        }
        let result = task.handle.await;
        if matches!(&result, Err(error) if error.is_panic())
            && !failure.as_ref().is_some_and(|ended| ended.panicked)
        {
            let ended = TaskEnded::of(task.name, result);
            tracing::error!("{ended}");
            failure = Some(ended);
        }
    }
    store.close().await;
    match failure {
        Some(ended) => Err(ended.into()),
        None => {
            tracing::info!("shutdown complete");
            Ok(())
        }
    }
}

/// Accepts connections until `shutdown` is cancelled (the token in `shared`).
async fn accept_connections(
    listener: &TcpListener,
    limits: &ConnectionLimits,
    tls: &Arc<rustls::ServerConfig>,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
) {
    let mut next_session: SessionId = 0;
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            // Limits are checked before any TLS work: a refused connection costs an accept
            // and a close, nothing more.
            Ok((tcp, peer)) => match limits.admit(peer.ip(), tokio::time::Instant::now()) {
                Ok(permit) => {
                    next_session += 1;
                    let task = serve_connection(
                        next_session,
                        tcp,
                        peer,
                        tls.clone(),
                        shared.clone(),
                        permit,
                    );
                    tracker.spawn(task);
                }
                Err(refusal) => tracing::debug!(%peer, ?refusal, "connection refused"),
            },
            Err(error) => {
                // Typically EMFILE: back off briefly instead of spinning; users already
                // connected chat on.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Checkpoints the write-ahead log every second until `stop`, off the hub's path.
async fn checkpoint_regularly(store: Store, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        if let Err(error) = store.checkpoint().await {
            // The hub's own errors say more; this one repeats every second while a disk
            // is failing.
            tracing::debug!(%error, "WAL checkpoint failed");
        }
    }
}

/// How long the client may take to answer the server's flight: one round trip, even on a
/// poor mobile link. A client that stalls there holds its connection no longer than this.
const HANDSHAKE_FLIGHT: Duration = Duration::from_secs(3);

async fn serve_connection(
    id: SessionId,
    tcp: TcpStream,
    peer: SocketAddr,
    tls_config: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    _permit: ConnectionPermit,
) {
    configure_socket(&tcp, &shared.config);
    // Waiting costs nothing but time, so it takes no slot: neither a client that connects
    // and says nothing nor one that sends a ClientHello and never answers the server's
    // flight may keep others from logging in. The slot covers only the CPU work between:
    // `into_stream` computes the key exchange and signs the server's flight before it
    // returns; writing that flight and waiting for the client's answer happen outside.
    let handshake = tokio::time::timeout(shared.config.handshake_timeout, async {
        let hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        let rest = {
            let _slot = shared.handshakes.acquire().await;
            hello.into_stream(tls_config.clone())
        };
        tokio::time::timeout(HANDSHAKE_FLIGHT, rest)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    });
    let tls = tokio::select! {
        () = shared.shutdown.cancelled() => return,
        result = handshake => match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        },
    };
    let (reader, writer) = tokio::io::split(tls);
    let config = &shared.config;
    let outbox = Arc::new(Outbox::new(
        config.outbox_max_lines,
        config.outbox_max_bytes,
    ));
    let write_timeout = config.write_timeout;
    let session = Session::new(id, peer, reader, outbox.clone(), shared.clone());
    let (reader, ()) = tokio::join!(session.run(), write_loop(writer, &outbox, write_timeout));
    linger(reader).await;
}

fn configure_socket(tcp: &TcpStream, config: &Config) {
    // Chat lines are small and latency matters more than packet count.
    let _ = tcp.set_nodelay(true);
    let socket = socket2::SockRef::from(tcp);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(config.keepalive_idle)
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    let _ = socket.set_tcp_keepalive(&keepalive);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket.set_tcp_user_timeout(Some(config.dead_peer_timeout));
}

/// After our close_notify, reads and discards what the peer still sends, until it closes or a
/// short while passes. Closing a socket with unread input makes the kernel send a reset,
/// which can destroy the last lines (a `BYE`) before the peer reads them.
async fn linger<R: AsyncRead + Unpin>(mut reader: R) {
    const LINGER: Duration = Duration::from_secs(2);
    let mut sink = [0u8; 1024];
    let discard = async { while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(LINGER, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_task_to_end_is_named_with_how_it_ended() {
        let mut tasks = vec![
            EssentialTask::new("lasting", tokio::spawn(std::future::pending())),
            EssentialTask::new("returning", tokio::spawn(async {})),
        ];
        let ended = first_to_end(&mut tasks).await;
        assert_eq!(ended.to_string(), "the returning task stopped unexpectedly");
        assert!(!ended.panicked);
        let panicking = tokio::spawn(async { panic!("{} message", "a formatted") });
        tasks.push(EssentialTask::new("panicking", panicking));
        let ended = first_to_end(&mut tasks).await;
        assert_eq!(
            ended.to_string(),
            "the panicking task panicked: a formatted message"
        );
        assert!(ended.panicked);
        assert_eq!(tasks.len(), 1);
        tasks[0].handle.abort();
    }
}
