//! What a storage tier keeps besides its objects: bytes held, and how many stored variants
//! each URL (primary key) has, so that "is anything stored for this URL?" and "how full is the
//! tier?" are answered without walking the tier.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use pingora_cache::key::HashBinary;

/// Bytes and variants per primary key of one tier. Callers report each entry added, removed
/// or resized; a replaced entry is a resize.
#[derive(Default)]
pub(crate) struct Accounting {
    bytes: AtomicU64,
    variants: RwLock<HashMap<HashBinary, usize>>,
}

impl Accounting {
    /// A new entry of `size` bytes for `primary`.
    pub(crate) fn added(&self, primary: HashBinary, size: u64) {
        self.bytes.fetch_add(size, Ordering::Relaxed);
        *self.variants.write().entry(primary).or_default() += 1;
    }

    /// An entry of `size` bytes for `primary` is gone.
    pub(crate) fn removed(&self, primary: &HashBinary, size: u64) {
        self.bytes.fetch_sub(size, Ordering::Relaxed);
        let mut variants = self.variants.write();
        if let Some(n) = variants.get_mut(primary) {
            *n -= 1;
            if *n == 0 {
                variants.remove(primary);
            }
        }
    }

    /// An entry changed size (replaced or rewritten).
    pub(crate) fn resized(&self, old: u64, new: u64) {
        self.bytes.fetch_add(new, Ordering::Relaxed);
        self.bytes.fetch_sub(old, Ordering::Relaxed);
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether any variant of this primary key is held.
    pub(crate) fn has_primary(&self, primary: &HashBinary) -> bool {
        self.variants.read().contains_key(primary)
    }
}
