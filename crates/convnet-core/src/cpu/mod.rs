//! What the kernels need from the machine they run on: a CPU, here. Nothing in this folder
//! knows an operation; everything in it is shared by more than one.
//!
//! - [`simd`]: the `Simd` trait (AVX-512, AVX2 + FMA, portable) and `multiversion!`, which
//!   picks the instruction set at run time; [`simd::set_max_simd_level`] caps it.
//! - `parallel.rs`: how work splits over rayon's threads, and reductions whose partial sums
//!   are added in a fixed order (results independent of scheduling).
//! - `scratch.rs`: per-thread buffers reused across calls (no allocation per training step).
//! - `alloc.rs`: large zeroed outputs advised onto transparent huge pages;
//!   [`keep_freed_memory`] for training loops (freed blocks reused, not faulted in again).
//! - `prefetch.rs`: software prefetch of the next task's input during this task's compute.
//! - `reduce.rs`: vectorised sums (plain, centred squares, centred dot products).
//! - `linalg.rs`: checked strided matrix views and the one call into the `gemm` crate.
//!
//! # The backend boundary
//! An op in [`crate::ops`] is two layers: its `mod.rs` (public API, parameters, shape checks,
//! geometry, the choice of path), which knows no machine, and its kernels (`direct.rs`,
//! `depthwise.rs`, `pool/max.rs`, ...), which compute on slices of host memory with the
//! helpers above. A second backend (a GPU, another CPU library) keeps the first layer as it
//! is and supplies its own kernels and its own version of this folder; the `mod.rs` files
//! then dispatch on where a tensor lives. What belongs here: code that depends on the
//! hardware (instruction sets, threads, caches, memory pages, the BLAS) and serves several
//! ops. What does not: one op's math (its `ops/<family>/` folder), shapes and errors
//! (`tensor.rs`, `error.rs`), sizes and receptive fields (`geometry.rs`).

pub(crate) mod alloc;
pub use alloc::keep_freed_memory;
pub(crate) mod linalg;
pub(crate) mod parallel;
pub(crate) mod prefetch;
pub(crate) mod reduce;
pub(crate) mod scratch;
pub mod simd;
