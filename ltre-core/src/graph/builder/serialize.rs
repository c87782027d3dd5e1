//! Serialisation to ONNX protobuf messages: the whole graph, or the part between chosen
//! inputs and outputs, with unused nodes, initializers and optional outputs dropped.
use super::{Dim, Graph, Node, Op, Origin, Tensor, TensorData, Value};
use crate::onnx::{
    attribute_type, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    IR_VERSION, OPSET,
};

impl Tensor {
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

impl Op {
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
}

impl Graph {
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

#[cfg(test)]
mod tests {
    use super::super::{DType, Dim, Graph};

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
