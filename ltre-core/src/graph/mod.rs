//! ONNX graphs built in Rust: an SSA [`builder`] with symbolic shapes and reverse-mode
//! [`autodiff`].
//!
//! Model code ([`crate::bert`]) calls typed helpers on a [`Graph`]; the graph infers every
//! value's type and shape as it goes and serialises to an ONNX [`crate::onnx::ModelProto`]
//! (ai.onnx opset 17 only, so stock ONNX Runtime runs it).
pub mod autodiff;
pub mod builder;

pub use builder::{fmt_shape, DType, Dim, Graph, Node, Op, Tensor, TensorData, Value};
