//! Reverse-mode automatic differentiation, define-by-run.
//!
//! A [`Var`] is a [`Tensor`](diffuse_tensor::Tensor) plus, when it was computed from variables that need gradients,
//! the node of the graph that made it: its parent nodes and a backward rule, a closure that maps the gradient of
//! the output to the gradients of the parents. Running the model *is* recording the tape; nothing is declared ahead.
//! A node does not hold its output: the graph keeps exactly the tensors the rules saved, and an output that no rule
//! needs is freed as soon as the forward code drops its variable.
//!
//! [`Var::backward`] on a scalar walks the nodes in reverse topological order, so each node's gradient is complete
//! (every use summed) before its rule runs, and returns the gradients of the leaves as [`Gradients`]. Each rule runs
//! once and is dropped with the tensors it saved and its links to its parents, and each intermediate gradient is
//! dropped as soon as it has been passed on, so memory falls as the walk proceeds.
//!
//! Rules live next to their forward operation under `ops/`; the heavy ones (matmul, softmax, convolution,
//! normalisation, attention) call the backward kernels through the tensor layer.

mod backward;
mod ops;
mod reduce_to;
mod var;

pub use backward::Gradients;
pub use var::{is_grad_enabled, no_grad, Var};
