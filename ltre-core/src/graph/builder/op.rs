//! The operator set: one [`Op`] variant per ONNX operator the builder emits, with its
//! attributes.
use super::DType;

/// An operator with its attributes. Inputs that ONNX opset 17 takes as tensors (axes of
/// `ReduceSum`/`Unsqueeze`/`Squeeze`/`Slice`, shapes of `Reshape`/`Expand`) are node inputs,
/// not attributes.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Op {
    Identity,
    Add,
    /// Variadic broadcasting sum.
    Sum,
    Sub,
    Mul,
    Div,
    Max,
    Neg,
    Sqrt,
    Exp,
    Erf,
    Equal,
    Greater,
    /// Inputs: condition, x, y.
    Where,
    Cast {
        to: DType,
    },
    MatMul,
    /// `alpha = beta = 1`, no `C` input.
    Gemm {
        trans_a: bool,
        trans_b: bool,
    },
    Gather {
        axis: i64,
    },
    /// Inputs: data, shape.
    Reshape,
    Transpose {
        perm: Vec<usize>,
    },
    Softmax {
        axis: i64,
    },
    /// Inputs: x, scale, bias. Outputs: y, mean, inv_std_dev (the last two are dropped when
    /// unused).
    LayerNormalization {
        axis: i64,
        epsilon: f32,
    },
    /// Inputs: data, axes.
    ReduceSum {
        keepdims: bool,
    },
    ReduceMean {
        axes: Vec<i64>,
        keepdims: bool,
    },
    /// Inputs: data, axes.
    Unsqueeze,
    /// Inputs: data, axes.
    Squeeze,
    /// Inputs: data, shape.
    Expand,
    Shape {
        start: Option<i64>,
        end: Option<i64>,
    },
    /// Inputs: data, starts, ends, axes.
    Slice,
    Concat {
        axis: i64,
    },
    /// Inputs: shape. Fills with `value` (f32).
    ConstantOfShape {
        value: f32,
    },
    /// Inputs: data, indices, updates.
    ScatterND {
        add: bool,
    },
    /// Inputs: data, pads (constant mode, zero fill).
    Pad,
    /// Exact GELU `x/2 (1 + erf(x/sqrt 2))`, a composite written out as five ai.onnx nodes
    /// (the pattern ONNX Runtime fuses for inference). Inputs: x and the scalar constants
    /// `sqrt 2`, `1`, `0.5`. Outputs: y, `u = x/sqrt 2` and `1 + erf(u)`, the intermediates its
    /// gradient reuses.
    Gelu,
}

impl Op {
    /// The ONNX `op_type`.
    pub fn op_type(&self) -> &'static str {
        match self {
            Op::Identity => "Identity",
            Op::Add => "Add",
            Op::Sum => "Sum",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Div => "Div",
            Op::Max => "Max",
            Op::Neg => "Neg",
            Op::Sqrt => "Sqrt",
            Op::Exp => "Exp",
            Op::Erf => "Erf",
            Op::Equal => "Equal",
            Op::Greater => "Greater",
            Op::Where => "Where",
            Op::Cast { .. } => "Cast",
            Op::MatMul => "MatMul",
            Op::Gemm { .. } => "Gemm",
            Op::Gather { .. } => "Gather",
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Softmax { .. } => "Softmax",
            Op::LayerNormalization { .. } => "LayerNormalization",
            Op::ReduceSum { .. } => "ReduceSum",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::Unsqueeze => "Unsqueeze",
            Op::Squeeze => "Squeeze",
            Op::Expand => "Expand",
            Op::Shape { .. } => "Shape",
            Op::Slice => "Slice",
            Op::Concat { .. } => "Concat",
            Op::ConstantOfShape { .. } => "ConstantOfShape",
            Op::ScatterND { .. } => "ScatterND",
            Op::Pad => "Pad",
            Op::Gelu => "Gelu",
        }
    }

    /// Outputs beyond the first that ONNX lets a node omit.
    pub(super) fn optional_outputs_from(&self) -> usize {
        match self {
            Op::LayerNormalization { .. } => 1,
            _ => usize::MAX,
        }
    }
}
