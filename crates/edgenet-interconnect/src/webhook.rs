//! Webhook deliveries of notifications: each body is signed with the subscription's secret
//! (`Edgenet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`), and a failed
//! delivery is retried with exponential backoff (30 s, doubling, at most an hour apart) for up
//! to 24 hours after the first attempt.

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "Edgenet-Signature";
/// The first retry's delay, in milliseconds.
pub const FIRST_RETRY_MS: i64 = 30_000;
/// The longest wait between two attempts.
pub const MAX_RETRY_GAP_MS: i64 = 3_600_000;
/// How long after the first attempt a delivery is given up.
pub const GIVE_UP_AFTER_MS: i64 = 24 * 3_600_000;

/// What is signed: `t.body`.
fn signed(t: i64, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{t}.").into_bytes();
    m.extend_from_slice(body);
    m
}

fn key(secret: &[u8]) -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)
}

fn hmac(secret: &[u8], t: i64, body: &[u8]) -> String {
    ring::hmac::sign(&key(secret), &signed(t, body))
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The signature header's value for `body` sent at `t` (Unix seconds).
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hmac(secret, t, body))
}

/// Checks a signature header as a receiver does: well formed, made with `secret` over `body`,
/// and no older than `tolerance_s` at `now` (Unix seconds).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<(), String> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(format!("{SIGNATURE_HEADER}: expected t=<seconds>,v1=<hex>"));
    };
    if (now - t).abs() > tolerance_s {
        return Err(format!(
            "{SIGNATURE_HEADER}: signed at {t}, more than {tolerance_s} s from now"
        ));
    }
    // ring compares the tag in constant time.
    let tag = unhex(v1).unwrap_or_default();
    if ring::hmac::verify(&key(secret), &signed(t, body), &tag).is_err() {
        return Err(format!(
            "{SIGNATURE_HEADER}: the signature does not match the body"
        ));
    }
    Ok(())
}

/// When to try a delivery again after `attempts` failed ones, the first at `first_ms`; none
/// once the next try would be more than 24 hours after the first.
pub fn next_attempt(first_ms: i64, attempts: u32, last_ms: i64) -> Option<i64> {
    if attempts == 0 {
        return Some(first_ms);
    }
    let gap = FIRST_RETRY_MS
        .saturating_mul(1i64 << (attempts - 1).min(20))
        .min(MAX_RETRY_GAP_MS);
    let at = last_ms + gap;
    (at - first_ms <= GIVE_UP_AFTER_MS).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies_with_its_secret_only() {
        let body = br#"{"event":"m1","type":"scheduled"}"#;
        let h = signature(b"whsec_1", 1_764_000_000, body);
        assert!(
            h.starts_with("t=1764000000,v1=") && h.len() == "t=1764000000,v1=".len() + 64,
            "{h}"
        );
        assert_eq!(verify(b"whsec_1", &h, body, 1_764_000_010, 300), Ok(()));
        assert!(
            verify(b"whsec_2", &h, body, 1_764_000_010, 300).is_err(),
            "another secret"
        );
        assert!(
            verify(b"whsec_1", &h, b"{}", 1_764_000_010, 300).is_err(),
            "another body"
        );
        let e = verify(b"whsec_1", &h, body, 1_764_001_000, 300).unwrap_err();
        assert!(e.contains("more than 300 s"), "{e}");
        assert!(verify(b"whsec_1", "v1=00", body, 0, 300).is_err());
        // The HMAC is of "t.body" (RFC 4231-style check against ring's own HMAC).
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let direct = ring::hmac::sign(&key, b"5.x");
        let hex: String = direct.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(signature(b"k", 5, b"x"), format!("t=5,v1={hex}"));
    }

    #[test]
    fn retries_back_off_and_give_up_after_a_day() {
        let first = 1_000;
        assert_eq!(next_attempt(first, 0, first), Some(first));
        let mut at = first;
        let mut gaps = Vec::new();
        let mut attempts = 1;
        while let Some(next) = next_attempt(first, attempts, at) {
            gaps.push((next - at) / 1000);
            at = next;
            attempts += 1;
        }
        assert_eq!(&gaps[..8], [30, 60, 120, 240, 480, 960, 1920, 3600]);
        assert!(
            gaps[8..].iter().all(|g| *g == 3600),
            "at most an hour apart"
        );
        assert!(at - first <= GIVE_UP_AFTER_MS && at - first > GIVE_UP_AFTER_MS - 3_600_000);
        assert_eq!(attempts, 30, "the first and 29 retries: {gaps:?}");
    }
}
