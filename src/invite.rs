//! One-time invite and reset codes: `K7QX-93MD-PL2A`, twelve characters from an alphabet
//! without look-alikes (no 0/O, 1/I), 60 random bits. The store keeps only a SHA-256 of
//! the code: with that much randomness and a life of days, a slow hash would guard nothing
//! and cost every login that checks one.

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

/// The stored form of what a user typed at the `PASS` prompt, if it can be a code at all.
/// Case, dashes and spaces are forgiven, since codes are read out and retyped.
pub fn code_hash(typed: &str) -> Option<String> {
    let normalized: String = typed
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let is_code =
        normalized.len() == CODE_CHARS && normalized.bytes().all(|b| ALPHABET.contains(&b));
    is_code.then(|| {
        let digest = ring::digest::digest(&ring::digest::SHA256, normalized.as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    })
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

    #[test]
    fn codes_are_grouped_and_hash_however_they_are_typed() {
        let code = new_code().unwrap();
        assert_eq!(code.len(), 14, "{code}");
        assert_eq!(code.matches('-').count(), 2, "{code}");
        let hash = code_hash(&code).unwrap();
        assert_eq!(
            code_hash(&code.to_lowercase()).as_deref(),
            Some(hash.as_str())
        );
        assert_eq!(
            code_hash(&code.replace('-', " ")).as_deref(),
            Some(hash.as_str())
        );
        assert_ne!(code, new_code().unwrap());
    }

    #[test]
    fn passwords_that_cannot_be_codes_are_not_hashed() {
        assert_eq!(code_hash("correct horse battery staple"), None);
        assert_eq!(code_hash("K7QX-93MD-PL2"), None);
        // 0, O, 1 and I are not in the alphabet.
        assert_eq!(code_hash("K7QX-93MD-PL20"), None);
        assert!(code_hash("K7QX-93MD-PL2A").is_some());
    }

    #[test]
    fn hash_comparison() {
        assert!(hashes_match("abcd", "abcd"));
        assert!(!hashes_match("abcd", "abce"));
        assert!(!hashes_match("abcd", "abc"));
    }
}
