//! Background tasks between the hub and the store: account events in, presence out, old
//! history away. Each runs until `stop`, and none of them is on a message's path. None ends
//! before `stop`, not even when the hub is gone: the server treats an earlier end as a
//! failure of that task, and the hub's own end is the failure to report.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::hub::{HubHandle, Presence, Request};
use crate::protocol::now_millis;
use crate::store::{AccountId, OnlineAccount, Store, HEARTBEAT_EVERY};

/// How often the store is asked for account events. Two seconds is the promise for ending
/// a locked account's sessions; polling at a quarter of it leaves room for a slow disk.
const EVENT_POLL: Duration = Duration::from_millis(500);
/// How often old history, used codes and old events are swept away.
const SWEEP: Duration = Duration::from_secs(3600);
/// How often the history of rooms nobody is in any more is deleted.
const FORGET_ROOMS: Duration = Duration::from_secs(60);
/// Rows one retention transaction deletes.
const DELETE_BATCH: u32 = 1000;
const DAY_MILLIS: i64 = 24 * 3600 * 1000;

/// Hands every account event written after the server started (by `chat-admin` or by this
/// server) to the hub, in order.
pub(super) async fn forward_account_events(store: Store, hub: HubHandle, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EVENT_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        // Sessions logged in before the first read carry a mark no older than it, so
        // nothing they must learn of is skipped by starting there.
        let after = match seen {
            Some(after) => after,
            None => match store.last_account_event_id().await {
                Ok(id) => *seen.insert(id),
                Err(error) => {
                    tracing::warn!(%error, "cannot read account events; trying again");
                    continue;
                }
            },
        };
        let events = match store.account_events_after(after).await {
            Ok(events) => events,
            Err(error) => {
                tracing::debug!(%error, "cannot read account events");
                continue;
            }
        };
        for event in events {
            seen = Some(event.id);
            if !hub.send(Request::Account(event)).await {
                return stop.cancelled().await;
            }
        }
    }
}

/// Keeps the server's row and the list of who is online current for `chat-admin status`,
/// and removes both when the server stops.
pub(super) async fn publish_status(
    store: Store,
    mut presence: watch::Receiver<Presence>,
    listen: String,
    stop: CancellationToken,
) {
    let version = env!("CARGO_PKG_VERSION");
    let mut started = false;
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What the table holds, so each publication writes only the accounts that changed: with
    // thousands online, rewriting every row would hold the writer, which the chat's
    // messages share, for tens of milliseconds every time someone comes or goes.
    let mut published: HashMap<AccountId, OnlineAccount> = HashMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            changed = presence.changed() => {
                if changed.is_err() {
                    stop.cancelled().await;
                    break;
                }
                heartbeat.reset();
            }
            _ = heartbeat.tick() => {}
        }
        if !started {
            match store
                .publish_start(std::process::id(), version, &listen)
                .await
            {
                Ok(()) => started = true,
                Err(error) => {
                    tracing::warn!(%error, "cannot publish the server's status; trying again");
                    continue;
                }
            }
        }
        // Whatever failed to be written last time is in this difference again.
        let online = presence.borrow_and_update().clone();
        let (changed, gone) = presence_changes(&published, &online);
        let result = if changed.is_empty() && gone.is_empty() {
            store.heartbeat().await
        } else {
            store.publish_online_changes(&changed, &gone).await
        };
        match result {
            Ok(()) => published = online.iter().map(|a| (a.account_id, a.clone())).collect(),
            Err(error) => tracing::debug!(%error, "cannot publish the server's status"),
        }
    }
    if let Err(error) = store.publish_stop().await {
        tracing::debug!(%error, "cannot clear the server's status");
    }
}

/// The accounts of `now` that are new or differ from `before`, and those of `before` gone.
fn presence_changes(
    before: &HashMap<AccountId, OnlineAccount>,
    now: &[OnlineAccount],
) -> (Vec<OnlineAccount>, Vec<AccountId>) {
    let changed = now
        .iter()
        .filter(|account| before.get(&account.account_id) != Some(account))
        .cloned()
        .collect();
    let still: HashSet<AccountId> = now.iter().map(|a| a.account_id).collect();
    let gone = before
        .keys()
        .filter(|id| !still.contains(id))
        .copied()
        .collect();
    (changed, gone)
}

/// Every minute, deletes the history of rooms whose last member left, in small batches;
/// every hour (and soon after start), deletes messages older than `history_days` (when it
/// is not 0) and forgets expired codes and old account events.
pub(super) async fn sweep_regularly(store: Store, history_days: u32, stop: CancellationToken) {
    let mut tick = tokio::time::interval(FORGET_ROOMS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ticks_per_sweep = (SWEEP.as_secs() / FORGET_ROOMS.as_secs()).max(1);
    for ticks in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        delete_in_batches(
            || store.forget_emptied_rooms(DELETE_BATCH),
            "the history of rooms nobody is in",
            &stop,
        )
        .await;
        if ticks % ticks_per_sweep != 0 {
            continue;
        }
        if let Err(error) = store.prune_account_records(now_millis() - DAY_MILLIS).await {
            tracing::warn!(%error, "cannot forget expired codes and old account events");
        }
        if history_days > 0 {
            let before = now_millis() - i64::from(history_days) * DAY_MILLIS;
            delete_in_batches(
                || store.delete_messages_before(before, DELETE_BATCH),
                "messages older than the history retention",
                &stop,
            )
            .await;
        }
    }
}

/// Runs `batch` until it deletes nothing, pausing between batches so that the writer is the
/// chat's again; logs what went once at the end.
async fn delete_in_batches<F, Fut>(mut batch: F, what: &'static str, stop: &CancellationToken)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, crate::store::StoreError>>,
{
    let mut deleted = 0;
    loop {
        match batch().await {
            Ok(0) => break,
            Ok(count) => deleted += count,
            Err(error) => {
                tracing::warn!(%error, "cannot delete {what}; trying again later");
                break;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
            () = stop.cancelled() => break,
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, "deleted {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online(id: AccountId, connections: i64) -> OnlineAccount {
        OnlineAccount {
            account_id: id,
            nick: format!("user{id}"),
            connections,
            since: 1,
        }
    }

    #[test]
    fn only_changed_accounts_are_written() {
        let before: HashMap<AccountId, OnlineAccount> = [online(1, 1), online(2, 1), online(3, 2)]
            .into_iter()
            .map(|a| (a.account_id, a))
            .collect();
        let now = [online(1, 1), online(3, 1), online(4, 1)];
        let (changed, mut gone) = presence_changes(&before, &now);
        gone.sort();
        assert_eq!(changed, [online(3, 1), online(4, 1)]);
        assert_eq!(gone, [2]);
        assert_eq!(presence_changes(&HashMap::new(), &[]), (vec![], vec![]));
    }
}
