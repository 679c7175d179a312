//! Development certificates: a private CA and a server certificate it signs, generated with
//! rcgen so a fresh clone serves TLS at once. Keys are written 0600 and never committed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::tls::fingerprint_sha256;

const CA_NAME: &str = "tlschat development CA";
/// Names every development server certificate covers, besides the `--hostname`s.
pub const DEFAULT_HOSTNAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Where the files of a development CA and server certificate live in a certificate folder.
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl CertPaths {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
        }
    }
}

/// What [`generate`] did, for the log and for `chat-admin gen-cert` to print.
#[derive(Debug, Clone)]
pub struct Generated {
    pub paths: CertPaths,
    /// False when an existing CA signed the new server certificate.
    pub new_ca: bool,
    pub names: Vec<String>,
    /// SHA-256 fingerprint of the server certificate.
    pub fingerprint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// Writes a server certificate for `localhost`, `127.0.0.1`, `::1` and `hostnames` into
/// `dir`, signed by the development CA there, which is created first if it does not exist.
/// Reusing the CA keeps every client that already trusts `ca.pem` working.
pub fn generate(dir: &Path, hostnames: &[String]) -> Result<Generated, CertError> {
    let paths = CertPaths::in_dir(dir);
    fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_owned(),
        source,
    })?;

    let existing_ca_key = if paths.ca_cert.exists() && paths.ca_key.exists() {
        let pem = fs::read_to_string(&paths.ca_key).map_err(|source| CertError::Read {
            path: paths.ca_key.clone(),
            source,
        })?;
        Some(KeyPair::from_pem(&pem)?)
    } else {
        None
    };
    let new_ca = existing_ca_key.is_none();
    let ca_key = match existing_ca_key {
        Some(key) => key,
        None => KeyPair::generate()?,
    };
    // Re-signing the same name with the same key yields an issuer that verifies against the
    // CA certificate already on disk, so an existing CA needs no certificate parser here.
    let ca_cert = ca_params()?.self_signed(&ca_key)?;
    if new_ca {
        write_file(&paths.ca_key, ca_key.serialize_pem().as_bytes(), true)?;
        write_file(&paths.ca_cert, ca_cert.pem().as_bytes(), false)?;
    }

    let mut names: Vec<String> = DEFAULT_HOSTNAMES.iter().map(|s| s.to_string()).collect();
    for name in hostnames {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let server_key = KeyPair::generate()?;
    let server_cert = server_params(&names)?.signed_by(&server_key, &ca_cert, &ca_key)?;
    write_file(
        &paths.server_key,
        server_key.serialize_pem().as_bytes(),
        true,
    )?;
    write_file(&paths.server_cert, server_cert.pem().as_bytes(), false)?;

    Ok(Generated {
        fingerprint: fingerprint_sha256(server_cert.der()),
        paths,
        new_ca,
        names,
    })
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, 3650);
    Ok(params)
}

fn server_params(names: &[String]) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, 825);
    Ok(params)
}

/// From yesterday (tolerating clock skew) for `days`.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let start = Utc::now() - Duration::days(1);
    let end = start + Duration::days(days);
    let ymd =
        |d: chrono::DateTime<Utc>| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    params.not_before = ymd(start);
    params.not_after = ymd(end);
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key; private
/// keys are created with mode 0600 from the first byte.
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let write_err = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("pem.tmp");
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(write_err)?;
    file.write_all(contents).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    fs::rename(&tmp, path).map_err(write_err)
}
