//! `diffuse train --precision`: bf16 is a CUDA setting, refused on the CPU rather than ignored; f16 is refused by
//! name. (That bf16 runs and trains on a GPU is checked by `scripts/gpu-check.sh`'s train part.)

mod common;

use common::{diffuse, temp_dir};

fn refused(args: &[&str]) -> String {
    let out = temp_dir("precision");
    let out = out.to_str().unwrap();
    let mut all = vec!["train", "--steps", "1", "--out", out];
    all.extend_from_slice(args);
    let run = diffuse(&all);
    assert!(!run.status.success(), "{args:?} was accepted");
    String::from_utf8_lossy(&run.stderr).into_owned()
}

#[test]
fn bf16_on_the_cpu_is_refused_with_the_fix() {
    let stderr = refused(&["--device", "cpu", "--precision", "bf16"]);
    assert!(
        stderr.contains("--precision bf16 needs a CUDA device")
            && stderr.contains("--precision f32"),
        "{stderr}"
    );
}

#[test]
fn f16_is_refused_by_name_with_the_alternatives() {
    let stderr = refused(&["--device", "cpu", "--precision", "f16"]);
    assert!(
        stderr.contains("no f16 tensor-core kernels") && stderr.contains("use bf16"),
        "{stderr}"
    );
}
