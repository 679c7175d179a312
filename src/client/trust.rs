//! Deciding whether to trust a server's certificate, the way SSH users know it.
//!
//! - With `--ca PEM` ([`Trust::Ca`]) only that private CA is trusted.
//! - Otherwise ([`Trust::SystemOrPinned`]) a certificate the system's roots accept for the
//!   server's name is trusted. A self-signed (or privately signed) certificate is trusted on
//!   first use: the user is shown its SHA-256 fingerprint and asked once; the answer is
//!   remembered per `host:port` in a `known_hosts` file, and from then on that certificate,
//!   and only that one, is accepted for that `host:port`. If it ever changes the connection
//!   is refused with a loud warning, as SSH does for a changed host key.
//!
//! There is deliberately no way to skip the check.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::config::known_hosts_path;
use super::{split_host_port, ClientError, LineReader, LineWriter};
use crate::net::tls::{self, fingerprint_sha256, TlsError};

/// The comment that opens a `known_hosts` file this module creates.
const KNOWN_HOSTS_HEADER: &str =
    "# tlschat: trusted server certificates, one `host:port SHA-256-fingerprint` a line.";

/// How the client decides to trust the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Only certificates signed by the CA in this PEM file (`--ca`); the system's roots and
    /// `known_hosts` play no part.
    Ca(PathBuf),
    /// The system's roots; failing those, the fingerprint remembered for the server's
    /// `host:port` in this `known_hosts` file, asking the user about an unknown one.
    SystemOrPinned {
        /// The file of remembered fingerprints, usually [`known_hosts_path`].
        known_hosts: PathBuf,
    },
}

impl Trust {
    /// `--ca` when given, else the system's roots and the user's `known_hosts` file.
    pub fn for_user(ca: Option<PathBuf>) -> Result<Self, TrustError> {
        match ca {
            Some(ca) => Ok(Self::Ca(ca)),
            None => known_hosts_path()
                .map(|known_hosts| Self::SystemOrPinned { known_hosts })
                .ok_or(TrustError::NoConfigDir),
        }
    }
}

/// Why no trusted connection could be made.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The server presents a certificate other than the one the user trusted: an attack, or
    /// a replaced certificate. Never accepted without the user editing `known_hosts`.
    #[error("{}", changed_warning(.server, .remembered, .presented, .known_hosts))]
    Changed {
        /// `host:port` as written in `known_hosts`.
        server: String,
        /// The fingerprint in `known_hosts`.
        remembered: String,
        /// The fingerprint of the certificate the server presented.
        presented: String,
        /// The file holding the old line, so the message can say what to edit.
        known_hosts: PathBuf,
    },
    /// The certificate is neither signed by a trusted CA nor remembered, and the user
    /// declined it (or there was nobody to ask).
    #[error(
        "the certificate of {server} is not trusted: no trusted CA signed it and its \
         SHA-256 fingerprint {fingerprint} was not accepted; pass --ca with the server's CA \
         certificate, or check the fingerprint with the server's administrator and accept it \
         when asked"
    )]
    NotTrusted {
        /// `host:port`.
        server: String,
        /// The fingerprint of the certificate the server presented.
        fingerprint: String,
    },
    /// The `known_hosts` file could not be read or written.
    #[error("cannot use {}: {source}", .path.display())]
    KnownHosts { path: PathBuf, source: io::Error },
    /// Without `--ca` fingerprints must be remembered somewhere, and there is no home folder.
    #[error("cannot find a config folder to keep known_hosts in; pass --ca")]
    NoConfigDir,
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The message for [`TrustError::Changed`], loud on purpose.
fn changed_warning(server: &str, remembered: &str, presented: &str, known_hosts: &Path) -> String {
    format!(
        "\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: SERVER IDENTIFICATION HAS CHANGED!          @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be intercepting this connection right now (a man-in-the-middle attack).
It is also possible that the server's certificate has just been replaced.
You trusted {server} with the certificate whose SHA-256 fingerprint is
    {remembered}
but it now presents a certificate whose SHA-256 fingerprint is
    {presented}
Ask the server's administrator which one is right (chat-server logs it when it starts).
If the change is expected, delete the line starting with \"{server} \" from
    {}
and connect again to be asked about the new certificate.
The connection was refused.",
        known_hosts.display()
    )
}

/// The `host:port` under which a server's fingerprint is remembered: the host in lower case,
/// an IPv6 address in brackets (`[::1]:7777`).
pub fn host_port_key(server: &str) -> Result<String, ClientError> {
    let (host, port) = split_host_port(server)?;
    let host = host.to_ascii_lowercase();
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// Connects to `server` (`HOST:PORT`) and completes the TLS handshake.
///
/// With [`Trust::Ca`] only that CA is trusted. Otherwise a certificate neither the system's
/// roots nor `known_hosts` vouch for is shown to `ask` (`host:port`, SHA-256 fingerprint),
/// which returns whether the user trusts it; if so it is remembered and the connection is
/// retried once. Once a fingerprint is remembered `ask` is not called again for that
/// `host:port`, so reconnects call this same function. `ask` runs on the calling task.
pub async fn connect(
    server: &str,
    trust: &Trust,
    ask: &mut (dyn FnMut(&str, &str) -> bool + Send),
) -> Result<(LineReader, LineWriter), TrustError> {
    let known_hosts = match trust {
        Trust::Ca(ca) => {
            let config = tls::client_config(Some(ca))?;
            return Ok(super::connect(server, config).await?);
        }
        Trust::SystemOrPinned { known_hosts } => known_hosts,
    };
    let host_port = host_port_key(server)?;
    let mut asked = false;
    loop {
        let pin = load_known_hosts(known_hosts)?
            .fingerprint_for(&host_port)
            .map(str::to_owned);
        let verifier = Arc::new(PinningVerifier::new(pin));
        let config = pinning_client_config(verifier.clone())?;
        let error = match super::connect(server, config).await {
            Ok(connection) => return Ok(connection),
            Err(error) => error,
        };
        match verifier.take_verdict() {
            None => return Err(error.into()),
            Some(Verdict::Changed {
                remembered,
                presented,
            }) => {
                return Err(TrustError::Changed {
                    server: host_port,
                    remembered,
                    presented,
                    known_hosts: known_hosts.clone(),
                })
            }
            Some(Verdict::Unknown { fingerprint }) => {
                if asked || !ask(&host_port, &fingerprint) {
                    return Err(TrustError::NotTrusted {
                        server: host_port,
                        fingerprint,
                    });
                }
                asked = true;
                // Read again: another client may have written the file while the user thought.
                load_known_hosts(known_hosts)?
                    .remember(&host_port, &fingerprint)
                    .map_err(|source| TrustError::KnownHosts {
                        path: known_hosts.clone(),
                        source,
                    })?;
            }
        }
    }
}

fn load_known_hosts(path: &Path) -> Result<KnownHosts, TrustError> {
    KnownHosts::load(path).map_err(|source| TrustError::KnownHosts {
        path: path.to_owned(),
        source,
    })
}

/// A client configuration whose certificate check is `verifier`.
pub fn pinning_client_config(
    verifier: Arc<PinningVerifier>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The remembered fingerprints: lines `host:port FINGERPRINT`, the fingerprint as
/// [`fingerprint_sha256`] prints it. `#` comments, blank lines and lines that are not
/// entries are ignored but kept when the file is rewritten.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    /// Where [`KnownHosts::remember`] writes.
    path: PathBuf,
    /// Every line of the file, in order.
    lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Entry {
        host_port: String,
        fingerprint: String,
    },
    /// A comment, a blank line or anything else, kept as it was.
    Other(String),
}

impl Line {
    fn parse(line: &str) -> Self {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return Self::Other(line.to_owned());
        }
        let mut fields = trimmed.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some(host_port), Some(fingerprint), None) => Self::Entry {
                host_port: host_port.to_owned(),
                fingerprint: fingerprint.to_owned(),
            },
            _ => Self::Other(line.to_owned()),
        }
    }

    fn is_for(&self, wanted: &str) -> bool {
        matches!(self, Self::Entry { host_port, .. } if host_port.eq_ignore_ascii_case(wanted))
    }
}

impl KnownHosts {
    /// Reads the file at `path`; a missing file has no entries.
    pub fn load(path: &Path) -> io::Result<Self> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(error),
        };
        Ok(Self {
            path: path.to_owned(),
            lines: text.lines().map(Line::parse).collect(),
        })
    }

    /// The file this was read from and [`KnownHosts::remember`] writes to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fingerprint remembered for `host_port` (the host compared case-insensitively);
    /// the first entry wins.
    pub fn fingerprint_for(&self, host_port: &str) -> Option<&str> {
        self.lines.iter().find_map(|line| match line {
            Line::Entry {
                host_port: entry,
                fingerprint,
            } if entry.eq_ignore_ascii_case(host_port) => Some(fingerprint.as_str()),
            _ => None,
        })
    }

    /// Remembers `fingerprint` for `host_port`, replacing any entry for it, and rewrites the
    /// file atomically, private to the user (folder 0700, file 0600 on Unix).
    pub fn remember(&mut self, host_port: &str, fingerprint: &str) -> io::Result<()> {
        for field in [host_port, fingerprint] {
            if field.is_empty() || field.contains(char::is_whitespace) || field.starts_with('#') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{field:?} cannot be written to known_hosts"),
                ));
            }
        }
        let entry = Line::Entry {
            host_port: host_port.to_owned(),
            fingerprint: fingerprint.to_owned(),
        };
        let mut lines = Vec::with_capacity(self.lines.len() + 2);
        let mut replaced = false;
        for line in &self.lines {
            if !line.is_for(host_port) {
                lines.push(line.clone());
            } else if !replaced {
                lines.push(entry.clone());
                replaced = true;
            }
        }
        if !replaced {
            if lines.is_empty() {
                lines.push(Line::Other(KNOWN_HOSTS_HEADER.to_owned()));
            }
            lines.push(entry);
        }
        write_private_atomically(&self.path, &render(&lines))?;
        self.lines = lines;
        Ok(())
    }
}

fn render(lines: &[Line]) -> String {
    let mut text = String::new();
    for line in lines {
        match line {
            Line::Entry {
                host_port,
                fingerprint,
            } => {
                text.push_str(host_port);
                text.push(' ');
                text.push_str(fingerprint);
            }
            Line::Other(other) => text.push_str(other),
        }
        text.push('\n');
    }
    text
}

/// Writes `contents` to a new file (mode 0600) next to `path` and renames it over `path`,
/// so a reader sees the old file or the new one, never half of one. Creates the folder
/// (mode 0700) if needed.
fn write_private_atomically(path: &Path, contents: &str) -> io::Result<()> {
    /// Tells apart the temporary files of writers in one process.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file name", path.display()),
        )
    })?;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    create_private_dir(folder)?;
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = folder.join(temp_name);
    let result = write_new_private_file(&temp, contents).and_then(|()| fs::rename(&temp, path));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(unix)]
fn create_private_dir(folder: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
}

#[cfg(not(unix))]
fn create_private_dir(folder: &Path) -> io::Result<()> {
    fs::create_dir_all(folder)
}

/// Creates `path`, which must not exist, readable by the user only, and writes `contents`
/// to disk.
fn write_new_private_file(path: &Path, contents: &str) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// What [`PinningVerifier`] found wrong with a certificate it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing vouches for the certificate: the user may choose to trust it.
    Unknown {
        /// SHA-256 of the presented end-entity certificate.
        fingerprint: String,
    },
    /// Another certificate was remembered for this `host:port`.
    Changed {
        remembered: String,
        presented: String,
    },
}

/// Accepts a certificate the system's roots accept for the server's name or, failing that,
/// one whose SHA-256 fingerprint equals the pin remembered for this connection's `host:port`.
/// The pin stands in for the chain and name checks, as an SSH host key does; the handshake
/// signature is still verified, so the server must hold the pinned certificate's key.
/// A refused certificate leaves a [`Verdict`] for the caller to read after the handshake.
#[derive(Debug)]
pub struct PinningVerifier {
    /// WebPKI checks against the system's roots; `None` when there are none (containers).
    system: Option<Arc<WebPkiServerVerifier>>,
    /// The fingerprint remembered for the server's `host:port`, if any.
    pin: Option<String>,
    /// Verifies handshake signatures.
    provider: Arc<CryptoProvider>,
    /// Why the last certificate was refused; the lock is only held to set or take it.
    verdict: Mutex<Option<Verdict>>,
}

impl PinningVerifier {
    /// A verifier using the system's roots and `pin`, the fingerprint remembered for the
    /// `host:port` being connected to.
    pub fn new(pin: Option<String>) -> Self {
        Self::with_system(system_verifier(), pin)
    }

    /// As [`PinningVerifier::new`] with the given WebPKI verifier standing for the system's
    /// roots (`None`: no roots).
    pub fn with_system(system: Option<Arc<WebPkiServerVerifier>>, pin: Option<String>) -> Self {
        Self {
            system,
            pin,
            provider: tls::provider(),
            verdict: Mutex::new(None),
        }
    }

    /// Why the certificate was refused, if it was; clears it.
    pub fn take_verdict(&self) -> Option<Verdict> {
        self.verdict
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn refuse(&self, verdict: Verdict, error: CertificateError) -> rustls::Error {
        *self.verdict.lock().unwrap_or_else(PoisonError::into_inner) = Some(verdict);
        rustls::Error::InvalidCertificate(error)
    }
}

/// The WebPKI verifier for the system's roots, loaded once per process; `None` when the
/// system has no usable roots.
fn system_verifier() -> Option<Arc<WebPkiServerVerifier>> {
    static SYSTEM: OnceLock<Option<Arc<WebPkiServerVerifier>>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if roots.is_empty() {
                return None;
            }
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), tls::provider())
                .build()
                .ok()
        })
        .clone()
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(system) = &self.system {
            let checked = system.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
            if checked.is_ok() {
                return checked;
            }
        }
        let presented = fingerprint_sha256(end_entity.as_ref());
        match &self.pin {
            Some(pin) if pin.eq_ignore_ascii_case(&presented) => {
                Ok(ServerCertVerified::assertion())
            }
            Some(pin) => Err(self.refuse(
                Verdict::Changed {
                    remembered: pin.clone(),
                    presented,
                },
                CertificateError::ApplicationVerificationFailure,
            )),
            None => Err(self.refuse(
                Verdict::Unknown {
                    fingerprint: presented,
                },
                CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP_A: &str = "AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA";
    const FP_B: &str = "BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB";

    fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn missing_file_has_no_entries() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = KnownHosts::load(&dir.path().join("known_hosts")).unwrap();
        assert_eq!(hosts.fingerprint_for("localhost:7777"), None);
    }

    #[test]
    fn parses_entries_and_skips_the_rest() {
        let (_dir, path) = file_with(&format!(
            "# comment localhost:1 {FP_B}\n\n  chat.example.org:7777   {FP_A}  \nlocalhost:1 {FP_B}\nbroken line here\nlone\n"
        ));
        let hosts = KnownHosts::load(&path).unwrap();
        assert_eq!(hosts.fingerprint_for("chat.example.org:7777"), Some(FP_A));
        assert_eq!(hosts.fingerprint_for("CHAT.Example.org:7777"), Some(FP_A));
        assert_eq!(hosts.fingerprint_for("localhost:1"), Some(FP_B));
        assert_eq!(hosts.fingerprint_for("localhost:2"), None);
        assert_eq!(hosts.fingerprint_for("chat.example.org"), None);
        assert_eq!(hosts.fingerprint_for("broken"), None);
        assert_eq!(hosts.fingerprint_for("lone"), None);
    }

    #[test]
    fn remember_adds_and_keeps_comments() {
        let (_dir, path) = file_with(&format!("# mine\n\nhost:1 {FP_A}\nodd line kept\n"));
        let mut hosts = KnownHosts::load(&path).unwrap();
        hosts.remember("other:2", FP_B).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("# mine\n\nhost:1 {FP_A}\nodd line kept\nother:2 {FP_B}\n")
        );
        let reread = KnownHosts::load(&path).unwrap();
        assert_eq!(reread.fingerprint_for("host:1"), Some(FP_A));
        assert_eq!(reread.fingerprint_for("other:2"), Some(FP_B));
    }

    #[test]
    fn remember_replaces_in_place_and_drops_duplicates() {
        let (_dir, path) = file_with(&format!(
            "# top\nHOST:1 {FP_A}\nkeep:3 {FP_A}\nhost:1 {FP_A}\n"
        ));
        let mut hosts = KnownHosts::load(&path).unwrap();
        hosts.remember("host:1", FP_B).unwrap();
        assert_eq!(hosts.fingerprint_for("host:1"), Some(FP_B));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("# top\nhost:1 {FP_B}\nkeep:3 {FP_A}\n")
        );
    }

    #[test]
    fn remember_creates_a_private_folder_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("config").join("tlschat");
        let path = folder.join("known_hosts");
        let mut hosts = KnownHosts::load(&path).unwrap();
        hosts.remember("localhost:7777", FP_A).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# "), "{text}");
        assert!(
            text.ends_with(&format!("\nlocalhost:7777 {FP_A}\n")),
            "{text}"
        );
        assert_eq!(
            KnownHosts::load(&path)
                .unwrap()
                .fingerprint_for("localhost:7777"),
            Some(FP_A)
        );
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("known_hosts")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&folder), 0o700);
        }
    }

    #[cfg(unix)]
    #[test]
    fn rewriting_makes_an_existing_file_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = file_with(&format!("host:1 {FP_A}\n"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        KnownHosts::load(&path)
            .unwrap()
            .remember("host:1", FP_B)
            .unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn remember_refuses_what_would_corrupt_the_file() {
        let (_dir, path) = file_with("");
        let mut hosts = KnownHosts::load(&path).unwrap();
        assert!(hosts.remember("bad host:1", FP_A).is_err());
        assert!(hosts.remember("host:1", "AA BB").is_err());
        assert!(hosts.remember("host:1\nevil:2", FP_A).is_err());
        assert!(hosts.remember("", FP_A).is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn host_port_keys() {
        assert_eq!(host_port_key("LocalHost:7777").unwrap(), "localhost:7777");
        assert_eq!(host_port_key("[::1]:7").unwrap(), "[::1]:7");
        assert_eq!(host_port_key("127.0.0.1:7").unwrap(), "127.0.0.1:7");
        assert!(host_port_key("nohost").is_err());
    }

    fn self_signed() -> CertificateDer<'static> {
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .unwrap()
            .cert
            .der()
            .clone()
    }

    fn check(verifier: &PinningVerifier, cert: &CertificateDer<'_>) -> bool {
        let name = ServerName::try_from("localhost").unwrap();
        verifier
            .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn unknown_certificate_is_refused_with_its_fingerprint() {
        let cert = self_signed();
        let verifier = PinningVerifier::with_system(None, None);
        assert!(!check(&verifier, &cert));
        assert_eq!(
            verifier.take_verdict(),
            Some(Verdict::Unknown {
                fingerprint: fingerprint_sha256(&cert)
            })
        );
        assert_eq!(verifier.take_verdict(), None);
    }

    #[test]
    fn pinned_certificate_is_accepted() {
        let cert = self_signed();
        let verifier = PinningVerifier::with_system(None, Some(fingerprint_sha256(&cert)));
        assert!(check(&verifier, &cert));
        assert_eq!(verifier.take_verdict(), None);
        let lower =
            PinningVerifier::with_system(None, Some(fingerprint_sha256(&cert).to_lowercase()));
        assert!(check(&lower, &cert));
    }

    #[test]
    fn other_certificate_than_the_pinned_one_is_refused() {
        let cert = self_signed();
        let verifier = PinningVerifier::with_system(None, Some(FP_A.to_owned()));
        assert!(!check(&verifier, &cert));
        assert_eq!(
            verifier.take_verdict(),
            Some(Verdict::Changed {
                remembered: FP_A.to_owned(),
                presented: fingerprint_sha256(&cert),
            })
        );
    }

    #[test]
    fn system_roots_still_apply() {
        // A CA-signed certificate for "localhost", with that CA standing in for the system.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "stand-in system root");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let system = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), tls::provider())
            .build()
            .unwrap();
        let verifier = PinningVerifier::with_system(Some(system), None);
        assert!(check(&verifier, leaf.der()));
        assert_eq!(verifier.take_verdict(), None);
        // A self-signed certificate falls through to the (absent) pin.
        assert!(!check(&verifier, &self_signed()));
        assert!(matches!(
            verifier.take_verdict(),
            Some(Verdict::Unknown { .. })
        ));
    }

    #[test]
    fn changed_warning_is_loud_and_says_what_to_do() {
        let error = TrustError::Changed {
            server: "localhost:7777".into(),
            remembered: FP_A.into(),
            presented: FP_B.into(),
            known_hosts: PathBuf::from("known_hosts"),
        };
        let message = error.to_string();
        assert!(
            message.contains("SERVER IDENTIFICATION HAS CHANGED"),
            "{message}"
        );
        assert!(
            message.contains(FP_A) && message.contains(FP_B),
            "{message}"
        );
        assert!(message.contains("\"localhost:7777 \""), "{message}");
        assert!(message.contains("known_hosts"), "{message}");
    }

    #[test]
    fn trust_for_user() {
        assert_eq!(
            Trust::for_user(Some(PathBuf::from("ca.pem"))).unwrap(),
            Trust::Ca(PathBuf::from("ca.pem"))
        );
        if let Some(path) = known_hosts_path() {
            assert_eq!(
                Trust::for_user(None).unwrap(),
                Trust::SystemOrPinned { known_hosts: path }
            );
        }
    }
}
