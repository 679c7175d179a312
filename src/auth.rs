//! Password hashing with argon2id (OWASP's parameters: 19 MiB, 2 passes, 1 lane), run on a
//! few threads of its own at a lower priority, behind a semaphore, so hashing never stalls
//! the chat. Each thread keeps its 19 MiB of working memory and reuses it (see
//! `with_blocks`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::cell::RefCell;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::protocol::MIN_PASSWORD_CHARS;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Every hashing slot stayed busy for the whole wait.
    #[error("too many logins in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
    #[error("cannot start the password hashing threads: {0}")]
    StartThreads(std::io::Error),
    #[error("the password hashing threads have stopped")]
    ThreadsStopped,
    /// The job panicked on its hashing thread (the thread itself lives on).
    #[error("a password hash failed on its thread")]
    JobFailed,
}

/// The hasher every account uses. Verification reads the parameters from each PHC string, so
/// raising these later keeps old hashes working.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2id parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

thread_local! {
    /// This thread's argon2 working memory. Allocating 19 MiB per hash (as argon2's own
    /// `hash_password` does) costs a memset each time, and glibc keeps the freed blocks in
    /// per-thread arenas: a server that had hashed on a few threads stayed hundreds of MiB
    /// larger for good.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Computes an argon2 hash into `out` with this thread's reused working memory. The memory
/// need not be cleared: argon2 writes every block before it reads it.
fn with_blocks(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let needed = argon.params().block_count();
    if needed > MAX_MEMORY_BLOCKS {
        return Err(argon2::Error::MemoryTooMuch);
    }
    BLOCKS.with_borrow_mut(|blocks| {
        if blocks.len() < needed {
            blocks.resize(needed, Block::default());
        }
        let result =
            argon.hash_password_into_with_memory(password, salt, out, &mut blocks[..needed]);
        // A hash stored with more memory than ours (parameters raised later, an imported
        // hash) gets its memory for that check only; the thread keeps our own size.
        if blocks.len() > ours_block_count() {
            *blocks = Vec::new();
        }
        result
    })
}

/// The most memory a stored hash may ask for: 256 MiB (a block is 1 KiB). A larger one
/// fails to verify rather than letting one database row pin that much per hashing thread.
const MAX_MEMORY_BLOCKS: usize = 256 * 1024;

fn ours_block_count() -> usize {
    argon2().params().block_count()
}

/// Hashes on the calling thread; for `chat-admin` and for the async wrapper below.
pub fn hash_password_blocking(password: &str) -> Result<String, AuthError> {
    let failed = AuthError::Hash;
    let salt = SaltString::generate(&mut OsRng);
    let argon = argon2();
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes).map_err(failed)?;
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        Ok(with_blocks(&argon, password.as_bytes(), salt_bytes, out)?)
    })
    .map_err(failed)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(failed)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Hashes every password on `threads` threads of its own (at least one), for bulk imports;
/// the hashes come back in the order of `passwords`. `progress` is told how many are done
/// after each one. The first failure stops the work.
pub fn hash_many_blocking(
    passwords: &[&str],
    threads: usize,
    progress: impl Fn(usize) + Sync,
) -> Result<Vec<String>, AuthError> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || -> Result<Vec<(usize, String)>, AuthError> {
        let mut hashed = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(password) = passwords.get(index) else {
                break;
            };
            let hash = hash_password_blocking(password).inspect_err(|_| {
                failed.store(true, Ordering::Relaxed);
            })?;
            hashed.push((index, hash));
            progress(done.fetch_add(1, Ordering::Relaxed) + 1);
        }
        Ok(hashed)
    };
    let threads = threads.clamp(1, passwords.len().max(1));
    let parts: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e))
            })
            .collect()
    });
    let mut hashes = vec![String::new(); passwords.len()];
    for part in parts {
        for (index, hash) in part? {
            hashes[index] = hash;
        }
    }
    Ok(hashes)
}

/// Checks `password` against a PHC string, with the parameters the string names. The
/// comparison takes the same time wherever the hashes differ (`Output`'s equality).
fn verify_blocking(phc: &str, password: &str) -> bool {
    let check = || -> Option<bool> {
        let hash = PasswordHash::new(phc).ok()?;
        let expected = hash.hash?;
        let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
        let version = match hash.version {
            Some(version) => Version::try_from(version).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&hash).ok()?;
        let mut salt = [0u8; 64];
        let salt = hash.salt?.decode_b64(&mut salt).ok()?;
        let argon = Argon2::new(algorithm, version, params);
        let computed = Output::init_with(expected.len(), |out| {
            Ok(with_blocks(&argon, password.as_bytes(), salt, out)?)
        })
        .ok()?;
        Some(computed == expected)
    };
    check().unwrap_or(false)
}

/// The reason a new password is refused, or `None` when it is acceptable.
pub fn password_problem(password: &str) -> Option<String> {
    (password.chars().count() < MIN_PASSWORD_CHARS)
        .then(|| format!("A password needs at least {MIN_PASSWORD_CHARS} characters"))
}

type HashJob = Box<dyn FnOnce() + Send>;

/// How much lower than the chat the hashing threads run (a nice value). Logins then take
/// whatever CPU the chat leaves, so a login storm slows logins, not the conversation.
const HASHING_NICENESS: i32 = 10;

/// Starts `count` hashing threads that take jobs from one queue and stop when every sender
/// is gone. Dedicated threads keep the argon2 memory at `count x 19 MiB` and can be given a
/// lower priority, which a shared blocking pool could not.
fn start_hashing_threads(count: usize) -> std::io::Result<std::sync::mpsc::Sender<HashJob>> {
    let (sender, receiver) = std::sync::mpsc::channel::<HashJob>();
    let receiver = Arc::new(std::sync::Mutex::new(receiver));
    for index in 0..count {
        let receiver = receiver.clone();
        std::thread::Builder::new()
            .name(format!("hash-{index}"))
            .spawn(move || {
                lower_this_threads_priority();
                loop {
                    // Only waiting threads contend for this lock; a job runs without it.
                    let job = match receiver.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    match job {
                        // A panic fails that one login (its answer channel drops) and must not
                        // take the thread with it: fewer threads than permits would stall
                        // logins, and none at all would end them for good.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                }
            })?;
    }
    Ok(sender)
}

fn lower_this_threads_priority() {
    // Linux applies PRIO_PROCESS with a thread id to that thread alone.
    #[cfg(target_os = "linux")]
    {
        let thread = rustix::thread::gettid();
        if let Err(error) = rustix::process::setpriority_process(Some(thread), HASHING_NICENESS) {
            tracing::debug!(%error, "could not lower the priority of a hashing thread");
        }
    }
}

/// A cheap `Clone` handle to the bounded hashing service.
#[derive(Clone)]
pub struct Passwords {
    jobs: std::sync::mpsc::Sender<HashJob>,
    permits: Arc<Semaphore>,
    /// Verified against when the nickname does not exist, so a login for an unknown nickname
    /// costs the same as one with a wrong password.
    dummy_hash: Arc<str>,
    /// How long a request waits for a hashing slot before the answer is `server-busy`.
    max_wait: Duration,
}

impl Passwords {
    pub fn new(max_in_flight: usize, max_wait: Duration) -> Result<Self, AuthError> {
        let dummy = hash_password_blocking("no account has this password, it only burns time")?;
        let threads = max_in_flight.max(1);
        let jobs = start_hashing_threads(threads).map_err(AuthError::StartThreads)?;
        Ok(Self {
            jobs,
            // One job waits queued behind each running one, so a thread that finishes a hash
            // starts the next at once instead of idling until the runtime gets round to
            // handing it one (idle CPU in a login storm). A queued job holds no argon2 memory.
            permits: Arc::new(Semaphore::new(threads * 2)),
            dummy_hash: dummy.into(),
            max_wait,
        })
    }

    /// Hashes a new password off the async runtime.
    pub async fn hash(&self, password: String) -> Result<String, AuthError> {
        self.run(move || hash_password_blocking(&password)).await?
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no account;
    /// the result is then always false, but only after the same amount of work.
    pub async fn verify(
        &self,
        stored: Option<String>,
        password: String,
    ) -> Result<bool, AuthError> {
        let exists = stored.is_some();
        let phc = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = self.run(move || verify_blocking(&phc, &password)).await?;
        Ok(exists && matches)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let permit = tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| AuthError::Busy)?
            .map_err(|_| AuthError::Busy)?;
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move || {
            let _permit = permit;
            let _ = answer.send(work());
        });
        self.jobs.send(job).map_err(|_| AuthError::ThreadsStopped)?;
        answered.await.map_err(|_| AuthError::JobFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let passwords = Passwords::new(2, Duration::from_secs(5)).unwrap();
        let phc = passwords.hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(passwords
            .verify(Some(phc.clone()), "correct horse".into())
            .await
            .unwrap());
        assert!(!passwords
            .verify(Some(phc), "wrong horse".into())
            .await
            .unwrap());
        assert!(!passwords.verify(None, "anything".into()).await.unwrap());
    }

    #[test]
    fn many_hashes_come_back_in_order() {
        let passwords = ["first password", "second password", "third password"];
        let most = AtomicUsize::new(0);
        let hashes = hash_many_blocking(&passwords, 2, |done| {
            most.fetch_max(done, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(hashes.len(), 3);
        for (hash, password) in hashes.iter().zip(passwords) {
            assert!(verify_blocking(hash, password), "{password}");
        }
        assert!(!verify_blocking(&hashes[0], passwords[1]));
        assert_eq!(most.into_inner(), 3);
        assert!(hash_many_blocking(&[], 4, |_| {}).unwrap().is_empty());
    }

    #[test]
    fn hashes_from_argon2s_own_hasher_still_verify() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::generate(&mut OsRng);
        let stock = argon2().hash_password(b"an older hash", &salt).unwrap();
        assert!(verify_blocking(&stock.to_string(), "an older hash"));
        assert!(!verify_blocking(&stock.to_string(), "another password"));
        let ours = hash_password_blocking("a newer hash").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2().verify_password(b"a newer hash", &parsed).is_ok());
        assert!(!verify_blocking("not a PHC string", "a newer hash"));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(password_problem("1234567").is_some());
        assert!(password_problem("12345678").is_none());
        assert!(password_problem("ééééééé").is_some());
    }
}
