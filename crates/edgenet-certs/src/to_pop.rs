//! Private keys sealed to one PoP, so the configuration stream and a NATS bucket carry only
//! ciphertext: each PoP holds an X25519 key pair ([`PopKey`], its secret in its state
//! directory, its public half registered with the control plane as its backbone CSR is), and
//! the control plane seals each certificate's key to the PoPs that serve it ([`seal_to`]).
//!
//! A sealed value is `2 | ephemeral public key (32) | ciphertext and tag`. A fresh ephemeral
//! key per value meets the PoP's key (X25519); HKDF-SHA256 of the shared secret (salt
//! `edgenet sealed to a PoP v1`, info: the ephemeral and the PoP's public keys) is a
//! ChaCha20-Poly1305 key used once (nonce 0), with a context as associated data (the PoP's
//! name and the certificate's id), so a value sealed for one PoP or certificate opens for no
//! other. A shared secret that is all zeros (a low-order public key) is refused.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf::{Salt, HKDF_SHA256};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::seal::{random32, SealError};

const VERSION: u8 = 2;
const SALT: &[u8] = b"edgenet sealed to a PoP v1";

/// A PoP's key pair for what is sealed to it.
pub struct PopKey {
    secret: StaticSecret,
}

impl std::fmt::Debug for PopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PopKey(public {:02x?})", &self.public()[..4])
    }
}

impl PopKey {
    /// A new key pair.
    pub fn generate() -> Result<PopKey, SealError> {
        Ok(PopKey::from_secret(random32()?))
    }

    /// The key pair of a stored secret.
    pub fn from_secret(secret: [u8; 32]) -> PopKey {
        PopKey {
            secret: StaticSecret::from(secret),
        }
    }

    /// The secret, to store (readable only by the PoP's user).
    pub fn secret(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The public key, to register.
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.secret).to_bytes()
    }

    /// The plaintext of `sealed`, sealed to this PoP for `context`.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        if sealed.len() < 1 + 32 + 16 || sealed[0] != VERSION {
            return Err(SealError::Malformed);
        }
        let ephemeral: [u8; 32] = sealed[1..33].try_into().expect("32 bytes");
        let shared = self.secret.diffie_hellman(&PublicKey::from(ephemeral));
        if !shared.was_contributory() {
            return Err(SealError::Forged);
        }
        let key = derive(shared.as_bytes(), &ephemeral, &self.public())?;
        let mut body = sealed[33..].to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key([0; NONCE_LEN]),
                Aad::from(context.as_bytes()),
                &mut body,
            )
            .map_err(|_| SealError::Forged)?;
        Ok(plain.to_vec())
    }
}

/// `plaintext` sealed to the PoP whose public key is `pop`, for `context`.
pub fn seal_to(pop: &[u8; 32], plaintext: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
    let ephemeral = StaticSecret::from(random32()?);
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&PublicKey::from(*pop));
    if !shared.was_contributory() {
        return Err(SealError::Forged);
    }
    let key = derive(shared.as_bytes(), &ephemeral_public, pop)?;
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; NONCE_LEN]),
        Aad::from(context.as_bytes()),
        &mut body,
    )
    .map_err(|_| SealError::Random)?;
    let mut out = Vec::with_capacity(1 + 32 + body.len());
    out.push(VERSION);
    out.extend_from_slice(&ephemeral_public);
    out.extend_from_slice(&body);
    Ok(out)
}

/// The one-use AEAD key of a shared secret between `ephemeral` and `pop`.
fn derive(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    pop: &[u8; 32],
) -> Result<LessSafeKey, SealError> {
    let prk = Salt::new(HKDF_SHA256, SALT).extract(shared);
    let info = [&ephemeral[..], &pop[..]];
    let okm = prk
        .expand(&info, &CHACHA20_POLY1305)
        .map_err(|_| SealError::Random)?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pop_it_was_sealed_to_opens_it_for_its_context() {
        let a = PopKey::generate().unwrap();
        let b = PopKey::generate().unwrap();
        let sealed = seal_to(&a.public(), b"-----BEGIN PRIVATE KEY-----", "pop-a/cert-1").unwrap();
        assert_eq!(
            a.open(&sealed, "pop-a/cert-1").unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert_eq!(b.open(&sealed, "pop-a/cert-1"), Err(SealError::Forged));
        assert_eq!(a.open(&sealed, "pop-a/cert-2"), Err(SealError::Forged));
    }

    #[test]
    fn a_stored_secret_gives_the_same_key_and_every_seal_differs() {
        let a = PopKey::generate().unwrap();
        let again = PopKey::from_secret(a.secret());
        assert_eq!(again.public(), a.public());
        let (x, y) = (
            seal_to(&a.public(), b"k", "c").unwrap(),
            seal_to(&a.public(), b"k", "c").unwrap(),
        );
        assert_ne!(x, y);
        assert_eq!(again.open(&x, "c").unwrap(), b"k");
    }

    #[test]
    fn low_order_keys_and_altered_values_are_refused() {
        assert_eq!(seal_to(&[0; 32], b"k", "c"), Err(SealError::Forged));
        let a = PopKey::generate().unwrap();
        let mut sealed = seal_to(&a.public(), b"key", "c").unwrap();
        sealed[1..33].copy_from_slice(&[0; 32]);
        assert_eq!(a.open(&sealed, "c"), Err(SealError::Forged));
        assert_eq!(a.open(b"\x02", "c"), Err(SealError::Malformed));
    }
}
