//! The server's certificate, replaceable while the server runs. A rustls certificate
//! resolver hands every new handshake the certificate in force; [`CertReloader`] re-reads
//! the chain and key files on request (SIGHUP) or when they change on disk, and swaps the
//! resolver's certificate only when the new pair loads and belongs together. A handshake
//! takes its `Arc<CertifiedKey>` once, so established sessions never notice a swap.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use tokio::sync::mpsc;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use x509_cert::der::Decode;

use super::tls::{fingerprint_sha256, load_certs, load_key, provider, TlsError};

/// A certificate this close to its expiry is warned about at start, daily and at each reload.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A certificate resolver whose certificate can be replaced.
#[derive(Debug)]
pub struct SwappableCert {
    /// Read once per handshake, written once per reload; never held across an await.
    current: RwLock<Arc<CertifiedKey>>,
}

impl SwappableCert {
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        Self {
            current: RwLock::new(key),
        }
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        // The lock only guards an `Arc` assignment, which cannot be left half done, so a
        // poisoned lock still holds a whole value.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn swap(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What the log tells about a certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// SHA-256 of the end-entity certificate, as `openssl x509 -fingerprint -sha256` shows it.
    pub fingerprint: String,
    /// The leaf's subject and expiry; `None` if rustls accepted a certificate that the
    /// X.509 parser cannot read (it is served all the same, without expiry warnings).
    pub leaf: Option<LeafInfo>,
}

#[derive(Debug, Clone)]
pub struct LeafInfo {
    /// RFC 4514, e.g. `CN=chat.example.com`.
    pub subject: String,
    pub not_after: DateTime<Utc>,
}

impl CertInfo {
    fn of(leaf_der: &[u8]) -> Result<Self, x509_cert::der::Error> {
        let fingerprint = fingerprint_sha256(leaf_der);
        let cert = x509_cert::Certificate::from_der(leaf_der)?;
        let tbs = cert.tbs_certificate;
        let not_after = SystemTime::UNIX_EPOCH + tbs.validity.not_after.to_unix_duration();
        Ok(Self {
            fingerprint,
            leaf: Some(LeafInfo {
                subject: tbs.subject.to_string(),
                not_after: not_after.into(),
            }),
        })
    }

    /// `CN=chat.example.com, expires 2026-09-01 12:00 UTC (SHA-256 AB:CD:...)`.
    pub fn describe(&self) -> String {
        match &self.leaf {
            Some(leaf) => format!(
                "{}, expires {} (SHA-256 {})",
                leaf.subject,
                leaf.not_after.format("%Y-%m-%d %H:%M UTC"),
                self.fingerprint
            ),
            None => format!("SHA-256 {}", self.fingerprint),
        }
    }

    /// Logs a warning if the certificate expires within [`EXPIRY_WARNING`] of `now`, an
    /// error if it has expired; true if it did either.
    pub fn warn_if_expiring(&self, path: &Path, now: DateTime<Utc>) -> bool {
        let Some(leaf) = &self.leaf else {
            return false;
        };
        let left = leaf.not_after - now;
        let date = leaf.not_after.format("%Y-%m-%d %H:%M UTC");
        let path = path.display();
        if left <= chrono::Duration::zero() {
            tracing::error!(
                "certificate {path} ({}) expired on {date}, {} days ago: clients refuse it; \
                 renew it (the server picks up the new files by itself)",
                leaf.subject,
                -left.num_days()
            );
            true
        } else if left.to_std().is_ok_and(|left| left <= EXPIRY_WARNING) {
            tracing::warn!(
                "certificate {path} ({}) expires on {date}, in {} days; renew it \
                 (the server picks up the new files by itself)",
                leaf.subject,
                left.num_days()
            );
            true
        } else {
            false
        }
    }
}

/// A chain and key read from their files and checked to belong together.
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// Reads `cert` (a chain: the leaf first, then intermediates, as an ACME `fullchain.pem`)
/// and `key` (PKCS#8, SEC1 or PKCS#1 PEM), and checks the key is the leaf's.
pub fn load(cert: &Path, key: &Path) -> Result<LoadedCert, TlsError> {
    let chain = load_certs(cert)?;
    let signing_key = provider()
        .key_provider
        .load_private_key(load_key(key)?)
        .map_err(|source| TlsError::BadKey {
            path: key.to_owned(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key cannot tell its public half; rustls's own loader accepts that too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })
        }
        Err(source) => {
            return Err(TlsError::BadCert {
                path: cert.to_owned(),
                source,
            })
        }
    }
    let leaf = &certified.cert[0];
    let info = CertInfo::of(leaf).unwrap_or_else(|error| {
        tracing::warn!(
            "cannot read the subject and expiry of {}: {error}; serving it without expiry warnings",
            cert.display()
        );
        CertInfo {
            fingerprint: fingerprint_sha256(leaf),
            leaf: None,
        }
    });
    Ok(LoadedCert {
        key: Arc::new(certified),
        info,
    })
}

/// What identifies a file's content without reading it. Metadata follows symlinks, so
/// re-pointing certbot's `live/` links at new files in `archive/` counts as a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    device: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let (device, inode) = {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    };
    #[cfg(not(unix))]
    let (device, inode) = (0, 0);
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        device,
        inode,
    })
}

/// Keeps a [`SwappableCert`] in step with a certificate file and a key file.
pub struct CertReloader {
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<SwappableCert>,
    /// The certificate in service.
    info: CertInfo,
    /// Both files as they were before the last attempt, successful or not: a bad file is
    /// reported once and tried again only when one of the two changes. (An ACME client
    /// writes the chain and the key one after the other, so the first may be seen alone.)
    seen: (Option<FileStamp>, Option<FileStamp>),
}

impl CertReloader {
    /// Loads the certificate (an error if it does not load: a server must not start
    /// without one) and returns the reloader and a server configuration that serves it.
    pub fn start(cert: &Path, key: &Path) -> Result<(Self, Arc<ServerConfig>), TlsError> {
        let seen = (stamp(cert), stamp(key));
        let loaded = load(cert, key)?;
        let resolver = Arc::new(SwappableCert::new(loaded.key));
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        let reloader = Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            resolver,
            info: loaded.info,
            seen,
        };
        Ok((reloader, Arc::new(config)))
    }

    /// The certificate in service.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// Reloads if either file changed since the last attempt.
    pub fn reload_if_changed(&mut self) {
        if (stamp(&self.cert), stamp(&self.key)) != self.seen {
            self.reload("the files changed");
        }
    }

    /// Reads both files and serves the new certificate if they load and match; otherwise
    /// logs why, naming the file, and keeps the old one in service.
    pub fn reload(&mut self, why: &str) {
        // Stamped before reading: a change during the read shows at the next check.
        self.seen = (stamp(&self.cert), stamp(&self.key));
        match load(&self.cert, &self.key) {
            Ok(loaded) if loaded.info.fingerprint == self.info.fingerprint => {
                tracing::info!(
                    "certificate {} reloaded ({why}): the same certificate",
                    self.cert.display()
                );
            }
            Ok(loaded) => {
                self.resolver.swap(loaded.key);
                self.info = loaded.info;
                tracing::info!(
                    "certificate reloaded ({why}): {} now serves {}",
                    self.cert.display(),
                    self.info.describe()
                );
                self.info.warn_if_expiring(&self.cert, Utc::now());
            }
            Err(error @ TlsError::KeyMismatch { .. }) => tracing::warn!(
                "certificate not reloaded ({why}): {error}; still serving {}. A key being \
                 replaced too is picked up as soon as it is written",
                self.info.describe()
            ),
            Err(error) => tracing::error!(
                "certificate not reloaded ({why}): {error}; still serving {}",
                self.info.describe()
            ),
        }
    }

    /// Runs for the life of the server: reloads on each request (the binary forwards
    /// SIGHUP, the request naming why), checks the files every `check_every` (`None`: never), and repeats the
    /// expiry warning daily.
    ///
    /// Two stat calls and, rarely, two small files: done inline, cheaper than a trip to
    /// the blocking pool.
    pub async fn watch(
        mut self,
        check_every: Option<Duration>,
        mut requests: mpsc::Receiver<&'static str>,
    ) {
        let start = Instant::now();
        // An interval that never fires when polling is off keeps one `select!` for both.
        let mut poll = interval_at(
            start + check_every.unwrap_or(DAY),
            check_every.unwrap_or(DAY),
        );
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut daily = interval_at(start + DAY, DAY);
        daily.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut requests_open = true;
        loop {
            tokio::select! {
                request = requests.recv(), if requests_open => match request {
                    Some(why) => self.reload(why),
                    None => requests_open = false,
                },
                _ = poll.tick(), if check_every.is_some() => self.reload_if_changed(),
                _ = daily.tick() => {
                    self.info.warn_if_expiring(&self.cert, Utc::now());
                }
            }
        }
    }
}
