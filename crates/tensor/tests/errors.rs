//! The error paths: each bad call returns an error whose message names what disagreed.

use diffuse_tensor::{DType, Device, Error, Tensor};

fn t(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, DType::F32, Device::Cpu).unwrap()
}

fn message<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn bad_calls_name_the_problem() {
    let cases: Vec<(String, &[&str])> = vec![
        (
            message(t(&[2, 3]).add(&t(&[4, 3]))),
            &["add", "[2, 3]", "[4, 3]"],
        ),
        (
            message(Tensor::from_vec(vec![1.0; 5], &[2, 3], Device::Cpu)),
            &["from_vec", "5", "[2, 3]"],
        ),
        (message(t(&[2, 3]).reshape(&[4, 2])), &["reshape", "6", "8"]),
        (message(t(&[2, 3]).permute(&[0, 0])), &["permute", "[0, 0]"]),
        (
            message(t(&[2, 3]).narrow(1, 2, 2)),
            &["narrow", "dimension 1", "size 3"],
        ),
        (
            message(t(&[2, 3]).sum(&[2], false)),
            &["sum", "dimension 2"],
        ),
        (message(t(&[2, 3]).sum(&[1, 1], false)), &["sum", "twice"]),
        (
            message(t(&[2, 3]).broadcast_to(&[3, 3])),
            &["broadcast_to", "[2, 3]", "[3, 3]"],
        ),
        (message(t(&[2, 3]).squeeze(0)), &["squeeze", "size 2"]),
        (
            message(t(&[2, 3]).index_select(1, &[3])),
            &["index_select", "index 3"],
        ),
        (
            message(t(&[2, 3]).upsample_nearest2x()),
            &["upsample_nearest2x", "(N, C, H, W)"],
        ),
        (
            message(Tensor::concat(&[&t(&[2, 3]), &t(&[3, 3])], 1)),
            &["concat", "[3, 3]"],
        ),
        (message(Tensor::stack(&[], 0)), &["stack", "at least one"]),
        (
            message(t(&[2]).add(&t(&[2]).to_dtype(DType::BF16).unwrap())),
            &["add", "f32", "bf16"],
        ),
        (
            message(t(&[0, 3]).mean(&[0], false)),
            &["mean", "no elements"],
        ),
        (message(t(&[0, 3]).max(&[0], false)), &["empty dimension"]),
        (message(t(&[2]).clamp(1.0, 0.0)), &["clamp"]),
        (
            message(Tensor::zeros(&[usize::MAX, 2], DType::F32, Device::Cpu)),
            &["more elements than fit"],
        ),
        (
            message(Tensor::arange(0.0, 1.0, 0.0, Device::Cpu)),
            &["arange", "non-zero step"],
        ),
        (
            message(t(&[2, 3]).to_scalar()),
            &["to_scalar", "6 elements"],
        ),
        (message(t(&[2]).to_device(Device::Cuda(0))), &["cuda:0"]),
        (
            message(t(&[2, 2]).gather(1, &[3, 2], &[0; 6])),
            &["gather", "[3, 2]"],
        ),
    ];
    for (msg, needles) in &cases {
        for needle in *needles {
            assert!(
                msg.contains(needle),
                "error message {msg:?} should mention {needle:?}"
            );
        }
    }
}

#[test]
fn parsing_devices_and_dtypes_explains_bad_names() {
    assert_eq!("cuda:1".parse::<Device>(), Ok(Device::Cuda(1)));
    assert!("gpu".parse::<Device>().unwrap_err().contains("gpu"));
    assert_eq!("bfloat16".parse::<DType>(), Ok(DType::BF16));
    assert!("f8".parse::<DType>().unwrap_err().contains("f8"));
}
