//! `chat-bench`: many TLS chat clients in one process, to measure a chat server's fan-out,
//! latency, memory and login rate — tlschat, or an IRC server for comparison.
//!
//! Every message carries its sender, sequence number and send time, so each receiver
//! counts deliveries, latency, gaps, duplicates and loss. Every loop is bounded in count
//! and in time.

mod attacks;
mod client;
mod stats;
mod traffic;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use client::{bench_password, Dialect, Target};
use stats::{cpu_seconds, human, rss_kib, Traffic};
use traffic::{Pace, Plan, Shared};

/// Load generator for tlschat (and IRC servers, for comparison).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Args, Clone)]
struct Common {
    /// Server address, HOST:PORT.
    #[arg(long, default_value = "localhost:7777")]
    server: String,
    /// CA certificate (PEM) that signed the server's certificate.
    #[arg(long, default_value = "certs/ca.pem")]
    ca: PathBuf,
    /// Protocol to speak.
    #[arg(long, value_enum, default_value_t = Dialect::Tlschat)]
    dialect: Dialect,
    /// Room (for several rooms, a numbered suffix is added).
    #[arg(long, default_value = "#bench")]
    room: String,
    /// Nickname prefix; client i is `{prefix}{i}` (see `chat-bench users`).
    #[arg(long, default_value = "b")]
    prefix: String,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Clients connecting and logging in at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Seconds a client has to connect, log in and join.
    #[arg(long, default_value_t = 60)]
    connect_timeout: u64,
    /// Seconds to wait, after the senders stop, for everything sent to arrive.
    #[arg(long, default_value_t = 10)]
    drain_timeout: u64,
    /// PID of the server, to report its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A name for this run in the report (e.g. the server measured).
    #[arg(long, default_value = "")]
    label: String,
    /// Write the report as JSON to this file too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Exit with failure unless nothing was lost, duplicated, out of order or refused.
    #[arg(long)]
    check: bool,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Runtime worker threads (default: the CPUs this process may use).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Closed loop: senders keep a window of unacknowledged messages; measures the most
    /// deliveries per second.
    Saturate {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 200)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        senders: usize,
        /// Messages per sender sent but not yet received by the room.
        #[arg(long, default_value_t = 8)]
        window: u64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// Open loop: a fixed message rate; measures latency.
    Rate {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 500)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        senders: usize,
        /// Messages per second, all senders together.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// Idle logged-in connections: the server's memory per connection, then a few
    /// messages per room to show chat still flows.
    Idle {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 2000)]
        clients: usize,
        /// Members per room (0: everyone in one room).
        #[arg(long, default_value_t = 0)]
        room_size: usize,
        /// Seconds to wait after the last login before reading the server's memory.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
        /// Messages the first member of each room sends afterwards.
        #[arg(long, default_value_t = 3)]
        messages: u64,
    },
    /// A storm of logins while two clients chat: logins per second against the password
    /// hashing bound, and the chatters' latency meanwhile.
    Logins {
        #[command(flatten)]
        common: Common,
        /// Logins in the storm (users 2.. of the prefix; 0 and 1 chat).
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Logins in progress at once (default: all of them).
        #[arg(long)]
        storm_concurrency: Option<usize>,
        /// Messages per second between the chatters.
        #[arg(long, default_value_t = 50.0)]
        chat_rate: f64,
        /// CPUs the server may use, for the hashing bound.
        #[arg(long, default_value_t = 1)]
        server_cores: usize,
        /// Seconds one password hash takes on the server's CPU (see `chat-bench
        /// hash-time`); measured here when not given.
        #[arg(long)]
        hash_seconds: Option<f64>,
    },
    /// A long fixed-rate run with the server's memory sampled, to show nothing leaks or
    /// drifts.
    Soak {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 200)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        senders: usize,
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 300.0)]
        duration: f64,
    },
    /// Connections that send a ClientHello and never answer the server's flight, from
    /// many loopback addresses, while an honest client keeps starting handshakes: the
    /// honest handshake's time.
    HandshakeFlood {
        #[command(flatten)]
        common: Common,
        /// Source addresses of the attack, counted up from --attack-from.
        #[arg(long, default_value_t = 60)]
        attackers: usize,
        /// First source address of the attack (all of 127.0.0.0/8 is loopback).
        #[arg(long, default_value = "127.0.0.10")]
        attack_from: Ipv4Addr,
        /// Stalled connections opened per second, all addresses together.
        #[arg(long, default_value_t = 60.0)]
        rate: f64,
        /// Honest handshakes started per second (each on its own, however long the
        /// others take).
        #[arg(long, default_value_t = 2.0)]
        honest_rate: f64,
        /// Seconds of attack before the honest handshakes start.
        #[arg(long, default_value_t = 5.0)]
        warmup: f64,
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
    },
    /// One account logs in on as many connections as it can get, from many loopback
    /// addresses; then another user tries to log in.
    AccountHog {
        #[command(flatten)]
        common: Common,
        /// Source addresses of the attack, counted up from --attack-from.
        #[arg(long, default_value_t = 32)]
        attackers: usize,
        /// First source address of the attack (all of 127.0.0.0/8 is loopback).
        #[arg(long, default_value = "127.0.0.10")]
        attack_from: Ipv4Addr,
        /// Logins from each address.
        #[arg(long, default_value_t = 32)]
        per_address: usize,
        /// The account the attack logs in as (a `chat-bench users` account).
        #[arg(long, default_value = "b0")]
        account: String,
        /// The user who tries to log in during the attack.
        #[arg(long, default_value = "b1")]
        honest: String,
    },
    /// Prints the time of one tlschat password hash on this CPU, in seconds (run it
    /// pinned to the server's CPU for the login storm's bound).
    HashTime,
    /// Prints `nick password` lines for `chat-admin import`: the benchmark's accounts.
    Users {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value = "b")]
        prefix: String,
    },
}

impl Scenario {
    fn common(&self) -> Option<&Common> {
        match self {
            Self::Saturate { common, .. }
            | Self::Rate { common, .. }
            | Self::Idle { common, .. }
            | Self::Logins { common, .. }
            | Self::Soak { common, .. }
            | Self::HandshakeFlood { common, .. }
            | Self::AccountHog { common, .. } => Some(common),
            Self::Users { .. } | Self::HashTime => None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Scenario::Users { count, prefix } = &cli.scenario {
        for i in 0..*count {
            let nick = format!("{prefix}{i}");
            println!("{nick} {}", bench_password(&nick));
        }
        return ExitCode::SUCCESS;
    }
    if let Scenario::HashTime = &cli.scenario {
        return match time_one_hash() {
            Ok(seconds) => {
                println!("{seconds:.6}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("chat-bench: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let common = cli
        .scenario
        .common()
        .expect("scenarios have common options")
        .clone();
    // Thousands of connections need thousands of descriptors; take what the hard limit allows.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = common.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chat-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.scenario, &common)) {
        Ok(report) => {
            print_report(&report);
            if let Some(path) = &common.json {
                let text = serde_json::to_string_pretty(&report).expect("JSON values serialize");
                if let Err(error) = std::fs::write(path, text + "\n") {
                    eprintln!("chat-bench: cannot write {}: {error}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            if common.check && report["clean"] != json!(true) {
                eprintln!("chat-bench: the run was not clean (loss, gaps, duplicates or errors)");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("chat-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn target(common: &Common) -> anyhow::Result<Target> {
    let tls = tlschat::net::tls::client_config(Some(&common.ca))
        .with_context(|| format!("cannot use CA {}", common.ca.display()))?;
    let (host, port) = tlschat::client::split_host_port(&common.server)?;
    Ok(Target {
        host,
        port,
        tls,
        dialect: common.dialect,
    })
}

/// Refuses numbers that would make a run meaningless or a timer panic.
fn check_arguments(scenario: &Scenario) -> anyhow::Result<()> {
    let seconds = |name: &str, value: f64| {
        anyhow::ensure!(
            value.is_finite() && value >= 0.0,
            "--{name} must be a number of seconds, 0 or more"
        );
        Ok(())
    };
    let positive = |name: &str, value: f64| {
        anyhow::ensure!(
            value.is_finite() && value > 0.0,
            "--{name} must be a positive number"
        );
        Ok(())
    };
    match *scenario {
        Scenario::Saturate {
            warmup,
            duration,
            senders,
            clients,
            window,
            ..
        } => {
            seconds("warmup", warmup)?;
            positive("duration", duration)?;
            anyhow::ensure!(
                senders >= 1 && window >= 1,
                "--senders and --window must be at least 1"
            );
            anyhow::ensure!(clients >= 2, "--clients must be at least 2");
        }
        Scenario::Rate {
            duration,
            rate,
            senders,
            clients,
            ..
        }
        | Scenario::Soak {
            duration,
            rate,
            senders,
            clients,
            ..
        } => {
            if let Scenario::Rate { warmup, .. } = *scenario {
                seconds("warmup", warmup)?;
            }
            positive("duration", duration)?;
            positive("rate", rate)?;
            anyhow::ensure!(
                senders >= 1 && clients >= 2,
                "--senders must be at least 1 and --clients at least 2"
            );
        }
        Scenario::Idle {
            settle, clients, ..
        } => {
            seconds("settle", settle)?;
            anyhow::ensure!(
                clients >= 2,
                "--clients must be at least 2 (memory is compared between half and all)"
            );
        }
        Scenario::Logins {
            chat_rate, count, ..
        } => {
            positive("chat-rate", chat_rate)?;
            anyhow::ensure!(count >= 1, "--count must be at least 1");
        }
        Scenario::HandshakeFlood {
            attackers,
            rate,
            honest_rate,
            warmup,
            duration,
            ..
        } => {
            positive("rate", rate)?;
            positive("honest-rate", honest_rate)?;
            seconds("warmup", warmup)?;
            positive("duration", duration)?;
            anyhow::ensure!(attackers >= 1, "--attackers must be at least 1");
        }
        Scenario::AccountHog {
            attackers,
            per_address,
            ..
        } => anyhow::ensure!(
            attackers >= 1 && per_address >= 1,
            "--attackers and --per-address must be at least 1"
        ),
        Scenario::Users { .. } | Scenario::HashTime => {}
    }
    Ok(())
}

async fn run(scenario: Scenario, common: &Common) -> anyhow::Result<Value> {
    check_arguments(&scenario)?;
    let target = target(common)?;
    let mut report = json!({
        "label": common.label,
        "dialect": common.dialect,
        "server": common.server,
        "payload_bytes": common.payload,
    });
    let section = match scenario {
        Scenario::Saturate {
            clients,
            senders,
            window,
            warmup,
            duration,
            ..
        } => {
            let plan = Plan::new(clients, 0, senders, &common.room, &common.prefix);
            let params = json!({"scenario": "saturate", "clients": clients, "senders": senders, "window": window});
            traffic_run(
                target,
                plan,
                common,
                Pace::Window(window),
                warmup,
                duration,
                params,
            )
            .await?
        }
        Scenario::Rate {
            clients,
            senders,
            rate,
            warmup,
            duration,
            ..
        } => {
            let plan = Plan::new(clients, 0, senders, &common.room, &common.prefix);
            let params =
                json!({"scenario": "rate", "clients": clients, "senders": senders, "rate": rate});
            let per_sender = rate / senders.max(1) as f64;
            traffic_run(
                target,
                plan,
                common,
                Pace::Rate(per_sender),
                warmup,
                duration,
                params,
            )
            .await?
        }
        Scenario::Soak {
            clients,
            senders,
            rate,
            duration,
            ..
        } => {
            let plan = Plan::new(clients, 0, senders, &common.room, &common.prefix);
            let params =
                json!({"scenario": "soak", "clients": clients, "senders": senders, "rate": rate});
            let per_sender = rate / senders.max(1) as f64;
            traffic_run(
                target,
                plan,
                common,
                Pace::Rate(per_sender),
                5.0,
                duration,
                params,
            )
            .await?
        }
        Scenario::Idle {
            clients,
            room_size,
            settle,
            messages,
            ..
        } => idle(target, common, clients, room_size, settle, messages).await?,
        Scenario::Logins {
            count,
            storm_concurrency,
            chat_rate,
            server_cores,
            hash_seconds,
            ..
        } => {
            logins(
                target,
                common,
                count,
                storm_concurrency.unwrap_or(count),
                chat_rate,
                hash_seconds,
                server_cores,
            )
            .await?
        }
        Scenario::HandshakeFlood {
            attackers,
            attack_from,
            rate,
            honest_rate,
            warmup,
            duration,
            ..
        } => {
            let flood = attacks::Flood {
                sources: attacks::Sources {
                    first: attack_from,
                    count: attackers,
                },
                rate,
                honest_rate,
                warmup,
                duration,
            };
            attacks::handshake_flood(&target, flood, common.quiet).await?
        }
        Scenario::AccountHog {
            attackers,
            attack_from,
            per_address,
            account,
            honest,
            ..
        } => {
            let hog = attacks::Hog {
                sources: attacks::Sources {
                    first: attack_from,
                    count: attackers,
                },
                per_address,
                account,
                honest,
                concurrency: common.connect_concurrency,
                timeout: Duration::from_secs(common.connect_timeout),
            };
            attacks::account_hog(&target, hog, common.quiet).await?
        }
        Scenario::Users { .. } | Scenario::HashTime => {
            unreachable!("handled before the runtime starts")
        }
    };
    merge(&mut report, section);
    Ok(report)
}

fn merge(report: &mut Value, section: Value) {
    if let (Some(report), Value::Object(section)) = (report.as_object_mut(), section) {
        report.extend(section);
    }
}

/// Connects the plan's clients; the connect part of a report.
async fn connect(
    shared: &Arc<Shared>,
    common: &Common,
) -> anyhow::Result<(Vec<Option<traffic::Client>>, Value)> {
    connect_range(shared, common, 0..shared.plan.clients()).await
}

async fn connect_range(
    shared: &Arc<Shared>,
    common: &Common,
    range: std::ops::Range<usize>,
) -> anyhow::Result<(Vec<Option<traffic::Client>>, Value)> {
    let started = Instant::now();
    let (clients, failures) = traffic::connect_all(
        shared,
        range,
        common.connect_concurrency,
        Duration::from_secs(common.connect_timeout),
    )
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let connected = clients.iter().filter(|c| c.is_some()).count();
    if !common.quiet {
        eprintln!(
            "connected {connected} of {} clients in {seconds:.1}s",
            clients.len()
        );
    }
    if connected == 0 {
        anyhow::bail!(
            "no client could connect: {}",
            failures.first().map_or("", String::as_str)
        );
    }
    let report = json!({
        "clients": clients.len(),
        "connected": connected,
        "seconds": seconds,
        "failures": failures.len(),
        "failure_samples": failures.iter().take(5).collect::<Vec<_>>(),
    });
    Ok((clients, report))
}

fn traffic_report(traffic: &Traffic, connect: &Value) -> Value {
    let clean = traffic.is_clean() && connect["failures"] == json!(0);
    json!({ "traffic": traffic, "connect": connect, "clean": clean })
}

async fn traffic_run(
    target: Target,
    plan: Plan,
    common: &Common,
    pace: Pace,
    warmup: f64,
    duration: f64,
    params: Value,
) -> anyhow::Result<Value> {
    let shared = Shared::new(target, plan, common.payload);
    let rss_before = common.server_pid.and_then(rss_kib);
    let (clients, connect) = connect(&shared, common).await?;
    let done = CancellationToken::new();
    let progress = traffic::progress(shared.clone(), "traffic".into(), common.quiet, done.clone());
    let begin = Instant::now();
    let from = begin + Duration::from_secs_f64(warmup);
    let to = from + Duration::from_secs_f64(duration);
    shared.set_window(from, to);
    let at_start = sample_at(common.server_pid, from);
    traffic::send_all(&shared, &clients, pace, begin, to).await;
    let at_end = Sample::take(common.server_pid);
    let at_start = at_start.await?;
    let traffic = traffic::finish(
        &shared,
        clients,
        Duration::from_secs(common.drain_timeout),
        duration,
    )
    .await;
    done.cancel();
    let _ = progress.await;
    let mut report = traffic_report(&traffic, &connect);
    merge(&mut report, params);
    merge(
        &mut report,
        json!({"warmup_seconds": warmup, "seconds": duration}),
    );
    merge(
        &mut report,
        json!({
            "server_rss_kib": {"before_connect": rss_before, "window_start": at_start.rss, "window_end": at_end.rss},
            "cpu_percent": {
                "server": Sample::cpu_percent(&at_start, &at_end, |s| s.server_cpu),
                "bench": Sample::cpu_percent(&at_start, &at_end, |s| s.bench_cpu),
            },
        }),
    );
    Ok(report)
}

/// The server's memory and the CPU time of the server and of this process at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    rss: Option<u64>,
    server_cpu: Option<f64>,
    bench_cpu: Option<f64>,
}

impl Sample {
    fn take(server_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            rss: server_pid.and_then(rss_kib),
            server_cpu: server_pid.and_then(|pid| cpu_seconds(&pid.to_string())),
            bench_cpu: cpu_seconds("self"),
        }
    }

    /// CPU use between two samples, in percent of one CPU.
    fn cpu_percent(start: &Self, end: &Self, cpu: impl Fn(&Self) -> Option<f64>) -> Option<f64> {
        let seconds = end.at.duration_since(start.at).as_secs_f64();
        (seconds > 0.0).then_some((cpu(end)? - cpu(start)?) / seconds * 100.0)
    }
}

fn sample_at(pid: Option<u32>, at: Instant) -> tokio::task::JoinHandle<Sample> {
    tokio::spawn(async move {
        tokio::time::sleep_until(at.into()).await;
        Sample::take(pid)
    })
}

async fn idle(
    target: Target,
    common: &Common,
    clients: usize,
    room_size: usize,
    settle: f64,
    messages: u64,
) -> anyhow::Result<Value> {
    let plan = Plan::new(clients, room_size, 1, &common.room, &common.prefix);
    let rooms = plan.rooms.len();
    let shared = Shared::new(target, plan, common.payload);
    // Memory is read with half the clients connected and with all of them: the difference
    // is what connections cost, without what the first logins warm up once (hashing
    // memory, pools, tables).
    let settle = Duration::from_secs_f64(settle);
    let rss_before = common.server_pid.and_then(rss_kib);
    let half = clients / 2;
    let (mut connected, first) = connect_range(&shared, common, 0..half).await?;
    tokio::time::sleep(settle).await;
    let rss_half = common.server_pid.and_then(rss_kib);
    let (rest, second) = connect_range(&shared, common, half..clients).await?;
    connected.extend(rest);
    tokio::time::sleep(settle).await;
    let rss_after = common.server_pid.and_then(rss_kib);
    let count = |report: &Value, key: &str| report[key].as_u64().unwrap_or(0);
    let samples: Vec<&Value> = [&first, &second]
        .into_iter()
        .filter_map(|report| report["failure_samples"].as_array())
        .flatten()
        .take(5)
        .collect();
    let connect = json!({
        "clients": clients,
        "connected": count(&first, "connected") + count(&second, "connected"),
        "seconds": first["seconds"].as_f64().unwrap_or(0.0) + second["seconds"].as_f64().unwrap_or(0.0),
        "failures": count(&first, "failures") + count(&second, "failures"),
        "failure_samples": samples,
    });
    let marginal = count(&second, "connected");
    let per_connection = match (rss_half, rss_after) {
        (Some(half), Some(after)) if marginal > 0 => {
            Some(after.saturating_sub(half) as f64 / marginal as f64)
        }
        _ => None,
    };
    if !common.quiet {
        if let Some(per) = per_connection {
            eprintln!("server memory: {per:.1} KiB per idle logged-in connection");
        }
    }
    let begin = Instant::now();
    let end = begin + Duration::from_secs(5);
    shared.set_window(begin, end + Duration::from_secs(common.drain_timeout));
    traffic::send_all(&shared, &connected, Pace::Count(messages), begin, end).await;
    let traffic = traffic::finish(
        &shared,
        connected,
        Duration::from_secs(common.drain_timeout),
        1.0,
    )
    .await;
    let mut report = traffic_report(&traffic, &connect);
    merge(
        &mut report,
        json!({
            "scenario": "idle",
            "rooms": rooms,
            "room_size": if room_size == 0 { clients } else { room_size },
            "server_rss_kib": {"before_connect": rss_before, "half_connected": rss_half, "all_connected": rss_after},
            "server_kib_per_connection": per_connection,
        }),
    );
    Ok(report)
}

async fn logins(
    target: Target,
    common: &Common,
    count: usize,
    concurrency: usize,
    chat_rate: f64,
    hash_seconds: Option<f64>,
    server_cores: usize,
) -> anyhow::Result<Value> {
    let hash_seconds = match (target.dialect, hash_seconds) {
        (Dialect::Irc, _) => None,
        (Dialect::Tlschat, Some(seconds)) => Some(seconds),
        (Dialect::Tlschat, None) => Some(tokio::task::spawn_blocking(time_one_hash).await??),
    };
    let plan = Plan::new(2, 0, 1, &common.room, &common.prefix);
    let shared = Shared::new(target.clone(), plan, common.payload);
    let (chatters, connect) = connect(&shared, common).await?;
    let done = CancellationToken::new();
    let progress = traffic::progress(
        shared.clone(),
        "chat during storm".into(),
        common.quiet,
        done.clone(),
    );

    let begin = Instant::now();
    let horizon = begin + Duration::from_secs(3600);
    let storm_start = begin + Duration::from_secs(1);
    shared.set_window(storm_start, horizon);
    let chat = {
        let shared = shared.clone();
        tokio::spawn(async move {
            traffic::send_all(&shared, &chatters, Pace::Rate(chat_rate), begin, horizon).await;
            chatters
        })
    };
    tokio::time::sleep_until(storm_start.into()).await;
    let storm = storm(&target, common, count, concurrency).await;
    let storm_seconds = storm_start.elapsed().as_secs_f64();
    shared.set_window(storm_start, Instant::now());
    shared.stop_senders();
    let chatters = chat.await?;
    let traffic = traffic::finish(
        &shared,
        chatters,
        Duration::from_secs(common.drain_timeout),
        storm_seconds,
    )
    .await;
    done.cancel();
    let _ = progress.await;

    let succeeded = count - storm.len();
    let per_second = succeeded as f64 / storm_seconds;
    let bound = hash_seconds.map(|seconds| server_cores as f64 / seconds);
    let mut report = traffic_report(&traffic, &connect);
    let clean = report["clean"] == json!(true) && storm.is_empty();
    merge(
        &mut report,
        json!({
            "scenario": "logins",
            "clean": clean,
            "logins": {
                "count": count,
                "succeeded": succeeded,
                "failures": storm.len(),
                "failure_samples": storm.iter().take(5).collect::<Vec<_>>(),
                "seconds": storm_seconds,
                "per_second": per_second,
                "hash_seconds": hash_seconds,
                "server_cores": server_cores,
                "hash_bound_per_second": bound,
                "of_bound": bound.map(|bound| per_second / bound),
            },
        }),
    );
    Ok(report)
}

/// Logs `count` users in at once (each then quits); the failures.
async fn storm(target: &Target, common: &Common, count: usize, concurrency: usize) -> Vec<String> {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let timeout = Duration::from_secs(common.connect_timeout);
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let target = target.clone();
            let permits = permits.clone();
            let nick = format!("{}{}", common.prefix, i + 2);
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                let attempt = async {
                    let (mut stream, mut buffer) = target.open().await?;
                    target.log_in(&mut stream, &mut buffer, &nick).await?;
                    target.quit(&mut stream).await;
                    anyhow::Ok(())
                };
                match tokio::time::timeout(timeout, attempt).await {
                    Ok(result) => result.map_err(|error| format!("{error:#}")),
                    Err(_) => Err(format!("{nick}: no login within {timeout:?}")),
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => failures.push(failure),
            Err(error) => failures.push(error.to_string()),
        }
    }
    failures
}

/// The time of one tlschat password hash on this CPU, for the login bound: the fastest of
/// 15, because on a shared machine noise only ever adds time (medians drifted by 20 %
/// between runs here).
fn time_one_hash() -> anyhow::Result<f64> {
    // The first hash also allocates its working memory; the server's threads keep theirs.
    tlschat::auth::hash_password_blocking("a benchmark password")?;
    let mut fastest = f64::INFINITY;
    for _ in 0..15 {
        let started = Instant::now();
        tlschat::auth::hash_password_blocking("a benchmark password")?;
        fastest = fastest.min(started.elapsed().as_secs_f64());
    }
    Ok(fastest)
}

/// The readable table: the figures that matter, one per line.
fn print_report(report: &Value) {
    let scenario = report["scenario"].as_str().unwrap_or("?");
    println!(
        "{scenario} ({}, {})",
        report["dialect"].as_str().unwrap_or("?"),
        report["label"].as_str().unwrap_or("")
    );
    if attacks::print_report(report) {
        return;
    }
    let connect = &report["connect"];
    println!(
        "  connected        {} of {} in {:.1}s",
        connect["connected"],
        connect["clients"],
        connect["seconds"].as_f64().unwrap_or(0.0)
    );
    let traffic = &report["traffic"];
    let number = |v: &Value| v.as_f64().unwrap_or(0.0);
    println!(
        "  deliveries/s     {}   (messages/s {})",
        human(number(&traffic["deliveries_per_second"])),
        human(number(&traffic["messages_per_second"]))
    );
    let latency = &traffic["latency"];
    println!(
        "  latency ms       p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        number(&latency["p50_ms"]),
        number(&latency["p90_ms"]),
        number(&latency["p99_ms"]),
        number(&latency["max_ms"])
    );
    println!(
        "  sent {}  expected {}  lost {}  gaps {}  duplicates {}  errors {}",
        traffic["sent"],
        traffic["expected"],
        traffic["lost"],
        traffic["gaps"],
        traffic["duplicates"],
        traffic["errors"]
    );
    for sample in traffic["error_samples"].as_array().into_iter().flatten() {
        println!("    error: {}", sample.as_str().unwrap_or(""));
    }
    for sample in connect["failure_samples"].as_array().into_iter().flatten() {
        println!("    connect failure: {}", sample.as_str().unwrap_or(""));
    }
    let cpu = &report["cpu_percent"];
    if cpu.is_object() {
        println!(
            "  CPU              server {:.0}%  bench {:.0}%",
            number(&cpu["server"]),
            number(&cpu["bench"])
        );
    }
    if let Some(per) = report["server_kib_per_connection"].as_f64() {
        println!("  server memory    {per:.1} KiB per idle logged-in connection");
    }
    let logins = &report["logins"];
    if logins.is_object() {
        println!(
            "  logins           {} of {} in {:.1}s = {:.1}/s",
            logins["succeeded"],
            logins["count"],
            number(&logins["seconds"]),
            number(&logins["per_second"])
        );
        if let Some(bound) = logins["hash_bound_per_second"].as_f64() {
            println!(
                "  hashing bound    {bound:.1}/s ({} cores / {:.1} ms per hash): {:.0}% of the bound",
                logins["server_cores"],
                number(&logins["hash_seconds"]) * 1000.0,
                number(&logins["of_bound"]) * 100.0
            );
        }
        for sample in logins["failure_samples"].as_array().into_iter().flatten() {
            println!("    login failure: {}", sample.as_str().unwrap_or(""));
        }
    }
    println!("  clean            {}", report["clean"]);
}
