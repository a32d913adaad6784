//! The differentiable operations, one file per kind, each forward next to its backward rule.

mod adaln;
mod dropout;
mod elementwise;
mod loss;
mod nn;
mod reduce;
mod shape;
