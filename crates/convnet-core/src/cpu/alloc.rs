//! Large buffers on transparent huge pages, and freed buffers kept for the next step.
//!
//! A fresh 100 MB output (a 4K RGB image) is ~25,000 page faults of 4 KiB, which on these
//! machines costs more than a 3x3 convolution over it. Advising the kernel to back the buffer
//! with 2 MiB pages (Linux `MADV_HUGEPAGE`, as numpy does for its large arrays) makes that ~50.
//!
//! A training step allocates the same tensors as the step before it (activations, gradients,
//! workspaces) and frees them at its end, and so does every batch of an inference loop (each
//! layer's output). By default glibc hands large freed blocks back to the system (`munmap`,
//! or a trimmed heap), so every step faults the same memory in again: about a fifth of a
//! reference-model step, and a third of a MobileNetV2 batch of 32, whose activations (up to
//! 150 MB a layer) are all past glibc's largest mmap threshold. [`keep_freed_memory`] makes
//! it keep them, so each step reuses the last one's pages and the peak stays what one step
//! needs.

/// Buffers at least this large get the advice.
const HUGE_PAGE_THRESHOLD: usize = 4 << 20;

/// `n` zeros; buffers of 4 MiB and more are advised to use huge pages. When the allocator
/// maps fresh pages for the buffer (glibc does for large ones, up to its adaptive mmap
/// threshold of at most 32 MiB), `calloc` leaves them untouched, so every page the filling
/// kernel faults in is a huge page where the system allows; a buffer reused from the heap
/// was zeroed by `calloc` and keeps the pages it had.
pub(crate) fn zeroed(n: usize) -> Vec<f32> {
    let v = vec![0.0f32; n];
    advise_huge_pages(&v);
    v
}

/// An empty vector with room for `n` values, advised as [`zeroed`] is: for kernels that write
/// every value into `spare_capacity_mut()` (no zeroing pass, which in a training step, where
/// freed blocks are reused, is a `memset` of every output).
pub(crate) fn uninit(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    advise_huge_pages(&v.spare_capacity_mut()[..n]);
    v
}

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(v: &[T]) {
    let bytes = std::mem::size_of_val(v);
    if bytes < HUGE_PAGE_THRESHOLD {
        return;
    }
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let start = v.as_ptr() as usize;
    let (first, end) = (start.next_multiple_of(page), (start + bytes) / page * page);
    if end > first {
        // SAFETY: [first, end) lies inside `v`'s allocation, which is alive; MADV_HUGEPAGE is
        // advice that changes no contents. A refusal (no THP support) is harmless and ignored.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_: &[T]) {}

/// Keep freed memory in the process for reuse instead of returning it to the system: every
/// block, whatever its size, comes from the heap (none is mapped on its own, so none is
/// unmapped when freed), and the heap is never trimmed. For long loops that free and
/// allocate the same sizes (training, inference over batches); called once per process by
/// whoever runs one, it changes no result. The process keeps its peak: what the largest step
/// needed stays mapped until it exits. A no-op where the C library is not glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called with valid options and
    // values, and a refusal (returned as 0) leaves the defaults, which are correct too. With
    // no mmap allowed, a thread's arena that cannot hold a block falls back to the main heap.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn large_and_small_buffers_are_zeros() {
        for n in [0, 1, 1000, 3 << 20] {
            let v = super::zeroed(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x == 0.0));
        }
    }
}
