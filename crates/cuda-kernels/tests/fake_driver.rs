//! `Gpu::new` against a fake CUDA driver (`tests/fake_driver/libcuda.c`), so that the ways a real driver fails are
//! classified, with the driver's words, on a machine without a GPU: a driver without a device is a missing device;
//! a busy device, a device older than sm_80 and a PTX module that does not JIT are an unusable one.
//!
//! The driver library is loaded once per process, so each case runs this binary again as a child, with the fake
//! first on `LD_LIBRARY_PATH` and `FAKE_CUDA_MODE` naming the failure; the child prints what `Gpu::new` returned.
//! The fake is compiled with `cc` (the linker cargo already uses) into a temporary folder, once per run, and the
//! folder is removed when the tests are done.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use diffuse_cuda_kernels::{Gpu, OpenError};

/// Set in the child: the mode it was started for.
const CHILD: &str = "DIFFUSE_FAKE_DRIVER_CHILD";

/// The folder of this run's fake driver.
fn fake_driver_dir() -> PathBuf {
    std::env::temp_dir().join(format!("diffuse-fake-cuda-{}", std::process::id()))
}

/// The folder holding the compiled fake `libcuda.so`.
fn fake_driver() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_driver/libcuda.c");
        let dir = fake_driver_dir();
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(dir.join("libcuda.so"))
            .arg(&source)
            .status()
            .expect("cc (the C compiler cargo links with) runs");
        assert!(status.success(), "compiling {} failed", source.display());
        dir
    })
}

/// What `Gpu::new(ordinal)` returns under the fake driver in `mode`, as the child printed it.
fn open_under(mode: &str, ordinal: usize) -> String {
    let output = Command::new(std::env::current_exe().expect("this test binary"))
        .env(CHILD, ordinal.to_string())
        .env("FAKE_CUDA_MODE", mode)
        .env("LD_LIBRARY_PATH", fake_driver())
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the child for {mode} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.trim().to_string()
}

/// The child: one line, `NoDevice: …`, `Unusable: …` or `Ok: <name>`.
fn child(ordinal: usize) {
    match Gpu::new(ordinal) {
        Ok(gpu) => println!("Ok: {}", gpu.name()),
        Err(OpenError::NoDevice(why)) => println!("NoDevice: {why}"),
        Err(OpenError::Unusable(why)) => println!("Unusable: {why}"),
    }
}

fn a_driver_without_a_device_is_a_missing_device() {
    let got = open_under("no-device", 0);
    assert!(
        got.starts_with("NoDevice: creating a context on device 0: CUDA_ERROR_NO_DEVICE"),
        "{got}"
    );
    assert!(
        got.contains("no CUDA-capable device is detected"),
        "the driver's words are kept: {got}"
    );
}

fn an_ordinal_past_the_last_device_is_a_missing_device() {
    let got = open_under("ok", 3);
    assert!(
        got.starts_with("NoDevice: ") && got.contains("CUDA_ERROR_INVALID_DEVICE"),
        "{got}"
    );
}

fn a_busy_device_is_unusable_not_missing() {
    let got = open_under("busy", 0);
    assert!(
        got.starts_with("Unusable: ") && got.contains("CUDA_ERROR_DEVICE_UNAVAILABLE"),
        "{got}"
    );
}

fn a_device_older_than_sm_80_is_unusable_and_named() {
    let got = open_under("sm75", 0);
    assert_eq!(
        got,
        "Unusable: device 0 (Fake GPU) has compute capability 7.5; the kernels need sm_80 or newer"
    );
}

fn a_module_that_does_not_jit_is_unusable_with_the_jit_log() {
    let got = open_under("bad-ptx", 0);
    assert!(
        got.starts_with(
            "Unusable: loading kernels/philox.ptx on device 0 (Fake GPU): CUDA_ERROR_INVALID_PTX"
        ),
        "{got}"
    );
    assert!(
        got.contains("the driver's JIT log:") && got.contains("line 5; error"),
        "{got}"
    );
}

fn a_device_that_opens_is_returned() {
    assert_eq!(open_under("ok", 0), "Ok: Fake GPU");
}

fn main() {
    if let Some(ordinal) = std::env::var_os(CHILD) {
        child(ordinal.to_string_lossy().parse().expect("an ordinal"));
        return;
    }
    let conclusion = diffuse_gpu_test::conclude(
        || {
            Err::<(), _>(OpenError::NoDevice(
                "this binary never opens the real device".into(),
            ))
        },
        diffuse_gpu_test::anywhere![
            a_driver_without_a_device_is_a_missing_device,
            an_ordinal_past_the_last_device_is_a_missing_device,
            a_busy_device_is_unusable_not_missing,
            a_device_older_than_sm_80_is_unusable_and_named,
            a_module_that_does_not_jit_is_unusable_with_the_jit_log,
            a_device_that_opens_is_returned,
        ],
    );
    // absent when every test was filtered out
    let _ = std::fs::remove_dir_all(fake_driver_dir());
    conclusion.exit()
}
