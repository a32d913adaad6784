//! `sgemm` / `sgemm_batched` against a naive f64 reference, over random shapes, strides and kernels.
//!
//! Tolerance: each C element is a k-term f32 dot product, then scaled by alpha and added to beta·C. Recursive summation
//! (with or without FMA) errs by at most γ_k·Σ|a_ip·b_pj|, γ_k ≈ k·2^-24, and the scale/add steps add three more
//! roundings. We allow twice that: |c − c_ref| ≤ 2·(k + 3)·2^-24·(|alpha|·Σ_p|a_ip·b_pj| + |beta·c_ij|).

mod common;

use common::{assert_within, random_vec, same_bits, F32_UNIT_ROUNDOFF};
use diffuse_cpu_kernels::gemm::{
    sgemm, sgemm_batched, sgemm_batched_bias_using, sgemm_batched_using, MatMut, MatRef,
    MicroKernel,
};
use proptest::prelude::*;

/// How one operand is stored: which index is contiguous, how far apart its lines are, how far apart its batches.
#[derive(Clone, Copy, Debug)]
struct Layout {
    transposed: bool,
    line_pad: usize,
    broadcast: bool,
}

impl Layout {
    const ROW_MAJOR: Layout = Layout {
        transposed: false,
        line_pad: 0,
        broadcast: false,
    };

    /// (row_stride, col_stride, batch_stride, slice length) of a `batch` stack of rows × cols matrices.
    fn strides(self, batch: usize, rows: usize, cols: usize) -> (usize, usize, usize, usize) {
        let (lines, line_len) = if self.transposed {
            (cols, rows)
        } else {
            (rows, cols)
        };
        let lead = line_len + self.line_pad;
        let matrix = lines * lead;
        let (rs, cs) = if self.transposed {
            (1, lead)
        } else {
            (lead, 1)
        };
        if self.broadcast {
            (rs, cs, 0, matrix)
        } else {
            (rs, cs, matrix, batch * matrix)
        }
    }
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        any::<bool>(),
        prop_oneof![Just(0usize), Just(3)],
        any::<bool>(),
    )
        .prop_map(|(transposed, line_pad, broadcast)| Layout {
            transposed,
            line_pad,
            broadcast,
        })
}

/// A complete problem: shapes, scalars, operands and C's initial contents.
#[derive(Debug)]
struct Problem {
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    beta: f32,
    a: Vec<f32>,
    a_strides: (usize, usize, usize),
    b: Vec<f32>,
    b_strides: (usize, usize, usize),
    c: Vec<f32>,
    c_strides: (usize, usize, usize),
}

impl Problem {
    #[allow(clippy::too_many_arguments)]
    fn new(
        (batch, m, n, k): (usize, usize, usize, usize),
        alpha: f32,
        beta: f32,
        a_layout: Layout,
        b_layout: Layout,
        c_layout: Layout,
        seed: u64,
    ) -> Self {
        let (ar, ac, ab, a_len) = a_layout.strides(batch, m, k);
        let (br, bc, bb, b_len) = b_layout.strides(batch, k, n);
        let c_layout = Layout {
            broadcast: false,
            ..c_layout
        };
        let (cr, cc, cb, c_len) = c_layout.strides(batch, m, n);
        let mut c = random_vec(c_len, seed + 2);
        if beta == 0.0 {
            // beta == 0 must ignore C entirely, NaNs included.
            c.iter_mut().step_by(3).for_each(|x| *x = f32::NAN);
        }
        Self {
            batch,
            m,
            n,
            k,
            alpha,
            beta,
            a: random_vec(a_len, seed),
            a_strides: (ar, ac, ab),
            b: random_vec(b_len, seed + 1),
            b_strides: (br, bc, bb),
            c,
            c_strides: (cr, cc, cb),
        }
    }

    fn run(&self, kernel: MicroKernel) -> Vec<f32> {
        let mut c = self.c.clone();
        let (ar, ac, ab) = self.a_strides;
        let (br, bc, bb) = self.b_strides;
        let (cr, cc, cb) = self.c_strides;
        sgemm_batched_using(
            kernel,
            self.batch,
            self.m,
            self.n,
            self.k,
            self.alpha,
            MatRef {
                data: &self.a,
                row_stride: ar,
                col_stride: ac,
            },
            ab,
            MatRef {
                data: &self.b,
                row_stride: br,
                col_stride: bc,
            },
            bb,
            self.beta,
            MatMut {
                data: &mut c,
                row_stride: cr,
                col_stride: cc,
            },
            cb,
        )
        .expect("valid problem");
        c
    }

    /// The exact result (in f64) and the tolerance of every slot of C; slots outside the matrices keep their value.
    fn reference(&self) -> (Vec<f64>, Vec<f64>) {
        let mut want: Vec<f64> = self.c.iter().map(|&x| f64::from(x)).collect();
        let mut tol = vec![0.0; self.c.len()];
        let (ar, ac, ab) = self.a_strides;
        let (br, bc, bb) = self.b_strides;
        let (cr, cc, cb) = self.c_strides;
        let roundings = 2.0 * (self.k as f64 + 3.0) * F32_UNIT_ROUNDOFF;
        for t in 0..self.batch {
            for i in 0..self.m {
                for j in 0..self.n {
                    let (mut dot, mut magnitude) = (0.0f64, 0.0f64);
                    for p in 0..self.k {
                        let term = f64::from(self.a[t * ab + i * ar + p * ac])
                            * f64::from(self.b[t * bb + p * br + j * bc]);
                        dot += term;
                        magnitude += term.abs();
                    }
                    let slot = t * cb + i * cr + j * cc;
                    let alpha = f64::from(self.alpha);
                    let old = if self.beta == 0.0 {
                        0.0
                    } else {
                        f64::from(self.beta) * want[slot]
                    };
                    want[slot] = alpha * dot + old;
                    tol[slot] =
                        roundings * (alpha.abs() * magnitude + old.abs()) + f64::MIN_POSITIVE;
                }
            }
        }
        (want, tol)
    }
}

/// Every micro-kernel this CPU runs. The others are named on stderr (`--nocapture` shows it); a kernel listed in
/// `DIFFUSE_REQUIRE_KERNELS` (comma-separated names, e.g. `avx512f,avx2+fma`) must be supported, so a machine that
/// should test it fails instead of skipping it.
fn kernels() -> Vec<MicroKernel> {
    let required = std::env::var("DIFFUSE_REQUIRE_KERNELS").unwrap_or_default();
    let (supported, skipped): (Vec<_>, Vec<_>) =
        MicroKernel::ALL.into_iter().partition(|k| k.is_supported());
    for kernel in skipped {
        let name = kernel.to_string();
        assert!(
            !required.split(',').any(|r| r.trim() == name),
            "DIFFUSE_REQUIRE_KERNELS names the {name} micro-kernel, which this CPU cannot run"
        );
        eprintln!("skipped: the {name} micro-kernel (this CPU cannot run it)");
    }
    supported
}

fn check_all_kernels(problem: &Problem) {
    let (want, tol) = problem.reference();
    for kernel in kernels() {
        assert_within(
            &problem.run(kernel),
            &want,
            &tol,
            &format!("{kernel} kernel"),
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Sizes straddle the register tiles (6×16, 12×32) and the depth block (256), with every transpose and padding choice.
    #[test]
    fn sgemm_batched_matches_f64_reference_for_any_layout(
        batch in 1usize..=3,
        m in prop_oneof![1usize..=8, 9usize..=40],
        n in prop_oneof![1usize..=17, 18usize..=50],
        k in prop_oneof![1usize..=8, 250usize..=300],
        alpha in prop_oneof![Just(1.0f32), Just(-0.75)],
        beta in prop_oneof![Just(0.0f32), Just(1.0), Just(0.5)],
        (a_layout, b_layout, c_layout) in (layout(), layout(), layout()),
        seed in any::<u64>(),
    ) {
        check_all_kernels(&Problem::new((batch, m, n, k), alpha, beta, a_layout, b_layout, c_layout, seed));
    }
}

#[test]
fn sgemm_crosses_every_block_boundary() {
    // m > MC (120), n > NC (4096), k > KC (256): every loop of the nest runs more than once, with ragged edges; m = 127
    // takes the short loop order (m ≤ 256), m = 263 the blocked one.
    let layout = Layout::ROW_MAJOR;
    check_all_kernels(&Problem::new(
        (1, 263, 20, 520),
        1.0,
        0.5,
        layout,
        layout,
        layout,
        6,
    ));
    check_all_kernels(&Problem::new(
        (1, 127, 20, 520),
        1.0,
        0.5,
        layout,
        layout,
        layout,
        7,
    ));
    // The same with A column-major (a transposed view, as in a weight gradient xᵀ·g), in both loop orders: its packing
    // walks A column by column, each column scattered over the block's panels, ragged last panel included.
    let column_major = Layout {
        transposed: true,
        line_pad: 5,
        broadcast: false,
    };
    for (m, seed) in [(263, 9), (127, 10)] {
        check_all_kernels(&Problem::new(
            (1, m, 20, 520),
            1.0,
            0.5,
            column_major,
            layout,
            layout,
            seed,
        ));
    }
    check_all_kernels(&Problem::new(
        (1, 7, 4100, 3),
        1.0,
        0.0,
        layout,
        layout,
        layout,
        8,
    ));
}

#[test]
fn short_and_blocked_loop_orders_give_identical_bits() {
    // 256 rows take the short loop order, 257 the blocked one; the first 256 rows of C must agree bit for bit, since
    // both orders add every element's k-terms in the same order.
    let (n, k) = (300, 600);
    let a = random_vec(257 * k, 11);
    let b = random_vec(k * n, 12);
    for kernel in kernels() {
        let product = |m: usize| {
            let mut c = vec![0.0; m * n];
            sgemm_batched_using(
                kernel,
                1,
                m,
                n,
                k,
                1.0,
                MatRef::row_major(&a[..m * k], k),
                0,
                MatRef::row_major(&b, n),
                0,
                0.0,
                MatMut::row_major(&mut c, n),
                0,
            )
            .unwrap();
            c
        };
        // The 257-row product runs the blocked order; its first 256 rows must equal the short order's product.
        let (short, blocked) = (product(256), product(257));
        assert!(
            same_bits(&short, &blocked[..short.len()]),
            "{kernel} kernel: the two loop orders differ"
        );
    }
}

#[test]
fn a_row_major_a_read_in_place_gives_the_bits_of_its_packed_copy() {
    // In the blocked order (more than 256 rows) a row-major A's whole register-tile panels are read where they lie
    // and only the rows past them are packed; the same A stored column-major is packed throughout. Both sum the same
    // products in the same order, so C must agree bit for bit: row counts off every tile (12, 6) and row block (120),
    // one and two k-blocks (256), padded rows, with beta and with a bias. A row stride of 512 floats, whose rows
    // alias in L1, is packed after all (`ALIASING_ROW_STRIDE`) and must give the same bits too.
    for (m, n, k, pad) in [
        (257, 33, 7, 0),
        (300, 64, 64, 3),
        (367, 17, 300, 0),
        (480, 40, 513, 5),
        (270, 20, 500, 12),
    ] {
        let values = random_vec(m * k, 21);
        let b = random_vec(k * n, 22);
        let c0 = random_vec(m * n, 23);
        let bias = random_vec(n, 24);
        let lead = k + pad;
        let mut rows = vec![f32::NAN; m * lead];
        let mut columns = vec![f32::NAN; k * m];
        for i in 0..m {
            for p in 0..k {
                rows[i * lead + p] = values[i * k + p];
                columns[p * m + i] = values[i * k + p];
            }
        }
        let in_place = MatRef {
            data: &rows,
            row_stride: lead,
            col_stride: 1,
        };
        let packed = MatRef {
            data: &columns,
            row_stride: 1,
            col_stride: m,
        };
        for kernel in kernels() {
            for with_bias in [false, true] {
                let product = |a: MatRef| {
                    let mut c = c0.clone();
                    let (b, out) = (MatRef::row_major(&b, n), MatMut::row_major(&mut c, n));
                    if with_bias {
                        sgemm_batched_bias_using(kernel, 1, m, n, k, 0.5, a, 0, b, 0, &bias, out, 0)
                    } else {
                        sgemm_batched_using(kernel, 1, m, n, k, 0.5, a, 0, b, 0, 0.75, out, 0)
                    }
                    .unwrap();
                    c
                };
                let (want, got) = (product(packed), product(in_place));
                assert!(
                    same_bits(&want, &got),
                    "{kernel} kernel, {m}×{n}×{k}, bias {with_bias}: A read in place differs from A packed"
                );
            }
        }
    }
}

#[test]
fn a_b_of_packed_panel_layout_read_in_place_gives_the_bits_of_its_packed_copy() {
    // In the short order (at most 256 rows) a row-major B of exactly NR columns with rows NR floats apart is its own
    // packed panel and is read where it lies; the same B with padded rows is packed first. Both sum the same products
    // in the same order: C must agree bit for bit, for row counts off every tile (including the 4- and 8-row edge
    // tiles), one and two k-blocks (256), beta 0 and 0.75.
    for kernel in kernels() {
        let (_, nr) = kernel.tile_shape();
        for (m, k) in [(1, 1), (5, 7), (12, 33), (20, 256), (32, 300), (64, 513)] {
            for beta in [0.0, 0.75] {
                let b = random_vec(k * nr, 32);
                let pad = 3;
                let mut padded = vec![f32::NAN; k * (nr + pad)];
                for (row, values) in padded.chunks_exact_mut(nr + pad).zip(b.chunks_exact(nr)) {
                    row[..nr].copy_from_slice(values);
                }
                let a = random_vec(m * k, 31);
                let c0 = random_vec(m * nr, 33);
                let product = |b: MatRef| {
                    let mut c = c0.clone();
                    let (a, out) = (MatRef::row_major(&a, k), MatMut::row_major(&mut c, nr));
                    sgemm_batched_using(kernel, 1, m, nr, k, -0.5, a, 0, b, 0, beta, out, 0)
                        .unwrap();
                    c
                };
                let (want, got) = (
                    product(MatRef::row_major(&padded, nr + pad)),
                    product(MatRef::row_major(&b, nr)),
                );
                assert!(
                    same_bits(&want, &got),
                    "{kernel} kernel, {m}×{nr}×{k}, beta {beta}: B read in place differs from B packed"
                );
            }
        }
    }
}

#[test]
fn sgemm_is_large_enough_to_run_in_parallel_and_still_matches_reference() {
    let t = Layout {
        transposed: true,
        line_pad: 1,
        broadcast: false,
    };
    check_all_kernels(&Problem::new(
        (1, 190, 170, 300),
        0.5,
        1.0,
        t,
        Layout::ROW_MAJOR,
        t,
        9,
    ));
}

#[test]
fn sgemm_with_k_zero_scales_c_by_beta() {
    let mut c = vec![1.0, 2.0, f32::NAN, 4.0];
    let empty = MatRef {
        data: &[],
        row_stride: 0,
        col_stride: 0,
    };
    sgemm(
        2,
        2,
        0,
        1.0,
        empty,
        empty,
        0.5,
        MatMut::row_major(&mut c, 2),
    )
    .unwrap();
    assert_eq!(&c[..2], &[0.5, 1.0]);
    assert!(c[2].is_nan());
    sgemm(
        2,
        2,
        0,
        1.0,
        empty,
        empty,
        0.0,
        MatMut::row_major(&mut c, 2),
    )
    .unwrap();
    assert_eq!(c, vec![0.0; 4]);
}

#[test]
fn sgemm_with_empty_output_touches_nothing() {
    let a = [1.0f32; 6];
    let mut c: [f32; 0] = [];
    sgemm(
        0,
        3,
        2,
        1.0,
        MatRef::row_major(&a, 2),
        MatRef::row_major(&a, 3),
        0.0,
        MatMut::row_major(&mut c, 3),
    )
    .unwrap();
    sgemm(
        3,
        0,
        2,
        1.0,
        MatRef::row_major(&a, 2),
        MatRef::row_major(&a, 0),
        0.0,
        MatMut::row_major(&mut c, 0),
    )
    .unwrap();
}

#[test]
fn sgemm_broadcasts_an_operand_with_batch_stride_zero() {
    let (m, n, k) = (5, 7, 9);
    let a = random_vec(m * k, 1);
    let b = random_vec(2 * k * n, 2);
    let mut batched = vec![0.0; 2 * m * n];
    sgemm_batched(
        2,
        m,
        n,
        k,
        1.0,
        MatRef::row_major(&a, k),
        0,
        MatRef::row_major(&b, n),
        k * n,
        0.0,
        MatMut::row_major(&mut batched, n),
        m * n,
    )
    .unwrap();
    for t in 0..2 {
        let mut single = vec![0.0; m * n];
        let b_t = MatRef::row_major(&b[t * k * n..], n);
        sgemm(
            m,
            n,
            k,
            1.0,
            MatRef::row_major(&a, k),
            b_t,
            0.0,
            MatMut::row_major(&mut single, n),
        )
        .unwrap();
        assert_eq!(single, batched[t * m * n..(t + 1) * m * n], "product {t}");
    }
}

#[test]
fn sgemm_is_bit_identical_for_any_thread_count() {
    let t = Layout {
        transposed: true,
        line_pad: 0,
        broadcast: false,
    };
    let problems = [
        Problem::new(
            (1, 300, 260, 600),
            1.0,
            0.0,
            Layout::ROW_MAJOR,
            Layout::ROW_MAJOR,
            Layout::ROW_MAJOR,
            3,
        ),
        Problem::new((4, 61, 75, 270), -1.0, 0.5, t, Layout::ROW_MAJOR, t, 4),
    ];
    for problem in &problems {
        for kernel in kernels() {
            let with_threads = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| problem.run(kernel))
            };
            let serial = with_threads(1);
            for threads in [2, 3] {
                let parallel = with_threads(threads);
                assert!(
                    same_bits(&serial, &parallel),
                    "{kernel} kernel: 1 and {threads} threads differ"
                );
            }
        }
    }
}

#[test]
fn simd_and_portable_kernels_agree_to_rounding() {
    let layout = Layout::ROW_MAJOR;
    let problem = Problem::new((1, 50, 70, 400), 1.0, 0.0, layout, layout, layout, 5);
    let (_, tol) = problem.reference();
    let portable: Vec<f64> = problem
        .run(MicroKernel::Portable)
        .iter()
        .map(|&x| f64::from(x))
        .collect();
    // Both kernels are within `tol` of the exact result, so within 2·tol of each other.
    let doubled: Vec<f64> = tol.iter().map(|t| 2.0 * t).collect();
    for kernel in kernels() {
        assert_within(
            &problem.run(kernel),
            &portable,
            &doubled,
            &format!("{kernel} vs portable"),
        );
    }
}

#[test]
fn detect_picks_the_first_supported_kernel_and_tiles_differ_only_where_registers_do() {
    let first = MicroKernel::ALL.into_iter().find(|k| k.is_supported());
    assert_eq!(Some(MicroKernel::detect()), first);
    assert_eq!(MicroKernel::Portable.tile_shape(), (6, 16));
    assert_eq!(MicroKernel::Avx2Fma.tile_shape(), (6, 16));
    assert_eq!(MicroKernel::Avx512F.tile_shape(), (12, 32));
}

#[test]
fn every_kernel_handles_shapes_off_every_tile_edge() {
    // Sizes one below, at and one above each kernel's tile (6×16 and 12×32) and a single element; bottom-edge tiles
    // of each row count the kernels compute alone (AVX2: at most 2 or 4 rows, AVX-512: 4 or 8; 16 and 20 are 12 + 4
    // and 12 + 8); a depth of one step, one just past a whole k-block (KC = 256), every transpose of A and C, padded
    // lines, beta 0 and 0.5.
    let plain = Layout::ROW_MAJOR;
    let flipped = Layout {
        transposed: true,
        line_pad: 3,
        broadcast: false,
    };
    let mut seed = 100;
    for m in [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 20, 25] {
        for n in [1, 15, 16, 17, 31, 32, 33, 47] {
            for k in [1, 7, 257] {
                for (a_layout, c_layout, beta) in [
                    (plain, plain, 0.0),
                    (flipped, plain, 0.5),
                    (plain, flipped, 0.0),
                    (flipped, flipped, 0.5),
                ] {
                    seed += 1;
                    check_all_kernels(&Problem::new(
                        (1, m, n, k),
                        -0.75,
                        beta,
                        a_layout,
                        flipped,
                        c_layout,
                        seed,
                    ));
                }
            }
        }
    }
}

/// `sgemm_batched_bias_using` on `problem`'s operands, C's elements (not its padding) set to NaN first, since the
/// bias replaces them.
fn run_with_bias(problem: &Problem, kernel: MicroKernel, bias: &[f32]) -> Vec<f32> {
    let mut c = problem.c.clone();
    let (cr, cc, cb) = problem.c_strides;
    for_each_c_slot(problem, |slot, _| c[slot] = f32::NAN);
    let (ar, ac, ab) = problem.a_strides;
    let (br, bc, bb) = problem.b_strides;
    let matrix = |data, row_stride, col_stride| MatRef {
        data,
        row_stride,
        col_stride,
    };
    sgemm_batched_bias_using(
        kernel,
        problem.batch,
        problem.m,
        problem.n,
        problem.k,
        problem.alpha,
        matrix(&problem.a, ar, ac),
        ab,
        matrix(&problem.b, br, bc),
        bb,
        bias,
        MatMut {
            data: &mut c,
            row_stride: cr,
            col_stride: cc,
        },
        cb,
    )
    .unwrap();
    c
}

/// Calls `f(slot, column)` for every element of every product of C.
fn for_each_c_slot(problem: &Problem, mut f: impl FnMut(usize, usize)) {
    let (cr, cc, cb) = problem.c_strides;
    for index in 0..problem.batch {
        for i in 0..problem.m {
            for j in 0..problem.n {
                f(index * cb + i * cr + j * cc, j);
            }
        }
    }
}

#[test]
fn sgemm_bias_rounds_as_a_c_filled_with_the_bias() {
    // The bias added in the output stage replaces "copy the bias into C, then C ← alpha·A·B + 1·C": every element
    // must carry the same bits. Sizes off every tile edge (6×16, 12×32), one step, just past a k-block (only the
    // first block adds the bias), both loop orders (m ≤ 256 and m > 256, ragged MC block), A and C transposed (C
    // transposed takes the scalar write-back), a batch of two, and k = 0 (C is the bias alone).
    let plain = Layout::ROW_MAJOR;
    let flipped = Layout {
        transposed: true,
        line_pad: 3,
        broadcast: false,
    };
    let mut seed = 500;
    for (batch, m, n, k) in [
        (1, 1, 1, 1),
        (1, 13, 33, 7),
        (2, 25, 47, 257),
        (1, 12, 32, 3),
        (1, 263, 20, 520),
        (1, 127, 50, 300),
        (2, 7, 17, 0),
    ] {
        for (a_layout, c_layout) in [
            (plain, plain),
            (flipped, plain),
            (plain, flipped),
            (flipped, flipped),
        ] {
            seed += 1;
            let mut problem = Problem::new(
                (batch, m, n, k),
                -0.75,
                1.0,
                a_layout,
                plain,
                c_layout,
                seed,
            );
            let bias = random_vec(n, seed + 7);
            let mut filled = problem.c.clone();
            for_each_c_slot(&problem, |slot, j| filled[slot] = bias[j]);
            problem.c = filled;
            for kernel in kernels() {
                let (want, got) = (problem.run(kernel), run_with_bias(&problem, kernel, &bias));
                assert!(
                    same_bits(&want, &got),
                    "{kernel} kernel, {batch}×{m}×{n}×{k}, A {a_layout:?}, C {c_layout:?}: the bias's bits differ"
                );
            }
        }
    }
}

#[test]
fn sgemm_bias_of_the_wrong_length_is_refused() {
    let (a, b) = (vec![1.0; 6], vec![1.0; 6]);
    let mut c = vec![0.0; 4];
    let err = error_of(sgemm_batched_bias_using(
        MicroKernel::Portable,
        1,
        2,
        2,
        3,
        1.0,
        MatRef::row_major(&a, 3),
        0,
        MatRef::row_major(&b, 2),
        0,
        &[1.0; 3],
        MatMut::row_major(&mut c, 2),
        0,
    ));
    assert!(
        err.contains("the bias has 3 floats") && err.contains("2 columns"),
        "{err}"
    );
}

fn error_of(result: diffuse_cpu_kernels::Result<()>) -> String {
    let err = result.expect_err("the call must be refused");
    assert_eq!(err.op, "sgemm");
    err.message
}

#[test]
fn sgemm_rejects_operands_shorter_than_their_shape() {
    let short = [0.0f32; 5];
    let six = [0.0f32; 6];
    let mut c = [0.0f32; 4];
    let msg = error_of(sgemm(
        2,
        2,
        3,
        1.0,
        MatRef::row_major(&short, 3),
        MatRef::row_major(&six, 2),
        0.0,
        MatMut::row_major(&mut c, 2),
    ));
    assert!(msg.starts_with("A addresses element 5"), "{msg}");
    let msg = error_of(sgemm(
        2,
        2,
        3,
        1.0,
        MatRef::row_major(&six, 3),
        MatRef::row_major(&short, 2),
        0.0,
        MatMut::row_major(&mut c, 2),
    ));
    assert!(msg.starts_with("B addresses element 5"), "{msg}");
    let mut short_c = [0.0f32; 3];
    let msg = error_of(sgemm(
        2,
        2,
        3,
        1.0,
        MatRef::row_major(&six, 3),
        MatRef::row_major(&six, 2),
        0.0,
        MatMut::row_major(&mut short_c, 2),
    ));
    assert!(msg.starts_with("C addresses element 3"), "{msg}");
}

#[test]
fn sgemm_rejects_offsets_that_overflow() {
    let a = [0.0f32; 4];
    let mut c = [0.0f32; 4];
    let huge = MatRef {
        data: &a,
        row_stride: usize::MAX,
        col_stride: 1,
    };
    let msg = error_of(sgemm(
        2,
        2,
        2,
        1.0,
        huge,
        MatRef::row_major(&a, 2),
        0.0,
        MatMut::row_major(&mut c, 2),
    ));
    assert!(msg.contains("overflows"), "{msg}");
}

#[test]
fn sgemm_rejects_an_output_that_writes_one_slot_twice() {
    let a = [0.0f32; 4];
    let mut c = [0.0f32; 4];
    let rows_alias = MatMut {
        data: &mut c,
        row_stride: 0,
        col_stride: 1,
    };
    let msg = error_of(sgemm(
        2,
        2,
        2,
        1.0,
        MatRef::row_major(&a, 2),
        MatRef::row_major(&a, 2),
        0.0,
        rows_alias,
    ));
    assert!(msg.contains("m stride 0"), "{msg}");
    let overlapping = MatMut {
        data: &mut c,
        row_stride: 1,
        col_stride: 1,
    };
    error_of(sgemm(
        2,
        2,
        2,
        1.0,
        MatRef::row_major(&a, 2),
        MatRef::row_major(&a, 2),
        0.0,
        overlapping,
    ));
    let msg = error_of(sgemm_batched(
        2,
        2,
        2,
        2,
        1.0,
        MatRef::row_major(&a, 2),
        0,
        MatRef::row_major(&a, 2),
        0,
        0.0,
        MatMut::row_major(&mut c, 2),
        0,
    ));
    assert!(msg.contains("batch stride 0"), "{msg}");
}
