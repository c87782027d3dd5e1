//! An SSA builder for ONNX graphs with element types and symbolic shapes.
//!
//! Every [`Value`] has a [`DType`] and a shape of [`Dim`]s, fixed or symbolic (`batch`, `seq`),
//! inferred when the node is added, so shape bugs surface while building (with the op named)
//! rather than inside ONNX Runtime, and so [`crate::graph::autodiff`] knows which axes a broadcast
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
//!
//! One file per concern: value types (`types.rs`), the operator set (`op.rs`), the graph and
//! its values (here), shape inference (`infer.rs`), typed per-operator helpers (`helpers.rs`)
//! and serialisation to ONNX messages (`serialize.rs`).
mod helpers;
mod infer;
mod op;
mod serialize;
mod types;

use std::collections::HashSet;
use std::fmt;

pub use op::Op;
pub use types::{fmt_shape, DType, Dim, Tensor, TensorData, Value};

use crate::{Error, Result};

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
    /// Marks `v` as a graph output called `name`, renaming it when it is a fresh node output
    /// and inserting an `Identity` otherwise.
    pub fn output(&mut self, name: &str, v: Value) -> Result<Value> {
        let renamable = matches!(self.values[v.index()].origin, Origin::Node { .. })
            && !self.outputs.contains(&v);
        if !renamable {
            let id = self.node(Op::Identity, &[v], 1)?[0];
            return self.output(name, id);
        }
        self.set_name(v, name)?;
        self.outputs.push(v);
        Ok(v)
    }

    /// Marks `v` (a node output) to be called `name` in serialised models.
    pub fn rename(&mut self, v: Value, name: &str) -> Result<()> {
        if !matches!(self.values[v.index()].origin, Origin::Node { .. }) {
            return Err(Error::Graph(format!(
                "only node outputs can be renamed, not `{}`",
                self.name(v)
            )));
        }
        self.set_name(v, name)
    }

    /// Gives `v` a new name, keeping names unique.
    fn set_name(&mut self, v: Value, name: &str) -> Result<()> {
        if !self.names.insert(name.to_string()) {
            return Err(Error::Graph(format!("duplicate value name `{name}`")));
        }
        let old = std::mem::replace(&mut self.values[v.index()].name, name.to_string());
        self.names.remove(&old);
        Ok(())
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
}
