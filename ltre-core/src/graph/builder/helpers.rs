//! Typed helpers, one per operator, so model code reads like the maths.
use super::{DType, Graph, Op, Value};
use crate::Result;

impl Graph {
    fn one(&mut self, op: Op, inputs: &[Value]) -> Result<Value> {
        Ok(self.node(op, inputs, 1)?[0])
    }

    /// `a + b` (broadcasting).
    pub fn add(&mut self, a: Value, b: Value) -> Result<Value> {
        self.one(Op::Add, &[a, b])
    }
    /// The sum of all `xs` (broadcasting).
    pub fn sum(&mut self, xs: &[Value]) -> Result<Value> {
        self.one(Op::Sum, xs)
    }
    /// `a - b` (broadcasting).
    pub fn sub(&mut self, a: Value, b: Value) -> Result<Value> {
        self.one(Op::Sub, &[a, b])
    }
    /// `a * b` (broadcasting).
    pub fn mul(&mut self, a: Value, b: Value) -> Result<Value> {
        self.one(Op::Mul, &[a, b])
    }
    /// `a / b` (broadcasting).
    pub fn div(&mut self, a: Value, b: Value) -> Result<Value> {
        self.one(Op::Div, &[a, b])
    }
    /// Element-wise maximum (broadcasting).
    pub fn max(&mut self, a: Value, b: Value) -> Result<Value> {
        self.one(Op::Max, &[a, b])
    }
    /// `-x`.
    pub fn neg(&mut self, x: Value) -> Result<Value> {
        self.one(Op::Neg, &[x])
    }
    /// `sqrt(x)`.
    pub fn sqrt(&mut self, x: Value) -> Result<Value> {
        self.one(Op::Sqrt, &[x])
    }
    /// `exp(x)`.
    pub fn exp(&mut self, x: Value) -> Result<Value> {
        self.one(Op::Exp, &[x])
    }
    /// The error function.
    pub fn erf(&mut self, x: Value) -> Result<Value> {
        self.one(Op::Erf, &[x])
    }
    /// Exact (erf) GELU; see [`Op::Gelu`].
    pub fn gelu(&mut self, x: Value) -> Result<Value> {
        let sqrt2 = self.scalar(std::f32::consts::SQRT_2)?;
        let one = self.scalar(1.0)?;
        let half = self.scalar(0.5)?;
        Ok(self.node(Op::Gelu, &[x, sqrt2, one, half], 3)?[0])
    }
    /// `a > b` as booleans.
    pub fn greater(&mut self, a: Value, b: Value) -> Result<Value> {
        self.one(Op::Greater, &[a, b])
    }
    /// `cond ? x : y`.
    pub fn where_(&mut self, cond: Value, x: Value, y: Value) -> Result<Value> {
        self.one(Op::Where, &[cond, x, y])
    }
    /// Element type conversion.
    pub fn cast(&mut self, x: Value, to: DType) -> Result<Value> {
        self.one(Op::Cast { to }, &[x])
    }
    /// Matrix product with numpy broadcasting of leading axes.
    pub fn matmul(&mut self, a: Value, b: Value) -> Result<Value> {
        self.one(Op::MatMul, &[a, b])
    }
    /// `op(a) @ op(b)` for matrices, `op` transposing when asked.
    pub fn gemm(&mut self, a: Value, b: Value, trans_a: bool, trans_b: bool) -> Result<Value> {
        self.one(Op::Gemm { trans_a, trans_b }, &[a, b])
    }
    /// Gathers slices of `data` along `axis` at `indices`.
    pub fn gather(&mut self, data: Value, indices: Value, axis: i64) -> Result<Value> {
        self.one(Op::Gather { axis }, &[data, indices])
    }
    /// Reshape to a constant target (`0` copies an input axis, `-1` is inferred).
    pub fn reshape(&mut self, x: Value, target: &[i64]) -> Result<Value> {
        let t = self.const_i64(target)?;
        self.one(Op::Reshape, &[x, t])
    }
    /// Reshape to the shape held by an int64 value (e.g. `Shape(y)`).
    pub fn reshape_to(&mut self, x: Value, shape: Value) -> Result<Value> {
        self.one(Op::Reshape, &[x, shape])
    }
    /// Axis permutation.
    pub fn transpose(&mut self, x: Value, perm: &[usize]) -> Result<Value> {
        self.one(
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }
    /// Softmax along `axis`.
    pub fn softmax(&mut self, x: Value, axis: i64) -> Result<Value> {
        self.one(Op::Softmax { axis }, &[x])
    }
    /// LayerNormalization over the last axis; returns `y` (mean and inverse standard
    /// deviation are node outputs that the backward pass picks up when it needs them).
    pub fn layer_norm(
        &mut self,
        x: Value,
        scale: Value,
        bias: Value,
        epsilon: f32,
    ) -> Result<Value> {
        Ok(self.node(
            Op::LayerNormalization { axis: -1, epsilon },
            &[x, scale, bias],
            3,
        )?[0])
    }
    /// Sum over `axes`.
    pub fn reduce_sum(&mut self, x: Value, axes: &[i64], keepdims: bool) -> Result<Value> {
        let a = self.const_i64(axes)?;
        self.one(Op::ReduceSum { keepdims }, &[x, a])
    }
    /// Mean over `axes`.
    pub fn reduce_mean(&mut self, x: Value, axes: &[i64], keepdims: bool) -> Result<Value> {
        self.one(
            Op::ReduceMean {
                axes: axes.to_vec(),
                keepdims,
            },
            &[x],
        )
    }
    /// Inserts size-1 axes.
    pub fn unsqueeze(&mut self, x: Value, axes: &[i64]) -> Result<Value> {
        let a = self.const_i64(axes)?;
        self.one(Op::Unsqueeze, &[x, a])
    }
    /// Removes size-1 axes.
    pub fn squeeze(&mut self, x: Value, axes: &[i64]) -> Result<Value> {
        let a = self.const_i64(axes)?;
        self.one(Op::Squeeze, &[x, a])
    }
    /// Broadcasts `x` to the shape held by an int64 value.
    pub fn expand(&mut self, x: Value, shape: Value) -> Result<Value> {
        self.one(Op::Expand, &[x, shape])
    }
    /// The shape of `x` (axes `start..end`) as an int64 vector.
    pub fn shape_of(&mut self, x: Value, start: Option<i64>, end: Option<i64>) -> Result<Value> {
        self.one(Op::Shape { start, end }, &[x])
    }
    /// `x[starts..ends]` along `axes` (steps 1); `ends` may be a run-time value.
    pub fn slice(&mut self, x: Value, starts: &[i64], ends: Value, axes: &[i64]) -> Result<Value> {
        let s = self.const_i64(starts)?;
        let a = self.const_i64(axes)?;
        self.one(Op::Slice, &[x, s, ends, a])
    }
    /// Concatenation along `axis`.
    pub fn concat(&mut self, xs: &[Value], axis: i64) -> Result<Value> {
        self.one(Op::Concat { axis }, xs)
    }
}
