//! Password-check throttling, for logins and `/passwd` alike. Attempts are counted per
//! address (IPv4 address, IPv6 /64) and per nickname typed (whether or not the account
//! exists, so answers never tell which do).
//!
//! The limits hold whatever the concurrency:
//! - One address's attempts take turns: the next is not checked before the previous one's
//!   outcome is counted, and not before its address's failures allow (the wait doubles
//!   with each failure, up to a cap). An address that keeps failing is refused outright
//!   (`ERR rate-limited`) for a while. An attempt waiting out its nickname's delay gives
//!   its address's turn back meanwhile, still counted as if it had failed.
//! - An attempt is counted when its turn comes, before its password is hashed; only a
//!   success takes the count back. A `server-busy` answer, a dropped connection or a login
//!   timeout in the middle of a check therefore count as failures.
//! - One nickname's passwords are hashed one at a time, and an attempt first waits as long
//!   as the nickname's failures (attempts in progress included) call for, up to a smaller
//!   cap. A nickname is never refused, and that wait is fixed when the attempt starts, so an
//!   attacker elsewhere can slow the rightful user down but never lock them out.
//! - A success clears the nickname's failures, and of its address's failures only those for
//!   that nickname: logging into one's own account does not wipe the failures against
//!   somebody else's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::limits::AddressKey;

/// The throttling settings, from [`crate::Config`].
#[derive(Debug, Clone, Copy)]
pub struct ThrottleSettings {
    /// The wait after the first failure; it doubles with each further one.
    pub base_delay: Duration,
    /// The longest wait an address's failures cause.
    pub max_address_delay: Duration,
    /// The longest wait a nickname's failures cause.
    pub max_account_delay: Duration,
    /// Failures from one address after which it is refused until `max_address_delay` has
    /// passed since its last failure.
    pub refuse_after: u32,
    /// Failures older than this are forgotten.
    pub forget_after: Duration,
}

/// The address failed too often, too recently: refused without a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(AddressKey),
    Nick(String),
    /// An address's failures for one nickname: what a success there takes off the address.
    Pair(AddressKey, String),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Shared by every connection's password checks.
#[derive(Debug)]
pub struct LoginThrottle {
    settings: ThrottleSettings,
    /// Held only to read or update counters and turns; never across an `.await`.
    table: Mutex<Table>,
}

/// One address's or one nickname's turns: a single permit, handed out first come, first
/// served, and how many attempts hold or await it.
#[derive(Debug)]
struct TurnEntry {
    permits: Arc<Semaphore>,
    /// Counted under the table's mutex when an attempt starts waiting, and given back by
    /// its [`Turn`] guard however it ends (held, or dropped while still waiting), so an
    /// entry goes exactly when nobody needs it.
    users: usize,
}

#[derive(Debug)]
struct Table {
    failures: HashMap<Key, Failures>,
    sweep_at: usize,
    /// Turns taken or waited for; an entry goes when nobody holds or awaits it, so the map
    /// is no larger than the checks in progress.
    turns: HashMap<Key, TurnEntry>,
}

/// Nicknames are at most 32 characters; anything longer is cut so keys stay small.
fn nick_key(nick: &str) -> String {
    nick.chars()
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Where an address stands when its turn comes.
enum AddressState {
    Refused,
    NotBefore(Instant),
    Ready,
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            settings,
            table: Mutex::new(Table {
                failures: HashMap::new(),
                sweep_at: 1024,
                turns: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn recent(&self, table: &Table, key: &Key, now: Instant) -> Option<Failures> {
        table
            .failures
            .get(key)
            .copied()
            .filter(|f| now.saturating_duration_since(f.last) < self.settings.forget_after)
    }

    fn delay(&self, failures: Failures, cap: Duration) -> Duration {
        let doublings = failures.count.saturating_sub(1).min(20);
        self.settings
            .base_delay
            .saturating_mul(1 << doublings)
            .min(cap)
    }

    fn address_state(&self, table: &Table, address: &AddressKey, now: Instant) -> AddressState {
        let Some(failures) = self.recent(table, &Key::Address(*address), now) else {
            return AddressState::Ready;
        };
        if failures.count == 0 {
            return AddressState::Ready;
        }
        let refused_until = failures.last + self.settings.max_address_delay;
        if failures.count >= self.settings.refuse_after && now < refused_until {
            return AddressState::Refused;
        }
        let not_before = failures.last + self.delay(failures, self.settings.max_address_delay);
        if now < not_before {
            AddressState::NotBefore(not_before)
        } else {
            AddressState::Ready
        }
    }

    /// How long an attempt at `nick` starting now waits, from the nickname's failures
    /// (attempts in progress included).
    fn nick_wait(&self, table: &Table, nick: &str, now: Instant) -> Duration {
        let Some(failures) = self.recent(table, &Key::Nick(nick.to_owned()), now) else {
            return Duration::ZERO;
        };
        let not_before = failures.last + self.delay(failures, self.settings.max_account_delay);
        not_before.saturating_duration_since(now)
    }

    /// Counts the attempt before it is checked, as a failure until a success takes it
    /// back: the address's other attempts meanwhile meet its waits and its refusal window
    /// as they would after a failure now.
    fn reserve(&self, table: &mut Table, address: &AddressKey, nick: &str, now: Instant) {
        let forget_after = self.settings.forget_after;
        if table.failures.len() >= table.sweep_at {
            table
                .failures
                .retain(|_, f| now.saturating_duration_since(f.last) < forget_after);
            table.sweep_at = (table.failures.len() * 2).max(1024);
        }
        for key in [
            Key::Address(*address),
            Key::Nick(nick.to_owned()),
            Key::Pair(*address, nick.to_owned()),
        ] {
            let entry = table.failures.entry(key).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.saturating_duration_since(entry.last) >= forget_after {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
        }
    }

    fn record_failure(&self, address: &AddressKey, nick: &str, now: Instant) {
        let mut table = self.lock();
        for key in [
            Key::Address(*address),
            Key::Nick(nick.to_owned()),
            Key::Pair(*address, nick.to_owned()),
        ] {
            if let Some(entry) = table.failures.get_mut(&key) {
                entry.last = now;
            }
        }
    }

    fn record_success(&self, address: &AddressKey, nick: &str) {
        let mut table = self.lock();
        table.failures.remove(&Key::Nick(nick.to_owned()));
        let pair = table.failures.remove(&Key::Pair(*address, nick.to_owned()));
        let address_key = Key::Address(*address);
        if let (Some(pair), Some(entry)) = (pair, table.failures.get_mut(&address_key)) {
            entry.count = entry.count.saturating_sub(pair.count);
            if entry.count == 0 {
                table.failures.remove(&address_key);
            }
        }
    }

    async fn take_turn(&self, key: Key) -> Turn<'_> {
        let permits = {
            let mut table = self.lock();
            let entry = table.turns.entry(key.clone()).or_insert_with(|| TurnEntry {
                permits: Arc::new(Semaphore::new(1)),
                users: 0,
            });
            entry.users += 1;
            entry.permits.clone()
        };
        // Counted as a user from here: if this future is dropped while waiting, the guard
        // gives that back.
        let mut turn = Turn {
            throttle: self,
            key,
            permit: None,
        };
        turn.permit = Some(
            permits
                .acquire_owned()
                .await
                .expect("a turn's semaphore is never closed"),
        );
        turn
    }

    /// The turn, if nobody holds or awaits it now; never waits.
    fn try_take_turn(&self, key: Key) -> Option<Turn<'_>> {
        let mut table = self.lock();
        let entry = table.turns.entry(key.clone()).or_insert_with(|| TurnEntry {
            permits: Arc::new(Semaphore::new(1)),
            users: 0,
        });
        let permit = entry.permits.clone().try_acquire_owned().ok()?;
        entry.users += 1;
        Some(Turn {
            throttle: self,
            key,
            permit: Some(permit),
        })
    }

    /// Waits for this address's turn and for its failures' delay, counts the attempt, waits
    /// for the nickname's delay and turn, and hands back the attempt, to be checked now and
    /// told its outcome. Refused when the address failed too often. Dropping the future
    /// after the attempt was counted leaves it counted as a failure.
    pub async fn begin(&self, ip: IpAddr, nick: &str) -> Result<Attempt<'_>, Refused> {
        let address = AddressKey::from(ip);
        let nick = nick_key(nick);
        let (address_turn, nick_wait) = loop {
            let turn = self.take_turn(Key::Address(address)).await;
            let now = Instant::now();
            let not_before = {
                let mut table = self.lock();
                match self.address_state(&table, &address, now) {
                    AddressState::Refused => return Err(Refused),
                    AddressState::NotBefore(when) => when,
                    AddressState::Ready => {
                        let nick_wait = self.nick_wait(&table, &nick, now);
                        self.reserve(&mut table, &address, &nick, now);
                        break (turn, nick_wait);
                    }
                }
            };
            // Others from this address may go first; all of them see the same time.
            drop(turn);
            tokio::time::sleep_until(not_before).await;
        };
        let mut attempt = Attempt {
            throttle: self,
            address,
            nick,
            address_turn: Some(address_turn),
            nick_turn: None,
            resolved: false,
        };
        // The usual case: nobody is checking or waiting for this nickname, so the check
        // goes on at once with both turns.
        if nick_wait.is_zero() {
            if let Some(turn) = self.try_take_turn(Key::Nick(attempt.nick.clone())) {
                attempt.nick_turn = Some(turn);
                return Ok(attempt);
            }
        }
        // The nickname is busy or being slowed down: someone may be guessing it elsewhere.
        // Its owner may have to wait, but must not hold up every login from the owner's
        // address (an office behind one NAT) meanwhile, so the address's turn is given back
        // and taken again only once the nickname's turn is this attempt's. The attempt
        // stays counted, so the address's other attempts see it as they would a failure.
        // Nobody ever waits for a nickname's turn while holding an address's, so taking
        // them in this order cannot deadlock with an attempt that holds both.
        drop(attempt.address_turn.take());
        tokio::time::sleep(nick_wait).await;
        attempt.nick_turn = Some(self.take_turn(Key::Nick(attempt.nick.clone())).await);
        attempt.address_turn = Some(self.take_turn(Key::Address(address)).await);
        Ok(attempt)
    }
}

/// A turn being taken; giving it back forgets its semaphore once nobody else waits for it.
struct Turn<'a> {
    throttle: &'a LoginThrottle,
    key: Key,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut table = self.throttle.lock();
        if let Some(entry) = table.turns.get_mut(&self.key) {
            entry.users -= 1;
            if entry.users == 0 {
                table.turns.remove(&self.key);
            }
        }
    }
}

/// One counted password check, holding its address's and its nickname's turns until its
/// outcome is known. Dropped without [`Attempt::succeeded`], it stays a failure.
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    address: AddressKey,
    nick: String,
    address_turn: Option<Turn<'a>>,
    nick_turn: Option<Turn<'a>>,
    resolved: bool,
}

impl Attempt<'_> {
    /// The password was right: the nickname's failures, and its address's failures for
    /// this nickname, are forgotten.
    pub fn succeeded(mut self) {
        self.resolved = true;
        self.throttle.record_success(&self.address, &self.nick);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.resolved {
            self.throttle
                .record_failure(&self.address, &self.nick, Instant::now());
        }
        // The outcome is counted before the next attempt at either key gets its turn.
        drop(self.nick_turn.take());
        drop(self.address_turn.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottleSettings {
            base_delay: Duration::from_millis(100),
            max_address_delay: Duration::from_secs(10),
            max_account_delay: Duration::from_secs(2),
            refuse_after: 5,
            forget_after: Duration::from_secs(600),
        })
    }

    fn address(s: &str) -> AddressKey {
        s.parse::<IpAddr>().unwrap().into()
    }

    /// What an attempt from `from` at `nick` would meet at `now`: refused, or the wait
    /// before its check (the address's and the nickname's, whichever ends later).
    fn meet(t: &LoginThrottle, from: &str, nick: &str, now: Instant) -> Option<Duration> {
        let table = t.lock();
        let address_wait = match t.address_state(&table, &address(from), now) {
            AddressState::Refused => return None,
            AddressState::NotBefore(when) => when - now,
            AddressState::Ready => Duration::ZERO,
        };
        Some(address_wait.max(t.nick_wait(&table, &nick_key(nick), now)))
    }

    fn fail(t: &LoginThrottle, from: &str, nick: &str, now: Instant) {
        let nick = nick_key(nick);
        t.reserve(&mut t.lock(), &address(from), &nick, now);
        t.record_failure(&address(from), &nick, now);
    }

    fn succeed(t: &LoginThrottle, from: &str, nick: &str, now: Instant) {
        let nick = nick_key(nick);
        t.reserve(&mut t.lock(), &address(from), &nick, now);
        t.record_success(&address(from), &nick);
    }

    #[test]
    fn waits_double_per_failure_up_to_the_cap() {
        let t = throttle();
        let now = Instant::now();
        assert_eq!(meet(&t, "192.0.2.1", "alice", now), Some(Duration::ZERO));
        let mut waits = Vec::new();
        for _ in 0..4 {
            fail(&t, "192.0.2.1", "alice", now);
            waits.push(meet(&t, "192.0.2.1", "alice", now).unwrap().as_millis());
        }
        assert_eq!(waits, [100, 200, 400, 800]);
        // The wait runs from the last failure, not from the next attempt.
        let later = now + Duration::from_millis(300);
        assert_eq!(
            meet(&t, "192.0.2.1", "alice", later),
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn an_address_is_refused_for_a_while_but_a_nickname_never_is() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..8 {
            fail(&t, "192.0.2.1", "Alice", now);
        }
        assert_eq!(meet(&t, "192.0.2.1", "bob", now), None);
        // The rightful alice, elsewhere: slowed down (100 ms x 2^7, capped at 2 s), not
        // refused.
        assert_eq!(
            meet(&t, "198.51.100.7", "alice", now),
            Some(Duration::from_secs(2))
        );
        // The refusal ends once the cap has passed since the last failure.
        let later = now + Duration::from_secs(11);
        assert_eq!(meet(&t, "192.0.2.1", "bob", later), Some(Duration::ZERO));
        succeed(&t, "198.51.100.7", "alice", now);
        assert_eq!(meet(&t, "198.51.100.7", "alice", now), Some(Duration::ZERO));
    }

    #[test]
    fn old_failures_are_forgotten() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..5 {
            fail(&t, "2001:db8::1", "x", now);
        }
        let much_later = now + Duration::from_secs(601);
        assert_eq!(
            meet(&t, "2001:db8::1", "x", much_later),
            Some(Duration::ZERO)
        );
        // A neighbour in the same /64 shares the address's record.
        assert_eq!(meet(&t, "2001:db8::2", "y", now), None);
    }

    #[test]
    fn a_success_clears_only_its_own_nicknames_failures() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..4 {
            fail(&t, "192.0.2.1", "alice", now);
        }
        // The attacker's own account, from the same address: the failures against alice
        // stay, and one more gets the address refused.
        succeed(&t, "192.0.2.1", "mallory", now);
        fail(&t, "192.0.2.1", "alice", now);
        assert_eq!(meet(&t, "192.0.2.1", "mallory", now), None);
        // alice's own typos, cleared by her success, no longer count against her address;
        // bob's stay.
        let t = throttle();
        fail(&t, "192.0.2.2", "bob", now);
        for _ in 0..3 {
            fail(&t, "192.0.2.2", "Alice", now);
        }
        succeed(&t, "192.0.2.2", "alice", now);
        assert_eq!(
            meet(&t, "192.0.2.2", "carol", now),
            Some(Duration::from_millis(100))
        );
    }

    #[test]
    fn attempts_in_progress_count_for_the_nickname() {
        let t = throttle();
        let now = Instant::now();
        t.reserve(&mut t.lock(), &address("192.0.2.1"), "alice", now);
        t.reserve(&mut t.lock(), &address("192.0.2.2"), "alice", now);
        assert_eq!(
            meet(&t, "192.0.2.3", "alice", now),
            Some(Duration::from_millis(200))
        );
    }

    /// A turn awaited by an attempt whose connection went away (its future dropped while
    /// waiting) is forgotten with the rest: nicknames are the attacker's to choose, so a
    /// leftover entry per abandoned wait would grow the table without bound.
    #[tokio::test]
    async fn a_turn_awaited_by_an_abandoned_attempt_is_forgotten() {
        let t = Arc::new(throttle());
        let key = Key::Nick("alice".into());
        let holder = t.take_turn(key.clone()).await;
        let waiter = {
            let (t, key) = (t.clone(), key.clone());
            tokio::spawn(async move {
                let _turn = t.take_turn(key).await;
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while t.lock().turns.get(&key).is_none_or(|entry| entry.users < 2) {
            assert!(Instant::now() < deadline, "the waiter never queued");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The holder lets go while the waiter is still queued; the waiter is dropped
        // before it runs again (a test runtime runs one task at a time).
        drop(holder);
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert!(t.lock().turns.is_empty(), "{:?}", t.lock().turns);
    }

    /// An address whose refusal has just run out gets one check, and is refused again
    /// once that fails, however many attempts it has waiting. Attempts whose nickname
    /// has a delay to wait out (someone else guessing it keeps it there) must not all
    /// slip past the address's count meanwhile.
    #[tokio::test]
    async fn an_address_past_its_refusal_gets_one_check_even_at_a_busy_nickname() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let t = Arc::new(LoginThrottle::new(ThrottleSettings {
            base_delay: Duration::from_millis(1),
            max_address_delay: Duration::from_millis(500),
            max_account_delay: Duration::from_millis(200),
            refuse_after: 10,
            forget_after: Duration::from_secs(600),
        }));
        let now = Instant::now();
        let long_ago = now.checked_sub(Duration::from_millis(600)).unwrap();
        for _ in 0..10 {
            fail(&t, "192.0.2.9", "alice", long_ago);
        }
        // Another address's attempt at alice is in progress: alice has a delay to wait out.
        t.reserve(&mut t.lock(), &address("198.51.100.1"), "alice", now);
        let checked = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (t, checked) = (t.clone(), checked.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(attempt) = t.begin("192.0.2.9".parse().unwrap(), "alice").await else {
                    return;
                };
                checked.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                drop(attempt);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            checked.load(SeqCst),
            1,
            "password checks from a refused address"
        );
    }

    /// Someone guessing alice elsewhere keeps her nickname's turn busy (a check waiting
    /// for a hashing slot can take seconds). Alice's own attempt waits for that turn, but
    /// bob, logging in from alice's office address, must not wait behind her.
    #[tokio::test]
    async fn waiting_for_a_busy_nicknames_turn_does_not_hold_up_its_address() {
        let t = Arc::new(throttle());
        let guess = t.begin("198.51.100.1".parse().unwrap(), "alice").await;
        let office_alice = {
            let t = t.clone();
            tokio::spawn(async move {
                let attempt = t.begin("192.0.2.50".parse().unwrap(), "alice").await;
                drop(attempt);
            })
        };
        // Alice's attempt has been counted and is waiting for her nickname.
        let deadline = Instant::now() + Duration::from_secs(5);
        while t
            .lock()
            .turns
            .get(&Key::Nick("alice".into()))
            .is_none_or(|entry| entry.users < 2)
        {
            assert!(Instant::now() < deadline, "alice's attempt never queued");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let bob = tokio::time::timeout(
            Duration::from_secs(2),
            t.begin("192.0.2.50".parse().unwrap(), "bob"),
        )
        .await;
        assert!(bob.is_ok(), "bob waited for someone else's guess at alice");
        drop(bob);
        drop(guess);
        office_alice.await.unwrap();
    }

    /// Thirty attempts at once from one address: checked one at a time, each counted, and
    /// the address refused after the limit. Real time, with waits of a millisecond.
    #[tokio::test]
    async fn parallel_attempts_from_one_address_take_turns_and_count() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let t = Arc::new(LoginThrottle::new(ThrottleSettings {
            base_delay: Duration::from_millis(1),
            max_address_delay: Duration::from_secs(60),
            max_account_delay: Duration::from_millis(1),
            refuse_after: 5,
            forget_after: Duration::from_secs(600),
        }));
        let checked = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..30 {
            let (t, checked, in_flight) = (t.clone(), checked.clone(), in_flight.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(attempt) = t.begin("192.0.2.9".parse().unwrap(), "alice").await else {
                    return;
                };
                assert_eq!(in_flight.fetch_add(1, SeqCst), 0, "one check at a time");
                tokio::task::yield_now().await;
                in_flight.fetch_sub(1, SeqCst);
                checked.fetch_add(1, SeqCst);
                drop(attempt);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(checked.load(SeqCst), 5);
        assert!(t.lock().turns.is_empty(), "turns are forgotten");
        // An attempt abandoned during its check counts too.
        let t = LoginThrottle::new(ThrottleSettings {
            refuse_after: 1,
            ..t.settings
        });
        let abandoned = t.begin("192.0.2.8".parse().unwrap(), "bob").await;
        drop(abandoned);
        assert!(t
            .begin("192.0.2.8".parse().unwrap(), "carol")
            .await
            .is_err());
    }
}
