//! Parameter names, initialisation, and layer forwards against direct tensor computations.

use diffuse_autograd::Var;
use diffuse_nn::{Conv2d, Embedding, GroupNorm, LayerNorm, Linear, Module, ParamStore};
use diffuse_tensor::{Conv2dParams, Device, Tensor};

fn store() -> ParamStore {
    ParamStore::new(99, Device::Cpu)
}

#[test]
fn parameters_are_named_hierarchically_like_diffusers() {
    let s = store();
    let block = s.root().sub("down").sub(0);
    Conv2d::new(
        &block.sub("conv1"),
        4,
        8,
        (3, 3),
        Conv2dParams::default(),
        true,
    )
    .unwrap();
    GroupNorm::new(&block.sub("norm1"), 2, 8, 1e-5).unwrap();
    let names: Vec<String> = s.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "down.0.conv1.bias",
            "down.0.conv1.weight",
            "down.0.norm1.bias",
            "down.0.norm1.weight"
        ]
    );
}

#[test]
fn registering_a_name_twice_is_an_error_naming_it() {
    let s = store();
    Linear::new(&s.root().sub("proj"), 2, 3, true).unwrap();
    let msg = Linear::new(&s.root().sub("proj"), 2, 3, true)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("proj.weight"), "{msg}");
}

#[test]
fn linear_and_conv_weights_follow_pytorch_kaiming_uniform_bounds() {
    let s = store();
    let lin = Linear::new(&s.root().sub("lin"), 64, 32, true).unwrap();
    let conv = Conv2d::new(
        &s.root().sub("conv"),
        8,
        16,
        (3, 3),
        Conv2dParams {
            groups: 2,
            ..Default::default()
        },
        true,
    )
    .unwrap();
    for (var, fan_in) in [
        (&lin.weight, 64.0f32),
        (lin.bias.as_ref().unwrap(), 64.0),
        (&conv.weight, 36.0),
        (conv.bias.as_ref().unwrap(), 36.0),
    ] {
        let bound = 1.0 / fan_in.sqrt();
        let v = var.tensor().to_vec().unwrap();
        assert!(v.iter().all(|x| x.abs() <= bound), "values exceed ±{bound}");
        // U(−b, b) has variance b²/3; with ≥ 16 samples the spread is clearly non-trivial.
        let var_hat = v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32;
        assert!(
            var_hat > bound * bound / 3.0 * 0.3,
            "variance {var_hat} too small for bound {bound}"
        );
    }
}

#[test]
fn equal_seeds_give_equal_parameters_and_different_layers_differ() {
    let (a, b) = (store(), store());
    let la = Linear::new(&a.root().sub("l"), 3, 4, false).unwrap();
    let lb = Linear::new(&b.root().sub("l"), 3, 4, false).unwrap();
    let lc = Linear::new(&b.root().sub("m"), 3, 4, false).unwrap();
    assert_eq!(
        la.weight.tensor().to_vec().unwrap(),
        lb.weight.tensor().to_vec().unwrap()
    );
    assert_ne!(
        lb.weight.tensor().to_vec().unwrap(),
        lc.weight.tensor().to_vec().unwrap()
    );
}

#[test]
fn linear_forward_is_x_times_w_transposed_plus_b() {
    let s = store();
    let lin = Linear::new(&s.root(), 3, 2, true).unwrap();
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, -1.0, 0.5, 0.0], &[2, 3], Device::Cpu).unwrap();
    let y = lin
        .forward(&Var::constant(x.clone()))
        .unwrap()
        .tensor()
        .to_vec()
        .unwrap();
    let (w, b) = (
        lin.weight.tensor().to_vec().unwrap(),
        lin.bias.unwrap().tensor().to_vec().unwrap(),
    );
    let xv = x.to_vec().unwrap();
    for i in 0..2 {
        for o in 0..2 {
            let want: f32 = (0..3).map(|k| xv[i * 3 + k] * w[o * 3 + k]).sum::<f32>() + b[o];
            assert!((y[i * 2 + o] - want).abs() < 1e-6);
        }
    }
}

#[test]
fn norm_and_embedding_layers_start_as_identity_affine_and_lookup() {
    let s = store();
    let x = Tensor::randn(&[2, 4, 3], 5, 0, Device::Cpu).unwrap();
    let gn = GroupNorm::new(&s.root().sub("gn"), 2, 4, 1e-5).unwrap();
    let ones = Tensor::ones(&[4], x.dtype(), Device::Cpu).unwrap();
    let zeros = Tensor::zeros(&[4], x.dtype(), Device::Cpu).unwrap();
    let (want, _, _) = x.group_norm(2, &ones, &zeros, 1e-5).unwrap();
    assert_eq!(
        gn.forward(&Var::constant(x.clone()))
            .unwrap()
            .tensor()
            .to_vec()
            .unwrap(),
        want.to_vec().unwrap()
    );
    let ln = LayerNorm::new(&s.root().sub("ln"), 3, 1e-5).unwrap();
    let y = ln.forward(&Var::constant(x.clone())).unwrap();
    assert_eq!(y.shape(), &[2, 4, 3]);
    let emb = Embedding::new(&s.root().sub("emb"), 5, 3).unwrap();
    let rows = emb.forward(&[4, 0, 4]).unwrap().tensor().to_vec().unwrap();
    let table = emb.weight.tensor().to_vec().unwrap();
    assert_eq!(&rows[0..3], &table[12..15]);
    assert_eq!(&rows[3..6], &table[0..3]);
    assert_eq!(&rows[6..9], &table[12..15]);
}
