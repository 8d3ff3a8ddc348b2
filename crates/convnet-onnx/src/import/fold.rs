//! Nodes computed at import time, when all their inputs are constants: the shape arithmetic
//! exporters write (`Shape -> Gather -> Unsqueeze -> Concat -> Reshape`), `Constant` nodes,
//! casts and reshapes of weights. Every result is bounded ([`MAX_FOLDED`]) before it is
//! allocated.

use super::value::{Const, Data, Value};
use super::{Converter, unsupported};
use crate::error::{ErrorKind, Result};
use crate::node::{AttributeValue, Node};
use crate::tensor::{DataType, Tensor};

/// The most elements a folded constant may have: folding is for shapes and small tensors; a
/// graph that would compute more at import is refused.
pub(crate) const MAX_FOLDED: usize = 1 << 26;

/// The most axes a folded constant may have (as [`crate::Limits::max_rank`]'s default).
const MAX_FOLDED_RANK: usize = 32;

/// The operators computed at import when their inputs are constants.
pub(crate) fn foldable(op: &str) -> bool {
    matches!(
        op,
        "Constant"
            | "Cast"
            | "CastLike"
            | "Expand"
            | "Gather"
            | "Unsqueeze"
            | "Squeeze"
            | "Concat"
            | "Slice"
            | "Add"
            | "Sub"
            | "Mul"
            | "Div"
            | "Reshape"
            | "Flatten"
            | "Identity"
            | "Dropout"
            | "Transpose"
    )
}

/// Computes `node`, whose inputs are all constants.
pub(crate) fn fold(c: &mut Converter, node: &Node) -> Result<()> {
    if node.op_type == "CastLike" {
        return cast_like(c, node);
    }
    let inputs = (0..node.inputs.len())
        .map(|i| c.constant(node, i))
        .collect::<Result<Vec<Option<Const>>>>()?;
    let value = compute(node, inputs)?;
    check_size(node, &value.dims)?;
    c.output(node, Value::Const(value))
}

fn compute(node: &Node, mut inputs: Vec<Option<Const>>) -> Result<Const> {
    let mut arg = |i: usize| -> Result<Const> {
        inputs
            .get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| unsupported(node, format!("needs input {i}, which is not given")))
    };
    match node.op_type.as_str() {
        "Constant" => constant(node),
        "Cast" => cast(node, arg(0)?),
        "Expand" => {
            let data = arg(0)?;
            expand(node, data, ints(node, &arg(1)?)?)
        }
        "Gather" => gather(node, arg(0)?, &arg(1)?),
        "Unsqueeze" => {
            let data = arg(0)?;
            let axes = axes_of(node, &mut inputs)?;
            unsqueeze(node, data, &axes.unwrap_or_default())
        }
        "Squeeze" => {
            let data = arg(0)?;
            let axes = axes_of(node, &mut inputs)?;
            squeeze(node, data, axes.as_deref())
        }
        "Concat" => {
            let parts = inputs.into_iter().flatten().collect();
            concat(node, parts)
        }
        "Slice" => slice(node, inputs),
        "Add" | "Sub" | "Mul" | "Div" => arithmetic(node, arg(0)?, arg(1)?),
        "Reshape" => {
            let data = arg(0)?;
            let shape = arg(1)?;
            let allow_zero = node.int_or("allowzero", 0)? != 0;
            let dims = reshaped(node, &data.dims, ints(node, &shape)?, allow_zero)?;
            Ok(Const { dims, ..data })
        }
        "Flatten" => {
            let data = arg(0)?;
            let axis = axis(node, node.int_or("axis", 1)?, data.dims.len() + 1)?;
            let outer = data.dims[..axis].iter().product();
            let inner = data.dims[axis..].iter().product();
            Ok(Const {
                dims: vec![outer, inner],
                ..data
            })
        }
        "Identity" | "Dropout" => arg(0),
        "Transpose" => transpose(node, arg(0)?),
        _ => Err(unsupported(node, "cannot be computed at import".into())),
    }
}

/// `Unsqueeze`/`Squeeze` axes: the `axes` attribute (before opset 13) or input 1.
fn axes_of(node: &Node, inputs: &mut [Option<Const>]) -> Result<Option<Vec<i64>>> {
    if let Some(axes) = node.get_ints("axes")? {
        return Ok(Some(axes.to_vec()));
    }
    match inputs.get_mut(1).and_then(Option::take) {
        Some(axes) => Ok(Some(ints(node, &axes)?.to_vec())),
        None => Ok(None),
    }
}

fn check_size(node: &Node, dims: &[usize]) -> Result<()> {
    check_rank(node, dims.len())?;
    let total = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match total {
        Some(n) if n <= MAX_FOLDED => Ok(()),
        _ => Err(unsupported(
            node,
            format!(
                "would compute a constant of dims {dims:?} at import, over the \
                 {MAX_FOLDED} elements import computes"
            ),
        )),
    }
}

fn check_rank(node: &Node, rank: usize) -> Result<()> {
    if rank > MAX_FOLDED_RANK {
        return Err(unsupported(
            node,
            format!(
                "would make a constant of {rank} axes, over the {MAX_FOLDED_RANK} import takes"
            ),
        ));
    }
    Ok(())
}

/// The values of an integer constant (shapes, axes, indices).
pub(crate) fn ints<'a>(node: &Node, c: &'a Const) -> Result<&'a [i64]> {
    c.as_ints()
        .ok_or_else(|| unsupported(node, "expects integers but is given floats".into()))
}

/// `axis` (negative: from the end) within `rank`.
pub(crate) fn axis(node: &Node, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(unsupported(
            node,
            format!("axis {axis} is out of range for {rank} dimensions"),
        ))
    }
}

fn constant(node: &Node) -> Result<Const> {
    let value = node.attributes.first().ok_or_else(|| {
        node.error(ErrorKind::MissingAttribute {
            name: "value".into(),
        })
    })?;
    Ok(match (&value.name[..], &value.value) {
        ("value", AttributeValue::Tensor(t)) => tensor_const(t),
        ("value_float", AttributeValue::Float(f)) => Const::floats(vec![], vec![*f]),
        ("value_floats", AttributeValue::Floats(f)) => Const::floats(vec![f.len()], f.clone()),
        ("value_int", AttributeValue::Int(i)) => Const::ints(vec![], vec![*i]),
        ("value_ints", AttributeValue::Ints(i)) => Const::ints(vec![i.len()], i.clone()),
        (name, _) => {
            return Err(unsupported(
                node,
                format!(
                    "attribute \"{name}\" is not supported (value, value_float(s), value_int(s) are)"
                ),
            ));
        }
    })
}

/// `CastLike`: input 0 (a constant) in the type of input 1, which may be the model's data
/// (floating-point).
fn cast_like(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.required_constant(node, 0)?;
    let float = match c.required(node, 1)? {
        Value::Flow(_) => true,
        Value::Const(k) => matches!(k.data, Data::Float(_)),
    };
    let dims = x.dims.clone();
    let value = match (float, x.data) {
        (true, data) => Const::floats(dims, Const { dims: vec![], data }.into_f32()),
        (false, Data::Int(v)) => Const::ints(dims, v),
        (false, Data::Float(v)) => Const::ints(dims, v.iter().map(|&x| x.trunc() as i64).collect()),
    };
    c.output(node, Value::Const(value))
}

/// `Expand`: `data` broadcast against `shape` (numpy's rule, either side may be 1).
fn expand(node: &Node, data: Const, shape: &[i64]) -> Result<Const> {
    let shape = shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| unsupported(node, format!("shape {shape:?} has a negative size")))?;
    let rank = shape.len().max(data.dims.len());
    check_rank(node, rank)?;
    let pad = |d: &[usize]| {
        let mut v = vec![1; rank - d.len()];
        v.extend(d);
        v
    };
    let (from, to) = (pad(&data.dims), pad(&shape));
    let mut dims = Vec::with_capacity(rank);
    for (&a, &b) in from.iter().zip(&to) {
        if a != b && a != 1 && b != 1 {
            return Err(unsupported(
                node,
                format!("cannot broadcast dims {:?} to {shape:?}", data.dims),
            ));
        }
        dims.push(if a == 1 { b } else { a });
    }
    check_size(node, &dims)?;
    let steps: Vec<usize> = strides(&from)
        .iter()
        .zip(&from)
        .map(|(&s, &d)| if d == 1 { 0 } else { s })
        .collect();
    let total: usize = dims.iter().product();
    let flat = (0..total).map(|mut i| {
        let mut at = 0;
        for a in (0..rank).rev() {
            at += (i % dims[a]) * steps[a];
            i /= dims[a];
        }
        at
    });
    Ok(pick(&data, dims.clone(), flat))
}

fn tensor_const(t: &Tensor) -> Const {
    Const::from_tensor(t.clone())
}

fn cast(node: &Node, value: Const) -> Result<Const> {
    let to = node.int("to")?;
    let dims = value.dims.clone();
    match DataType::from_code(to as i32) {
        Some(DataType::Float | DataType::Float16 | DataType::BFloat16 | DataType::Double) => {
            Ok(Const::floats(dims, value.into_f32()))
        }
        Some(DataType::Bool) => Ok(Const::ints(
            dims,
            value
                .to_f32()
                .iter()
                .map(|&x| i64::from(x != 0.0))
                .collect(),
        )),
        Some(_) => Ok(match value.data {
            Data::Int(v) => Const::ints(dims, v),
            Data::Float(v) => Const::ints(dims, v.iter().map(|&x| x.trunc() as i64).collect()),
        }),
        None => Err(unsupported(
            node,
            format!("casts to type {to}, which convnet does not read"),
        )),
    }
}

/// The elements of `data` at flat positions `index` (in order), as a new constant.
fn pick(data: &Const, dims: Vec<usize>, index: impl Iterator<Item = usize>) -> Const {
    match &data.data {
        Data::Float(v) => Const::floats(dims, index.map(|i| v[i]).collect()),
        Data::Int(v) => Const::ints(dims, index.map(|i| v[i]).collect()),
    }
}

fn gather(node: &Node, data: Const, indices: &Const) -> Result<Const> {
    let rank = data.dims.len();
    if rank == 0 {
        return Err(unsupported(node, "gathers from a scalar".into()));
    }
    let ax = axis(node, node.int_or("axis", 0)?, rank)?;
    let n = data.dims[ax];
    let picks = ints(node, indices)?
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + n as i64 } else { i };
            usize::try_from(j).ok().filter(|&j| j < n).ok_or_else(|| {
                unsupported(
                    node,
                    format!("index {i} is out of range for a dimension of {n}"),
                )
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    let outer: usize = data.dims[..ax].iter().product();
    let inner: usize = data.dims[ax + 1..].iter().product();
    let mut dims = data.dims[..ax].to_vec();
    dims.extend(&indices.dims);
    dims.extend(&data.dims[ax + 1..]);
    check_size(node, &dims)?;
    let flat = (0..outer).flat_map(|o| {
        picks
            .iter()
            .flat_map(move |&p| (0..inner).map(move |k| (o * n + p) * inner + k))
    });
    Ok(pick(&data, dims.clone(), flat))
}

fn unsqueeze(node: &Node, data: Const, axes: &[i64]) -> Result<Const> {
    let rank = data.dims.len() + axes.len();
    check_rank(node, rank)?;
    let mut at = axes
        .iter()
        .map(|&a| axis(node, a, rank))
        .collect::<Result<Vec<_>>>()?;
    at.sort_unstable();
    let mut dims = data.dims.clone();
    for a in at {
        dims.insert(a.min(dims.len()), 1);
    }
    Ok(Const { dims, ..data })
}

fn squeeze(node: &Node, data: Const, axes: Option<&[i64]>) -> Result<Const> {
    let rank = data.dims.len();
    let drop: Vec<usize> = match axes {
        Some(axes) => axes
            .iter()
            .map(|&a| axis(node, a, rank))
            .collect::<Result<_>>()?,
        None => (0..rank).filter(|&a| data.dims[a] == 1).collect(),
    };
    if let Some(&a) = drop.iter().find(|&&a| data.dims[a] != 1) {
        return Err(unsupported(
            node,
            format!("squeezes axis {a} of size {}", data.dims[a]),
        ));
    }
    let dims = (0..rank)
        .filter(|a| !drop.contains(a))
        .map(|a| data.dims[a])
        .collect();
    Ok(Const { dims, ..data })
}

fn concat(node: &Node, parts: Vec<Const>) -> Result<Const> {
    let Some(first) = parts.first() else {
        return Err(unsupported(node, "has no inputs".into()));
    };
    let rank = first.dims.len();
    let ax = axis(node, node.int("axis")?, rank)?;
    for p in &parts {
        let same = p.dims.len() == rank && (0..rank).all(|a| a == ax || p.dims[a] == first.dims[a]);
        if !same {
            return Err(unsupported(
                node,
                format!(
                    "joins dims {:?} and {:?} along axis {ax}",
                    first.dims, p.dims
                ),
            ));
        }
    }
    let mut dims = first.dims.clone();
    dims[ax] = parts.iter().map(|p| p.dims[ax]).sum();
    check_size(node, &dims)?;
    let outer: usize = first.dims[..ax].iter().product();
    let inner: usize = first.dims[ax + 1..].iter().product();
    let floats = parts.iter().any(|p| matches!(p.data, Data::Float(_)));
    let chunk = |p: &Const, o: usize| {
        let size = p.dims[ax] * inner;
        (o * size)..((o + 1) * size)
    };
    if floats {
        let values: Vec<Vec<f32>> = parts.iter().map(Const::to_f32).collect();
        let out = (0..outer)
            .flat_map(|o| {
                parts
                    .iter()
                    .zip(&values)
                    .flat_map(move |(p, v)| v[chunk(p, o)].iter().copied())
            })
            .collect();
        Ok(Const::floats(dims, out))
    } else {
        let out = (0..outer)
            .flat_map(|o| {
                parts
                    .iter()
                    .flat_map(move |p| p.as_ints().unwrap_or(&[])[chunk(p, o)].iter().copied())
            })
            .collect();
        Ok(Const::ints(dims, out))
    }
}

/// `Slice`: starts, ends, axes and steps as inputs (opset 10 on) or attributes (before).
fn slice(node: &Node, mut inputs: Vec<Option<Const>>) -> Result<Const> {
    let data = inputs
        .first_mut()
        .and_then(Option::take)
        .ok_or_else(|| unsupported(node, "needs input 0, which is not given".into()))?;
    let mut list = |i: usize, attr: &str| -> Result<Option<Vec<i64>>> {
        if let Some(v) = node.get_ints(attr)? {
            return Ok(Some(v.to_vec()));
        }
        match inputs.get_mut(i).and_then(Option::take) {
            Some(v) => Ok(Some(ints(node, &v)?.to_vec())),
            None => Ok(None),
        }
    };
    let starts = list(1, "starts")?.unwrap_or_default();
    let ends = list(2, "ends")?.unwrap_or_default();
    let rank = data.dims.len();
    let axes = list(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = list(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(unsupported(
            node,
            "has starts, ends, axes and steps of different lengths".into(),
        ));
    }
    // Per axis: the first index, the step, and the count.
    let mut ranges: Vec<(i64, i64, usize)> = data.dims.iter().map(|&d| (0, 1, d)).collect();
    for k in 0..starts.len() {
        let a = axis(node, axes[k], rank)?;
        let n = data.dims[a] as i64;
        let step = steps[k];
        if step == 0 {
            return Err(unsupported(node, "has a step of 0".into()));
        }
        let clampi = |v: i64, lo: i64, hi: i64| {
            let v = if v < 0 { v.saturating_add(n) } else { v };
            v.clamp(lo, hi)
        };
        let (start, end) = if step > 0 {
            (clampi(starts[k], 0, n), clampi(ends[k], 0, n))
        } else {
            (clampi(starts[k], 0, n - 1), clampi(ends[k], -1, n - 1))
        };
        // Counted in i128: a step may be as large as i64 allows.
        let (from, to, by) = (i128::from(start), i128::from(end), i128::from(step));
        let count = if by > 0 && to > from {
            (to - from - 1) / by + 1
        } else if by < 0 && from > to {
            (from - to - 1) / -by + 1
        } else {
            0
        };
        ranges[a] = (start, step, count as usize);
    }
    let dims: Vec<usize> = ranges.iter().map(|r| r.2).collect();
    check_size(node, &dims)?;
    let strides = strides(&data.dims);
    let total: usize = dims.iter().product();
    let flat = (0..total).map(|mut i| {
        let mut at = 0i64;
        for a in (0..rank).rev() {
            let k = (i % dims[a]) as i64;
            i /= dims[a];
            at += (ranges[a].0 + k * ranges[a].1) * strides[a] as i64;
        }
        at as usize
    });
    Ok(pick(&data, dims.clone(), flat))
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for a in (0..dims.len().saturating_sub(1)).rev() {
        s[a] = s[a + 1] * dims[a + 1];
    }
    s
}

/// `Add`, `Sub`, `Mul`, `Div` of two constants of the same dims, or of a constant and a
/// single value.
fn arithmetic(node: &Node, a: Const, b: Const) -> Result<Const> {
    let dims = if a.dims == b.dims || b.len() == 1 {
        a.dims.clone()
    } else if a.len() == 1 {
        b.dims.clone()
    } else {
        return Err(unsupported(
            node,
            format!(
                "computes constants of dims {:?} and {:?}; import computes only equal dims or \
                 a single value",
                a.dims, b.dims
            ),
        ));
    };
    let n = a.len().max(b.len());
    let at = |len: usize, i: usize| if len == 1 { 0 } else { i };
    let op = node.op_type.as_str();
    match (&a.data, &b.data) {
        (Data::Int(x), Data::Int(y)) => {
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let (p, q) = (x[at(x.len(), i)], y[at(y.len(), i)]);
                let r = match op {
                    "Add" => p.checked_add(q),
                    "Sub" => p.checked_sub(q),
                    "Mul" => p.checked_mul(q),
                    _ => p.checked_div(q),
                };
                out.push(r.ok_or_else(|| {
                    unsupported(
                        node,
                        format!("{op} of {p} and {q} overflows or divides by 0"),
                    )
                })?);
            }
            Ok(Const::ints(dims, out))
        }
        _ => {
            let (x, y) = (a.to_f32(), b.to_f32());
            let out = (0..n)
                .map(|i| {
                    let (p, q) = (x[at(x.len(), i)], y[at(y.len(), i)]);
                    match op {
                        "Add" => p + q,
                        "Sub" => p - q,
                        "Mul" => p * q,
                        _ => p / q,
                    }
                })
                .collect();
            Ok(Const::floats(dims, out))
        }
    }
}

/// `Reshape`'s target dims for an input of `dims`: `0` copies the input's dim (unless
/// `allow_zero`), one `-1` takes what is left.
pub(crate) fn reshaped(
    node: &Node,
    dims: &[usize],
    shape: &[i64],
    allow_zero: bool,
) -> Result<Vec<usize>> {
    let total: usize = dims.iter().product();
    let bad = || unsupported(node, format!("cannot reshape dims {dims:?} to {shape:?}"));
    let mut out = Vec::with_capacity(shape.len());
    let mut free = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            0 if !allow_zero => out.push(*dims.get(i).ok_or_else(bad)?),
            -1 if free.is_none() => {
                free = Some(i);
                out.push(1);
            }
            s if s >= 0 => out.push(usize::try_from(s).map_err(|_| bad())?),
            _ => return Err(bad()),
        }
    }
    let known = out
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(bad)?;
    if let Some(i) = free {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(bad());
        }
        out[i] = total / known;
    } else if known != total {
        return Err(bad());
    }
    Ok(out)
}

fn transpose(node: &Node, data: Const) -> Result<Const> {
    let rank = data.dims.len();
    let perm: Vec<usize> = match node.get_ints("perm")? {
        Some(p) => p
            .iter()
            .map(|&a| axis(node, a, rank))
            .collect::<Result<_>>()?,
        None => (0..rank).rev().collect(),
    };
    let mut seen = vec![false; rank];
    if perm.len() != rank || perm.iter().any(|&a| std::mem::replace(&mut seen[a], true)) {
        return Err(unsupported(
            node,
            format!("perm {perm:?} is not a permutation"),
        ));
    }
    let dims: Vec<usize> = perm.iter().map(|&a| data.dims[a]).collect();
    let from = strides(&data.dims);
    let total: usize = dims.iter().product();
    let flat = (0..total).map(|mut i| {
        let mut at = 0;
        for k in (0..rank).rev() {
            at += (i % dims[k]) * from[perm[k]];
            i /= dims[k];
        }
        at
    });
    Ok(pick(&data, dims.clone(), flat))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str) -> Node {
        Node {
            name: "n".into(),
            op_type: op.into(),
            domain: String::new(),
            inputs: vec![],
            outputs: vec!["y".into()],
            attributes: vec![],
            index: 0,
            file: std::sync::Arc::from(std::path::Path::new("m.onnx")),
        }
    }

    #[test]
    fn reshape_takes_zero_and_minus_one_as_onnx_does() {
        let n = node("Reshape");
        assert_eq!(
            reshaped(&n, &[2, 3, 4], &[0, -1], false).unwrap(),
            vec![2, 12]
        );
        assert_eq!(
            reshaped(&n, &[2, 3, 4], &[-1, 4], false).unwrap(),
            vec![6, 4]
        );
        assert!(reshaped(&n, &[2, 3, 4], &[5, -1], false).is_err());
        assert!(reshaped(&n, &[2, 3, 4], &[-1, -1], false).is_err());
    }

    #[test]
    fn transpose_of_a_matrix_swaps_rows_and_columns() {
        let m = Const::floats(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let t = transpose(&node("Transpose"), m).unwrap();
        assert_eq!(t, Const::floats(vec![3, 2], vec![1., 4., 2., 5., 3., 6.]));
    }

    #[test]
    fn slice_with_negative_step_reverses() {
        let c = Const::ints(vec![4], vec![10, 11, 12, 13]);
        let mut n = node("Slice");
        n.attributes = vec![];
        let inputs = vec![
            Some(c),
            Some(Const::ints(vec![1], vec![-1])),
            Some(Const::ints(vec![1], vec![i64::MIN])),
            Some(Const::ints(vec![1], vec![0])),
            Some(Const::ints(vec![1], vec![-2])),
        ];
        let out = slice(&n, inputs).unwrap();
        assert_eq!(out, Const::ints(vec![2], vec![13, 11]));
    }

    #[test]
    fn gather_picks_along_the_axis() {
        let data = Const::ints(vec![4], vec![1, 3, 224, 224]);
        let out = gather(&node("Gather"), data, &Const::ints(vec![], vec![0])).unwrap();
        assert_eq!(out, Const::ints(vec![], vec![1]));
    }
}
