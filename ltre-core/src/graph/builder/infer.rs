//! Shape inference: the element types and shapes of a node's outputs, from its operator and
//! inputs, checked as the node is added so that errors name the operator.
use std::sync::Arc;

use super::{fmt_shape, graph_err, DType, Dim, Graph, Op, Tensor, TensorData, Value};
use crate::Result;

impl Graph {
    /// Broadcasts shapes numpy-style.
    pub fn broadcast(&self, shapes: &[&[Dim]]) -> std::result::Result<Vec<Dim>, String> {
        let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut out = vec![Dim::Fixed(1); rank];
        for s in shapes {
            let off = rank - s.len();
            for (i, d) in s.iter().enumerate() {
                let o = &mut out[off + i];
                match (&*o, d) {
                    (_, Dim::Fixed(1)) => {}
                    (Dim::Fixed(1), _) => *o = d.clone(),
                    (a, b) if a == b => {}
                    _ => {
                        let shown: Vec<String> = shapes.iter().map(|s| fmt_shape(s)).collect();
                        return Err(format!("cannot broadcast shapes {}", shown.join(" and ")));
                    }
                }
            }
        }
        Ok(out)
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn infer(
        &self,
        op: &Op,
        inputs: &[Value],
    ) -> Result<(Vec<(DType, Vec<Dim>)>, Option<Vec<Dim>>)> {
        let arity = |n: usize| -> Result<()> {
            if inputs.len() == n {
                Ok(())
            } else {
                Err(graph_err(
                    op,
                    format!("expects {n} inputs, got {}", inputs.len()),
                ))
            }
        };
        let shape = |i: usize| self.shape(inputs[i]).to_vec();
        let dtype = |i: usize| self.dtype(inputs[i]);
        let norm_axis = |axis: i64, rank: usize| -> Result<usize> {
            let a = if axis < 0 { axis + rank as i64 } else { axis };
            if a < 0 || a as usize >= rank.max(1) {
                return Err(graph_err(
                    op,
                    format!("axis {axis} out of range for rank {rank}"),
                ));
            }
            Ok(a as usize)
        };
        let one = |d: DType, s: Vec<Dim>| Ok((vec![(d, s)], None));
        match op {
            Op::Identity | Op::Neg | Op::Sqrt | Op::Exp | Op::Erf => {
                arity(1)?;
                one(dtype(0), shape(0))
            }
            Op::Softmax { axis } => {
                arity(1)?;
                norm_axis(*axis, self.rank(inputs[0]))?;
                one(dtype(0), shape(0))
            }
            Op::Cast { to } => {
                arity(1)?;
                let known = self.values[inputs[0].index()].known_dims.clone();
                Ok((vec![(*to, shape(0))], known))
            }
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Max | Op::Equal | Op::Greater => {
                arity(2)?;
                if dtype(0) != dtype(1) {
                    return Err(graph_err(
                        op,
                        format!("element types differ: {:?} and {:?}", dtype(0), dtype(1)),
                    ));
                }
                let s = self
                    .broadcast(&[self.shape(inputs[0]), self.shape(inputs[1])])
                    .map_err(|m| graph_err(op, m))?;
                let d = if matches!(op, Op::Equal | Op::Greater) {
                    DType::Bool
                } else {
                    dtype(0)
                };
                one(d, s)
            }
            Op::Sum => {
                if inputs.is_empty() || inputs.iter().any(|&v| self.dtype(v) != dtype(0)) {
                    return Err(graph_err(op, "needs inputs of one element type"));
                }
                let shapes: Vec<&[Dim]> = inputs.iter().map(|&v| self.shape(v)).collect();
                let s = self.broadcast(&shapes).map_err(|m| graph_err(op, m))?;
                one(dtype(0), s)
            }
            Op::Where => {
                arity(3)?;
                let s = self
                    .broadcast(&[
                        self.shape(inputs[0]),
                        self.shape(inputs[1]),
                        self.shape(inputs[2]),
                    ])
                    .map_err(|m| graph_err(op, m))?;
                one(dtype(1), s)
            }
            Op::MatMul => {
                arity(2)?;
                let (a, b) = (shape(0), shape(1));
                if a.len() < 2 || b.len() < 2 {
                    return Err(graph_err(op, "operands must have rank >= 2"));
                }
                let (ka, kb) = (&a[a.len() - 1], &b[b.len() - 2]);
                if ka != kb {
                    return Err(graph_err(
                        op,
                        format!(
                            "inner dimensions differ: {} x {}",
                            fmt_shape(&a),
                            fmt_shape(&b)
                        ),
                    ));
                }
                let mut s = self
                    .broadcast(&[&a[..a.len() - 2], &b[..b.len() - 2]])
                    .map_err(|m| graph_err(op, m))?;
                s.push(a[a.len() - 2].clone());
                s.push(b[b.len() - 1].clone());
                one(dtype(0), s)
            }
            Op::Gemm { trans_a, trans_b } => {
                arity(2)?;
                let (a, b) = (shape(0), shape(1));
                if a.len() != 2 || b.len() != 2 {
                    return Err(graph_err(op, "operands must be matrices"));
                }
                let (m, ka) = if *trans_a {
                    (&a[1], &a[0])
                } else {
                    (&a[0], &a[1])
                };
                let (kb, n) = if *trans_b {
                    (&b[1], &b[0])
                } else {
                    (&b[0], &b[1])
                };
                if ka != kb {
                    return Err(graph_err(
                        op,
                        format!(
                            "inner dimensions differ: {} x {}",
                            fmt_shape(&a),
                            fmt_shape(&b)
                        ),
                    ));
                }
                one(dtype(0), vec![m.clone(), n.clone()])
            }
            Op::Gather { axis } => {
                arity(2)?;
                let d = shape(0);
                let a = norm_axis(*axis, d.len())?;
                if dtype(1) != DType::I64 {
                    return Err(graph_err(op, "indices must be int64"));
                }
                let mut s = d[..a].to_vec();
                s.extend(shape(1));
                s.extend_from_slice(&d[a + 1..]);
                one(dtype(0), s)
            }
            Op::Reshape => {
                arity(2)?;
                let s = match self.constant(inputs[1]) {
                    Some(Tensor {
                        data: TensorData::I64(t),
                        ..
                    }) => reshape_target(&shape(0), t).map_err(|m| graph_err(op, m))?,
                    _ => self
                        .dims_of(inputs[1])
                        .ok_or_else(|| {
                            graph_err(op, "target shape must be a constant or come from Shape")
                        })?
                        .to_vec(),
                };
                one(dtype(0), s)
            }
            Op::Expand => {
                arity(2)?;
                let target = self
                    .dims_of(inputs[1])
                    .ok_or_else(|| graph_err(op, "target shape must be known"))?
                    .to_vec();
                let s = self
                    .broadcast(&[self.shape(inputs[0]), &target])
                    .map_err(|m| graph_err(op, m))?;
                one(dtype(0), s)
            }
            Op::Transpose { perm } => {
                arity(1)?;
                let s = shape(0);
                let mut seen = perm.clone();
                seen.sort_unstable();
                if seen != (0..s.len()).collect::<Vec<_>>() {
                    return Err(graph_err(
                        op,
                        format!("perm {perm:?} does not match rank {}", s.len()),
                    ));
                }
                one(dtype(0), perm.iter().map(|&p| s[p].clone()).collect())
            }
            Op::LayerNormalization { axis, .. } => {
                arity(3)?;
                let s = shape(0);
                let a = norm_axis(*axis, s.len())?;
                let mut stat = s[..a].to_vec();
                stat.extend(std::iter::repeat_n(Dim::Fixed(1), s.len() - a));
                Ok((
                    vec![
                        (dtype(0), s),
                        (DType::F32, stat.clone()),
                        (DType::F32, stat),
                    ],
                    None,
                ))
            }
            Op::ReduceSum { keepdims } => {
                arity(2)?;
                let axes = self.const_ints(op, inputs[1], "axes")?;
                one(
                    dtype(0),
                    reduce_shape(&shape(0), &axes, *keepdims).map_err(|m| graph_err(op, m))?,
                )
            }
            Op::ReduceMean { axes, keepdims } => {
                arity(1)?;
                one(
                    dtype(0),
                    reduce_shape(&shape(0), axes, *keepdims).map_err(|m| graph_err(op, m))?,
                )
            }
            Op::Unsqueeze => {
                arity(2)?;
                let axes = self.const_ints(op, inputs[1], "axes")?;
                let s = shape(0);
                let rank = s.len() + axes.len();
                let mut norm: Vec<usize> = axes
                    .iter()
                    .map(|&a| norm_axis(a, rank))
                    .collect::<Result<Vec<_>>>()?;
                norm.sort_unstable();
                let mut out = Vec::with_capacity(rank);
                let mut it = s.into_iter();
                for i in 0..rank {
                    if norm.binary_search(&i).is_ok() {
                        out.push(Dim::Fixed(1));
                    } else {
                        out.extend(it.next());
                    }
                }
                one(dtype(0), out)
            }
            Op::Squeeze => {
                arity(2)?;
                let axes = self.const_ints(op, inputs[1], "axes")?;
                let s = shape(0);
                let norm: Vec<usize> = axes
                    .iter()
                    .map(|&a| norm_axis(a, s.len()))
                    .collect::<Result<Vec<_>>>()?;
                for &a in &norm {
                    if s[a] != Dim::Fixed(1) {
                        return Err(graph_err(
                            op,
                            format!("axis {a} of {} is not 1", fmt_shape(&s)),
                        ));
                    }
                }
                let out = s
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !norm.contains(i))
                    .map(|(_, d)| d.clone())
                    .collect();
                one(dtype(0), out)
            }
            Op::Shape { start, end } => {
                arity(1)?;
                let s = shape(0);
                let r = s.len() as i64;
                let clamp = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
                let (a, b) = (clamp(start.unwrap_or(0)), clamp(end.unwrap_or(r)));
                let dims = s[a..b.max(a)].to_vec();
                Ok((vec![(DType::I64, vec![Dim::Fixed(dims.len())])], Some(dims)))
            }
            Op::Slice => {
                arity(4)?;
                let s = shape(0);
                let starts = self.const_ints(op, inputs[1], "starts")?;
                let axes = self.const_ints(op, inputs[3], "axes")?;
                let ends: Vec<Option<Dim>> = match self.constant(inputs[2]) {
                    Some(Tensor {
                        data: TensorData::I64(e),
                        ..
                    }) => e
                        .iter()
                        .map(|&x| {
                            if x >= 0 {
                                Some(Dim::Fixed(x as usize))
                            } else {
                                None
                            }
                        })
                        .collect(),
                    _ => self
                        .dims_of(inputs[2])
                        .ok_or_else(|| graph_err(op, "ends must be a constant or come from Shape"))?
                        .iter()
                        .cloned()
                        .map(Some)
                        .collect(),
                };
                if starts.len() != axes.len() || ends.len() != axes.len() {
                    return Err(graph_err(op, "starts, ends and axes differ in length"));
                }
                let mut out = s.clone();
                for ((&st, en), &ax) in starts.iter().zip(&ends).zip(&axes) {
                    let a = norm_axis(ax, s.len())?;
                    if st < 0 {
                        return Err(graph_err(op, "negative starts are not supported"));
                    }
                    let st = st as usize;
                    out[a] = match (&s[a], en) {
                        (Dim::Fixed(d), Some(Dim::Fixed(e))) => {
                            Dim::Fixed((*e).min(*d).saturating_sub(st))
                        }
                        (Dim::Sym(_), Some(Dim::Fixed(e))) if *e < i64::MAX as usize => {
                            Dim::Fixed(e.saturating_sub(st))
                        }
                        (_, Some(Dim::Sym(n))) if st == 0 => Dim::Sym(n.clone()),
                        _ => {
                            return Err(graph_err(
                                op,
                                format!("cannot infer the sliced size of axis {a}"),
                            ))
                        }
                    };
                }
                one(dtype(0), out)
            }
            Op::Concat { axis } => {
                if inputs.is_empty() {
                    return Err(graph_err(op, "needs at least one input"));
                }
                let first = shape(0);
                let a = norm_axis(*axis, first.len())?;
                let mut total = 0usize;
                let mut fixed = true;
                for &v in inputs {
                    let s = self.shape(v);
                    if s.len() != first.len() {
                        return Err(graph_err(op, "inputs differ in rank"));
                    }
                    match s[a] {
                        Dim::Fixed(n) => total += n,
                        Dim::Sym(_) => fixed = false,
                    }
                }
                if !fixed {
                    return Err(graph_err(
                        op,
                        "concatenation along a symbolic axis is not supported",
                    ));
                }
                let mut out = first.clone();
                out[a] = Dim::Fixed(total);
                let known = if first.len() == 1 && dtype(0) == DType::I64 {
                    inputs
                        .iter()
                        .map(|&v| self.dims_of(v).map(<[Dim]>::to_vec))
                        .collect::<Option<Vec<_>>>()
                        .map(|v| v.concat())
                } else {
                    None
                };
                Ok((vec![(dtype(0), out)], known))
            }
            Op::ConstantOfShape { .. } => {
                arity(1)?;
                let dims = self
                    .dims_of(inputs[0])
                    .ok_or_else(|| graph_err(op, "shape must be known"))?
                    .to_vec();
                one(DType::F32, dims)
            }
            Op::ScatterND { .. } => {
                arity(3)?;
                one(dtype(0), shape(0))
            }
            Op::Pad => Err(graph_err(
                op,
                "output shape depends on run-time pads; use node_with_shapes",
            )),
            Op::Gelu => {
                arity(4)?;
                let x = (dtype(0), shape(0));
                Ok((vec![x.clone(), x.clone(), x], None))
            }
        }
    }
}

/// Resolves an ONNX `Reshape` target (with `0` = copy and `-1` = infer) against an input shape.
fn reshape_target(input: &[Dim], target: &[i64]) -> std::result::Result<Vec<Dim>, String> {
    let mut out: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    for (i, &t) in target.iter().enumerate() {
        out.push(match t {
            0 => Some(
                input
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("0 at axis {i} beyond input rank"))?,
            ),
            -1 => None,
            n if n > 0 => Some(Dim::Fixed(n as usize)),
            n => return Err(format!("invalid target dimension {n}")),
        });
    }
    let holes = out.iter().filter(|d| d.is_none()).count();
    if holes > 1 {
        return Err("more than one -1 in the target shape".into());
    }
    if holes == 1 {
        // Cancel the known target factors against the input's factors; what remains is the hole.
        let mut fixed: usize = 1;
        let mut syms: Vec<Arc<str>> = Vec::new();
        for d in input {
            match d {
                Dim::Fixed(n) => fixed *= n,
                Dim::Sym(s) => syms.push(s.clone()),
            }
        }
        for d in out.iter().flatten() {
            match d {
                Dim::Fixed(n) => {
                    if *n == 0 || !fixed.is_multiple_of(*n) {
                        return Err(format!("cannot reshape {} to {target:?}", fmt_shape(input)));
                    }
                    fixed /= n;
                }
                Dim::Sym(s) => {
                    let pos = syms.iter().position(|x| x == s).ok_or_else(|| {
                        format!("cannot reshape {} to {target:?}", fmt_shape(input))
                    })?;
                    syms.remove(pos);
                }
            }
        }
        let hole = match (fixed, syms.len()) {
            (n, 0) => Dim::Fixed(n),
            (1, 1) => Dim::Sym(syms[0].clone()),
            (n, _) => {
                let mut parts: Vec<String> = syms.iter().map(|s| s.to_string()).collect();
                if n != 1 {
                    parts.insert(0, n.to_string());
                }
                Dim::sym(&parts.join("*"))
            }
        };
        return Ok(out
            .into_iter()
            .map(|d| d.unwrap_or_else(|| hole.clone()))
            .collect());
    }
    Ok(out.into_iter().flatten().collect())
}

fn reduce_shape(
    input: &[Dim],
    axes: &[i64],
    keepdims: bool,
) -> std::result::Result<Vec<Dim>, String> {
    let r = input.len() as i64;
    let mut norm = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = if a < 0 { a + r } else { a };
        if n < 0 || n >= r {
            return Err(format!("axis {a} out of range for rank {r}"));
        }
        norm.push(n as usize);
    }
    Ok(input
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match (norm.contains(&i), keepdims) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Fixed(1)),
            (true, false) => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_infers_symbolic_products() {
        let b = Dim::sym("batch");
        let s = Dim::sym("seq");
        let input = [b.clone(), s.clone(), Dim::Fixed(8)];
        assert_eq!(
            reshape_target(&input, &[0, 0, 2, 4]).unwrap(),
            vec![b.clone(), s.clone(), Dim::Fixed(2), Dim::Fixed(4)]
        );
        assert_eq!(
            reshape_target(&input, &[-1, 8]).unwrap(),
            vec![Dim::sym("batch*seq"), Dim::Fixed(8)]
        );
        assert_eq!(
            reshape_target(&input, &[0, -1]).unwrap(),
            vec![b, Dim::sym("8*seq")]
        );
        assert!(reshape_target(&input, &[-1, -1]).is_err());
    }

    #[test]
    fn shape_errors_name_the_op() {
        let mut g = Graph::new("t");
        let a = g
            .input("a", DType::F32, vec![Dim::Fixed(2), Dim::Fixed(3)])
            .unwrap();
        let b = g
            .input("b", DType::F32, vec![Dim::Fixed(4), Dim::Fixed(5)])
            .unwrap();
        let e = g.matmul(a, b).unwrap_err().to_string();
        assert!(e.contains("MatMul") && e.contains("[2, 3]"), "{e}");
        let e = g.add(a, b).unwrap_err().to_string();
        assert!(e.contains("Add") && e.contains("broadcast"), "{e}");
    }

    #[test]
    fn slice_and_shape_track_symbols() {
        let mut g = Graph::new("t");
        let ids = g
            .input("ids", DType::I64, vec![Dim::sym("batch"), Dim::sym("seq")])
            .unwrap();
        let table = g.const_f32(&[16, 4], vec![0.0; 64]).unwrap();
        let seq = g.shape_of(ids, Some(1), Some(2)).unwrap();
        let pos = g.slice(table, &[0], seq, &[0]).unwrap();
        assert_eq!(g.shape(pos), &[Dim::sym("seq"), Dim::Fixed(4)]);
        let u = g.unsqueeze(pos, &[0]).unwrap();
        assert_eq!(g.shape(u), &[Dim::Fixed(1), Dim::sym("seq"), Dim::Fixed(4)]);
    }
}
