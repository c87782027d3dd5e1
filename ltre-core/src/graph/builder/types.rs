//! Value types of the builder: dimensions, element types, value handles and constant tensors.
use std::fmt;
use std::sync::Arc;

use crate::onnx::data_type;

/// One axis of a shape: a fixed size or a named symbolic size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size known when the graph is built.
    Fixed(usize),
    /// A size known only at run time (`batch`, `seq`, or a product such as `batch*seq`).
    Sym(Arc<str>),
}

impl Dim {
    /// A symbolic dimension.
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(Arc::from(name))
    }

    /// The size, if fixed.
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => write!(f, "{s}"),
        }
    }
}

/// Formats a shape as `[batch, seq, 384]`.
pub fn fmt_shape(shape: &[Dim]) -> String {
    let parts: Vec<String> = shape.iter().map(Dim::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// Element type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 64-bit signed integer.
    I64,
    /// Boolean.
    Bool,
}

impl DType {
    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx(self) -> i32 {
        match self {
            DType::F32 => data_type::FLOAT,
            DType::I64 => data_type::INT64,
            DType::Bool => data_type::BOOL,
        }
    }
}

/// A handle to a value (graph input, initializer or node output) of one [`Graph`](super::Graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub(crate) u32);

impl Value {
    /// Index of the value inside its graph.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Constant tensor contents.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Float values.
    F32(Vec<f32>),
    /// Int64 values.
    I64(Vec<i64>),
}

/// A constant tensor (initializer).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Shape.
    pub dims: Vec<usize>,
    /// Row-major values.
    pub data: TensorData,
}

impl Tensor {
    pub(super) fn dtype(&self) -> DType {
        match self.data {
            TensorData::F32(_) => DType::F32,
            TensorData::I64(_) => DType::I64,
        }
    }

    pub(super) fn len(&self) -> usize {
        match &self.data {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }
}
