//! Per-thread scratch buffers, so kernels in a training loop do not allocate on every call.
//!
//! [`Scratch::take`] borrows a buffer from the calling thread's pool; dropping it gives the
//! buffer back for the next kernel call on that thread. Buffers held at the same time are
//! distinct. A guard rather than a closure: code using the buffer stays in the enclosing
//! function, which matters for kernels compiled inside `#[target_feature]` functions (a closure
//! would not inherit the target features).

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer of a fixed length, returned to its thread's pool on drop.
pub(crate) struct Scratch {
    buf: Vec<f32>,
    len: usize,
}

impl Scratch {
    /// A buffer of exactly `len` elements. Its contents are unspecified (left from an earlier
    /// use): write before reading.
    pub(crate) fn take(len: usize) -> Self {
        let mut buf = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        Scratch { buf, len }
    }

    /// A buffer of `len` zeros.
    pub(crate) fn zeroed(len: usize) -> Self {
        let mut s = Self::take(len);
        s.fill(0.0);
        s
    }
}

impl Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // During thread teardown the pool may be gone; then the buffer is simply freed.
        let _ = POOL.try_with(|p| p.borrow_mut().push(buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_held_together_are_distinct_and_are_reused() {
        let first;
        {
            let mut a = Scratch::take(16);
            a.fill(1.0);
            let mut b = Scratch::zeroed(8);
            assert!(b.iter().all(|&v| v == 0.0));
            b.fill(2.0);
            assert!(a.iter().all(|&v| v == 1.0));
            first = a.as_ptr() as usize;
            drop(b);
        }
        // `a` went back last, so it is handed out first.
        let again = Scratch::take(4);
        assert_eq!(again.len(), 4);
        assert_eq!(first, again.as_ptr() as usize);
    }
}
