//! Byte values at evaluation time without allocating: a value is borrowed from the request,
//! a literal of the expression, or built (`lower`, `url_decode`, `concat`) in a scratch buffer
//! taken from a small per-thread pool and given back when the value is dropped. After the
//! first requests have grown the buffers, evaluation allocates nothing.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Buffers kept per thread.
const POOL_SIZE: usize = 16;
/// Larger buffers are freed rather than kept.
const KEEP_CAPACITY: usize = 64 * 1024;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer from the pool; back to it on drop.
#[derive(Debug, Default)]
pub(crate) struct Scratch(Vec<u8>);

impl Scratch {
    /// An empty buffer.
    pub(crate) fn take() -> Scratch {
        Scratch(
            POOL.with(|p| p.borrow_mut().pop())
                .unwrap_or_else(|| Vec::with_capacity(256)),
        )
    }
}

impl FromIterator<u8> for Scratch {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> Scratch {
        let mut s = Scratch::take();
        s.0.extend(iter);
        s
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.0);
        if v.capacity() == 0 || v.capacity() > KEEP_CAPACITY {
            return;
        }
        v.clear();
        // During thread teardown the pool may be gone: then the buffer is simply freed.
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_SIZE {
                p.push(v);
            }
        });
    }
}

impl Deref for Scratch {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Clone for Scratch {
    fn clone(&self) -> Scratch {
        let mut s = Scratch::take();
        s.0.extend_from_slice(&self.0);
        s
    }
}

/// A byte string value.
#[derive(Debug, Clone)]
pub(crate) enum Bytes<'a> {
    /// Part of the request.
    Borrowed(&'a [u8]),
    /// A literal of the expression (made at compile time).
    Literal(Vec<u8>),
    /// Built during evaluation.
    Scratch(Scratch),
}

impl Deref for Bytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Literal(v) => v,
            Bytes::Scratch(s) => s,
        }
    }
}

impl AsRef<[u8]> for Bytes<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Bytes<'_> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_go_back_to_the_pool_and_are_reused_empty() {
        let mut a = Scratch::take();
        a.extend_from_slice(b"hello");
        let ptr = a.as_ptr();
        drop(a);
        let b = Scratch::take();
        assert!(b.is_empty());
        assert_eq!(b.as_ptr(), ptr, "the same buffer came back");
        let mut big = Scratch::take();
        big.reserve(KEEP_CAPACITY + 1);
        drop(big);
        assert!(POOL.with(|p| p.borrow().iter().all(|v| v.capacity() <= KEEP_CAPACITY)));
    }
}
