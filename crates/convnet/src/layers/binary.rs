//! `add`, `sub`, `mul`, `div`: [`Binary`], element-wise arithmetic of two inputs with
//! broadcasting, as PyTorch's `a + b`, ... and ONNX `Add`, `Sub`, `Mul`, `Div`.
//!
//! Each input has a batch axis; their per-sample shapes broadcast as NumPy's do (aligned at
//! the last axis, an axis of 1 stretching). A per-sample shape of fewer axes is aligned to the
//! right after the batch axis, so a `[N, F]` operand of a `[N, C, H, W]` one scales each row
//! of every plane. A batch of 1 (a `constant`) stretches over the other's batch.

use convnet_core::{BinaryOp, Tensor, add_in_place, binary, binary_backward, broadcast_dims};
use serde::{Deserialize, Serialize};

use super::kind::{Arity, Kind, Output, Reach};
use super::{ForwardCtx, Layer, Module};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// The kind of each binary operation: settings (none) whose `inputs` name the two operands.
macro_rules! binary_kind {
    ($(#[$doc:meta])* $config:ident, $name:literal, $op:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $config {}

        impl Kind for $config {
            const NAMES: &'static [&'static str] = &[$name];

            fn arity(&self) -> Arity {
                Arity::Exactly(2)
            }

            fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
                binary_output(inputs)
            }

            fn build(&self, _rng: &mut Rng) -> Result<Layer> {
                Ok(Box::new(Binary::new($op)))
            }
        }
    };
}

binary_kind!(
    /// Settings of an `add` (none): the sum of two layers (a residual join).
    AddConfig,
    "add",
    BinaryOp::Add
);
binary_kind!(
    /// Settings of a `sub` (none): the first input minus the second.
    SubConfig,
    "sub",
    BinaryOp::Sub
);
binary_kind!(
    /// Settings of a `mul` (none): the element-wise product (a gate, a scale).
    MulConfig,
    "mul",
    BinaryOp::Mul
);
binary_kind!(
    /// Settings of a `div` (none): the first input divided by the second.
    DivConfig,
    "div",
    BinaryOp::Div
);

/// The per-sample output of two per-sample input shapes that broadcast.
fn binary_output(inputs: &[&[usize]]) -> Result<Output> {
    match inputs {
        [a, b] => Ok(Output::new(broadcast_dims(a, b)?).with_reach(Reach::Join)),
        _ => Err(Error::model(format!(
            "takes two inputs, got {}",
            inputs.len()
        ))),
    }
}

/// `x` `[N, ...]` with 1s inserted after the batch axis up to `rank` axes in all.
fn aligned(x: Tensor, rank: usize) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() >= rank || dims.is_empty() {
        return Ok(x);
    }
    let mut new = vec![dims[0]];
    new.resize(rank - dims.len() + 1, 1);
    new.extend_from_slice(&dims[1..]);
    Ok(x.reshape(new)?)
}

/// Two operands with a batch axis each, aligned to the same number of axes.
fn operands(inputs: Vec<Tensor>) -> Result<[Tensor; 2]> {
    let count = inputs.len();
    let Ok([a, b]) = <[Tensor; 2]>::try_from(inputs) else {
        return Err(Error::model(format!("takes two inputs, got {count}")));
    };
    let rank = a.rank().max(b.rank());
    Ok([aligned(a, rank)?, aligned(b, rank)?])
}

/// An element-wise operation of two inputs with broadcasting (`add`, `sub`, `mul`, `div`).
///
/// Shapes: inputs `[N or 1, ...]` whose per-sample shapes broadcast; output the broadcast
/// shape. Keeps its inputs for the backward pass, whose gradients are summed over the axes
/// each input was stretched along and returned in the input's own shape.
#[derive(Debug, Clone)]
pub struct Binary {
    op: BinaryOp,
    /// The inputs (aligned) and their shapes as given.
    inputs: Option<([Tensor; 2], [Vec<usize>; 2])>,
}

impl Binary {
    pub fn new(op: BinaryOp) -> Self {
        Binary { op, inputs: None }
    }

    pub fn op(&self) -> BinaryOp {
        self.op
    }
}

impl Module for Binary {
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let given =
            [inputs.first(), inputs.get(1)].map(|x| x.map_or(vec![], |x| x.dims().to_vec()));
        let [mut a, b] = operands(inputs)?;
        let y = if self.op == BinaryOp::Add && a.dims() == b.dims() && !ctx.record {
            // A residual join: the sum is written over the first input.
            add_in_place(&mut a, &b)?;
            a
        } else {
            let y = binary(&a, &b, self.op)?;
            self.inputs = ctx.record.then_some(([a, b], given));
            y
        };
        Ok(y)
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let ([a, b], given) = super::recorded(&self.inputs)?;
        if !need_input_grad {
            return Ok(vec![None, None]);
        }
        let grads = binary_backward(&grad_output, a, b, self.op, [true, true])?;
        (grads.into_iter().zip(given))
            .map(|(g, dims)| match g {
                Some(g) => Ok(Some(g.reshape(dims.clone())?)),
                None => Ok(None),
            })
            .collect()
    }

    fn clear(&mut self) {
        self.inputs = None;
    }
}
