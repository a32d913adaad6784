//! Arbitrary bytes as a safetensors checkpoint for a fixed small model. A load either fails and leaves every
//! parameter untouched, or succeeds and puts exactly the file's values in place.
#![no_main]

use diffuse_nn::{Init, ParamStore};
use diffuse_tensor::Device;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// Parameter names and shapes of the model: a matrix, a vector, a scalar and an empty tensor.
const PARAMS: [(&str, &[usize]); 4] = [
    ("block.weight", &[2, 3]),
    ("block.bias", &[3]),
    ("scale", &[]),
    ("unused", &[0, 4]),
];

fuzz_target!(|data: &[u8]| {
    let store = ParamStore::new(0, Device::Cpu);
    for (name, shape) in PARAMS {
        store
            .root()
            .param(name, shape, Init::Constant(7.0))
            .expect("the model is valid");
    }
    let before = values(&store);
    match store.load_bytes(data, Path::new("fuzz.safetensors")) {
        Err(_) => assert_eq!(values(&store), before, "a failed load changed the model"),
        Ok(()) => {
            for (name, shape) in PARAMS {
                assert_eq!(store.get(name).expect("created above").shape(), shape);
            }
        }
    }
});

fn values(store: &ParamStore) -> Vec<Vec<u32>> {
    store
        .params()
        .iter()
        .map(|(_, var)| {
            let data = var.tensor().to_vec().expect("f32 on the CPU");
            data.iter().map(|x| x.to_bits()).collect()
        })
        .collect()
}
