//! rustls configuration for the server and the client, from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {path}: {source}")]
    ReadCerts {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("no certificate found in {0}")]
    NoCerts(PathBuf),
    #[error("cannot read private key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("private key {path} rejected: {source}")]
    BadKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("certificate {path} rejected: {source}")]
    BadCert {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("the key in {key} does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("certificate or key rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("no usable trusted root certificates (system store empty and no --ca given)")]
    NoRoots,
}

/// The one crypto provider the project uses, passed explicitly rather than installed
/// process-wide, so library users and tests never race to install a default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_err = |source| TlsError::ReadCerts {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCerts(path.to_owned()));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::ReadKey {
        path: path.to_owned(),
        source,
    })
}

/// Client configuration trusting the CAs in `ca` or, without it, the system's roots.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert)?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// SHA-256 of a DER certificate as colon-separated upper-case hex, as `openssl x509
/// -fingerprint -sha256` prints it, so users can compare the two by eye.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
