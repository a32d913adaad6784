//! Element-wise operations: unary functions, scalar arithmetic, and broadcasting binary and ternary operations.

use crate::error::Result;
use crate::layout::broadcast_shapes;
use crate::storage::Storage;
use crate::{BinaryOp, DType, Tensor, UnaryOp};

macro_rules! unary_methods {
    ($($name:ident => $op:expr, $doc:literal;)*) => {
        $(
            #[doc = $doc]
            pub fn $name(&self) -> Result<Tensor> {
                self.unary($op)
            }
        )*
    };
}

macro_rules! binary_methods {
    ($($name:ident => $op:expr;)*) => {
        $(
            #[doc = concat!("Element-wise `", stringify!($name), "` with NumPy broadcasting.")]
            pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> {
                self.binary(rhs, $op)
            }
        )*
    };
}

impl Tensor {
    /// `op` applied to every element.
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        let storage = self.storage().unary(self.layout(), op)?;
        Tensor::from_contiguous(storage, self.shape())
    }

    unary_methods! {
        neg => UnaryOp::Neg, "−x";
        exp => UnaryOp::Exp, "eˣ";
        log => UnaryOp::Log, "natural logarithm";
        sqrt => UnaryOp::Sqrt, "√x";
        rsqrt => UnaryOp::Rsqrt, "1/√x";
        abs => UnaryOp::Abs, "|x|";
        square => UnaryOp::Square, "x²";
        recip => UnaryOp::Recip, "1/x";
        relu => UnaryOp::Relu, "max(x, 0)";
        tanh => UnaryOp::Tanh, "tanh x";
        sigmoid => UnaryOp::Sigmoid, "1/(1 + e⁻ˣ)";
        silu => UnaryOp::Silu, "x·σ(x)";
        gelu => UnaryOp::Gelu, "x·Φ(x) (exact, erf-based)";
        gelu_tanh => UnaryOp::GeluTanh, "the tanh-approximated GELU, ½x(1 + tanh(√(2/π)(x + 0.044715x³)))";
    }

    /// xᵖ.
    pub fn powf(&self, p: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Powf(p))
    }

    /// min(max(x, lo), hi).
    pub fn clamp(&self, lo: f32, hi: f32) -> Result<Tensor> {
        if lo > hi || lo.is_nan() || hi.is_nan() {
            return Err(crate::Error::argument(
                "clamp",
                format!("lower bound {lo} must not exceed upper bound {hi}"),
            ));
        }
        self.unary(UnaryOp::Clamp(lo, hi))
    }

    /// x·mul + add.
    pub fn affine(&self, mul: f32, add: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Affine(mul, add))
    }

    pub fn add_scalar(&self, value: f32) -> Result<Tensor> {
        self.affine(1.0, value)
    }

    pub fn mul_scalar(&self, value: f32) -> Result<Tensor> {
        self.affine(value, 0.0)
    }

    /// `op(self, rhs)` after broadcasting both to their common shape.
    pub fn binary(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        let name = binary_name(op);
        self.check_compatible(name, rhs)?;
        let shape = broadcast_shapes(name, self.shape(), rhs.shape())?;
        let (a, b) = (
            self.layout().broadcast_to(&shape)?,
            rhs.layout().broadcast_to(&shape)?,
        );
        let storage = {
            let (sa, sb) = (self.storage(), rhs.storage());
            sa.binary(&a, &sb, &b, op)?
        };
        Tensor::from_contiguous(storage, &shape)
    }

    /// `self + other` for two tensors of one shape, written into the buffer of whichever operand is its buffer's only
    /// user (no clone or view shares it) and covers it exactly as a contiguous f32 CPU tensor; otherwise (shared
    /// buffers, views, half types, the GPU) a new tensor, as [`Tensor::add`]. f32 addition commutes exactly, so the
    /// result is bit for bit `self.add(&other)` either way. The backward pass accumulates gradients with it, so an
    /// accumulation into a gradient it owns costs no new buffer.
    pub fn accumulate(mut self, mut other: Tensor) -> Result<Tensor> {
        if self.shape() == other.shape() && other.dtype() == DType::F32 && other.is_contiguous() {
            if !self.writable_alone() {
                std::mem::swap(&mut self, &mut other);
            }
            if self.writable_alone() && other.is_contiguous() {
                let offset = other.layout().offset();
                let numel = self.numel();
                let guard = other.storage();
                if let (Some(acc), Storage::Cpu(src)) = (self.cpu_f32_mut(), &*guard) {
                    diffuse_cpu_kernels::elementwise::add_assign(
                        acc,
                        &src.to_f32()[offset..offset + numel],
                    )?;
                    return Ok(self);
                }
            }
        }
        self.add(&other)
    }

    binary_methods! {
        add => BinaryOp::Add;
        sub => BinaryOp::Sub;
        mul => BinaryOp::Mul;
        div => BinaryOp::Div;
        maximum => BinaryOp::Maximum;
        minimum => BinaryOp::Minimum;
    }

    /// The gradient of [`Tensor::silu`] at input `self` given the output gradient `grad`: one fused pass,
    /// `grad·σ(x)·(1 + x·(1 − σ(x)))`, broadcasting like the binary operations.
    pub fn silu_backward(&self, grad: &Tensor) -> Result<Tensor> {
        self.binary(grad, BinaryOp::SiluBackward)
    }

    /// The gradient of [`Tensor::gelu_tanh`] at input `self` given the output gradient `grad`, in one fused pass,
    /// broadcasting like the binary operations.
    pub fn gelu_tanh_backward(&self, grad: &Tensor) -> Result<Tensor> {
        self.binary(grad, BinaryOp::GeluTanhBackward)
    }

    /// The gradient of [`Tensor::gelu`] at input `self` given the output gradient `grad`,
    /// `grad·(Φ(x) + x·φ(x))`, in one fused pass, broadcasting like the binary operations.
    pub fn gelu_backward(&self, grad: &Tensor) -> Result<Tensor> {
        self.binary(grad, BinaryOp::GeluBackward)
    }

    /// `if self != 0 { on_true } else { on_false }`, all three broadcast together.
    pub fn where_select(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        on_true.check_compatible("where", on_false)?;
        if self.device() != on_true.device() {
            return Err(crate::Error::DeviceMismatch {
                op: "where",
                lhs: self.device(),
                rhs: on_true.device(),
            });
        }
        let shape = broadcast_shapes(
            "where",
            &broadcast_shapes("where", self.shape(), on_true.shape())?,
            on_false.shape(),
        )?;
        let (c, a, b) = (
            self.layout().broadcast_to(&shape)?,
            on_true.layout().broadcast_to(&shape)?,
            on_false.layout().broadcast_to(&shape)?,
        );
        let storage = {
            let (sc, sa, sb) = (self.storage(), on_true.storage(), on_false.storage());
            sc.where_select(&c, (&sa, &a), (&sb, &b))?
        };
        Tensor::from_contiguous(storage, &shape)
    }
}

fn binary_name(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "sub",
        BinaryOp::Mul => "mul",
        BinaryOp::Div => "div",
        BinaryOp::Maximum => "maximum",
        BinaryOp::Minimum => "minimum",
        BinaryOp::SiluBackward => "silu_backward",
        BinaryOp::GeluTanhBackward => "gelu_tanh_backward",
        BinaryOp::GeluBackward => "gelu_backward",
    }
}
