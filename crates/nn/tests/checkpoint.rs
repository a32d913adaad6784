//! Safetensors checkpoints: a round trip restores every parameter in place, and a file that does not fit the model
//! is refused with the offending tensor named, before anything is overwritten.

use diffuse_nn::{Linear, ParamStore};
use diffuse_tensor::{DType, Device};
use safetensors::tensor::{Dtype, TensorView};
use std::path::PathBuf;

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "diffuse-nn-{}-{name}.safetensors",
        std::process::id()
    ))
}

fn model(seed: u64, out: usize) -> (ParamStore, Linear) {
    let store = ParamStore::new(seed, Device::Cpu);
    let lin = Linear::new(&store.root().sub("proj"), 3, out, true).unwrap();
    (store, lin)
}

#[test]
fn save_then_load_restores_parameters_in_place() {
    let path = temp_file("roundtrip");
    let (a, _) = model(1, 2);
    a.save(&path).unwrap();
    let (b, lin_b) = model(2, 2);
    assert_ne!(
        lin_b.weight.tensor().to_vec().unwrap(),
        a.get("proj.weight").unwrap().tensor().to_vec().unwrap()
    );
    b.load(&path).unwrap();
    // The layer's own handle sees the loaded values: the load wrote into the shared buffer.
    assert_eq!(
        lin_b.weight.tensor().to_vec().unwrap(),
        a.get("proj.weight").unwrap().tensor().to_vec().unwrap()
    );
    assert_eq!(
        lin_b.bias.unwrap().tensor().to_vec().unwrap(),
        a.get("proj.bias").unwrap().tensor().to_vec().unwrap()
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn load_refuses_a_mis_shaped_tensor_naming_it_and_changes_nothing() {
    let path = temp_file("shape");
    model(1, 2).0.save(&path).unwrap();
    let (b, lin) = model(2, 4);
    let before = lin.weight.tensor().to_vec().unwrap();
    let msg = b.load(&path).unwrap_err().to_string();
    assert!(
        msg.contains("'proj.bias'") && msg.contains("[2]") && msg.contains("[4]"),
        "{msg}"
    );
    assert_eq!(lin.weight.tensor().to_vec().unwrap(), before);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn load_refuses_missing_and_extra_tensors_naming_them() {
    let path = temp_file("names");
    let (a, _) = model(1, 2);
    a.save(&path).unwrap();

    let (b, _) = model(1, 2);
    Linear::new(&b.root().sub("head"), 2, 2, false).unwrap();
    let msg = b.load(&path).unwrap_err().to_string();
    assert!(msg.contains("no tensor 'head.weight'"), "{msg}");

    let c = ParamStore::new(1, Device::Cpu);
    c.root()
        .sub("proj")
        .param("weight", &[2, 3], diffuse_nn::Init::Constant(0.0))
        .unwrap();
    let msg = c.load(&path).unwrap_err().to_string();
    assert!(
        msg.contains("does not") && msg.contains("proj.bias"),
        "{msg}"
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn load_reports_an_unreadable_file_with_its_path() {
    let (s, _) = model(1, 2);
    let msg = s
        .load("/nonexistent/dir/x.safetensors")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("/nonexistent/dir/x.safetensors"), "{msg}");
}

#[test]
fn load_refuses_a_truncated_file_and_changes_nothing() {
    let path = temp_file("truncated");
    model(1, 2).0.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (b, lin) = model(2, 2);
    let before = lin.weight.tensor().to_vec().unwrap();
    // Cut inside the header and inside the data: both are refused, naming the file.
    for cut in [4, 20, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let msg = b.load(&path).unwrap_err().to_string();
        assert!(
            msg.contains(&path.display().to_string()),
            "cut {cut}: {msg}"
        );
        assert_eq!(lin.weight.tensor().to_vec().unwrap(), before);
    }
    std::fs::remove_file(path).unwrap();
}

#[test]
fn load_refuses_a_tensor_of_another_dtype_naming_it() {
    let (store, _) = model(1, 2);
    let weight = vec![0u8; 2 * 3 * 8];
    let bias = vec![0u8; 2 * 4];
    let views = vec![
        (
            "proj.weight",
            TensorView::new(Dtype::F64, vec![2, 3], &weight).unwrap(),
        ),
        (
            "proj.bias",
            TensorView::new(Dtype::F32, vec![2], &bias).unwrap(),
        ),
    ];
    let bytes = safetensors::serialize(views, &None).unwrap();
    let msg = store
        .load_bytes(&bytes, std::path::Path::new("double.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("'proj.weight'") && msg.contains("F64"),
        "{msg}"
    );
}

#[test]
fn half_precision_checkpoints_round_trip_within_the_dtype_epsilon() {
    // Saving rounds each f32 to the nearest value of the format, loading widens exactly, so the loaded value is
    // bit for bit `from_f32(x).to_f32()`, and |loaded − x| ≤ u·|x| + s/2 with u the unit roundoff (f16: 2⁻¹¹,
    // bf16: 2⁻⁸) and s the smallest subnormal spacing (f16: 2⁻²⁴; bf16 shares f32's range, so none here).
    let (store, lin) = model(5, 4);
    let original: Vec<Vec<f32>> = store
        .params()
        .iter()
        .map(|(_, v)| v.tensor().to_vec().unwrap())
        .collect();
    type Round = fn(f32) -> f32;
    let cases: [(DType, Dtype, Round, f32, f32); 3] = [
        (
            DType::F16,
            Dtype::F16,
            |x| half::f16::from_f32(x).to_f32(),
            2f32.powi(-11),
            2f32.powi(-25),
        ),
        (
            DType::BF16,
            Dtype::BF16,
            |x| half::bf16::from_f32(x).to_f32(),
            2f32.powi(-8),
            0.0,
        ),
        (DType::F32, Dtype::F32, |x| x, 0.0, 0.0),
    ];
    for (dtype, file_dtype, round, u, half_spacing) in cases {
        let path = temp_file(&format!("round-trip-{dtype}"));
        store.save_as(&path, dtype).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, _) in store.params() {
            assert_eq!(file.tensor(&name).unwrap().dtype(), file_dtype, "{name}");
        }
        let (other, _) = model(6, 4);
        other.load(&path).unwrap();
        for ((name, v), x) in other.params().iter().zip(&original) {
            for (&got, &x) in v.tensor().to_vec().unwrap().iter().zip(x) {
                assert_eq!(got.to_bits(), round(x).to_bits(), "{dtype} {name}");
                assert!(
                    (got - x).abs() <= u * x.abs() + half_spacing,
                    "{dtype} {name}: {got} vs {x}"
                );
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
    // A value f16 cannot hold (beyond ±65504) saves as infinity, as PyTorch's .half() does; bf16 keeps it.
    lin.bias
        .as_ref()
        .unwrap()
        .tensor()
        .assign(
            &diffuse_tensor::Tensor::from_slice(&[1e5, -3.0, 0.5, 1e-6], &[4], Device::Cpu)
                .unwrap(),
        )
        .unwrap();
    let path = temp_file("f16-overflow");
    store.save_as(&path, DType::F16).unwrap();
    let (other, other_lin) = model(6, 4);
    other.load(&path).unwrap();
    let bias = other_lin.bias.as_ref().unwrap().tensor().to_vec().unwrap();
    assert_eq!(bias[0], f32::INFINITY);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn half_precision_files_that_do_not_fit_are_refused_naming_the_tensor() {
    let (store, _) = model(1, 2);
    let path = temp_file("bf16-mismatch");
    store.save_as(&path, DType::BF16).unwrap();
    let (wider, _) = model(1, 3);
    let msg = wider.load(&path).unwrap_err().to_string();
    assert!(msg.contains("'proj.bias'") && msg.contains("[3]"), "{msg}");
    let extra = ParamStore::new(0, Device::Cpu);
    Linear::new(&extra.root().sub("proj"), 3, 2, true).unwrap();
    Linear::new(&extra.root().sub("head"), 2, 1, false).unwrap();
    let msg = extra.load(&path).unwrap_err().to_string();
    assert!(msg.contains("'head.weight'"), "{msg}");
    let fewer = ParamStore::new(0, Device::Cpu);
    Linear::new(&fewer.root().sub("proj"), 3, 2, false).unwrap();
    let msg = fewer.load(&path).unwrap_err().to_string();
    assert!(msg.contains("proj.bias"), "{msg}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn save_into_a_missing_folder_is_an_error_naming_the_path() {
    let path = std::env::temp_dir().join(format!(
        "diffuse-nn-{}-no-such-folder/model.safetensors",
        std::process::id()
    ));
    let msg = model(1, 2).0.save(&path).unwrap_err().to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(!path.exists());
}

#[test]
fn save_onto_a_folder_is_an_error_and_leaves_no_temporary_file() {
    let dir = temp_file("is-a-folder");
    std::fs::create_dir_all(dir.join("inside")).unwrap();
    let msg = model(1, 2).0.save(&dir).unwrap_err().to_string();
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    let parent = dir.parent().unwrap();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let leftovers: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&format!(".{name}")) && n.ends_with(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Saving is atomic: the new file is written beside the old one and renamed over it, so a save that fails part-way
/// leaves the previous checkpoint whole. The failure is forced by occupying the temporary name (`.NAME.PID.tmp`) with
/// a folder, which makes creating the temporary file fail whatever the user's permissions.
#[test]
fn a_failed_save_leaves_the_previous_checkpoint_intact() {
    let path = temp_file("atomic");
    let (old, _) = model(1, 2);
    old.save(&path).unwrap();
    let saved = std::fs::read(&path).unwrap();
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    std::fs::create_dir(&tmp).unwrap();
    let (new, _) = model(2, 2);
    assert!(new.save(&path).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), saved);
    std::fs::remove_dir(&tmp).unwrap();
    // With the name free again the save goes through and replaces the file.
    new.save(&path).unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), saved);
    assert!(!tmp.exists());
    std::fs::remove_file(path).unwrap();
}
