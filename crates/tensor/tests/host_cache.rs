//! The host buffer cache: freed buffers are reused, the limit holds, and no CPU operation reads an output element it
//! did not write (with poisoning on, a reused buffer is all NaN, so an unwritten element would show).
//!
//! The cache is global to the process, so the tests of this file take one lock and run one at a time.

use diffuse_cpu_kernels::noise::StepCoefficients;
use diffuse_tensor::backend::host_cache::{self, MIN_CACHED_LEN};
use diffuse_tensor::{Conv2dParams, DType, Device, Result, Tensor};
use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, seed, 0, Device::Cpu).unwrap()
}

/// Every CPU operation of the tensor crate on inputs large enough for the cache, returning all outputs' values.
fn every_operation() -> Result<Vec<Vec<f32>>> {
    let mut outputs = Vec::new();
    let mut keep = |t: Tensor| -> Result<()> {
        outputs.push(t.to_vec()?);
        Ok(())
    };
    // Element-wise, strided copies, broadcasting, selection, reductions.
    let a = randn(&[64, 33, 17], 1);
    let b = randn(&[64, 1, 17], 2);
    keep(a.silu()?)?;
    keep(a.add(&b)?)?;
    keep(a.transpose(0, 2)?.contiguous()?)?;
    keep(
        a.clamp(0.0, 1.0)?
            .where_select(&a, &b.broadcast_to(a.shape())?)?,
    )?;
    keep(a.to_dtype(DType::BF16)?.to_dtype(DType::F32)?)?;
    let wide = randn(&[40, 1000], 3);
    keep(wide.sum(&[0], false)?)?;
    keep(wide.transpose(0, 1)?.max(&[1], false)?)?;
    keep(wide.argmax(0, false)?)?;
    keep(wide.softmax(1)?)?;
    keep(wide.log_softmax(1)?)?;
    keep(wide.softmax(1)?.softmax_backward(&wide, 1)?)?;
    keep(wide.log_softmax(1)?.log_softmax_backward(&wide, 1)?)?;
    keep(Tensor::full(
        &[MIN_CACHED_LEN],
        2.5,
        DType::F32,
        Device::Cpu,
    )?)?;
    keep(Tensor::rand(&[MIN_CACHED_LEN], 4, 0, Device::Cpu)?)?;

    // Indexing.
    keep(Tensor::concat(&[&a, &a.mul_scalar(2.0)?], 1)?)?;
    let rows: Vec<usize> = (0..200).map(|i| (i * 7) % 40).collect();
    keep(wide.index_select(0, &rows)?)?;
    keep(
        wide.index_select(0, &rows)?
            .index_select_backward(0, 40, &rows)?,
    )?;
    let index: Vec<usize> = (0..40 * 500).map(|i| (i * 13) % 1000).collect();
    keep(wide.gather(1, &[40, 500], &index)?)?;
    keep(
        wide.gather(1, &[40, 500], &index)?
            .gather_backward(1, &[40, 1000], &index)?,
    )?;
    let image = randn(&[8, 16, 14, 14], 5);
    keep(image.upsample_nearest2x()?)?;
    keep(image.upsample_nearest2x()?.upsample_nearest2x_backward()?)?;

    // Matrix products, including an empty reduction (k = 0), which must still write zeros.
    keep(randn(&[4, 150, 70], 6).matmul(&randn(&[4, 70, 90], 7))?)?;
    keep(
        Tensor::zeros(&[200, 0], DType::F32, Device::Cpu)?.matmul(&Tensor::zeros(
            &[0, 100],
            DType::F32,
            Device::Cpu,
        )?)?,
    )?;

    // Convolution, both gradients, with and without bias.
    let p = Conv2dParams {
        padding: (1, 1),
        ..Conv2dParams::default()
    };
    let (x, w, bias) = (
        randn(&[4, 8, 20, 20], 8),
        randn(&[16, 8, 3, 3], 9),
        randn(&[16], 10),
    );
    let y = x.conv2d(&w, Some(&bias), &p)?;
    keep(x.conv2d(&w, None, &p)?)?;
    keep(y.conv2d_backward_input(&w, x.shape(), &p)?)?;
    let (gw, gb) = x.conv2d_backward_weight(&y, w.shape(), &p, true)?;
    keep(gw)?;
    keep(gb.expect("asked for the bias gradient"))?;
    keep(y)?;

    // Normalisation and attention, forward and backward.
    let (gamma, beta) = (randn(&[16], 11), randn(&[16], 12));
    let (gn, mean, rstd) = image.group_norm(4, &gamma, &beta, 1e-5)?;
    let (gx, gg, gbeta) = gn.group_norm_backward(&image, &gamma, (&mean, &rstd), 4)?;
    for t in [gn, mean, rstd, gx, gg, gbeta] {
        keep(t)?;
    }
    let (gn, mean, rstd) = image.group_norm_silu(4, &gamma, &beta, 1e-5)?;
    let (gx, gg, gbeta) =
        gn.group_norm_silu_backward(&image, (&gamma, &beta), (&mean, &rstd), 4)?;
    for t in [gn, mean, rstd, gx, gg, gbeta] {
        keep(t)?;
    }
    let rows = randn(&[1200, 16], 13);
    let (ln, mean, rstd) = rows.layer_norm(&gamma, &beta, 1e-5)?;
    let (gx, gg, gbeta) = ln.layer_norm_backward(&rows, &gamma, (&mean, &rstd))?;
    for t in [ln, mean, rstd, gx, gg, gbeta] {
        keep(t)?;
    }
    let (q, k, v) = (
        randn(&[8, 100, 24], 14),
        randn(&[8, 90, 24], 15),
        randn(&[8, 90, 24], 16),
    );
    let (out, lse) = q.attention(&k, &v, 1, 0.2)?;
    let (dq, dk, dv) = out.attention_backward((&q, &k, &v), (&out, &lse), 1, 0.2)?;
    for t in [out, lse, dq, dk, dv] {
        keep(t)?;
    }

    // The fused noise kernels.
    let x0 = randn(&[32, 1, 28, 28], 17);
    let sqrt_ab: Vec<f32> = (0..32).map(|i| 0.1 + 0.02 * i as f32).collect();
    let sqrt_1mab: Vec<f32> = sqrt_ab.iter().map(|s| (1.0 - s * s).sqrt()).collect();
    let (x_t, eps) = x0.q_sample(&sqrt_ab, &sqrt_1mab, 18, 0)?;
    let coef = vec![
        StepCoefficients {
            x0_from_xt: 1.1,
            x0_from_model: -0.4,
            mean_from_x0: 0.3,
            mean_from_xt: 0.6,
            sigma: 0.1
        };
        32
    ];
    let (prev, x0_hat) = x_t.sampler_step(&eps, &coef, Some(1.0), 19, 0)?;
    for t in [x_t, eps, prev, x0_hat] {
        keep(t)?;
    }
    Ok(outputs)
}

#[test]
fn no_operation_reads_an_output_element_it_did_not_write() {
    let _lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let first = every_operation().unwrap();
    // Every output of the first run is now cached; the second run reuses them, filled with NaN.
    let reused_from = host_cache::cached_bytes();
    host_cache::set_poison(true);
    let second = every_operation().unwrap();
    host_cache::set_poison(false);
    assert!(reused_from > 0, "the first run left nothing in the cache");
    assert_eq!(first.len(), second.len());
    for (i, (a, b)) in first.iter().zip(&second).enumerate() {
        // These inputs give finite outputs everywhere, so a NaN can only be poison that was never overwritten.
        assert!(
            b.iter().all(|x| !x.is_nan()),
            "output {i} holds NaN from a reused buffer"
        );
        let same = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same,
            "output {i} differs when its buffer is a reused, NaN-filled one"
        );
    }
}

#[test]
fn freed_buffers_are_reused_and_the_limit_holds() {
    let _lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    host_cache::release();
    let len = MIN_CACHED_LEN * 3 + 5;
    let bytes = len * 4;

    let t = randn(&[len], 1);
    drop(t);
    assert_eq!(
        host_cache::cached_bytes(),
        bytes,
        "a freed tensor's buffer is cached"
    );
    let u = randn(&[len], 2);
    assert_eq!(
        host_cache::cached_bytes(),
        0,
        "an allocation of the same length takes it back"
    );

    // Small buffers are left to the system allocator.
    drop(randn(&[MIN_CACHED_LEN - 1], 3));
    assert_eq!(host_cache::cached_bytes(), 0);

    // At a limit of two buffers, a third freed buffer pushes out the oldest.
    let old_limit = host_cache::limit();
    host_cache::set_limit(2 * bytes);
    let (v, w) = (randn(&[len], 4), randn(&[len], 5));
    drop(u);
    drop(v);
    drop(w);
    assert_eq!(host_cache::cached_bytes(), 2 * bytes);
    host_cache::set_limit(bytes);
    assert_eq!(
        host_cache::cached_bytes(),
        bytes,
        "lowering the limit frees the oldest buffers"
    );
    host_cache::set_limit(0);
    assert_eq!(
        host_cache::cached_bytes(),
        0,
        "a limit of 0 turns the cache off"
    );
    drop(randn(&[len], 6));
    assert_eq!(host_cache::cached_bytes(), 0);

    host_cache::set_limit(old_limit);
    drop(randn(&[len], 7));
    assert_eq!(host_cache::cached_bytes(), bytes);
    host_cache::release();
    assert_eq!(host_cache::cached_bytes(), 0, "release empties the cache");
}
