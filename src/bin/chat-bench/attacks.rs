//! Attacks on the server's limits (issue 12), measured from an honest client's side: a
//! flood of handshakes that stall after their ClientHello, and one account logging in on
//! as many connections as it can get. The attackers act as many clients by binding
//! their sockets to many loopback addresses (all of 127.0.0.0/8 is loopback on Linux).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rustls_pki_types::ServerName;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::{Target, Tls};
use crate::stats::{new_histogram, Latency};

/// Where the attack's connections come from: `count` addresses counted up from `first`.
#[derive(Debug, Clone, Copy)]
pub struct Sources {
    pub first: Ipv4Addr,
    pub count: usize,
}

impl Sources {
    /// The address of the `n`th connection, taking the addresses in turn.
    fn nth(self, n: usize) -> IpAddr {
        let offset = (n % self.count.max(1)) as u32;
        IpAddr::V4(Ipv4Addr::from(u32::from(self.first).wrapping_add(offset)))
    }
}

/// The handshake flood: stalled connections at `rate` per second, and honest handshakes
/// at `honest_rate` per second during `duration` seconds after `warmup`.
#[derive(Debug, Clone, Copy)]
pub struct Flood {
    pub sources: Sources,
    pub rate: f64,
    pub honest_rate: f64,
    pub warmup: f64,
    pub duration: f64,
}

/// What became of one stalled connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stall {
    /// The server sent its flight, then gave up waiting for our answer.
    Answered,
    /// The server closed the connection without a flight (refused by a connection limit).
    ClosedUnanswered,
    /// The run ended while the connection still waited for the server's flight.
    StillWaiting,
    /// The connection could not be opened or written.
    Failed,
}

/// How long an honest handshake may take before it counts as failed: longer than the
/// server's own handshake timeout, so the server's verdict is what is measured.
const HONEST_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn handshake_flood(target: &Target, flood: Flood, quiet: bool) -> anyhow::Result<Value> {
    let stop = CancellationToken::new();
    let stalls = Arc::new(Mutex::new(BTreeMap::<Stall, u64>::new()));
    let attack = tokio::spawn(stall_at_rate(
        target.clone(),
        flood,
        stalls.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs_f64(flood.warmup)).await;
    if !quiet {
        eprintln!("attack running; measuring honest handshakes");
    }
    // Honest handshakes start on a clock of their own (an open loop): a slow one does not
    // delay the next, so slowness shows in every sample instead of thinning them out.
    let honest = TaskTracker::new();
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / flood.honest_rate));
    let end = Instant::now() + Duration::from_secs_f64(flood.duration);
    while Instant::now() < end {
        tick.tick().await;
        let target = target.clone();
        let results = results.clone();
        honest.spawn(async move {
            let started = Instant::now();
            let outcome = match tokio::time::timeout(HONEST_TIMEOUT, target.open()).await {
                Ok(Ok(_)) => Ok(started.elapsed()),
                Ok(Err(error)) => Err(format!("{error:#}")),
                Err(_) => Err(format!("no handshake within {HONEST_TIMEOUT:?}")),
            };
            results.lock().await.push(outcome);
        });
    }
    honest.close();
    honest.wait().await;
    stop.cancel();
    attack.await?;

    let mut latency = new_histogram();
    let mut failures = Vec::new();
    for result in results.lock().await.iter() {
        match result {
            Ok(took) => latency.saturating_record(took.as_micros() as u64),
            Err(failure) => failures.push(failure.clone()),
        }
    }
    let stalls = stalls.lock().await;
    let count = |kind| stalls.get(&kind).copied().unwrap_or(0);
    Ok(json!({
        "scenario": "handshake-flood",
        "clean": failures.is_empty() && !latency.is_empty(),
        "attack": {
            "addresses": flood.sources.count,
            "per_second": flood.rate,
            "opened": stalls.values().sum::<u64>() - count(Stall::Failed),
            "answered": count(Stall::Answered),
            "closed_unanswered": count(Stall::ClosedUnanswered),
            "still_waiting_at_end": count(Stall::StillWaiting),
            "failed": count(Stall::Failed),
        },
        "honest": {
            "per_second": flood.honest_rate,
            "handshakes": latency.len(),
            "failures": failures.len(),
            "failure_samples": failures.iter().take(5).collect::<Vec<_>>(),
            "latency": Latency::of(&latency),
        },
        "seconds": flood.duration,
    }))
}

/// Opens stalled connections at the flood's rate until `stop`, then waits for them.
async fn stall_at_rate(
    target: Target,
    flood: Flood,
    stalls: Arc<Mutex<BTreeMap<Stall, u64>>>,
    stop: CancellationToken,
) {
    let tasks = TaskTracker::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / flood.rate));
    for n in 0.. {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let (target, stalls, stop) = (target.clone(), stalls.clone(), stop.clone());
        tasks.spawn(async move {
            let outcome = stall(&target, flood.sources.nth(n), &stop).await;
            *stalls.lock().await.entry(outcome).or_default() += 1;
        });
    }
    tasks.close();
    tasks.wait().await;
}

/// Sends a real ClientHello and never answers the server's flight; reads (and drops)
/// what the server sends until it closes the connection or the run ends.
async fn stall(target: &Target, from: IpAddr, stop: &CancellationToken) -> Stall {
    let opened = async {
        let mut tcp = target.connect_from(from).await?;
        tcp.write_all(&client_hello(target)?).await?;
        anyhow::Ok(tcp)
    };
    let mut tcp = match opened.await {
        Ok(tcp) => tcp,
        Err(_) => return Stall::Failed,
    };
    let mut sink = [0u8; 4096];
    let mut answered = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                return if answered { Stall::Answered } else { Stall::StillWaiting };
            }
            read = tcp.read(&mut sink) => match read {
                Ok(n) if n > 0 => answered = true,
                _ if answered => return Stall::Answered,
                _ => return Stall::ClosedUnanswered,
            },
        }
    }
}

/// A ClientHello as a real client would send it first.
fn client_hello(target: &Target) -> anyhow::Result<Vec<u8>> {
    let name = ServerName::try_from(target.host.clone())?;
    let mut tls = rustls::ClientConnection::new(target.tls.clone(), name)?;
    let mut hello = Vec::new();
    tls.write_tls(&mut hello)?;
    Ok(hello)
}

/// The account hog: `per_address` logins as `account` from each source address, at most
/// `concurrency` in progress at once; then `honest` tries to log in.
#[derive(Debug, Clone)]
pub struct Hog {
    pub sources: Sources,
    pub per_address: usize,
    pub account: String,
    pub honest: String,
    pub concurrency: usize,
    pub timeout: Duration,
}

pub async fn account_hog(target: &Target, hog: Hog, quiet: bool) -> anyhow::Result<Value> {
    let attempts = hog.sources.count * hog.per_address;
    let permits = Arc::new(tokio::sync::Semaphore::new(hog.concurrency.max(1)));
    let started = Instant::now();
    let tasks: Vec<_> = (0..attempts)
        .map(|n| {
            let (target, permits, account) = (target.clone(), permits.clone(), hog.account.clone());
            let from = hog.sources.nth(n);
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                log_in_from(&target, Some(from), &account, hog.timeout).await
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut refusals = BTreeMap::<String, u64>::new();
    for task in tasks {
        match task.await? {
            Ok(stream) => held.push(stream),
            Err(refusal) => *refusals.entry(refusal).or_default() += 1,
        }
    }
    let attack_seconds = started.elapsed().as_secs_f64();
    if !quiet {
        eprintln!(
            "{} of {attempts} logins as {} hold a connection; trying {} now",
            held.len(),
            hog.account,
            hog.honest
        );
    }
    let honest_started = Instant::now();
    let honest = log_in_from(target, None, &hog.honest, hog.timeout).await;
    let honest_seconds = honest_started.elapsed().as_secs_f64();
    let (honest_stream, honest_failure) = match honest {
        Ok(stream) => (Some(stream), None),
        Err(failure) => (None, Some(failure)),
    };
    let honest_in = honest_stream.is_some();
    for mut stream in held.into_iter().chain(honest_stream) {
        target.quit(&mut stream).await;
    }
    Ok(json!({
        "scenario": "account-hog",
        "clean": honest_in,
        "attack": {
            "account": hog.account,
            "addresses": hog.sources.count,
            "attempts": attempts,
            "logged_in": attempts as u64 - refusals.values().sum::<u64>(),
            "refused": refusals,
            "seconds": attack_seconds,
        },
        "honest": {
            "account": hog.honest,
            "logged_in": honest_in,
            "seconds": honest_seconds,
            "failure": honest_failure,
        },
    }))
}

/// Connects (from `from`, if given) and logs in; the logged-in stream, or why not.
async fn log_in_from(
    target: &Target,
    from: Option<IpAddr>,
    nick: &str,
    timeout: Duration,
) -> Result<Tls, String> {
    let attempt = async {
        let (mut stream, mut buffer) = match from {
            Some(from) => target.handshake(target.connect_from(from).await?).await?,
            None => target.open().await?,
        };
        target
            .log_in(&mut stream, &mut buffer, nick)
            .await
            .context("login")?;
        anyhow::Ok(stream)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(stream)) => Ok(stream),
        // The server's line when it said why, so that refusals can be counted by reason.
        Ok(Err(error)) => Err(match error.root_cause().to_string() {
            line if line.contains("BYE ") || line.contains("ERR ") => {
                line.trim_start_matches(&format!("{nick}: ")).to_owned()
            }
            _ => format!("{error:#}"),
        }),
        Err(_) => Err(format!("no login within {timeout:?}")),
    }
}

/// The readable table of an attack scenario; false for other scenarios.
pub fn print_report(report: &Value) -> bool {
    let number = |v: &Value| v.as_f64().unwrap_or(0.0);
    let (attack, honest) = (&report["attack"], &report["honest"]);
    match report["scenario"].as_str() {
        Some("handshake-flood") => {
            println!(
                "  attack           {} stalled connections/s from {} addresses: {} opened, {} answered, {} closed unanswered, {} still waiting at the end",
                attack["per_second"], attack["addresses"], attack["opened"], attack["answered"],
                attack["closed_unanswered"], attack["still_waiting_at_end"]
            );
            let latency = &honest["latency"];
            println!(
                "  honest handshake {} done, {} failed; ms p50 {:.1}  p90 {:.1}  max {:.1}",
                honest["handshakes"],
                honest["failures"],
                number(&latency["p50_ms"]),
                number(&latency["p90_ms"]),
                number(&latency["max_ms"])
            );
            for sample in honest["failure_samples"].as_array().into_iter().flatten() {
                println!("    honest failure: {}", sample.as_str().unwrap_or(""));
            }
        }
        Some("account-hog") => {
            println!(
                "  attack           {} logins as {} from {} addresses: {} logged in (in {:.1}s)",
                attack["attempts"],
                attack["account"].as_str().unwrap_or(""),
                attack["addresses"],
                attack["logged_in"],
                number(&attack["seconds"])
            );
            for (why, count) in attack["refused"].as_object().into_iter().flatten() {
                println!("    refused {count}: {why}");
            }
            match honest["failure"].as_str() {
                None => println!(
                    "  honest login     {} logged in after {:.2}s",
                    honest["account"].as_str().unwrap_or(""),
                    number(&honest["seconds"])
                ),
                Some(failure) => println!(
                    "  honest login     {} failed after {:.2}s: {failure}",
                    honest["account"].as_str().unwrap_or(""),
                    number(&honest["seconds"])
                ),
            }
        }
        _ => return false,
    }
    println!("  clean            {}", report["clean"]);
    true
}
