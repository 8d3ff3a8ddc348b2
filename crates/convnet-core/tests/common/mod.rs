//! Shared by the golden tests: read a fixture file written by `tools/gen_fixtures.py`
//! (safetensors; tensors `"<case>.<name>"`, each case's parameters as JSON in `__metadata__`),
//! compare results with PyTorch's, and collect every failure so that one run reports all of
//! them before failing.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::path::PathBuf;

use convnet_core::Tensor;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

/// Allowed error: `|got - want| <= TOL * max(1, |want|)` (absolute below 1, relative above).
pub const TOL: f32 = 1e-4;

enum Stored {
    F32(Vec<usize>, Vec<f32>),
    I64(Vec<usize>, Vec<i64>),
}

/// One fixture file, fully read into memory.
pub struct Fixture {
    path: PathBuf,
    cases: BTreeMap<String, Value>,
    tensors: BTreeMap<String, Stored>,
    /// Tensors read so far, so that a tensor no test looked at is reported.
    used: RefCell<BTreeSet<String>>,
}

impl Fixture {
    /// Read `tests/fixtures/<file_name>`; panics (failing the test) if it is missing or bad.
    pub fn load(file_name: &str) -> Fixture {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("fixtures")
            .join(file_name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read fixture {}: {e} (regenerate with tools/gen_fixtures.py)",
                path.display()
            )
        });
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .unwrap_or_else(|e| panic!("{}: bad safetensors header: {e}", path.display()));
        let mut cases = BTreeMap::new();
        for (case, json) in header.metadata().iter().flatten() {
            let value: Value = serde_json::from_str(json).unwrap_or_else(|e| {
                panic!(
                    "{}: parameters of case `{case}` are not JSON: {e}",
                    path.display()
                )
            });
            cases.insert(case.clone(), value);
        }
        let st = SafeTensors::deserialize(&bytes)
            .unwrap_or_else(|e| panic!("{}: bad safetensors file: {e}", path.display()));
        let mut tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            let shape = view.shape().to_vec();
            let stored = match view.dtype() {
                Dtype::F32 => Stored::F32(
                    shape,
                    view.data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                ),
                Dtype::I64 => Stored::I64(
                    shape,
                    view.data()
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                ),
                other => panic!("{}: tensor {name} has dtype {other:?}", path.display()),
            };
            tensors.insert(name.to_string(), stored);
        }
        Fixture {
            path,
            cases,
            tensors,
            used: RefCell::new(BTreeSet::new()),
        }
    }

    /// Every case, by name, with its parameters.
    pub fn cases(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.cases.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The parameters of one case.
    pub fn case(&self, case: &str) -> Result<&Value, String> {
        self.cases
            .get(case)
            .ok_or_else(|| format!("no case `{case}` in {}", self.path.display()))
    }

    pub fn num_cases(&self) -> usize {
        self.cases.len()
    }

    pub fn has(&self, case: &str, name: &str) -> bool {
        self.tensors.contains_key(&format!("{case}.{name}"))
    }

    fn get(&self, case: &str, name: &str) -> Result<&Stored, String> {
        let key = format!("{case}.{name}");
        let stored = self
            .tensors
            .get(&key)
            .ok_or_else(|| format!("tensor `{key}` is missing from the fixture"))?;
        self.used.borrow_mut().insert(key);
        Ok(stored)
    }

    /// The float32 tensor `<case>.<name>`.
    pub fn tensor(&self, case: &str, name: &str) -> Result<Tensor, String> {
        match self.get(case, name)? {
            Stored::F32(shape, data) => Tensor::new(shape.clone(), data.clone())
                .map_err(|e| format!("tensor `{case}.{name}`: {e}")),
            Stored::I64(..) => Err(format!("tensor `{case}.{name}` is int64, expected f32")),
        }
    }

    /// The float32 tensor `<case>.<name>` if the fixture has it.
    pub fn optional_tensor(&self, case: &str, name: &str) -> Result<Option<Tensor>, String> {
        if self.has(case, name) {
            self.tensor(case, name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The int64 tensor `<case>.<name>` (e.g. max-pool indices) as shape and flat values.
    pub fn indices(&self, case: &str, name: &str) -> Result<(Vec<usize>, Vec<usize>), String> {
        match self.get(case, name)? {
            Stored::I64(shape, data) => {
                let values = data
                    .iter()
                    .map(|&v| usize::try_from(v))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| format!("tensor `{case}.{name}` has a negative index"))?;
                Ok((shape.clone(), values))
            }
            Stored::F32(..) => Err(format!("tensor `{case}.{name}` is f32, expected int64")),
        }
    }

    /// Tensors of the file that no check has read.
    fn unused_tensors(&self) -> Vec<String> {
        let used = self.used.borrow();
        self.tensors
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect()
    }
}

/// A JSON parameter of a case, with an error naming it when missing or of the wrong type.
/// A tensor of values in `[-1, 1)` from a xorshift stream seeded by `seed`: random problems
/// for the property tests, the same on every machine.
pub fn random(dims: &[usize], seed: u64) -> Tensor {
    let mut state = seed | 1;
    Tensor::from_fn(dims.to_vec(), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
    .unwrap()
}

pub fn param<'a>(meta: &'a Value, key: &str) -> Result<&'a Value, String> {
    meta.get(key)
        .ok_or_else(|| format!("parameter `{key}` is missing"))
}

pub fn param_str<'a>(meta: &'a Value, key: &str) -> Result<&'a str, String> {
    param(meta, key)?
        .as_str()
        .ok_or_else(|| format!("parameter `{key}` is not a string"))
}

pub fn param_bool(meta: &Value, key: &str) -> Result<bool, String> {
    param(meta, key)?
        .as_bool()
        .ok_or_else(|| format!("parameter `{key}` is not a boolean"))
}

pub fn param_f32(meta: &Value, key: &str) -> Result<f32, String> {
    param(meta, key)?
        .as_f64()
        .map(|v| v as f32)
        .ok_or_else(|| format!("parameter `{key}` is not a number"))
}

pub fn param_usize(meta: &Value, key: &str) -> Result<usize, String> {
    as_usize(param(meta, key)?).ok_or_else(|| format!("parameter `{key}` is not a count"))
}

/// `null` or a count.
pub fn param_opt_usize(meta: &Value, key: &str) -> Result<Option<usize>, String> {
    match param(meta, key)? {
        Value::Null => Ok(None),
        v => as_usize(v)
            .map(Some)
            .ok_or_else(|| format!("parameter `{key}` is neither null nor a count")),
    }
}

/// A list of `N` counts, e.g. `[sh, sw]`.
pub fn param_array<const N: usize>(meta: &Value, key: &str) -> Result<[usize; N], String> {
    let bad = || format!("parameter `{key}` is not a list of {N} counts");
    let items = param(meta, key)?.as_array().ok_or_else(bad)?;
    let values: Vec<usize> = items
        .iter()
        .map(as_usize)
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    values.try_into().map_err(|_| bad())
}

fn as_usize(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|v| usize::try_from(v).ok())
}

/// The 4 dimensions of a tensor that must be `[N, C, H, W]`.
pub fn dims4(t: &Tensor) -> Result<[usize; 4], String> {
    t.dims()
        .try_into()
        .map_err(|_| format!("expected a 4-D tensor, got shape {:?}", t.dims()))
}

/// Every failure of one test, reported together by [`Report::finish`].
pub struct Report {
    family: &'static str,
    failures: Vec<String>,
    comparisons: usize,
}

impl Report {
    pub fn new(family: &'static str) -> Report {
        Report {
            family,
            failures: Vec::new(),
            comparisons: 0,
        }
    }

    /// Record a failure of `case` (an error, or a wrong value).
    pub fn fail(&mut self, case: &str, what: impl Display) {
        self.failures.push(format!("case `{case}`: {what}"));
    }

    /// The value of `result`, or `None` after recording its error against `case` and `what`.
    pub fn ok<T, E: Display>(&mut self, case: &str, what: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(case, format!("{what}: error: {e}"));
                None
            }
        }
    }

    /// Compare `got` with PyTorch's `want`: same shape, and every element within
    /// `TOL * max(1, |want|)`. `what` names the tensor (and the algorithm, if any).
    pub fn compare(&mut self, case: &str, what: &str, got: &Tensor, want: &Tensor) {
        self.comparisons += 1;
        if got.dims() != want.dims() {
            self.fail(
                case,
                format!(
                    "{what}: shape {:?}, PyTorch has {:?}",
                    got.dims(),
                    want.dims()
                ),
            );
            return;
        }
        // The element with the largest error relative to what is allowed there.
        let mut worst: Option<(usize, f32)> = None;
        let mut max_abs = 0.0f32;
        for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
            let err = (g - w).abs();
            // NaN (err is NaN) counts as infinitely wrong.
            let ratio = if err.is_nan() {
                f32::INFINITY
            } else {
                err / (TOL * w.abs().max(1.0))
            };
            if err.is_nan() || err > max_abs {
                max_abs = if err.is_nan() { f32::INFINITY } else { err };
            }
            if worst.is_none_or(|(_, r)| ratio > r) {
                worst = Some((i, ratio));
            }
        }
        if let Some((i, ratio)) = worst
            && ratio > 1.0
        {
            let index = unravel(i, want.dims());
            self.fail(
                case,
                format!(
                    "{what}: max abs error {max_abs:.3e}; worst at {index:?}: got {}, \
                     PyTorch {} (error {:.3e} > allowed {:.1e} * max(1, |want|))",
                    fmt_value(got.data()[i]),
                    fmt_value(want.data()[i]),
                    (got.data()[i] - want.data()[i]).abs(),
                    TOL
                ),
            );
        }
    }

    /// Compare integer indices (e.g. max-pool argmax) exactly.
    pub fn compare_indices(&mut self, case: &str, what: &str, got: &[usize], want: &[usize]) {
        self.comparisons += 1;
        if got.len() != want.len() {
            self.fail(
                case,
                format!("{what}: {} indices, PyTorch has {}", got.len(), want.len()),
            );
            return;
        }
        let wrong: Vec<String> = got
            .iter()
            .zip(want)
            .enumerate()
            .filter(|(_, (g, w))| g != w)
            .map(|(i, (g, w))| format!("at {i}: got {g}, PyTorch {w}"))
            .collect();
        if !wrong.is_empty() {
            let shown = wrong.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
            self.fail(
                case,
                format!("{what}: {} of {} differ ({shown})", wrong.len(), got.len()),
            );
        }
    }

    /// Fail, listing every failure, unless the fixture held exactly `expected_cases` cases,
    /// every tensor of the file was read by some check, and nothing failed. For a test that
    /// loops over every case of the file.
    pub fn finish_all_cases(mut self, fixture: &Fixture, expected_cases: usize) {
        if fixture.num_cases() != expected_cases {
            self.failures.push(format!(
                "{} has {} cases, this test expects {expected_cases}",
                fixture.path.display(),
                fixture.num_cases()
            ));
        }
        for name in fixture.unused_tensors() {
            self.failures
                .push(format!("tensor `{name}` of the fixture was never checked"));
        }
        self.finish();
    }

    /// Fail, listing every failure, if anything failed or nothing was compared.
    pub fn finish(mut self) {
        if self.comparisons == 0 {
            self.failures.push("nothing was compared".to_string());
        }
        if !self.failures.is_empty() {
            panic!(
                "{}: {} failure(s) in {} comparisons:\n  {}",
                self.family,
                self.failures.len(),
                self.comparisons,
                self.failures.join("\n  ")
            );
        }
        eprintln!(
            "{}: {} comparisons, all within {TOL:e} * max(1, |want|)",
            self.family, self.comparisons
        );
    }
}

/// A value in plain notation, or in scientific notation when tiny or huge.
fn fmt_value(v: f32) -> String {
    if v == 0.0 || (1e-3..1e6).contains(&v.abs()) {
        v.to_string()
    } else {
        format!("{v:e}")
    }
}

fn unravel(mut flat: usize, dims: &[usize]) -> Vec<usize> {
    let mut index = vec![0; dims.len()];
    for (slot, &d) in index.iter_mut().zip(dims).rev() {
        *slot = flat % d.max(1);
        flat /= d.max(1);
    }
    index
}
