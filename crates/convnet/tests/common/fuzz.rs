//! A small mutation fuzzer on stable Rust: real files in, mutated copies out, every parser
//! call checked for panics and for time.
//!
//! Each target names its seeds (real, valid files) and a function that parses one input and
//! returns normally whether the input was accepted or refused; a panic or an input that takes
//! longer than [`SLOW`] fails the test, and the input is written to
//! `target/fuzz-failures/<target>-<n>.bin` so it can be replayed.
//!
//! The run is deterministic (seeded) and bounded. `CONVNET_FUZZ_ITERS=N` sets the number of
//! mutated inputs per target (default [`DEFAULT_ITERS`], sized for CI);
//! `CONVNET_FUZZ_SECONDS=S` runs each target for `S` seconds instead (the long opt-in run);
//! `CONVNET_FUZZ_SEED=K` changes the seed.
//!
//! Memory is bounded too: [`run`] caps the test process's address space at
//! [`ADDRESS_SPACE_LIMIT`], so an input that makes a parser reserve gigabytes aborts the run
//! instead of passing. Keep fuzz targets in test files of their own (`fuzz_*.rs`): the cap
//! holds for the whole process.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// No single input may take longer than this.
pub const SLOW: Duration = Duration::from_secs(2);

/// The address-space cap of a fuzzing process (virtual memory: thread stacks and allocator
/// arenas count, so it is well above what any one input may use).
pub const ADDRESS_SPACE_LIMIT: u64 = 4 << 30;

/// Caps this process's address space at [`ADDRESS_SPACE_LIMIT`] (Linux; elsewhere a no-op).
pub fn limit_address_space() {
    #[cfg(target_os = "linux")]
    {
        let limit = libc::rlimit {
            rlim_cur: ADDRESS_SPACE_LIMIT,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit reads the struct it is given; failure only leaves no cap.
        let _ = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    }
}

/// SplitMix64: small, deterministic, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Values that break size arithmetic: zero, one, powers of two and their neighbours, the
/// extremes of every integer width.
const INTERESTING: [u64; 16] = [
    0,
    1,
    2,
    3,
    16,
    255,
    256,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Text fragments that break text parsers (numbers, separators, keywords of the formats).
const TOKENS: [&[u8]; 24] = [
    b"0",
    b"-1",
    b"1e39",
    b"-1e39",
    b"nan",
    b"inf",
    b"4294967296",
    b"18446744073709551616",
    b"99999999999",
    b",",
    b";",
    b"x",
    b":",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b"=",
    b"\n",
    b"[[layers]]",
    b"\"shape\": [",
    b"\"data_offsets\": [",
    b"\xff\xfe",
];

/// One mutation of `input`, using `seeds` for splices.
pub fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    // One to four mutations stacked, as AFL's havoc stage does.
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        mutate_once(rng, &mut out, seeds);
    }
    out
}

fn mutate_once(rng: &mut Rng, out: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = out.len();
    // Mutations near the start hit headers: half of the positions fall in the first 64 bytes.
    let pos = |rng: &mut Rng, len: usize| {
        if len == 0 {
            0
        } else if rng.chance(2) {
            rng.below(len.min(64))
        } else {
            rng.below(len)
        }
    };
    match rng.below(10) {
        // Flip one bit.
        0 if len > 0 => {
            let p = pos(rng, len);
            out[p] ^= 1 << rng.below(8);
        }
        // Set one byte.
        1 if len > 0 => {
            let p = pos(rng, len);
            out[p] = rng.next_u64() as u8;
        }
        // Overwrite 1, 2, 4 or 8 bytes with an interesting value, either byte order.
        2 if len > 0 => {
            let width = 1 << rng.below(4);
            let p = pos(rng, len);
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let bytes = if rng.chance(2) {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            let bytes = if rng.chance(2) {
                &bytes[8 - width..]
            } else {
                &bytes[..width]
            };
            for (i, b) in bytes.iter().enumerate() {
                if let Some(slot) = out.get_mut(p + i) {
                    *slot = *b;
                }
            }
        }
        // Truncate.
        3 if len > 0 => {
            let p = pos(rng, len);
            out.truncate(p);
        }
        // Delete a range.
        4 if len > 0 => {
            let p = pos(rng, len);
            let n = 1 + rng.below((len - p).min(64));
            out.drain(p..p + n);
        }
        // Insert random bytes.
        5 => {
            let p = pos(rng, len + 1).min(len);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            out.splice(p..p, bytes);
        }
        // Duplicate a range (repeats records, rows, layers).
        6 if len > 0 => {
            let p = pos(rng, len);
            let n = 1 + rng.below((len - p).min(256));
            let chunk = out[p..p + n].to_vec();
            let at = pos(rng, len + 1).min(len);
            out.splice(at..at, chunk);
        }
        // Insert a text token.
        7 => {
            let p = pos(rng, len + 1).min(len);
            let token = TOKENS[rng.below(TOKENS.len())];
            out.splice(p..p, token.iter().copied());
        }
        // Replace an ASCII number with another.
        8 if len > 0 => {
            let p = pos(rng, len);
            if let Some(start) = (p..len).find(|&i| out[i].is_ascii_digit()) {
                let end = (start..len)
                    .find(|&i| !out[i].is_ascii_digit())
                    .unwrap_or(len);
                let token = TOKENS[rng.below(9)];
                out.splice(start..end, token.iter().copied());
            }
        }
        // Splice with another seed.
        _ if !seeds.is_empty() => {
            let other = &seeds[rng.below(seeds.len())];
            if !other.is_empty() && len > 0 {
                let cut = pos(rng, len);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
        }
        _ => {}
    }
}

/// How many inputs ran, and how many of them the parser accepted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub inputs: u64,
    pub accepted: u64,
}

/// Feeds the seeds, then `iters` mutated inputs (unless the environment says otherwise), to
/// `parse` (which returns whether it accepted the input). Panics (failing the test) on the first input that panics or is slower than
/// [`SLOW`], after writing it to `target/fuzz-failures/`.
pub fn run(target: &str, iters: u64, seeds: &[Vec<u8>], parse: impl Fn(&[u8]) -> bool) -> Stats {
    assert!(!seeds.is_empty(), "fuzz target {target} has no seeds");
    limit_address_space();
    let env_u64 = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seconds = env_u64("CONVNET_FUZZ_SECONDS");
    let iters = env_u64("CONVNET_FUZZ_ITERS").unwrap_or(iters);
    let mut rng = Rng::new(env_u64("CONVNET_FUZZ_SEED").unwrap_or(0) ^ hash(target));
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut stats = Stats::default();

    // The hook would print every caught panic; one report at the end is enough.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let check = |input: &[u8], stats: &mut Stats| {
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| parse(input)));
        let took = started.elapsed();
        let problem = match &result {
            Err(payload) => Some(format!("panicked: {}", panic_message(payload.as_ref()))),
            Ok(_) if took > SLOW => Some(format!("took {took:?} (limit {SLOW:?})")),
            Ok(_) => None,
        };
        if let Some(problem) = problem {
            let saved = save_failure(target, stats.inputs, input);
            std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
            panic!(
                "fuzz target {target}: input {} {problem}; saved as {}",
                stats.inputs,
                saved.display()
            );
        }
        stats.inputs += 1;
        stats.accepted += u64::from(result.unwrap_or(false));
    };
    for seed in seeds {
        check(seed, &mut stats);
    }
    let mut current = seeds[0].clone();
    loop {
        let done = match deadline {
            Some(d) => Instant::now() >= d,
            None => stats.inputs >= iters + seeds.len() as u64,
        };
        if done {
            break;
        }
        // Mostly mutate a fresh seed; sometimes keep mutating the last input (deeper changes).
        if !rng.chance(4) {
            current = seeds[rng.below(seeds.len())].clone();
        }
        current = mutate(&mut rng, &current, seeds);
        check(&current, &mut stats);
    }
    std::panic::set_hook(hook);
    eprintln!(
        "fuzz target {target}: {} inputs, {} accepted, no panics",
        stats.inputs, stats.accepted
    );
    stats
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

fn save_failure(target: &str, n: u64, input: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{target}-{n}.bin"));
    let _ = std::fs::write(&path, input);
    path
}

/// Writes one input to `path` for a target that reads files. The old file is removed first:
/// rewriting a file in place (truncate, then write) makes ext4 flush it to disk each time,
/// about 3 ms an input instead of tens of microseconds.
pub fn write_input(path: &std::path::Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).expect("the fuzz input can be written");
}
