//! Safetensors checkpoints: a round trip restores every parameter in place, and a file that does not fit the model
//! is refused with the offending tensor named, before anything is overwritten.

use diffuse_nn::{Linear, ParamStore};
use diffuse_tensor::Device;
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
