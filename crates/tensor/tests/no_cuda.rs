//! Asking for `Device::Cuda(0)` on a machine without a CUDA driver is an error that names the device and the reason,
//! through every door a user might take: moving a tensor, creating one, drawing random numbers. Never a panic.
//! (On a machine with a GPU there is nothing to check here, and the harness reports the tests ignored.)

use diffuse_tensor::{DType, Device, Error, Tensor};

fn assert_names_the_device_and_the_driver(what: &str, err: Error) {
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::DeviceUnavailable {
                device: Device::Cuda(0),
                ..
            }
        ),
        "{what}: {text}"
    );
    assert!(
        text.contains("cuda:0") && text.contains("no CUDA driver"),
        "{what}: unhelpful error: {text}"
    );
}

fn cuda_without_a_driver_is_a_clear_error_through_to_device_and_creation() {
    let t = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3], Device::Cpu).unwrap();
    assert_names_the_device_and_the_driver("to_device", t.to_device(Device::Cuda(0)).unwrap_err());
    assert_names_the_device_and_the_driver(
        "zeros",
        Tensor::zeros(&[2, 2], DType::F32, Device::Cuda(0)).unwrap_err(),
    );
    assert_names_the_device_and_the_driver(
        "from_vec",
        Tensor::from_vec(vec![1.0], &[1], Device::Cuda(0)).unwrap_err(),
    );
    assert_names_the_device_and_the_driver(
        "randn",
        Tensor::randn(&[4], 1, 0, Device::Cuda(0)).unwrap_err(),
    );
    // the missing driver is named before anything else that would also stand in the way (a bf16 tensor)
    assert_names_the_device_and_the_driver(
        "to_device of bf16",
        t.to_dtype(DType::BF16)
            .unwrap()
            .to_device(Device::Cuda(0))
            .unwrap_err(),
    );
    // asking twice gives the same answer (the failed open is remembered, not retried into a different error)
    assert_names_the_device_and_the_driver(
        "to_device again",
        t.to_device(Device::Cuda(0)).unwrap_err(),
    );
    eprintln!(
        "Device::Cuda(0) on this machine: {}",
        t.to_device(Device::Cuda(0)).unwrap_err()
    );
}

fn device_auto_falls_back_to_the_cpu_and_check_available_says_why() {
    assert_eq!(Device::auto(), Device::Cpu);
    assert!(Device::Cpu.check_available().is_ok());
    assert_names_the_device_and_the_driver(
        "check_available",
        Device::Cuda(0).check_available().unwrap_err(),
    );
    assert!(Device::Cuda(0).open().unwrap_err().is_no_device());
}

fn main() {
    diffuse_gpu_test::run(
        || Device::Cuda(0).open(),
        diffuse_gpu_test::without_gpu![
            cuda_without_a_driver_is_a_clear_error_through_to_device_and_creation,
            device_auto_falls_back_to_the_cpu_and_check_available_says_why,
        ],
    );
}
