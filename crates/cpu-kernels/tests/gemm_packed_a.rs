//! `PackedA` + `sgemm_batched_packed` against the GEMM that packs A as it goes: the panels are the same, so every
//! product must agree bit for bit, for each kernel this CPU runs, both loop orders and any A layout.

mod common;

use common::{random_vec, same_bits};
use diffuse_cpu_kernels::gemm::{
    sgemm_batched_packed, sgemm_batched_using, MatMut, MatRef, MicroKernel, PackedA, PanelLayout,
};

fn supported_kernels() -> impl Iterator<Item = MicroKernel> {
    MicroKernel::ALL.into_iter().filter(|k| k.is_supported())
}

#[test]
fn a_packed_once_gives_the_bits_of_a_packed_per_call() {
    // (batch, m, n, k): one element; rows and columns off every tile (6/12 × 16/32); the blocked order (m > 256)
    // with two k-blocks (KC = 256); a Winograd-like batch of 16.
    for (batch, m, n, k) in [
        (1, 1, 1, 1),
        (3, 13, 40, 7),
        (2, 257, 33, 300),
        (16, 64, 130, 64),
    ] {
        for (column_major, broadcast) in [(false, false), (true, false), (true, true)] {
            let a_len = if broadcast { m * k } else { batch * m * k };
            let a_values = random_vec(a_len, 31);
            let a_batch_stride = if broadcast { 0 } else { m * k };
            let a = if column_major {
                MatRef {
                    data: &a_values,
                    row_stride: 1,
                    col_stride: m,
                }
            } else {
                MatRef::row_major(&a_values, k)
            };
            let b = random_vec(batch * k * n, 32);
            let c0 = random_vec(batch * m * n, 33);
            for kernel in supported_kernels() {
                let mut want = c0.clone();
                sgemm_batched_using(
                    kernel,
                    batch,
                    m,
                    n,
                    k,
                    0.5,
                    a,
                    a_batch_stride,
                    MatRef::row_major(&b, n),
                    k * n,
                    0.75,
                    MatMut::row_major(&mut want, n),
                    m * n,
                )
                .unwrap();
                let mut panels = vec![f32::NAN; PackedA::len(kernel, batch, m, k) + 5];
                let packed =
                    PackedA::pack(kernel, (batch, m, k), a, a_batch_stride, &mut panels).unwrap();
                let mut got = c0.clone();
                sgemm_batched_packed(
                    &packed,
                    n,
                    0.5,
                    MatRef::row_major(&b, n),
                    k * n,
                    0.75,
                    MatMut::row_major(&mut got, n),
                    m * n,
                )
                .unwrap();
                assert!(
                    same_bits(&want, &got),
                    "{kernel} kernel, batch {batch}, {m}×{n}×{k}, column-major {column_major}, broadcast \
                     {broadcast}: the product from A packed once differs"
                );
            }
        }
    }
}

#[test]
fn packing_refuses_a_short_output_and_an_a_outside_its_slice() {
    let kernel = MicroKernel::detect();
    let a = random_vec(4 * 5, 1);
    let mut short = vec![0.0; PackedA::len(kernel, 1, 4, 5) - 1];
    let message = PackedA::pack(kernel, (1, 4, 5), MatRef::row_major(&a, 5), 0, &mut short)
        .err()
        .expect("a short output is refused")
        .to_string();
    assert!(message.contains("need"), "{message}");
    let mut out = vec![0.0; PackedA::len(kernel, 2, 4, 5)];
    let message = PackedA::pack(kernel, (2, 4, 5), MatRef::row_major(&a, 5), 20, &mut out)
        .err()
        .expect("a second matrix past the end of A is refused")
        .to_string();
    assert!(message.contains("A"), "{message}");
}

#[test]
fn panels_written_by_their_layout_are_the_packed_panels() {
    // A caller that writes A straight into the panels (`PanelLayout::index`, zero padding rows) and wraps them with
    // `from_panels` must hold exactly what `pack` writes: rows off every tile, one and two k-blocks (KC = 256).
    for (batch, m, k) in [(1, 1, 1), (3, 13, 7), (2, 30, 300), (16, 64, 64)] {
        let a_values = random_vec(batch * m * k, 41);
        for kernel in supported_kernels() {
            let len = PackedA::len(kernel, batch, m, k);
            let mut packed = vec![f32::NAN; len];
            let packed = PackedA::pack(
                kernel,
                (batch, m, k),
                MatRef::row_major(&a_values, k),
                m * k,
                &mut packed,
            )
            .unwrap();
            let layout = PanelLayout::new(kernel, m, k);
            let mut written = vec![f32::NAN; len];
            for (i, product) in written.chunks_exact_mut(layout.product_len()).enumerate() {
                for row in 0..m.next_multiple_of(layout.panel_rows()) {
                    for col in 0..k {
                        let value = if row < m {
                            a_values[(i * m + row) * k + col]
                        } else {
                            0.0
                        };
                        product[layout.index(row, col)] = value;
                    }
                }
            }
            assert!(
                written.iter().all(|v| !v.is_nan()),
                "{kernel}: the layout left an element unwritten"
            );
            let written = PackedA::from_panels(kernel, (batch, m, k), &written).unwrap();
            // Same panels, same product: compare the GEMM results bit for bit (the panels themselves are private).
            let n = 37;
            let b = random_vec(batch * k * n, 42);
            let product = |a: &PackedA| {
                let mut c = vec![0.0; batch * m * n];
                let out = MatMut::row_major(&mut c, n);
                sgemm_batched_packed(a, n, 1.0, MatRef::row_major(&b, n), k * n, 0.0, out, m * n)
                    .unwrap();
                c
            };
            let (want, got) = (product(&packed), product(&written));
            assert!(
                same_bits(&want, &got),
                "{kernel}, {batch} × {m} × {k}: panels written by their layout differ from the packed ones"
            );
        }
        let kernel = MicroKernel::detect();
        let short = vec![0.0; PackedA::len(kernel, batch, m, k) - 1];
        let error = PackedA::from_panels(kernel, (batch, m, k), &short)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("take"), "{error}");
    }
}
