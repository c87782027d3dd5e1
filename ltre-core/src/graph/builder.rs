//! An SSA builder for ONNX graphs with element types and symbolic shapes.
//!
//! Every [`Value`] has a [`DType`] and a shape of [`Dim`]s, fixed or symbolic (`batch`, `seq`),
//! inferred when the node is added, so shape bugs surface while building (with the op named)
//! rather than inside ONNX Runtime, and so [`super::autodiff`] knows which axes a broadcast
//! expanded. Int64 values that hold shapes (outputs of `Shape`, small constants, their `Concat`)
//! also carry their contents symbolically, which lets `Reshape`, `Expand` and `Slice` infer
//! their result shapes.
//!
//! ```
//! use ltre_core::graph::{DType, Dim, Graph};
//!
//! let mut g = Graph::new("example");
//! let x = g.input("x", DType::F32, vec![Dim::sym("batch"), Dim::Fixed(4)]).unwrap();
//! let w = g.const_f32(&[4, 2], vec![0.5; 8]).unwrap();
//! let y = g.matmul(x, w).unwrap();
//! assert_eq!(g.shape(y), &[Dim::sym("batch"), Dim::Fixed(2)]);
//! g.output("y", y).unwrap();
//! let model = g.to_model();
//! assert_eq!(model.graph.unwrap().node.len(), 1);
//! ```
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use crate::onnx::{
    attribute_type, data_type, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, IR_VERSION, OPSET,
};
use crate::{Error, Result};

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

/// A handle to a value (graph input, initializer or node output) of one [`Graph`].
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
    fn dtype(&self) -> DType {
        match self.data {
            TensorData::F32(_) => DType::F32,
            TensorData::I64(_) => DType::I64,
        }
    }

    fn len(&self) -> usize {
        match &self.data {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }

    fn to_proto(&self, name: &str) -> TensorProto {
        let raw_data: Vec<u8> = match &self.data {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        TensorProto {
            dims: self.dims.iter().map(|&d| d as i64).collect(),
            data_type: self.dtype().onnx(),
            name: name.to_string(),
            raw_data,
            ..Default::default()
        }
    }
}

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

    fn attributes(&self) -> Vec<AttributeProto> {
        fn int(name: &str, i: i64) -> AttributeProto {
            AttributeProto {
                name: name.into(),
                r#type: attribute_type::INT,
                i,
                ..Default::default()
            }
        }
        fn ints(name: &str, ints: Vec<i64>) -> AttributeProto {
            AttributeProto {
                name: name.into(),
                r#type: attribute_type::INTS,
                ints,
                ..Default::default()
            }
        }
        match self {
            Op::Cast { to } => vec![int("to", to.onnx() as i64)],
            Op::Gemm { trans_a, trans_b } => vec![
                int("transA", *trans_a as i64),
                int("transB", *trans_b as i64),
            ],
            Op::Gather { axis } | Op::Softmax { axis } | Op::Concat { axis } => {
                vec![int("axis", *axis)]
            }
            Op::Transpose { perm } => vec![ints("perm", perm.iter().map(|&p| p as i64).collect())],
            Op::LayerNormalization { axis, epsilon } => vec![
                int("axis", *axis),
                AttributeProto {
                    name: "epsilon".into(),
                    r#type: attribute_type::FLOAT,
                    f: *epsilon,
                    ..Default::default()
                },
            ],
            Op::ReduceSum { keepdims } => vec![int("keepdims", *keepdims as i64)],
            Op::ReduceMean { axes, keepdims } => vec![
                ints("axes", axes.clone()),
                int("keepdims", *keepdims as i64),
            ],
            Op::Shape { start, end } => {
                let mut a = Vec::new();
                if let Some(s) = start {
                    a.push(int("start", *s));
                }
                if let Some(e) = end {
                    a.push(int("end", *e));
                }
                a
            }
            Op::ConstantOfShape { value } => vec![AttributeProto {
                name: "value".into(),
                r#type: attribute_type::TENSOR,
                t: Some(
                    Tensor {
                        dims: vec![1],
                        data: TensorData::F32(vec![*value]),
                    }
                    .to_proto(""),
                ),
                ..Default::default()
            }],
            Op::ScatterND { add: true } => vec![AttributeProto {
                name: "reduction".into(),
                r#type: attribute_type::STRING,
                s: b"add".to_vec(),
                ..Default::default()
            }],
            _ => Vec::new(),
        }
    }

    /// Outputs beyond the first that ONNX lets a node omit.
    fn optional_outputs_from(&self) -> usize {
        match self {
            Op::LayerNormalization { .. } => 1,
            _ => usize::MAX,
        }
    }
}

/// Where a value comes from.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    Input,
    Initializer(Tensor),
    Node { node: usize, slot: usize },
}

#[derive(Debug, Clone)]
pub(crate) struct ValueInfo {
    pub(crate) name: String,
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<Dim>,
    pub(crate) origin: Origin,
    /// Contents of a 1-D int64 value that holds dimensions (from `Shape`, constants, `Concat`).
    pub(crate) known_dims: Option<Vec<Dim>>,
}

/// One node: operator, inputs and outputs.
#[derive(Debug, Clone)]
pub struct Node {
    /// Operator.
    pub op: Op,
    /// Inputs, in ONNX order.
    pub inputs: Vec<Value>,
    /// Outputs, in ONNX order.
    pub outputs: Vec<Value>,
}

/// An ONNX graph under construction. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Graph {
    name: String,
    pub(crate) values: Vec<ValueInfo>,
    pub(crate) nodes: Vec<Node>,
    inputs: Vec<Value>,
    outputs: Vec<Value>,
    names: HashSet<String>,
}

fn graph_err(op: &Op, msg: impl fmt::Display) -> Error {
    Error::Graph(format!("{}: {msg}", op.op_type()))
}

impl Graph {
    /// An empty graph.
    pub fn new(name: &str) -> Graph {
        Graph {
            name: name.to_string(),
            values: Vec::new(),
            nodes: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            names: HashSet::new(),
        }
    }

    fn push_value(
        &mut self,
        name: String,
        dtype: DType,
        shape: Vec<Dim>,
        origin: Origin,
    ) -> Result<Value> {
        if !self.names.insert(name.clone()) {
            return Err(Error::Graph(format!("duplicate value name `{name}`")));
        }
        let v = Value(self.values.len() as u32);
        self.values.push(ValueInfo {
            name,
            dtype,
            shape,
            origin,
            known_dims: None,
        });
        Ok(v)
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, dtype: DType, shape: Vec<Dim>) -> Result<Value> {
        let v = self.push_value(name.to_string(), dtype, shape, Origin::Input)?;
        self.inputs.push(v);
        Ok(v)
    }

    /// Adds a named constant (an ONNX initializer).
    pub fn initializer(&mut self, name: &str, tensor: Tensor) -> Result<Value> {
        let product: usize = tensor.dims.iter().product();
        if product != tensor.len() {
            return Err(Error::Graph(format!(
                "initializer `{name}`: {} values for shape {:?}",
                tensor.len(),
                tensor.dims
            )));
        }
        let known = match &tensor.data {
            TensorData::I64(v) if tensor.dims.len() == 1 && v.iter().all(|&x| x >= 0) => {
                Some(v.iter().map(|&x| Dim::Fixed(x as usize)).collect())
            }
            _ => None,
        };
        let shape = tensor.dims.iter().map(|&d| Dim::Fixed(d)).collect();
        let dtype = tensor.dtype();
        let v = self.push_value(name.to_string(), dtype, shape, Origin::Initializer(tensor))?;
        self.values[v.index()].known_dims = known;
        Ok(v)
    }

    fn fresh_name(&self, hint: &str) -> String {
        format!("{hint}_{}", self.values.len())
    }

    /// An anonymous f32 constant of the given shape.
    pub fn const_f32(&mut self, dims: &[usize], data: Vec<f32>) -> Result<Value> {
        let name = self.fresh_name("const");
        self.initializer(
            &name,
            Tensor {
                dims: dims.to_vec(),
                data: TensorData::F32(data),
            },
        )
    }

    /// An f32 scalar constant (shape `[]`, broadcasts against anything).
    pub fn scalar(&mut self, x: f32) -> Result<Value> {
        self.const_f32(&[], vec![x])
    }

    /// A 1-D int64 constant.
    pub fn const_i64(&mut self, data: &[i64]) -> Result<Value> {
        let name = self.fresh_name("const");
        self.initializer(
            &name,
            Tensor {
                dims: vec![data.len()],
                data: TensorData::I64(data.to_vec()),
            },
        )
    }

    /// A 0-D int64 constant.
    pub fn scalar_i64(&mut self, x: i64) -> Result<Value> {
        let name = self.fresh_name("const");
        self.initializer(
            &name,
            Tensor {
                dims: vec![],
                data: TensorData::I64(vec![x]),
            },
        )
    }

    /// Marks `v` as a graph output called `name`, renaming it when it is a fresh node output
    /// and inserting an `Identity` otherwise.
    pub fn output(&mut self, name: &str, v: Value) -> Result<Value> {
        let renamable = matches!(self.values[v.index()].origin, Origin::Node { .. })
            && !self.outputs.contains(&v);
        let out = if renamable {
            if !self.names.insert(name.to_string()) {
                return Err(Error::Graph(format!("duplicate value name `{name}`")));
            }
            let old = std::mem::replace(&mut self.values[v.index()].name, name.to_string());
            self.names.remove(&old);
            v
        } else {
            let id = self.node(Op::Identity, &[v], 1)?[0];
            return self.output(name, id);
        };
        self.outputs.push(out);
        Ok(out)
    }

    /// Graph inputs, in declaration order.
    pub fn inputs(&self) -> &[Value] {
        &self.inputs
    }

    /// Graph outputs, in declaration order.
    pub fn outputs(&self) -> &[Value] {
        &self.outputs
    }

    /// Nodes in topological (insertion) order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node producing `v`, with the output slot, if `v` is a node output.
    pub fn producer(&self, v: Value) -> Option<(&Node, usize)> {
        match self.values[v.index()].origin {
            Origin::Node { node, slot } => Some((&self.nodes[node], slot)),
            _ => None,
        }
    }

    /// The value's name.
    pub fn name(&self, v: Value) -> &str {
        &self.values[v.index()].name
    }

    /// The value's shape.
    pub fn shape(&self, v: Value) -> &[Dim] {
        &self.values[v.index()].shape
    }

    /// The value's rank.
    pub fn rank(&self, v: Value) -> usize {
        self.values[v.index()].shape.len()
    }

    /// The value's element type.
    pub fn dtype(&self, v: Value) -> DType {
        self.values[v.index()].dtype
    }

    /// The value's contents if it is an initializer.
    pub fn constant(&self, v: Value) -> Option<&Tensor> {
        match &self.values[v.index()].origin {
            Origin::Initializer(t) => Some(t),
            _ => None,
        }
    }

    fn const_ints(&self, op: &Op, v: Value, what: &str) -> Result<Vec<i64>> {
        match self.constant(v) {
            Some(Tensor {
                data: TensorData::I64(x),
                ..
            }) => Ok(x.clone()),
            _ => Err(graph_err(op, format!("{what} must be an int64 constant"))),
        }
    }

    /// The contents of a 1-D int64 shape value as dimensions, if known.
    fn dims_of(&self, v: Value) -> Option<&[Dim]> {
        self.values[v.index()].known_dims.as_deref()
    }

    /// Adds a node, infers its output types and shapes, and returns its outputs.
    pub fn node(&mut self, op: Op, inputs: &[Value], n_outputs: usize) -> Result<Vec<Value>> {
        let (types, known) = self.infer(&op, inputs)?;
        if types.len() < n_outputs {
            return Err(graph_err(
                &op,
                format!("has {} outputs, {n_outputs} requested", types.len()),
            ));
        }
        self.push_node(
            op,
            inputs,
            types.into_iter().take(n_outputs).collect(),
            known,
        )
    }

    /// Adds a node whose output shapes the caller states (for ops such as `Pad` whose result
    /// shape depends on run-time values).
    pub fn node_with_shapes(
        &mut self,
        op: Op,
        inputs: &[Value],
        outputs: Vec<(DType, Vec<Dim>)>,
    ) -> Result<Vec<Value>> {
        self.push_node(op, inputs, outputs, None)
    }

    fn push_node(
        &mut self,
        op: Op,
        inputs: &[Value],
        outputs: Vec<(DType, Vec<Dim>)>,
        known: Option<Vec<Dim>>,
    ) -> Result<Vec<Value>> {
        let node = self.nodes.len();
        let hint = op.op_type().to_ascii_lowercase();
        let mut outs = Vec::with_capacity(outputs.len());
        for (slot, (dtype, shape)) in outputs.into_iter().enumerate() {
            let name = self.fresh_name(&hint);
            outs.push(self.push_value(name, dtype, shape, Origin::Node { node, slot })?);
        }
        if let Some(k) = known {
            self.values[outs[0].index()].known_dims = Some(k);
        }
        self.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            outputs: outs.clone(),
        });
        Ok(outs)
    }

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
    fn infer(
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

    /// Serialises the graph as an ONNX model, keeping only the nodes and initializers the
    /// outputs depend on (every declared input is kept).
    pub fn to_model(&self) -> ModelProto {
        self.model_between(&self.inputs, false, &self.outputs)
    }

    /// Serialises the part of the graph that computes `outputs` from `inputs`: the values in
    /// `inputs` become graph inputs (their producers are not emitted), only the inputs the
    /// outputs need are declared, and any value may be an output. Splits one graph into stages
    /// that hand each other named tensors, e.g. a forward pass that returns the activations a
    /// separate backward pass takes.
    pub fn to_model_between(&self, inputs: &[Value], outputs: &[Value]) -> ModelProto {
        self.model_between(inputs, true, outputs)
    }

    /// Marks `v` (a node output) to be called `name` in serialised models.
    pub fn rename(&mut self, v: Value, name: &str) -> Result<()> {
        if !matches!(self.values[v.index()].origin, Origin::Node { .. }) {
            return Err(Error::Graph(format!(
                "only node outputs can be renamed, not `{}`",
                self.name(v)
            )));
        }
        if !self.names.insert(name.to_string()) {
            return Err(Error::Graph(format!("duplicate value name `{name}`")));
        }
        let old = std::mem::replace(&mut self.values[v.index()].name, name.to_string());
        self.names.remove(&old);
        Ok(())
    }

    fn model_between(&self, inputs: &[Value], prune_inputs: bool, outputs: &[Value]) -> ModelProto {
        let mut is_input = vec![false; self.values.len()];
        for &v in inputs {
            is_input[v.index()] = true;
        }
        let mut needed = vec![false; self.values.len()];
        for &o in outputs {
            needed[o.index()] = true;
        }
        let mut node_needed = vec![false; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate().rev() {
            if node
                .outputs
                .iter()
                .any(|o| needed[o.index()] && !is_input[o.index()])
            {
                node_needed[i] = true;
                for &x in &node.inputs {
                    needed[x.index()] = true;
                }
            }
        }
        let value_info = |v: Value| {
            let info = &self.values[v.index()];
            ValueInfoProto {
                name: info.name.clone(),
                r#type: Some(TypeProto {
                    value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                        elem_type: info.dtype.onnx(),
                        shape: Some(TensorShapeProto {
                            dim: info
                                .shape
                                .iter()
                                .map(|d| tensor_shape_proto::Dimension {
                                    value: Some(match d {
                                        Dim::Fixed(n) => {
                                            tensor_shape_proto::dimension::Value::DimValue(
                                                *n as i64,
                                            )
                                        }
                                        Dim::Sym(s) => {
                                            tensor_shape_proto::dimension::Value::DimParam(
                                                s.to_string(),
                                            )
                                        }
                                    }),
                                    denotation: String::new(),
                                })
                                .collect(),
                        }),
                    })),
                    denotation: String::new(),
                }),
                doc_string: String::new(),
            }
        };
        let node = self
            .nodes
            .iter()
            .zip(&node_needed)
            .filter(|(_, &n)| n)
            .flat_map(|(n, _)| {
                if n.op == Op::Gelu {
                    return self.expand_gelu(n);
                }
                let first_optional = n.op.optional_outputs_from();
                let mut output: Vec<String> = n
                    .outputs
                    .iter()
                    .enumerate()
                    .map(|(slot, &o)| {
                        if slot >= first_optional && !needed[o.index()] {
                            String::new()
                        } else {
                            self.values[o.index()].name.clone()
                        }
                    })
                    .collect();
                while output.len() > 1 && output.last().is_some_and(String::is_empty) {
                    output.pop();
                }
                vec![NodeProto {
                    input: n
                        .inputs
                        .iter()
                        .map(|&i| self.values[i.index()].name.clone())
                        .collect(),
                    output,
                    name: String::new(),
                    op_type: n.op.op_type().to_string(),
                    attribute: n.op.attributes(),
                    doc_string: String::new(),
                    domain: String::new(),
                }]
            })
            .collect();
        let initializer = self
            .values
            .iter()
            .enumerate()
            .filter(|(i, _)| needed[*i])
            .filter_map(|(_, info)| match &info.origin {
                Origin::Initializer(t) => Some(t.to_proto(&info.name)),
                _ => None,
            })
            .collect();
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "ltre".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(GraphProto {
                node,
                name: self.name.clone(),
                initializer,
                input: inputs
                    .iter()
                    .filter(|&&v| !prune_inputs || needed[v.index()])
                    .map(|&v| value_info(v))
                    .collect(),
                output: outputs.iter().map(|&v| value_info(v)).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl Graph {
    /// Writes out a [`Op::Gelu`] node as `Div`, `Erf`, `Add`, `Mul`, `Mul`.
    fn expand_gelu(&self, n: &Node) -> Vec<NodeProto> {
        let name = |v: Value| self.values[v.index()].name.clone();
        let (x, sqrt2, one, half) = (
            name(n.inputs[0]),
            name(n.inputs[1]),
            name(n.inputs[2]),
            name(n.inputs[3]),
        );
        let (y, u, e1) = (name(n.outputs[0]), name(n.outputs[1]), name(n.outputs[2]));
        let (erf, hx) = (format!("{y}/erf"), format!("{y}/half_x"));
        let node = |op: &str, input: [&String; 2], output: &String| NodeProto {
            input: input.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            op_type: op.to_string(),
            ..Default::default()
        };
        vec![
            node("Div", [&x, &sqrt2], &u),
            NodeProto {
                input: vec![u.clone()],
                output: vec![erf.clone()],
                op_type: "Erf".into(),
                ..Default::default()
            },
            node("Add", [&erf, &one], &e1),
            node("Mul", [&x, &half], &hx),
            node("Mul", [&hx, &e1], &y),
        ]
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

/// Typed helpers, one per operator, so model code reads like the maths.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_model_between_cuts_at_the_given_inputs() {
        // y = exp(x) * w; stage 2 takes `t = exp(x)` and `w`, not `x`.
        let mut g = Graph::new("t");
        let x = g.input("x", DType::F32, vec![Dim::Fixed(2)]).unwrap();
        let w = g.input("w", DType::F32, vec![Dim::Fixed(2)]).unwrap();
        let t = g.exp(x).unwrap();
        let y = g.mul(t, w).unwrap();
        g.rename(t, "saved.0").unwrap();
        assert!(g.rename(x, "other").is_err(), "inputs keep their names");
        assert!(g.rename(y, "saved.0").is_err(), "names stay unique");
        let graph = g.to_model_between(&[t, x, w], &[y]).graph.unwrap();
        let inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(inputs, ["saved.0", "w"], "unused inputs are not declared");
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Mul"]);
        let first = g.to_model_between(&[x], &[t]).graph.unwrap();
        assert_eq!(first.output[0].name, "saved.0");
        assert_eq!(first.node.len(), 1);
    }

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

    #[test]
    fn unused_nodes_and_optional_outputs_are_dropped() {
        let mut g = Graph::new("t");
        let x = g
            .input("x", DType::F32, vec![Dim::sym("n"), Dim::Fixed(4)])
            .unwrap();
        let s = g.const_f32(&[4], vec![1.0; 4]).unwrap();
        let b = g.const_f32(&[4], vec![0.0; 4]).unwrap();
        let _unused = g.exp(x).unwrap();
        let y = g.layer_norm(x, s, b, 1e-5).unwrap();
        g.output("y", y).unwrap();
        let graph = g.to_model().graph.unwrap();
        assert_eq!(graph.node.len(), 1);
        assert_eq!(graph.node[0].output, vec!["y".to_string()]);
    }
}
