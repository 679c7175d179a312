//! One-time invite and reset codes: `K7QX-93MD-PL2A`, twelve characters from an alphabet
//! without look-alikes (no 0/O, 1/I), 60 random bits. The store keeps only an HMAC-SHA256
//! of the code under a key that lives in a file beside the database, not in it: 60 bits can
//! be searched offline within a code's life, so a plain hash in a stolen backup would give
//! live codes away, while without the key the stored value says nothing. A slow hash would
//! not help as much and would cost every login that checks a code.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

/// Characters a code is made of: 32 of them, so each carries 5 bits.
const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
const CODE_CHARS: usize = 12;
const GROUP: usize = 4;

/// How long a code works unless `chat-admin` is told otherwise.
pub const DEFAULT_VALID_HOURS: u32 = 72;

/// A fresh code, grouped for reading aloud: `XXXX-XXXX-XXXX`.
pub fn new_code() -> Result<String, ring::error::Unspecified> {
    let mut random = [0u8; CODE_CHARS];
    SystemRandom::new().fill(&mut random)?;
    let mut code = String::with_capacity(CODE_CHARS + CODE_CHARS / GROUP);
    for (index, byte) in random.iter().enumerate() {
        if index > 0 && index % GROUP == 0 {
            code.push('-');
        }
        // 256 is a multiple of 32, so the low five bits are uniform.
        code.push(char::from(ALPHABET[usize::from(byte & 31)]));
    }
    Ok(code)
}

/// What a user typed at the `PASS` prompt, as a code (uppercase, without dashes and
/// spaces), if it can be one at all. Case, dashes and spaces are forgiven, since codes are
/// read out and retyped.
fn normalized_code(typed: &str) -> Option<String> {
    let normalized: String = typed
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let is_code =
        normalized.len() == CODE_CHARS && normalized.bytes().all(|b| ALPHABET.contains(&b));
    is_code.then_some(normalized)
}

/// Bytes of secret in a key: as many as HMAC-SHA256's output.
const KEY_BYTES: usize = 32;

/// The secret codes are stored under. Whoever holds it and a copy of the database can test
/// guesses offline; whoever holds only the database cannot.
pub struct CodeKey(ring::hmac::Key);

impl std::fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeKey(..)")
    }
}

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
#[error("invite key {}: {reason}", .path.display())]
pub struct KeyError {
    pub path: PathBuf,
    pub reason: String,
}

impl CodeKey {
    /// Where the key of the database at `db` lives: beside it, `chat.db.invite-key` for
    /// `chat.db`. The server and `chat-admin` find the same file from the same database.
    pub fn path_for(db: &Path) -> PathBuf {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(".invite-key");
        db.with_file_name(name)
    }

    /// Reads the key at `path`, creating it (mode 0600, whatever the umask) if there is none.
    /// A server and a `chat-admin` creating it at the same moment end up with the same key:
    /// each writes its own temporary file and links it into place only if none is there.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let failed = |reason: String| KeyError {
            path: path.to_owned(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::parse(&text).ok_or_else(|| failed("not a key".into())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(failed(error.to_string())),
        }
        let mut secret = [0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| failed("the system's random generator failed".into()))?;
        let text = format!("{}\n", hex(&secret));
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        let written =
            write_private(&tmp, text.as_bytes()).and_then(|()| {
                match std::fs::hard_link(&tmp, path) {
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                    linked => linked,
                }
            });
        let _ = std::fs::remove_file(&tmp);
        written.map_err(|error| failed(error.to_string()))?;
        let text = std::fs::read_to_string(path).map_err(|error| failed(error.to_string()))?;
        Self::parse(&text).ok_or_else(|| failed("not a key".into()))
    }

    /// A key that lives only in this process: for a store that never issues or checks codes.
    pub fn ephemeral() -> Result<Self, KeyError> {
        let mut secret = [0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| KeyError {
                path: PathBuf::new(),
                reason: "the system's random generator failed".into(),
            })?;
        Ok(Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret)))
    }

    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() != 2 * KEY_BYTES {
            return None;
        }
        let secret = (0..KEY_BYTES)
            .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret)))
    }

    /// The stored form of what a user typed at the `PASS` prompt, if it can be a code.
    pub fn code_hash(&self, typed: &str) -> Option<String> {
        let code = normalized_code(typed)?;
        Some(hex(ring::hmac::sign(&self.0, code.as_bytes()).as_ref()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `path` new with mode 0600 from the first byte and writes `contents` to disk.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Compares two stored code hashes in time independent of where they differ.
pub fn hashes_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CodeKey {
        CodeKey::parse(&"ab".repeat(KEY_BYTES)).unwrap()
    }

    #[test]
    fn codes_are_grouped_and_hash_however_they_are_typed() {
        let key = key();
        let code = new_code().unwrap();
        assert_eq!(code.len(), 14, "{code}");
        assert_eq!(code.matches('-').count(), 2, "{code}");
        let hash = key.code_hash(&code).unwrap();
        assert_eq!(
            key.code_hash(&code.to_lowercase()).as_deref(),
            Some(hash.as_str())
        );
        assert_eq!(
            key.code_hash(&code.replace('-', " ")).as_deref(),
            Some(hash.as_str())
        );
        assert_ne!(code, new_code().unwrap());
    }

    #[test]
    fn passwords_that_cannot_be_codes_are_not_hashed() {
        let key = key();
        assert_eq!(key.code_hash("correct horse battery staple"), None);
        assert_eq!(key.code_hash("K7QX-93MD-PL2"), None);
        // 0, O, 1 and I are not in the alphabet.
        assert_eq!(key.code_hash("K7QX-93MD-PL20"), None);
        assert!(key.code_hash("K7QX-93MD-PL2A").is_some());
    }

    #[test]
    fn the_stored_form_depends_on_the_key_and_is_not_a_plain_hash() {
        let code = "K7QX-93MD-PL2A";
        let plain = hex(ring::digest::digest(&ring::digest::SHA256, b"K7QX93MDPL2A").as_ref());
        let keyed = key().code_hash(code).unwrap();
        assert_eq!(keyed.len(), plain.len());
        assert_ne!(keyed, plain);
        let other = CodeKey::parse(&"cd".repeat(KEY_BYTES)).unwrap();
        assert_ne!(other.code_hash(code).unwrap(), keyed);
    }

    #[test]
    fn a_key_is_created_once_private_and_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = CodeKey::path_for(&dir.path().join("chat.db"));
        assert!(path.ends_with("chat.db.invite-key"), "{}", path.display());
        let first = CodeKey::load_or_create(&path).unwrap();
        let second = CodeKey::load_or_create(&path).unwrap();
        assert_eq!(
            first.code_hash("K7QX-93MD-PL2A"),
            second.code_hash("K7QX-93MD-PL2A")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "garbage").unwrap();
        assert!(CodeKey::load_or_create(&path).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn hash_comparison() {
        assert!(hashes_match("abcd", "abcd"));
        assert!(!hashes_match("abcd", "abce"));
        assert!(!hashes_match("abcd", "abc"));
    }
}
