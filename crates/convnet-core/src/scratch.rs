//! Per-thread scratch buffers, so kernels in a training loop do not allocate on every call.
//!
//! A kernel borrows a buffer with [`with_scratch`]; the buffer goes back to the calling
//! thread's pool afterwards and is reused by the next call of any kernel on that thread.
//! Nested borrows get distinct buffers.

use std::cell::RefCell;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with a buffer of exactly `len` elements. Its contents are unspecified (left from an
/// earlier use): `f` must write before it reads.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let result = f(&mut buf[..len]);
    POOL.with(|p| p.borrow_mut().push(buf));
    result
}

/// Like [`with_scratch`], with the buffer zeroed.
pub(crate) fn with_zeroed_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_scratch(len, |buf| {
        buf.fill(0.0);
        f(buf)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_borrows_get_distinct_buffers_and_are_reused() {
        let outer_ptr = with_scratch(16, |a| {
            a.fill(1.0);
            with_zeroed_scratch(8, |b| {
                assert!(b.iter().all(|&v| v == 0.0));
                b.fill(2.0);
            });
            assert!(a.iter().all(|&v| v == 1.0));
            a.as_ptr() as usize
        });
        let again = with_scratch(4, |a| a.as_ptr() as usize);
        // The most recently returned buffer is handed out first.
        assert_eq!(outer_ptr, again);
    }
}
