//! Reverse-mode automatic differentiation on a [`Graph`], emitting the backward pass as more
//! ai.onnx opset-17 nodes (no training ops: stock ONNX Runtime runs the result).
//!
//! [`backward`] walks the nodes between the requested values and the seeds in reverse, applies
//! one rule per operator, sums the contributions that reach a value, and reduces gradients of
//! broadcast operands over the axes the broadcast expanded (known from the symbolic shapes).
//! Only nodes on a path from a requested value to a seed are differentiated, and
//! [`Graph::to_model`] drops whatever the outputs do not need.
//!
//! ```
//! use ltre_core::graph::{autodiff::backward, DType, Dim, Graph};
//!
//! // y = sum(x * w) over the last axis; dy/dw = sum of x over the batch.
//! let mut g = Graph::new("example");
//! let x = g.input("x", DType::F32, vec![Dim::sym("batch"), Dim::Fixed(3)]).unwrap();
//! let w = g.input("w", DType::F32, vec![Dim::Fixed(3)]).unwrap();
//! let xw = g.mul(x, w).unwrap();
//! let y = g.reduce_sum(xw, &[-1], false).unwrap();
//! let dy = g.input("dy", DType::F32, vec![Dim::sym("batch")]).unwrap();
//! let grads = backward(&mut g, &[(y, dy)], &[w]).unwrap();
//! let dw = grads[0].unwrap();
//! assert_eq!(g.shape(dw), &[Dim::Fixed(3)]);
//! ```
use std::collections::HashMap;

use super::builder::{fmt_shape, DType, Dim, Graph, Op, Value};
use crate::{Error, Result};

/// Gradients of the seeds' upstream gradients `seeds = [(y, dL/dy)]` with respect to each value
/// in `wrt` (parameters or intermediate values). `None` where a value does not influence any
/// seed.
pub fn backward(
    g: &mut Graph,
    seeds: &[(Value, Value)],
    wrt: &[Value],
) -> Result<Vec<Option<Value>>> {
    let n_values = g.values.len();
    let n_nodes = g.nodes.len();
    let float = |g: &Graph, v: Value| g.dtype(v) == DType::F32;

    // Values that depend on a requested value ...
    let mut from_wrt = vec![false; n_values];
    for &v in wrt {
        from_wrt[v.index()] = true;
    }
    for node in &g.nodes[..n_nodes] {
        if node.inputs.iter().any(|i| from_wrt[i.index()]) {
            for o in &node.outputs {
                from_wrt[o.index()] = true;
            }
        }
    }
    // ... and that a seed depends on.
    let mut to_seed = vec![false; n_values];
    for &(y, _) in seeds {
        to_seed[y.index()] = true;
    }
    for node in g.nodes[..n_nodes].iter().rev() {
        if node.outputs.iter().any(|o| to_seed[o.index()]) {
            for i in &node.inputs {
                to_seed[i.index()] = true;
            }
        }
    }
    let active: Vec<bool> = (0..n_values)
        .map(|i| from_wrt[i] && to_seed[i] && float(g, Value(i as u32)))
        .collect();

    let mut contributions: HashMap<Value, Vec<Value>> = HashMap::new();
    for &(y, dy) in seeds {
        if g.shape(y) != g.shape(dy) {
            return Err(Error::Graph(format!(
                "seed gradient {} does not match {}",
                fmt_shape(g.shape(dy)),
                fmt_shape(g.shape(y))
            )));
        }
        contributions.entry(y).or_default().push(dy);
    }

    for n in (0..n_nodes).rev() {
        let node = g.nodes[n].clone();
        let need: Vec<bool> = node.inputs.iter().map(|i| active[i.index()]).collect();
        if !need.iter().any(|&b| b) {
            continue;
        }
        let mut out_grads = Vec::with_capacity(node.outputs.len());
        for &o in &node.outputs {
            out_grads.push(match contributions.remove(&o) {
                Some(c) => Some(sum(g, o, c)?),
                None => None,
            });
        }
        if out_grads.iter().all(Option::is_none) {
            continue;
        }
        let in_grads = rule(g, &node.op, &node.inputs, &node.outputs, &out_grads, &need)?;
        for ((&x, dx), &needed) in node.inputs.iter().zip(in_grads).zip(&need) {
            if let (Some(dx), true) = (dx, needed) {
                contributions.entry(x).or_default().push(dx);
            }
        }
    }

    wrt.iter()
        .map(|&v| match contributions.remove(&v) {
            Some(c) => sum(g, v, c).map(Some),
            None => Ok(None),
        })
        .collect()
}

/// Sums the gradient contributions reaching `v`, checking each has `v`'s shape.
fn sum(g: &mut Graph, v: Value, contributions: Vec<Value>) -> Result<Value> {
    for &c in &contributions {
        if g.shape(c) != g.shape(v) {
            return Err(Error::Graph(format!(
                "autodiff: gradient of `{}` has shape {}, expected {}",
                g.name(v),
                fmt_shape(g.shape(c)),
                fmt_shape(g.shape(v))
            )));
        }
    }
    // One variadic Sum reads every contribution once, where a chain of Adds would re-read
    // the running total.
    match contributions.as_slice() {
        [] => Err(Error::Graph("autodiff: empty gradient".into())),
        [one] => Ok(*one),
        [a, b] => g.add(*a, *b),
        many => g.sum(many),
    }
}

/// Sums `dy` (shaped like a broadcast result) down to the shape of the operand `x`.
fn unbroadcast(g: &mut Graph, dy: Value, x: Value) -> Result<Value> {
    let out = g.shape(dy).to_vec();
    let target = g.shape(x).to_vec();
    if out == target {
        return Ok(dy);
    }
    let lead = out.len() - target.len();
    let lead_axes: Vec<i64> = (0..lead as i64).collect();
    let ones: Vec<i64> = (lead..out.len())
        .filter(|&i| target[i - lead] == Dim::Fixed(1) && out[i] != Dim::Fixed(1))
        .map(|i| i as i64)
        .collect();
    if ones.is_empty() {
        return g.reduce_sum(dy, &lead_axes, false);
    }
    let all: Vec<i64> = lead_axes.iter().chain(&ones).copied().collect();
    let r = g.reduce_sum(dy, &all, true)?;
    if lead_axes.is_empty() {
        Ok(r)
    } else {
        g.squeeze(r, &lead_axes)
    }
}

/// The shape of `x` as an int64 value: a constant when fully known, else `Shape(x)`.
fn shape_value(g: &mut Graph, x: Value) -> Result<Value> {
    let dims: Option<Vec<i64>> = g
        .shape(x)
        .iter()
        .map(|d| d.fixed().map(|n| n as i64))
        .collect();
    match dims {
        Some(d) => g.const_i64(&d),
        None => g.shape_of(x, None, None),
    }
}

fn transpose_last2(g: &mut Graph, x: Value) -> Result<Value> {
    let r = g.rank(x);
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 2, r - 1);
    g.transpose(x, &perm)
}

fn unsupported(op: &Op) -> Error {
    Error::Graph(format!("autodiff: no gradient rule for {}", op.op_type()))
}

/// Gradients of one node's inputs from its outputs' gradients.
fn rule(
    g: &mut Graph,
    op: &Op,
    inputs: &[Value],
    outputs: &[Value],
    dys: &[Option<Value>],
    need: &[bool],
) -> Result<Vec<Option<Value>>> {
    let y = outputs[0];
    let Some(dy) = dys[0] else {
        return Err(Error::Graph(format!(
            "autodiff: {} used only through a secondary output",
            op.op_type()
        )));
    };
    if dys.iter().skip(1).any(Option::is_some) {
        return Err(Error::Graph(format!(
            "autodiff: gradients through the secondary outputs of {} are not supported",
            op.op_type()
        )));
    }
    let x = inputs[0];
    let mut grads: Vec<Option<Value>> = vec![None; inputs.len()];
    match op {
        Op::Identity => grads[0] = Some(dy),
        Op::Add | Op::Sub => {
            if need[0] {
                grads[0] = Some(unbroadcast(g, dy, inputs[0])?);
            }
            if need[1] {
                let d = if matches!(op, Op::Sub) {
                    g.neg(dy)?
                } else {
                    dy
                };
                grads[1] = Some(unbroadcast(g, d, inputs[1])?);
            }
        }
        Op::Gelu => {
            // gelu'(x) = (1 + erf(u))/2 + x exp(-u^2)/sqrt(2 pi), u = x/sqrt 2; both pieces come
            // from the forward pass, so this costs eight element-wise passes where
            // differentiating the five primitives costs eleven.
            let (u, e1) = (outputs[1], outputs[2]);
            let uu = g.mul(u, u)?;
            let minus_one = g.scalar(-1.0)?;
            let t = g.mul(uu, minus_one)?;
            let log_c = g.scalar(-(2.0 * std::f32::consts::PI).sqrt().ln())?;
            let t = g.add(t, log_c)?;
            let p = g.exp(t)?;
            let xp = g.mul(x, p)?;
            let half = g.scalar(0.5)?;
            let h = g.mul(e1, half)?;
            let slope = g.add(h, xp)?;
            grads[0] = Some(g.mul(dy, slope)?);
        }
        Op::Sum => {
            for (i, &x) in inputs.iter().enumerate() {
                if need[i] {
                    grads[i] = Some(unbroadcast(g, dy, x)?);
                }
            }
        }
        Op::Mul => {
            for (i, other) in [(0, inputs[1]), (1, inputs[0])] {
                if need[i] {
                    let d = g.mul(dy, other)?;
                    grads[i] = Some(unbroadcast(g, d, inputs[i])?);
                }
            }
        }
        Op::Div => {
            let b = inputs[1];
            if need[0] {
                let d = g.div(dy, b)?;
                grads[0] = Some(unbroadcast(g, d, inputs[0])?);
            }
            if need[1] {
                // d(a/b)/db = -(a/b)/b
                let t = g.mul(dy, y)?;
                let t = g.div(t, b)?;
                let t = g.neg(t)?;
                grads[1] = Some(unbroadcast(g, t, b)?);
            }
        }
        Op::Max => {
            // Ties go to the first operand.
            let (a, b) = (inputs[0], inputs[1]);
            let b_wins = g.greater(b, a)?;
            let zero = g.scalar(0.0)?;
            if need[0] {
                let d = g.where_(b_wins, zero, dy)?;
                grads[0] = Some(unbroadcast(g, d, a)?);
            }
            if need[1] {
                let d = g.where_(b_wins, dy, zero)?;
                grads[1] = Some(unbroadcast(g, d, b)?);
            }
        }
        Op::Where => {
            let zero = g.scalar(0.0)?;
            if need[1] {
                let d = g.where_(inputs[0], dy, zero)?;
                grads[1] = Some(unbroadcast(g, d, inputs[1])?);
            }
            if need[2] {
                let d = g.where_(inputs[0], zero, dy)?;
                grads[2] = Some(unbroadcast(g, d, inputs[2])?);
            }
        }
        Op::Neg => grads[0] = Some(g.neg(dy)?),
        Op::Sqrt => {
            let half = g.scalar(0.5)?;
            let t = g.mul(dy, half)?;
            grads[0] = Some(g.div(t, y)?);
        }
        Op::Exp => grads[0] = Some(g.mul(dy, y)?),
        Op::Erf => {
            // d erf(x)/dx = 2/sqrt(pi) exp(-x^2) = exp(ln(2/sqrt(pi)) - x^2): the constant
            // folded into the exponent saves two passes over GELU-sized tensors.
            let xx = g.mul(x, x)?;
            let c = g.scalar(std::f32::consts::FRAC_2_SQRT_PI.ln())?;
            let t = g.sub(c, xx)?;
            let e = g.exp(t)?;
            grads[0] = Some(g.mul(dy, e)?);
        }
        Op::Cast { to: DType::F32 } if g.dtype(x) == DType::F32 => grads[0] = Some(dy),
        Op::MatMul => {
            let (a, b) = (inputs[0], inputs[1]);
            if need[0] {
                let bt = transpose_last2(g, b)?;
                let d = g.matmul(dy, bt)?;
                grads[0] = Some(unbroadcast(g, d, a)?);
            }
            if need[1] {
                grads[1] = Some(if g.rank(b) == 2 && g.rank(a) >= 2 {
                    // A weight shared across leading axes: one GEMM over the flattened rows.
                    let k = g.shape(a).last().and_then(Dim::fixed);
                    let n = g.shape(dy).last().and_then(Dim::fixed);
                    let (Some(k), Some(n)) = (k, n) else {
                        return Err(Error::Graph(
                            "autodiff: MatMul weight with symbolic size".into(),
                        ));
                    };
                    let a2 = if g.rank(a) == 2 {
                        a
                    } else {
                        g.reshape(a, &[-1, k as i64])?
                    };
                    let d2 = if g.rank(dy) == 2 {
                        dy
                    } else {
                        g.reshape(dy, &[-1, n as i64])?
                    };
                    g.gemm(a2, d2, true, false)?
                } else {
                    let at = transpose_last2(g, a)?;
                    let d = g.matmul(at, dy)?;
                    unbroadcast(g, d, b)?
                });
            }
        }
        Op::Transpose { perm } => {
            // (P^T Q)^T = Q^T P: fold the transpose into the GEMM that produced `dy`.
            if let (true, Some((node, 0))) = (perm == &[1, 0], g.producer(dy)) {
                if node.op
                    == (Op::Gemm {
                        trans_a: true,
                        trans_b: false,
                    })
                {
                    let (p, q) = (node.inputs[0], node.inputs[1]);
                    grads[0] = Some(g.gemm(q, p, true, false)?);
                    return Ok(grads);
                }
            }
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            grads[0] = Some(g.transpose(dy, &inv)?);
        }
        Op::Reshape => {
            let s = shape_value(g, x)?;
            grads[0] = Some(g.reshape_to(dy, s)?);
        }
        Op::Unsqueeze => {
            let axes = int_constant(g, inputs[1], op)?;
            grads[0] = Some(g.squeeze(dy, &axes)?);
        }
        Op::Squeeze => {
            let axes = int_constant(g, inputs[1], op)?;
            grads[0] = Some(g.unsqueeze(dy, &axes)?);
        }
        Op::Expand => grads[0] = Some(unbroadcast(g, dy, x)?),
        Op::ReduceSum { keepdims } | Op::ReduceMean { keepdims, .. } => {
            let axes = match op {
                Op::ReduceMean { axes, .. } => axes.clone(),
                _ => int_constant(g, inputs[1], op)?,
            };
            let mut d = if *keepdims {
                dy
            } else {
                g.unsqueeze(dy, &axes)?
            };
            if let Op::ReduceMean { .. } = op {
                let r = g.rank(x) as i64;
                let mut count = 1usize;
                for &a in &axes {
                    let a = if a < 0 { a + r } else { a } as usize;
                    count *= g.shape(x)[a].fixed().ok_or_else(|| {
                        Error::Graph("autodiff: ReduceMean over a symbolic axis".into())
                    })?;
                }
                let c = g.scalar(1.0 / count as f32)?;
                d = g.mul(d, c)?;
            }
            let s = shape_value(g, x)?;
            grads[0] = Some(g.expand(d, s)?);
        }
        Op::Softmax { axis } => {
            let t = g.mul(dy, y)?;
            let s = g.reduce_sum(t, &[*axis], true)?;
            let d = g.sub(dy, s)?;
            grads[0] = Some(g.mul(y, d)?);
        }
        Op::LayerNormalization { axis, .. } => {
            if !(*axis == -1 || *axis == g.rank(x) as i64 - 1) {
                return Err(Error::Graph(
                    "autodiff: LayerNormalization over several axes".into(),
                ));
            }
            let (gamma, mean, inv_std) = (inputs[1], outputs[1], outputs[2]);
            let centred = g.sub(x, mean)?;
            let xhat = g.mul(centred, inv_std)?;
            let rows: Vec<i64> = (0..g.rank(x) as i64 - 1).collect();
            if need[2] {
                grads[2] = Some(g.reduce_sum(dy, &rows, false)?);
            }
            if need[1] {
                let t = g.mul(dy, xhat)?;
                grads[1] = Some(g.reduce_sum(t, &rows, false)?);
            }
            if need[0] {
                // dx = inv_std * (gd - mean(gd) - xhat * mean(gd * xhat)), gd = dy * gamma
                let gd = g.mul(dy, gamma)?;
                let m1 = g.reduce_mean(gd, &[-1], true)?;
                let gx = g.mul(gd, xhat)?;
                let m2 = g.reduce_mean(gx, &[-1], true)?;
                let t = g.mul(xhat, m2)?;
                let d = g.sub(gd, m1)?;
                let d = g.sub(d, t)?;
                grads[0] = Some(g.mul(d, inv_std)?);
            }
        }
        Op::Gather { axis: 0 } => {
            // Rows of a table: scatter-add into zeros shaped like the table.
            let idx = inputs[1];
            let s = shape_value(g, x)?;
            let zeros = g.node(Op::ConstantOfShape { value: 0.0 }, &[s], 1)?[0];
            let idx = g.unsqueeze(idx, &[-1])?;
            grads[0] = Some(g.node(Op::ScatterND { add: true }, &[zeros, idx, dy], 1)?[0]);
        }
        Op::Slice => {
            // Zero-pad dy back to the input's extent.
            let starts = int_constant(g, inputs[1], op)?;
            let axes = int_constant(g, inputs[3], op)?;
            let r = g.rank(x);
            let mut before = vec![0i64; r];
            for (&s, &a) in starts.iter().zip(&axes) {
                let a = if a < 0 { a + r as i64 } else { a } as usize;
                before[a] = s;
            }
            let full = shape_value(g, x)?;
            let part = shape_value(g, dy)?;
            let after = g.sub(full, part)?;
            let b = g.const_i64(&before)?;
            let after = g.sub(after, b)?;
            let pads = g.concat(&[b, after], 0)?;
            let shape = g.shape(x).to_vec();
            grads[0] =
                Some(g.node_with_shapes(Op::Pad, &[dy, pads], vec![(DType::F32, shape)])?[0]);
        }
        _ => return Err(unsupported(op)),
    }
    Ok(grads)
}

fn int_constant(g: &Graph, v: Value, op: &Op) -> Result<Vec<i64>> {
    match g.constant(v) {
        Some(super::Tensor {
            data: super::TensorData::I64(x),
            ..
        }) => Ok(x.clone()),
        _ => Err(Error::Graph(format!(
            "autodiff: {} needs constant axes",
            op.op_type()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(g: &mut Graph, name: &str, dims: &[usize]) -> Value {
        g.input(
            name,
            DType::F32,
            dims.iter().map(|&d| Dim::Fixed(d)).collect(),
        )
        .unwrap()
    }

    #[test]
    fn broadcast_operands_get_reduced_gradients() {
        let mut g = Graph::new("t");
        let x = g
            .input(
                "x",
                DType::F32,
                vec![Dim::sym("batch"), Dim::Fixed(3), Dim::Fixed(4)],
            )
            .unwrap();
        let b = input(&mut g, "b", &[4]);
        let c = input(&mut g, "c", &[3, 1]);
        let y = g.add(x, b).unwrap();
        let y = g.mul(y, c).unwrap();
        let dy = g.input("dy", DType::F32, g.shape(y).to_vec()).unwrap();
        let grads = backward(&mut g, &[(y, dy)], &[x, b, c]).unwrap();
        let shapes: Vec<&[Dim]> = grads.iter().map(|d| g.shape(d.unwrap())).collect();
        assert_eq!(shapes, vec![g.shape(x), g.shape(b), g.shape(c)]);
    }

    #[test]
    fn values_off_the_path_get_no_gradient_and_no_nodes() {
        let mut g = Graph::new("t");
        let x = input(&mut g, "x", &[2]);
        let unrelated = input(&mut g, "u", &[2]);
        let y = g.exp(x).unwrap();
        let _z = g.exp(unrelated).unwrap();
        let dy = input(&mut g, "dy", &[2]);
        let before = g.nodes().len();
        let grads = backward(&mut g, &[(y, dy)], &[x, unrelated]).unwrap();
        assert!(grads[1].is_none());
        assert_eq!(g.nodes().len(), before + 1, "one Mul for exp's gradient");
    }

    #[test]
    fn missing_rules_name_the_op() {
        let mut g = Graph::new("t");
        let a = input(&mut g, "a", &[2, 2]);
        let b = input(&mut g, "b", &[2, 2]);
        let y = g.gemm(a, b, false, false).unwrap();
        let dy = input(&mut g, "dy", &[2, 2]);
        let err = backward(&mut g, &[(y, dy)], &[a]).unwrap_err().to_string();
        assert!(err.contains("Gemm"), "{err}");
    }
}
