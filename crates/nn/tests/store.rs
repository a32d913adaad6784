//! Freezing parameters by name prefix, and moving a store to a device.

use diffuse_autograd::{Gradients, Var};
use diffuse_nn::{AdamW, Linear, Module, ParamStore, Sgd, SgdConfig};
use diffuse_tensor::{Device, Tensor};

/// Three linear layers; `enc` and `enc2` share a leading string but not a name component.
fn model(store: &ParamStore) -> [Linear; 3] {
    let root = store.root();
    [
        Linear::new(&root.sub("enc"), 3, 4, true).unwrap(),
        Linear::new(&root.sub("enc2"), 4, 4, true).unwrap(),
        Linear::new(&root.sub("dec"), 4, 2, true).unwrap(),
    ]
}

fn loss_grads(layers: &[Linear; 3]) -> Gradients {
    let x = Var::constant(Tensor::randn(&[5, 3], 7, 0, Device::Cpu).unwrap());
    let mut h = x;
    for layer in layers {
        h = layer.forward(&h).unwrap().tanh().unwrap();
    }
    h.square().unwrap().sum_all().unwrap().backward().unwrap()
}

fn snapshot(store: &ParamStore) -> Vec<(String, Vec<f32>)> {
    store
        .params()
        .into_iter()
        .map(|(n, v)| (n, v.tensor().to_vec().unwrap()))
        .collect()
}

#[test]
fn frozen_parameters_get_no_gradient_and_no_update() {
    let store = ParamStore::new(1, Device::Cpu);
    let layers = model(&store);
    // `enc` covers enc.weight and enc.bias, not enc2.*.
    assert_eq!(store.freeze("enc").unwrap(), 2);
    assert_eq!(store.trainable().len(), 4);
    let grads = loss_grads(&layers);
    for (name, var) in store.params() {
        assert_eq!(
            grads.get(&var).is_some(),
            !name.starts_with("enc."),
            "{name}"
        );
    }
    let before = snapshot(&store);
    let mut adamw = AdamW::for_store(&store, AdamW::default_config(0.1)).unwrap();
    adamw.step(&grads).unwrap();
    let config = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.1,
    };
    let mut sgd = Sgd::for_store(&store, config).unwrap();
    sgd.step(&grads).unwrap();
    for ((name, old), (_, new)) in before.iter().zip(snapshot(&store)) {
        assert_eq!(old == &new, name.starts_with("enc."), "{name}");
    }

    // Gradients taken before freezing do not move a parameter frozen since.
    store.unfreeze("").unwrap();
    let grads = loss_grads(&layers);
    store.freeze("dec").unwrap();
    let before = snapshot(&store);
    adamw.step(&grads).unwrap();
    sgd.step(&grads).unwrap();
    for ((name, old), (_, new)) in before.iter().zip(snapshot(&store)) {
        assert_eq!(old == &new, name.starts_with("dec."), "{name}");
    }
}

#[test]
fn freezing_an_unknown_prefix_is_an_error_naming_it() {
    let store = ParamStore::new(1, Device::Cpu);
    model(&store);
    let err = store.freeze("en").unwrap_err().to_string();
    assert!(err.contains("'en'"), "{err}");
    assert!(store.unfreeze("decoder").is_err());
}

#[test]
fn a_store_moved_to_the_cpu_is_an_independent_copy_that_a_rebuilt_model_adopts() {
    let store = ParamStore::new(4, Device::Cpu);
    let layers = model(&store);
    store.freeze("dec").unwrap();
    let moved = store.to_device(Device::Cpu).unwrap();
    assert_eq!(moved.device(), Device::Cpu);
    let rebuilt = model(&moved);
    assert_eq!(snapshot(&moved), snapshot(&store));
    assert_eq!(
        loss_grads(&rebuilt).len(),
        loss_grads(&layers).len(),
        "frozen state carried"
    );
    for (a, b) in layers.iter().zip(&rebuilt) {
        assert!(!a.weight.tensor().same_storage(b.weight.tensor()));
    }
    // Writing to the original leaves the copy alone.
    let w = &layers[0].weight;
    w.tensor()
        .assign(&w.tensor().mul_scalar(2.0).unwrap())
        .unwrap();
    assert_ne!(snapshot(&moved), snapshot(&store));
    // Each name is adopted once; a second registration is the usual error, a different shape names both.
    let err = Linear::new(&moved.root().sub("enc"), 3, 4, true)
        .err()
        .unwrap();
    assert!(err.to_string().contains("already registered"), "{err}");
    let other = store.to_device(Device::Cpu).unwrap();
    let err = Linear::new(&other.root().sub("enc"), 3, 5, true)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("enc.weight") && err.to_string().contains("[4, 3]"),
        "{err}"
    );
}

#[test]
fn moving_to_cuda_without_a_driver_is_an_error_not_a_panic() {
    let store = ParamStore::new(4, Device::Cpu);
    model(&store);
    match store.to_device(Device::Cuda(0)) {
        // A machine with a GPU (and a build whose tensor crate drives it): every parameter lands there.
        Ok(moved) => {
            for (_, v) in moved.params() {
                assert_eq!(v.tensor().device(), Device::Cuda(0));
            }
        }
        Err(e) => assert!(e.to_string().contains("cuda"), "{e}"),
    }
}
