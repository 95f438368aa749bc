//! Private keys sealed at rest: ChaCha20-Poly1305 (ring) under a 32-byte key the control
//! plane holds outside its database, with the certificate's record id as associated data, so
//! a sealed key copied into another record does not open. A sealed value is
//! `1 | key id (4) | nonce (12) | ciphertext and tag`: the key id (the first 4 bytes of the
//! key's SHA-256) says which key sealed it, so the key can be rotated with old values still
//! opened by the old key; the nonce is random (96 bits: safe far beyond the number of
//! certificates one key will ever seal).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const VERSION: u8 = 1;
const HEADER: usize = 1 + 4 + NONCE_LEN;

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// The key is not 32 bytes.
    KeyLength(usize),
    /// Not a sealed value of this format.
    Malformed,
    /// Sealed by another key (its id).
    OtherKey([u8; 4]),
    /// The tag did not verify: tampered, or sealed for another record.
    Forged,
    /// No randomness for a nonce.
    Random,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::KeyLength(n) => write!(f, "the sealing key is {n} bytes: it must be 32"),
            SealError::Malformed => f.write_str("not a sealed value (version 1)"),
            SealError::OtherKey(id) => write!(
                f,
                "sealed by another key (id {})",
                id.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
            SealError::Forged => {
                f.write_str("does not verify: altered, or sealed for another record")
            }
            SealError::Random => f.write_str("the system's random source failed"),
        }
    }
}

impl std::error::Error for SealError {}

/// 32 bytes from the system's random source.
pub(crate) fn random32() -> Result<[u8; 32], SealError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SealError::Random)?;
    Ok(bytes)
}

/// The key private keys are sealed with.
pub struct SealingKey {
    key: LessSafeKey,
    id: [u8; 4],
    random: SystemRandom,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealingKey({:02x?})", self.id)
    }
}

impl SealingKey {
    /// The key of these 32 bytes.
    pub fn new(bytes: &[u8]) -> Result<SealingKey, SealError> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| SealError::KeyLength(bytes.len()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut id = [0u8; 4];
        id.copy_from_slice(&digest.as_ref()[..4]);
        Ok(SealingKey {
            key: LessSafeKey::new(unbound),
            id,
            random: SystemRandom::new(),
        })
    }

    /// 32 fresh random bytes, for a new key file.
    pub fn generate() -> Result<[u8; 32], SealError> {
        random32()
    }

    /// Its id, as sealed values carry it.
    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    /// `plaintext` sealed for the record `record`.
    pub fn seal(&self, plaintext: &[u8], record: &str) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(HEADER + plaintext.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(record.as_bytes()),
                &mut body,
            )
            .map_err(|_| SealError::Random)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The plaintext of `sealed`, sealed by this key for `record`.
    pub fn open(&self, sealed: &[u8], record: &str) -> Result<Vec<u8>, SealError> {
        if sealed.len() < HEADER + 16 || sealed[0] != VERSION {
            return Err(SealError::Malformed);
        }
        let id: [u8; 4] = sealed[1..5].try_into().expect("4 bytes");
        if id != self.id {
            return Err(SealError::OtherKey(id));
        }
        let nonce: [u8; NONCE_LEN] = sealed[5..HEADER].try_into().expect("12 bytes");
        let mut body = sealed[HEADER..].to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(record.as_bytes()),
                &mut body,
            )
            .map_err(|_| SealError::Forged)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn a_sealed_key_opens_for_its_record_only() {
        let k = SealingKey::new(&KEY).unwrap();
        let sealed = k.seal(b"-----BEGIN PRIVATE KEY-----", "cert-1").unwrap();
        assert!(!sealed.windows(b"PRIVATE".len()).any(|w| w == b"PRIVATE"));
        assert_eq!(
            k.open(&sealed, "cert-1").unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert_eq!(k.open(&sealed, "cert-2"), Err(SealError::Forged));
    }

    #[test]
    fn each_seal_has_its_own_nonce() {
        let k = SealingKey::new(&KEY).unwrap();
        assert_ne!(k.seal(b"x", "r").unwrap(), k.seal(b"x", "r").unwrap());
    }

    #[test]
    fn altered_or_foreign_values_are_refused_with_why() {
        let k = SealingKey::new(&KEY).unwrap();
        let mut sealed = k.seal(b"secret", "r").unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(k.open(&sealed, "r"), Err(SealError::Forged));
        let other = SealingKey::new(&[8; 32]).unwrap();
        let theirs = other.seal(b"secret", "r").unwrap();
        assert_eq!(k.open(&theirs, "r"), Err(SealError::OtherKey(other.id())));
        assert_eq!(k.open(b"\x01short", "r"), Err(SealError::Malformed));
        assert_eq!(
            SealingKey::new(&[0; 16]).unwrap_err().to_string(),
            "the sealing key is 16 bytes: it must be 32"
        );
    }

    #[test]
    fn generated_keys_differ_and_work() {
        let (a, b) = (
            SealingKey::generate().unwrap(),
            SealingKey::generate().unwrap(),
        );
        assert_ne!(a, b);
        let k = SealingKey::new(&a).unwrap();
        assert_eq!(k.open(&k.seal(b"k", "r").unwrap(), "r").unwrap(), b"k");
    }
}
