//! NCCL on `Device::Cuda(0)` in a world of one process: the library loads, a unique id is made, the communicator
//! joins on diffuse's own context and stream, and an all-reduce (the sum over one rank) returns its input exactly,
//! from a strided view as from a contiguous tensor, ordered after the kernels that wrote it and before those that
//! read it. Several ranks need several GPUs and mpirun (docs/distributed.md).
//!
//! The tests run under `diffuse-gpu-test`'s harness: without a CUDA driver or device each is reported ignored, with
//! the reason; on a GPU machine without NCCL they fail with the message naming the package to install.

use diffuse_tensor::nccl::{unique_id, NcclGroup};
use diffuse_tensor::{Device, OpenError, Tensor};

const GPU: Device = Device::Cuda(0);

fn open_cuda0() -> Result<Device, OpenError> {
    GPU.open().map(|()| GPU)
}

fn world_of_one() -> NcclGroup {
    let id = unique_id().unwrap_or_else(|e| panic!("{e}"));
    let group = NcclGroup::join(GPU, 0, 1, &id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((group.rank(), group.size(), group.device()), (0, 1, GPU));
    group
}

fn a_world_of_one_sums_to_its_input_exactly(_gpu: &Device) {
    let group = world_of_one();
    // Sizes off every power of two, and one of a single element.
    for (n, seed) in [(1, 1), (1000, 2), (65_537, 3)] {
        let x = Tensor::randn(&[n], seed, 0, GPU).unwrap();
        let summed = group.all_reduce_sum(&x).unwrap();
        assert_eq!(summed.shape(), x.shape());
        assert_eq!(summed.to_vec().unwrap(), x.to_vec().unwrap(), "{n} values");
    }
}

fn a_strided_view_is_summed_in_its_own_order(_gpu: &Device) {
    let group = world_of_one();
    let x = Tensor::randn(&[7, 5], 4, 0, GPU).unwrap();
    let view = x.transpose(0, 1).unwrap();
    let summed = group.all_reduce_sum(&view).unwrap();
    assert_eq!(summed.shape(), &[5, 7]);
    assert_eq!(summed.to_vec().unwrap(), view.to_vec().unwrap());
    // The next kernel on the stream reads the all-reduce's result.
    let doubled = summed.mul_scalar(2.0).unwrap().to_vec().unwrap();
    let expected: Vec<f32> = view.to_vec().unwrap().iter().map(|v| 2.0 * v).collect();
    assert_eq!(doubled, expected);
    group.synchronize().unwrap();
}

fn a_tensor_on_another_device_is_refused(_gpu: &Device) {
    let group = world_of_one();
    let cpu = Tensor::zeros(&[3], diffuse_tensor::DType::F32, Device::Cpu).unwrap();
    let message = group.all_reduce_sum(&cpu).unwrap_err().to_string();
    assert!(message.contains("cpu"), "{message}");
}

fn main() {
    let tests = diffuse_gpu_test::on_gpu![
        a_world_of_one_sums_to_its_input_exactly,
        a_strided_view_is_summed_in_its_own_order,
        a_tensor_on_another_device_is_refused,
    ];
    diffuse_gpu_test::run(open_cuda0, tests);
}
