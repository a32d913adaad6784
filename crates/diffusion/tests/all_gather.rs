//! The all-gather of data-parallel training as an autograd operation (`all_gather_rows`): on N ranks on threads, each
//! rank's gradient is the single process's gradient of the summed objective at that rank's rows; in a world of one,
//! the gradient matches central finite differences.

use diffuse_autograd::Var;
use diffuse_diffusion::train::{all_gather_rows, Collective, SingleProcess};
use diffuse_diffusion::Result;
use diffuse_tensor::{Device, Tensor};
use std::rc::Rc;

#[path = "common/thread_collective.rs"]
mod thread_collective;
use thread_collective::ThreadCollective;

const WIDTH: usize = 4;

/// Rank `q`'s objective of the gathered rows `g` (B, WIDTH): `Σ tanh(g·gᵀ) ⊙ W_q` with its own fixed weights, so
/// that every row meets every other and each rank's loss differs.
fn objective(g: &Var, rank: usize) -> Result<Var> {
    let b = g.shape()[0];
    let weights = Tensor::randn(&[b, b], 100 + rank as u64, 0, Device::Cpu)?;
    Ok(g.matmul(&g.transpose(0, 1)?)?
        .tanh()?
        .mul(&Var::constant(weights))?
        .sum_all()?)
}

/// Rank `r`'s rows: `rows[r]` × WIDTH values from their own stream.
fn rows_of(rank: usize, rows: &[usize]) -> Tensor {
    Tensor::randn(&[rows[rank], WIDTH], 7 + rank as u64, 0, Device::Cpu)
        .unwrap()
        .mul_scalar(0.5)
        .unwrap()
}

/// Shards of 1, 2 and 3 rows (uneven, one of a single row): each rank gathers the rows, computes its own objective and
/// back-propagates it; the gradient it gets at its rows must be that of `J = Σ_q objective_q([x_0; x_1; x_2])` with
/// respect to `x_r`, computed in one process by ordinary autograd (whose rules are checked against finite differences
/// in crates/autograd). The ranks sum the gathered gradients in rank order and one process sums the three objectives'
/// contributions in its own order, so they agree to f32 rounding of sums of three terms of size O(1): 1e-5.
#[test]
fn on_three_ranks_each_gets_its_slice_of_the_summed_gradient() {
    let rows = [1usize, 2, 3];
    let threads: Vec<_> = ThreadCollective::world(rows.len())
        .into_iter()
        .map(|collective| {
            std::thread::spawn(move || {
                let rank = collective.rank();
                let collective: Rc<dyn Collective> = Rc::new(collective);
                let x = Var::leaf(rows_of(rank, &rows));
                let gathered = all_gather_rows(&collective, &x, &rows).unwrap();
                let loss = objective(&gathered, rank).unwrap();
                let grads = loss.backward().unwrap();
                let forward = gathered.tensor().to_vec().unwrap();
                (forward, grads.get(&x).unwrap().to_vec().unwrap())
            })
        })
        .collect();
    let ranks: Vec<(Vec<f32>, Vec<f32>)> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    let leaves: Vec<Var> = (0..rows.len())
        .map(|r| Var::leaf(rows_of(r, &rows)))
        .collect();
    let refs: Vec<&Var> = leaves.iter().collect();
    let gathered = Var::concat(&refs, 0).unwrap();
    let mut total = objective(&gathered, 0).unwrap();
    for q in 1..rows.len() {
        total = total.add(&objective(&gathered, q).unwrap()).unwrap();
    }
    let grads = total.backward().unwrap();
    let expected_rows = gathered.tensor().to_vec().unwrap();
    for (r, (forward, grad)) in ranks.iter().enumerate() {
        assert_eq!(forward, &expected_rows, "rank {r}: the gathered rows");
        let expected = grads.get(&leaves[r]).unwrap().to_vec().unwrap();
        assert_eq!(grad.len(), rows[r] * WIDTH);
        for (a, e) in grad.iter().zip(&expected) {
            assert!(
                (a - e).abs() <= 1e-5 * e.abs().max(1.0),
                "rank {r}: {grad:?} against {expected:?}"
            );
        }
    }
}

/// In a world of one the operation is the identity with an identity backward; the whole chain's gradient against
/// central differences, with the project's step and tolerance (crates/autograd/tests/common: h = 1e-2·max(1, |x|),
/// |analytic − numeric| ≤ 1e-3 + 2e-3·|numeric|). The loss is a sum of 9 f32 terms of size O(1), so its rounding
/// (≲ 1e-6) divided by 2h (×50) stays far below the 1e-3.
#[test]
fn in_a_world_of_one_the_gradient_matches_finite_differences() {
    let collective: Rc<dyn Collective> = Rc::new(SingleProcess);
    let rows = [3usize];
    let values = rows_of(0, &rows).to_vec().unwrap();
    let loss_at = |values: &[f32]| -> (f64, Option<Vec<f32>>) {
        let x = Var::leaf(Tensor::from_vec(values.to_vec(), &[3, WIDTH], Device::Cpu).unwrap());
        let loss = objective(&all_gather_rows(&collective, &x, &rows).unwrap(), 0).unwrap();
        let value = f64::from(loss.tensor().to_vec().unwrap()[0]);
        let grads = loss.backward().unwrap();
        (value, grads.get(&x).map(|g| g.to_vec().unwrap()))
    };
    let analytic = loss_at(&values).1.expect("the rows get a gradient");
    for i in 0..values.len() {
        let h = 1e-2 * values[i].abs().max(1.0);
        let mut shifted = values.clone();
        shifted[i] = values[i] + h;
        let up = loss_at(&shifted).0;
        shifted[i] = values[i] - h;
        let down = loss_at(&shifted).0;
        let numeric = (up - down) / (2.0 * f64::from(h));
        let a = f64::from(analytic[i]);
        assert!(
            (a - numeric).abs() <= 1e-3 + 2e-3 * numeric.abs(),
            "element {i}: {a} against {numeric}"
        );
    }
}

/// A local tensor whose rows are not this rank's count is refused with the counts named, not gathered wrongly.
#[test]
fn rows_that_do_not_match_the_counts_are_refused() {
    let collective: Rc<dyn Collective> = Rc::new(SingleProcess);
    let x = Var::leaf(rows_of(0, &[2]));
    let e = all_gather_rows(&collective, &x, &[3])
        .unwrap_err()
        .to_string();
    assert!(e.contains("all-gather on rank 0 of 1"), "{e}");
    assert!(all_gather_rows(&collective, &x, &[2, 2]).is_err());
}
