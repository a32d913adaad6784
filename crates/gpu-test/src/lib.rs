//! The test harness of diffuse's GPU test binaries: a GPU test that did not run says so.
//!
//! Under libtest, a test that finds no GPU can only return early, and then it counts as passed. Under this harness
//! (built on `libtest-mimic`, so the command line and output are libtest's) each test declares what it needs, the
//! device is opened once, and every test gets one of three outcomes:
//!
//! | the test needs | device opened | no device (no driver, no GPU) | device present but unusable |
//! |---|---|---|---|
//! | [`Test::on_gpu`]       | runs | ignored, with the reason        | **fails**, with the driver's message |
//! | [`Test::without_gpu`]  | ignored ("a device is present") | runs | ignored |
//! | [`Test::anywhere`]     | runs | runs | runs |
//!
//! So `cargo test` on a machine without a GPU prints `N ignored` for each GPU binary, and a GPU whose context, PTX
//! modules or compute capability fail turns every GPU test red rather than skipping it. With the environment
//! variable `DIFFUSE_REQUIRE_GPU=1` (set by `scripts/gpu-check.sh` on the GPU machine) a missing device fails the
//! GPU tests too, so a run that was meant to use the GPU cannot come back green without having used it.
//!
//! # Writing a GPU test binary
//!
//! In the crate's `Cargo.toml`: `[[test]] name = "gpu_vs_cpu"` with `harness = false`, and `diffuse-gpu-test` under
//! `[dev-dependencies]`. In `tests/gpu_vs_cpu.rs`, tests are plain functions, the GPU ones taking the opened device,
//! and `main` lists them (a function left out of the list is dead code, which clippy refuses; a `#[test]` attribute
//! would silently never run, which `tests/harness_files.rs` of this crate refuses):
//!
//! ```text
//! fn softmax_matches_the_cpu_kernel(gpu: &Gpu) { /* ... */ }
//!
//! fn main() {
//!     diffuse_gpu_test::run(|| Gpu::new(0), diffuse_gpu_test::on_gpu![softmax_matches_the_cpu_kernel]);
//! }
//! ```

use diffuse_cuda_kernels::OpenError;
use libtest_mimic::{Arguments, Completion, Conclusion, Failed, Trial};

/// The environment variable that makes a missing device a failure of every GPU test.
pub const REQUIRE_GPU: &str = "DIFFUSE_REQUIRE_GPU";

/// What a test needs of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// An opened device.
    Gpu,
    /// A machine without a device (it checks the no-driver path).
    NoGpu,
    /// Nothing: it holds wherever it runs.
    Anything,
}

/// One test of a harness binary: its name and its body; `D` is what the binary's `open` gives (e.g. a `Gpu`).
pub struct Test<D: 'static> {
    name: &'static str,
    body: Body<D>,
}

enum Body<D: 'static> {
    OnGpu(fn(&'static D)),
    Plain(Needs, fn()),
}

impl<D: Sync + 'static> Test<D> {
    pub fn on_gpu(name: &'static str, body: fn(&'static D)) -> Test<D> {
        Test {
            name,
            body: Body::OnGpu(body),
        }
    }

    pub fn without_gpu(name: &'static str, body: fn()) -> Test<D> {
        Test {
            name,
            body: Body::Plain(Needs::NoGpu, body),
        }
    }

    pub fn anywhere(name: &'static str, body: fn()) -> Test<D> {
        Test {
            name,
            body: Body::Plain(Needs::Anything, body),
        }
    }

    fn needs(&self) -> Needs {
        match self.body {
            Body::OnGpu(_) => Needs::Gpu,
            Body::Plain(needs, _) => needs,
        }
    }

    fn trial(self, device: Result<&'static D, &OpenError>, require_gpu: bool) -> Trial {
        let status = device.map(|_| ());
        match (plan(self.needs(), status, require_gpu), self.body) {
            (Plan::Run, Body::OnGpu(body)) => {
                let device =
                    device.expect("a GPU test is planned to run only with an opened device");
                Trial::test(self.name, move || {
                    body(device);
                    Ok(())
                })
            }
            (Plan::Run, Body::Plain(_, body)) => Trial::test(self.name, move || {
                body();
                Ok(())
            }),
            (Plan::Ignore(reason), _) => {
                Trial::ignorable_test(self.name, move || Ok(Completion::ignored_with(reason)))
            }
            (Plan::Fail(message), _) => Trial::test(self.name, move || Err(Failed::from(message))),
        }
    }
}

/// `on_gpu![a, b]`: the GPU tests `a` and `b` (functions taking the opened device), named after themselves.
#[macro_export]
macro_rules! on_gpu {
    ($($test:ident),+ $(,)?) => {
        vec![$($crate::Test::on_gpu(stringify!($test), $test)),+]
    };
}

/// `without_gpu![a]`: tests of the no-driver path, ignored where a device is present.
#[macro_export]
macro_rules! without_gpu {
    ($($test:ident),+ $(,)?) => {
        vec![$($crate::Test::without_gpu(stringify!($test), $test)),+]
    };
}

/// `anywhere![a]`: tests that hold with or without a device.
#[macro_export]
macro_rules! anywhere {
    ($($test:ident),+ $(,)?) => {
        vec![$($crate::Test::anywhere(stringify!($test), $test)),+]
    };
}

/// What happens to one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Run,
    /// Reported as ignored, with this reason.
    Ignore(String),
    /// Reported as failed, with this message.
    Fail(String),
}

/// The outcome table of the module docs: what happens to a test that `needs` something, given how opening the
/// device went and whether a missing device is required away.
pub fn plan(needs: Needs, device: Result<(), &OpenError>, require_gpu: bool) -> Plan {
    match (needs, device) {
        (Needs::Anything, _) | (Needs::Gpu, Ok(())) | (Needs::NoGpu, Err(OpenError::NoDevice(_))) => {
            Plan::Run
        }
        (Needs::Gpu, Err(OpenError::NoDevice(why))) if require_gpu => Plan::Fail(format!(
            "{REQUIRE_GPU}=1 but there is no GPU to run on: {why}"
        )),
        (Needs::Gpu, Err(OpenError::NoDevice(why))) => Plan::Ignore(format!("no GPU: {why}")),
        (Needs::Gpu, Err(OpenError::Unusable(why))) => {
            Plan::Fail(format!("the GPU is present but cannot run the kernels: {why}"))
        }
        (Needs::NoGpu, Ok(())) => {
            Plan::Ignore("a GPU is present; this checks the machine without one".into())
        }
        (Needs::NoGpu, Err(OpenError::Unusable(_))) => Plan::Ignore(
            "a GPU is present (though unusable; the GPU tests say why); this checks the machine without one".into(),
        ),
    }
}

/// Runs `tests` as this binary's test harness and exits with libtest's status: opens the device with `open` once
/// (even when every test is filtered out, so that the output always says what was found), then plans each test by
/// [`plan`].
pub fn run<D: Sync + 'static>(
    open: impl FnOnce() -> Result<D, OpenError>,
    tests: Vec<Test<D>>,
) -> ! {
    conclude(open, tests).exit()
}

/// [`run`] without the exit, for a binary that must clean up after its tests: call `.exit()` on the result.
pub fn conclude<D: Sync + 'static>(
    open: impl FnOnce() -> Result<D, OpenError>,
    tests: Vec<Test<D>>,
) -> Conclusion {
    let args = Arguments::from_args();
    let require_gpu = std::env::var_os(REQUIRE_GPU).is_some_and(|v| v == "1");
    // The device lives for the rest of the process; tests on several threads borrow it.
    let opened: Result<&'static D, OpenError> = open().map(|device| &*Box::leak(Box::new(device)));
    let trials = tests
        .into_iter()
        .map(|test| test.trial(opened.as_ref().map(|d| *d), require_gpu))
        .collect();
    libtest_mimic::run(&args, trials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_device() -> OpenError {
        OpenError::NoDevice("no CUDA driver: libcuda.so could not be loaded".into())
    }

    fn unusable() -> OpenError {
        OpenError::Unusable(
            "loading kernels/gemm_bf16.ptx on device 0 (NVIDIA H200): CUDA_ERROR_INVALID_PTX"
                .into(),
        )
    }

    #[test]
    fn a_gpu_test_without_a_device_is_ignored_with_the_reason() {
        assert_eq!(
            plan(Needs::Gpu, Err(&no_device()), false),
            Plan::Ignore("no GPU: no CUDA driver: libcuda.so could not be loaded".into())
        );
    }

    #[test]
    fn a_gpu_test_on_an_unusable_device_fails_with_the_drivers_message() {
        for require_gpu in [false, true] {
            let Plan::Fail(message) = plan(Needs::Gpu, Err(&unusable()), require_gpu) else {
                panic!("an unusable device must fail the GPU tests");
            };
            assert!(
                message.contains("CUDA_ERROR_INVALID_PTX") && message.contains("gemm_bf16.ptx")
            );
        }
    }

    #[test]
    fn requiring_the_gpu_turns_a_missing_device_into_a_failure() {
        let Plan::Fail(message) = plan(Needs::Gpu, Err(&no_device()), true) else {
            panic!("DIFFUSE_REQUIRE_GPU=1 must not let a GPU test be ignored");
        };
        assert!(message.starts_with("DIFFUSE_REQUIRE_GPU=1") && message.contains("no CUDA driver"));
    }

    #[test]
    fn gpu_tests_run_on_an_opened_device_whatever_is_required() {
        assert_eq!(plan(Needs::Gpu, Ok(()), false), Plan::Run);
        assert_eq!(plan(Needs::Gpu, Ok(()), true), Plan::Run);
    }

    #[test]
    fn no_gpu_tests_run_only_where_there_is_no_device() {
        assert_eq!(plan(Needs::NoGpu, Err(&no_device()), true), Plan::Run);
        assert!(matches!(plan(Needs::NoGpu, Ok(()), false), Plan::Ignore(_)));
        assert!(matches!(
            plan(Needs::NoGpu, Err(&unusable()), false),
            Plan::Ignore(_)
        ));
    }

    #[test]
    fn tests_that_need_nothing_always_run() {
        for device in [Ok(()), Err(&no_device()), Err(&unusable())] {
            assert_eq!(plan(Needs::Anything, device, true), Plan::Run);
        }
    }
}
