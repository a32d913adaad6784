//! The bad-input table: every public tensor operation, called wrongly, returns an error whose message names the
//! operation and what disagreed (a shape, a dimension, a dtype, an index) — never a panic. Each row is one call and
//! the words its message must contain. A second table feeds NaN and ±∞ through the operations: they are values, not
//! errors, and must come out as values without a panic.

use diffuse_tensor::{AdamWConfig, Conv2dParams, DType, Device, Error, Tensor};

fn t(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, DType::F32, Device::Cpu).unwrap()
}

fn bf16(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, DType::BF16, Device::Cpu).unwrap()
}

fn err<T: std::fmt::Debug>(r: Result<T, Error>) -> Result<String, String> {
    match r {
        Ok(value) => Err(format!("expected an error, got Ok({value:?})")),
        Err(e) => Ok(e.to_string()),
    }
}

const BIG: usize = usize::MAX;

/// `(what the row checks, the call's error message or why there was none, words the message must contain)`.
type Row = (
    &'static str,
    Result<String, String>,
    &'static [&'static str],
);

fn conv(stride: usize, padding: usize, groups: usize) -> Conv2dParams {
    Conv2dParams {
        stride: (stride, stride),
        padding: (padding, padding),
        dilation: (1, 1),
        groups,
    }
}

fn adam() -> AdamWConfig {
    AdamWConfig {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    }
}

fn rows() -> Vec<Row> {
    let x = t(&[2, 3]);
    let img = t(&[1, 2, 4, 4]);
    vec![
        // ---- creation ----
        (
            "from_vec: too few values",
            err(Tensor::from_vec(vec![1.0; 5], &[2, 3], Device::Cpu)),
            &["from_vec", "5", "[2, 3]"],
        ),
        (
            "from_vec: shape overflows usize",
            err(Tensor::from_vec(vec![], &[BIG, 2], Device::Cpu)),
            &["from_vec", "more elements than fit"],
        ),
        (
            "zeros: shape overflows usize",
            err(Tensor::zeros(&[BIG, 2], DType::F32, Device::Cpu)),
            &["more elements than fit"],
        ),
        (
            "full: shape overflows usize",
            err(Tensor::full(
                &[1 << 40, 1 << 40],
                1.0,
                DType::F16,
                Device::Cpu,
            )),
            &["full", "more elements than fit"],
        ),
        (
            "arange: zero step",
            err(Tensor::arange(0.0, 1.0, 0.0, Device::Cpu)),
            &["arange", "non-zero step"],
        ),
        (
            "arange: NaN end",
            err(Tensor::arange(0.0, f32::NAN, 1.0, Device::Cpu)),
            &["arange", "NaN"],
        ),
        (
            "arange: infinite start",
            err(Tensor::arange(f32::NEG_INFINITY, 0.0, 1.0, Device::Cpu)),
            &["arange", "-inf"],
        ),
        (
            "arange: too many elements",
            err(Tensor::arange(0.0, 1e30, 1.0, Device::Cpu)),
            &["arange", "too many"],
        ),
        (
            "randn: shape overflows usize",
            err(Tensor::randn(&[BIG, 3], 0, 0, Device::Cpu)),
            &["more elements than fit"],
        ),
        (
            "rand: shape overflows usize",
            err(Tensor::rand(&[3, BIG], 0, 0, Device::Cpu)),
            &["more elements than fit"],
        ),
        // ---- inspection and conversion ----
        (
            "dim: out of range",
            err(x.dim(2)),
            &["dimension 2", "[2, 3]"],
        ),
        (
            "to_scalar: not one element",
            err(x.to_scalar()),
            &["to_scalar", "6 elements"],
        ),
        (
            "to_device: no CUDA here",
            err(x.to_device(Device::Cuda(0))),
            &["cuda:0"],
        ),
        // ---- views ----
        (
            "reshape: element counts differ",
            err(x.reshape(&[4, 2])),
            &["reshape", "6", "8"],
        ),
        (
            "reshape: target overflows usize",
            err(x.reshape(&[BIG, BIG])),
            &["reshape", "more elements than fit"],
        ),
        (
            "flatten: start after end",
            err(x.flatten(1, 0)),
            &["flatten", "1", "0"],
        ),
        (
            "flatten: merged size overflows usize",
            err(t(&[BIG, BIG, 0]).flatten(0, 1)),
            &["flatten", "more elements than fit"],
        ),
        (
            "flatten: end out of range",
            err(x.flatten(0, 2)),
            &["flatten", "2"],
        ),
        (
            "permute: repeated dimension",
            err(x.permute(&[0, 0])),
            &["permute", "[0, 0]"],
        ),
        (
            "permute: too few dimensions",
            err(x.permute(&[1])),
            &["permute", "[1]", "2 dimensions"],
        ),
        (
            "permute: dimension out of range",
            err(x.permute(&[0, 2])),
            &["permute", "[0, 2]"],
        ),
        (
            "transpose: dimension out of range",
            err(x.transpose(0, 5)),
            &["transpose", "dimension 5"],
        ),
        (
            "narrow: past the end",
            err(x.narrow(1, 2, 2)),
            &["narrow", "dimension 1", "size 3"],
        ),
        (
            "narrow: start + len overflows",
            err(x.narrow(1, 1, BIG)),
            &["narrow", "dimension 1"],
        ),
        (
            "narrow: dimension out of range",
            err(x.narrow(2, 0, 1)),
            &["narrow", "dimension 2"],
        ),
        (
            "broadcast_to: lower rank",
            err(x.broadcast_to(&[3])),
            &["broadcast_to", "[2, 3]", "[3]"],
        ),
        (
            "broadcast_to: sizes disagree",
            err(x.broadcast_to(&[3, 3])),
            &["broadcast_to", "[2, 3]", "[3, 3]"],
        ),
        (
            "broadcast_to: target overflows usize",
            err(t(&[1]).broadcast_to(&[BIG, 2])),
            &["broadcast_to", "more elements than fit"],
        ),
        (
            "squeeze: size is not 1",
            err(x.squeeze(0)),
            &["squeeze", "size 2"],
        ),
        (
            "squeeze: dimension out of range",
            err(x.squeeze(2)),
            &["squeeze", "dimension 2"],
        ),
        (
            "unsqueeze: dimension out of range",
            err(x.unsqueeze(3)),
            &["unsqueeze", "dimension 3"],
        ),
        (
            "contiguous of an empty view with huge sizes reshaped",
            err(t(&[0, BIG]).reshape(&[BIG, 1])),
            &["reshape", "0 elements"],
        ),
        // ---- element-wise ----
        (
            "add: shapes do not broadcast",
            err(x.add(&t(&[4, 3]))),
            &["add", "[2, 3]", "[4, 3]"],
        ),
        (
            "sub: dtypes differ",
            err(t(&[2]).sub(&bf16(&[2]))),
            &["sub", "f32", "bf16"],
        ),
        (
            "mul: shapes do not broadcast",
            err(x.mul(&t(&[2]))),
            &["mul", "[2, 3]", "[2]"],
        ),
        (
            "div: shapes do not broadcast",
            err(x.div(&t(&[3, 2]))),
            &["div", "[2, 3]", "[3, 2]"],
        ),
        (
            "where_select: shapes do not broadcast",
            err(x.where_select(&t(&[3]), &t(&[4]))),
            &["where", "[4]"],
        ),
        (
            "clamp: lo above hi",
            err(t(&[2]).clamp(1.0, 0.0)),
            &["clamp", "1", "0"],
        ),
        (
            "clamp: NaN bound",
            err(t(&[2]).clamp(f32::NAN, 0.0)),
            &["clamp", "NaN"],
        ),
        // ---- reductions ----
        (
            "sum: dimension out of range",
            err(x.sum(&[2], false)),
            &["sum", "dimension 2"],
        ),
        (
            "sum: repeated dimension",
            err(x.sum(&[1, 1], false)),
            &["sum", "twice"],
        ),
        (
            "mean: over no elements",
            err(t(&[0, 3]).mean(&[0], false)),
            &["mean", "no elements"],
        ),
        (
            "mean_all: of an empty tensor",
            err(t(&[0]).mean_all()),
            &["mean", "no elements"],
        ),
        (
            "max: over an empty dimension",
            err(t(&[0, 3]).max(&[0], false)),
            &["Max", "empty dimension"],
        ),
        (
            "min: dimension out of range",
            err(x.min(&[3], true)),
            &["min", "dimension 3"],
        ),
        (
            "argmax: dimension out of range",
            err(x.argmax(2, false)),
            &["argmax", "dimension 2"],
        ),
        (
            "sum: result shape overflows usize",
            err(t(&[BIG, 2, 0]).sum(&[2], false)),
            &["sum", "more elements than fit"],
        ),
        (
            "argmax: over an empty dimension",
            err(t(&[3, 0]).argmax(1, false)),
            &["ArgMax", "empty"],
        ),
        // ---- joining and indexing ----
        (
            "concat: no tensors",
            err(Tensor::concat(&[], 0)),
            &["concat", "at least one"],
        ),
        (
            "concat: other dimensions differ",
            err(Tensor::concat(&[&x, &t(&[3, 3])], 1)),
            &["concat", "[3, 3]"],
        ),
        (
            "concat: dimension out of range",
            err(Tensor::concat(&[&x, &x], 2)),
            &["concat", "dimension 2"],
        ),
        (
            "concat: dtypes differ",
            err(Tensor::concat(&[&t(&[2]), &bf16(&[2])], 0)),
            &["concat", "f32", "bf16"],
        ),
        (
            "concat: joined size overflows usize",
            err(Tensor::concat(&[&t(&[BIG, 0]), &t(&[BIG, 0])], 0)),
            &["concat", "overflow"],
        ),
        (
            "stack: no tensors",
            err(Tensor::stack(&[], 0)),
            &["stack", "at least one"],
        ),
        (
            "stack: shapes differ",
            err(Tensor::stack(&[&x, &t(&[3, 2])], 0)),
            &["stack", "[3, 2]", "[2, 3]"],
        ),
        (
            "stack: dimension out of range",
            err(Tensor::stack(&[&x, &x], 3)),
            &["dimension 3"],
        ),
        (
            "index_select: index out of range",
            err(x.index_select(1, &[3])),
            &["index_select", "index 3"],
        ),
        (
            "index_select: dimension out of range",
            err(x.index_select(2, &[0])),
            &["index_select", "dimension 2"],
        ),
        (
            "index_select_backward: index out of range",
            err(x.index_select_backward(1, 2, &[0, 1, 2])),
            &["index_select_backward", "index 2"],
        ),
        (
            "gather: index shape disagrees",
            err(t(&[2, 2]).gather(1, &[3, 2], &[0; 6])),
            &["gather", "[3, 2]"],
        ),
        (
            "gather: index out of range",
            err(t(&[2, 2]).gather(1, &[2, 1], &[0, 2])),
            &["gather", "index 2"],
        ),
        (
            "gather: too few indices",
            err(t(&[2, 2]).gather(1, &[2, 1], &[0])),
            &["gather", "1", "2"],
        ),
        (
            "gather_backward: index shape disagrees",
            err(t(&[2, 1]).gather_backward(1, &[3, 2], &[0, 0])),
            &["gather_backward", "[2, 1]"],
        ),
        (
            "upsample_nearest2x: not (N, C, H, W)",
            err(x.upsample_nearest2x()),
            &["upsample_nearest2x", "(N, C, H, W)", "[2, 3]"],
        ),
        (
            "upsample_nearest2x: doubled size overflows usize",
            err(t(&[1, 1, BIG / 2 + 1, 0]).upsample_nearest2x()),
            &["upsample_nearest2x", "overflow"],
        ),
        (
            "upsample_nearest2x_backward: odd size",
            err(t(&[1, 1, 3, 4]).upsample_nearest2x_backward()),
            &["upsample_nearest2x_backward", "odd"],
        ),
        // ---- matmul ----
        (
            "matmul: rank 1 operand",
            err(t(&[3]).matmul(&t(&[3, 2]))),
            &["matmul", "[3]"],
        ),
        (
            "matmul: inner sizes differ",
            err(x.matmul(&t(&[2, 3]))),
            &["matmul", "[2, 3]", "3", "2"],
        ),
        (
            "matmul: batch sizes do not broadcast",
            err(t(&[2, 2, 3]).matmul(&t(&[3, 3, 4]))),
            &["matmul", "[2, 2, 3]", "[3, 3, 4]"],
        ),
        (
            "matmul: result shape overflows usize",
            err(t(&[BIG, 0]).matmul(&t(&[0, BIG]))),
            &["matmul", "more elements than fit"],
        ),
        (
            "matmul: dtypes differ",
            err(x.matmul(&bf16(&[3, 2]))),
            &["matmul", "f32", "bf16"],
        ),
        // ---- softmax ----
        (
            "softmax: dimension out of range",
            err(x.softmax(2)),
            &["softmax", "dimension 2"],
        ),
        (
            "log_softmax: dimension out of range",
            err(x.log_softmax(5)),
            &["log_softmax", "dimension 5"],
        ),
        (
            "softmax_backward: gradient shape differs",
            err(x.softmax_backward(&t(&[3, 2]), 1)),
            &["softmax_backward", "gradient", "[3, 2]"],
        ),
        (
            "log_softmax_backward: dtypes differ",
            err(x.log_softmax_backward(&bf16(&[2, 3]), 1)),
            &["log_softmax_backward", "bf16"],
        ),
        // ---- convolution ----
        (
            "conv2d: input not (N, C, H, W)",
            err(x.conv2d(&t(&[1, 3, 1, 1]), None, &conv(1, 0, 1))),
            &["conv2d", "input", "[2, 3]"],
        ),
        (
            "conv2d: weight not rank 4",
            err(img.conv2d(&t(&[2, 2, 3]), None, &conv(1, 0, 1))),
            &["conv2d", "weight", "[2, 2, 3]"],
        ),
        (
            "conv2d: channels disagree",
            err(img.conv2d(&t(&[4, 3, 3, 3]), None, &conv(1, 0, 1))),
            &["conv2d", "channel"],
        ),
        (
            "conv2d: groups do not divide channels",
            err(img.conv2d(&t(&[3, 1, 3, 3]), None, &conv(1, 0, 2))),
            &["conv2d", "group"],
        ),
        (
            "conv2d: zero groups",
            err(img.conv2d(&t(&[2, 2, 3, 3]), None, &conv(1, 0, 0))),
            &["conv2d", "group"],
        ),
        (
            "conv2d: groups overflow the channel count",
            err(img.conv2d(&t(&[2, 2, 3, 3]), None, &conv(1, 0, BIG))),
            &["conv2d", "group"],
        ),
        (
            "conv2d: zero stride",
            err(img.conv2d(&t(&[2, 2, 3, 3]), None, &conv(0, 0, 1))),
            &["conv2d", "stride"],
        ),
        (
            "conv2d: kernel larger than padded input",
            err(img.conv2d(&t(&[2, 2, 7, 7]), None, &conv(1, 1, 1))),
            &["conv2d", "kernel"],
        ),
        (
            "conv2d: padding overflows usize",
            err(img.conv2d(&t(&[2, 2, 3, 3]), None, &conv(1, BIG, 1))),
            &["conv2d", "overflow"],
        ),
        (
            "conv2d: bias has the wrong length",
            err(img.conv2d(&t(&[2, 2, 3, 3]), Some(&t(&[3])), &conv(1, 1, 1))),
            &["conv2d", "bias", "[3]"],
        ),
        (
            "conv2d_backward_input: gradient shape differs",
            err(t(&[1, 2, 3, 3]).conv2d_backward_input(
                &t(&[2, 2, 3, 3]),
                &[1, 2, 4, 4],
                &conv(1, 1, 1),
            )),
            &["conv2d_backward_input", "[1, 2, 3, 3]"],
        ),
        (
            "conv2d_backward_weight: gradient shape differs",
            err(img.conv2d_backward_weight(&t(&[1, 2, 3, 3]), &[2, 2, 3, 3], &conv(1, 1, 1), true)),
            &["conv2d_backward_weight", "[1, 2, 3, 3]"],
        ),
        // ---- normalisation ----
        (
            "group_norm: groups do not divide channels",
            err(img.group_norm(3, &t(&[2]), &t(&[2]), 1e-5)),
            &["group_norm", "3", "2"],
        ),
        (
            "group_norm: zero groups",
            err(img.group_norm(0, &t(&[2]), &t(&[2]), 1e-5)),
            &["group_norm", "0"],
        ),
        (
            "group_norm: gamma has the wrong shape",
            err(img.group_norm(1, &t(&[3]), &t(&[2]), 1e-5)),
            &["group_norm", "gamma", "[3]"],
        ),
        (
            "group_norm: negative eps",
            err(img.group_norm(1, &t(&[2]), &t(&[2]), -1.0)),
            &["group_norm", "eps"],
        ),
        (
            "group_norm: input of rank 1",
            err(t(&[4]).group_norm(1, &t(&[4]), &t(&[4]), 1e-5)),
            &["group_norm", "[4]"],
        ),
        (
            "layer_norm: beta has the wrong shape",
            err(x.layer_norm(&t(&[3]), &t(&[2]), 1e-5)),
            &["layer_norm", "beta", "[2]"],
        ),
        (
            "layer_norm: NaN eps",
            err(x.layer_norm(&t(&[3]), &t(&[3]), f32::NAN)),
            &["layer_norm", "eps"],
        ),
        (
            "layer_norm_backward: gradient shape differs",
            err(t(&[3, 2]).layer_norm_backward(&x, &t(&[3]), (&t(&[2]), &t(&[2])))),
            &["layer_norm_backward", "[3, 2]"],
        ),
        // ---- attention ----
        (
            "attention: q not rank 3",
            err(x.attention(&x, &x, 1, 1.0)),
            &["attention", "q", "[2, 3]"],
        ),
        (
            "attention: heads that do not divide the channels",
            err(t(&[1, 2, 6]).attention(&t(&[1, 3, 6]), &t(&[1, 3, 6]), 4, 1.0)),
            &["attention", "4 heads", "6 channels", "[1, 2, 6]"],
        ),
        (
            "attention: head sizes differ",
            err(t(&[1, 2, 4]).attention(&t(&[1, 3, 5]), &t(&[1, 3, 5]), 1, 1.0)),
            &["attention", "k", "[1, 3, 5]", "[1, 3, 4]"],
        ),
        (
            "attention: v length differs from k",
            err(t(&[1, 2, 4]).attention(&t(&[1, 3, 4]), &t(&[1, 2, 4]), 1, 1.0)),
            &["attention", "v", "[1, 2, 4]"],
        ),
        (
            "attention: dtypes differ",
            err(t(&[1, 2, 4]).attention(&bf16(&[1, 2, 4]), &t(&[1, 2, 4]), 1, 1.0)),
            &["attention", "bf16"],
        ),
        (
            "attention: bias of another shape",
            err(t(&[1, 2, 4]).attention_with_bias(
                &t(&[1, 3, 4]),
                &t(&[1, 3, 4]),
                Some(&t(&[3, 2])),
                1,
                1.0,
            )),
            &["attention", "bias", "[3, 2]", "[2, 3]"],
        ),
        (
            "attention: bias of another dtype",
            err(t(&[1, 2, 4]).attention_with_bias(
                &t(&[1, 3, 4]),
                &t(&[1, 3, 4]),
                Some(&bf16(&[2, 3])),
                1,
                1.0,
            )),
            &["attention", "bf16"],
        ),
        (
            "attention_backward: gradient shape differs",
            err(t(&[1, 3, 4]).attention_backward(
                (&t(&[1, 2, 4]), &t(&[1, 2, 4]), &t(&[1, 2, 4])),
                (&t(&[1, 2, 4]), &t(&[1, 2])),
                1,
                1.0,
            )),
            &["attention_backward", "[1, 3, 4]"],
        ),
        // ---- diffusion updates and optimiser ----
        (
            "q_sample: coefficients for the wrong batch",
            err(x.q_sample(&[1.0], &[0.0], 0, 0)),
            &["q_sample", "1", "2"],
        ),
        (
            "q_sample: scalar input",
            err(t(&[]).q_sample(&[], &[], 0, 0)),
            &["q_sample", "scalar"],
        ),
        (
            "sampler_step: model output shape differs",
            err(x.sampler_step(&t(&[3, 2]), &[], None, 0, 0)),
            &["sampler_step", "[3, 2]"],
        ),
        (
            "adamw_step: gradient shape differs",
            err(x.adamw_step(&t(&[3]), &t(&[2, 3]), &t(&[2, 3]), &adam(), 1)),
            &["adamw_step", "grad", "[3]"],
        ),
        (
            "adamw_step: moment aliases the parameter",
            err(x.adamw_step(&t(&[2, 3]), &x, &t(&[2, 3]), &adam(), 1)),
            &["adamw_step", "m"],
        ),
        (
            "adamw_step: step 0",
            err(x.adamw_step(&t(&[2, 3]), &t(&[2, 3]), &t(&[2, 3]), &adam(), 0)),
            &["adamw_step", "step"],
        ),
        (
            "assign: shapes differ",
            err(x.assign(&t(&[3, 2]))),
            &["assign", "[3, 2]", "[2, 3]"],
        ),
        (
            "assign: target is a view",
            err(x.narrow(0, 0, 1).unwrap().assign(&t(&[1, 3]))),
            &["assign", "view"],
        ),
    ]
}

#[test]
fn every_bad_call_returns_an_error_naming_the_problem() {
    let rows = rows();
    let mut failures = Vec::new();
    for (what, message, needles) in &rows {
        match message {
            Err(why) => failures.push(format!("{what}: {why}")),
            Ok(message) => {
                for needle in *needles {
                    if !message.contains(needle) {
                        failures.push(format!("{what}: {message:?} does not mention {needle:?}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows fail:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Shapes with a zero dimension hold nothing whatever their other sizes; views and operations on them must not
/// overflow while computing sizes, strides or offsets (the `tensor_views` fuzz target found `[usize::MAX, usize::MAX,
/// 0]` overflowing `numel` after a transpose, and the strided copy multiplying the sizes of such a view).
#[test]
fn empty_tensors_with_huge_dimensions_work_without_overflow() {
    let e = t(&[BIG, BIG, 0]);
    assert_eq!(e.numel(), 0);
    let moved = e.permute(&[2, 0, 1]).unwrap();
    assert_eq!(moved.shape(), &[0, BIG, BIG]);
    assert_eq!(moved.numel(), 0);
    assert_eq!(moved.contiguous().unwrap().shape(), &[0, BIG, BIG]);
    assert_eq!(moved.softmax(2).unwrap().shape(), &[0, BIG, BIG]);
    assert_eq!(moved.sum(&[1, 2], false).unwrap().shape(), &[0]);
    assert_eq!(e.narrow(0, BIG - 1, 1).unwrap().shape(), &[1, BIG, 0]);
    assert_eq!(e.unsqueeze(1).unwrap().shape(), &[BIG, 1, BIG, 0]);
    assert_eq!(e.reshape(&[0]).unwrap().shape(), &[0]);
    assert_eq!(e.exp().unwrap().shape(), &[BIG, BIG, 0]);
    assert!(e.to_vec().unwrap().is_empty());
    // Copying a strided empty view walks no rows; the row loop used to multiply the sizes first (debug builds
    // panicked on the overflow; `cargo test` without `--release` checks this).
    assert!(moved.transpose(0, 2).unwrap().to_vec().unwrap().is_empty());
    assert!(e
        .transpose(0, 1)
        .unwrap()
        .add_scalar(1.0)
        .unwrap()
        .to_vec()
        .unwrap()
        .is_empty());
    let row = t(&[0, BIG]);
    assert_eq!(Tensor::concat(&[&row, &row], 0).unwrap().shape(), &[0, BIG]);
    assert_eq!(row.index_select(1, &[0, BIG - 1]).unwrap().shape(), &[0, 2]);
    assert_eq!(row.matmul(&t(&[BIG, 0])).unwrap().shape(), &[0, 0]);
    // Found by the `tensor_views` fuzz target: the batch-stride fallback multiplied rows × cols of an empty operand.
    let no_batch = t(&[0, BIG, 2]);
    let product = no_batch.matmul(&no_batch.transpose(1, 2).unwrap()).unwrap();
    assert_eq!(product.shape(), &[0, BIG, BIG]);
    assert_eq!(
        t(&[2, 0]).matmul(&t(&[0, 3])).unwrap().to_vec().unwrap(),
        vec![0.0; 6]
    );
    let wide = t(&[BIG, BIG, 0]);
    assert_eq!(wide.index_select(1, &[1]).unwrap().shape(), &[BIG, 1, 0]);
    assert_eq!(wide.max(&[0], false).unwrap().shape(), &[BIG, 0]);
}

/// NaN and ±∞ are values: every operation carries them through and returns `Ok`, never panics.
#[test]
fn nan_and_infinity_pass_through_every_operation() {
    let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0];
    let x = Tensor::from_vec(special.to_vec(), &[1, 1, 2, 2], Device::Cpu).unwrap();
    let m = x.reshape(&[2, 2]).unwrap();
    let one = Tensor::ones(&[1], DType::F32, Device::Cpu).unwrap();
    let results: Vec<(&str, Result<Tensor, Error>)> = vec![
        ("add", m.add(&m)),
        ("mul", m.mul(&m)),
        ("div", m.div(&m)),
        ("exp", m.exp()),
        ("powf", m.powf(0.5)),
        ("clamp", m.clamp(-1.0, 1.0)),
        ("sum", m.sum(&[1], false)),
        ("mean", m.mean(&[0], true)),
        ("max", m.max(&[1], false)),
        ("min", m.min(&[0], false)),
        ("argmax", m.argmax(1, false)),
        ("softmax", m.softmax(1)),
        ("log_softmax", m.log_softmax(0)),
        ("matmul", m.matmul(&m)),
        ("conv2d", x.conv2d(&t(&[1, 1, 1, 1]), None, &conv(1, 1, 1))),
        ("group_norm", x.group_norm(1, &one, &one, 1e-5).map(|r| r.0)),
        (
            "layer_norm",
            m.layer_norm(&t(&[2]), &t(&[2]), 1e-5).map(|r| r.0),
        ),
        (
            "attention",
            x.reshape(&[1, 2, 2])
                .and_then(|q| q.attention(&q, &q, 1, 1.0))
                .map(|r| r.0),
        ),
        ("upsample_nearest2x", x.upsample_nearest2x()),
        (
            "to f16 and back",
            m.to_dtype(DType::F16).and_then(|h| h.to_dtype(DType::F32)),
        ),
        (
            "to bf16 and back",
            m.to_dtype(DType::BF16).and_then(|h| h.to_dtype(DType::F32)),
        ),
        (
            "q_sample",
            m.q_sample(&[f32::NAN, 1.0], &[0.0, f32::INFINITY], 0, 0)
                .map(|r| r.0),
        ),
    ];
    for (what, result) in results {
        let out = result.unwrap_or_else(|e| panic!("{what} refused NaN/∞ input: {e}"));
        out.to_vec().unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    // The values themselves survive a round trip through the half types and a copy.
    for dtype in [DType::F16, DType::BF16] {
        let back = m
            .to_dtype(dtype)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec()
            .unwrap();
        assert!(back[0].is_nan() && back[1] == f32::INFINITY && back[2] == f32::NEG_INFINITY);
    }
    let sum = m.sum(&[1], false).unwrap().to_vec().unwrap();
    assert!(
        sum[0].is_nan() && sum[1] == f32::NEG_INFINITY,
        "NaN + ∞, −∞ + 1: {sum:?}"
    );
}
