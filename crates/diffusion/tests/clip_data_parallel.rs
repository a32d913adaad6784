//! CLIP trained data-parallel without MPI: N trainers on N threads, joined by an in-process collective that sums in
//! rank order, against one trainer on the whole global batch of 7 pairs (shards of 3 and 4, and of 2, 2 and 3). The
//! embeddings are all-gathered, so every rank computes the whole batch's loss: every rank must report the single
//! process's losses, end with the same bits as the other ranks, and with the single process's weights to f32
//! reduction tolerance.

use diffuse_diffusion::contrastive::{
    ClipArchitecture, ClipTrainConfig, ClipTrainer, ImageCaptions,
};
use diffuse_diffusion::data::Dataset;
use diffuse_diffusion::train::{Collective, SingleProcess};
use diffuse_nn::LrSchedule;
use diffuse_tensor::Device;
use std::rc::Rc;

#[path = "common/thread_collective.rs"]
mod thread_collective;
use thread_collective::ThreadCollective;

const STEPS: u64 = 3;

/// 28 pseudo-random grey 8×8 images with Fashion-MNIST labels (so that captions are generated from them).
fn dataset() -> Dataset {
    let pixels: Vec<u8> = (0..28 * 64)
        .map(|i| ((i * 2_654_435_761usize) >> 9) as u8)
        .collect();
    let labels = (0..28).map(|i| i % 10).collect();
    Dataset::from_u8(&pixels, Some(labels), 1, 8, 8).unwrap()
}

/// A CLIP of width 8, one layer per tower, 2×2 patches of 4×4 pixels, at the global batch of 7.
fn config() -> ClipTrainConfig {
    ClipTrainConfig {
        seed: 5,
        steps: STEPS,
        batch_size: 7,
        lr: LrSchedule::Constant { lr: 1e-3 },
        weight_decay: 0.05,
        grad_clip: 1.0,
        architecture: ClipArchitecture {
            width: 8,
            layers: 1,
            heads: 2,
            mlp: 8,
            patch_size: 4,
            projection_dim: 4,
            context_length: 16,
            vocab_size: 600,
        },
    }
}

/// The loss and gradient norm (before clipping) of every step, and the final weights (by name), of one rank of
/// `collective`.
type Run = (Vec<[f32; 2]>, Vec<(String, Vec<f32>)>);

fn train(collective: Rc<dyn Collective>) -> Run {
    let data = dataset();
    let captions = ImageCaptions::from_labels(&data, "test").unwrap();
    let mut trainer = ClipTrainer::new(config(), &data, &captions, Device::Cpu).unwrap();
    trainer.set_collective(collective);
    let losses = (0..STEPS)
        .map(|_| {
            let report = trainer.step(&data, &captions).unwrap();
            [report.loss, report.grad_norm]
        })
        .collect();
    let weights = trainer
        .store
        .params()
        .into_iter()
        .map(|(name, var)| (name, var.tensor().to_vec().unwrap()))
        .collect();
    (losses, weights)
}

fn train_on_threads(ranks: usize) -> Vec<Run> {
    let threads: Vec<_> = ThreadCollective::world(ranks)
        .into_iter()
        .map(|collective| std::thread::spawn(move || train(Rc::new(collective))))
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Each rank encodes its pairs one sequence and one image at a time, as one process does, and the loss is computed
/// from the same gathered embeddings, so the losses differ only through the weights; the weight gradients' sums over
/// the batch are grouped differently (a shard's pairs, then the shards), a few ulps (relative ~1e-6), which AdamW
/// passes on as about as much of each update: after 3 steps of lr 1e-3 the weights (O(1)) stay within 1e-5, the
/// losses and the gradient norms within 1e-5 relative. The attention's key bias is left out: its gradient is zero in exact arithmetic
/// (a shift of every key adds the same amount to every score of a query, which the softmax ignores), so backward
/// computes rounding noise for it that Adam turns into steps of about ±lr.
fn assert_close(single: &Run, rank: &Run, what: &str) {
    // The gradient norm too: AdamW's step is blind to a gradient scaled by a constant, and the clipping to norm 1
    // to one scaled whole, so only the norm shows a gradient summed wrongly by a constant factor.
    for (a, b) in single.0.iter().flatten().zip(rank.0.iter().flatten()) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs(),
            "{what}: losses and gradient norms {:?} against {:?}",
            single.0,
            rank.0
        );
    }
    assert_eq!(single.1.len(), rank.1.len());
    for ((name, a), (other, b)) in single.1.iter().zip(&rank.1) {
        assert_eq!(name, other);
        if name.ends_with("k_proj.bias") {
            continue;
        }
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5, "{what}: {name} {x} against {y}");
        }
    }
}

#[test]
fn two_and_three_ranks_reproduce_one_process() {
    let single = train(Rc::new(SingleProcess));
    for ranks in [2, 3] {
        let runs = train_on_threads(ranks);
        for (r, run) in runs.iter().enumerate() {
            assert_eq!(run, &runs[0], "{ranks} ranks: rank {r} differs from rank 0");
        }
        assert_close(&single, &runs[0], &format!("{ranks} ranks"));
    }
}

#[test]
fn a_batch_smaller_than_the_world_is_refused_by_name() {
    // Rank 0 of 8 for a batch of 7: refused before any collective call, so the other ranks need not run.
    let collective = ThreadCollective::world(8).swap_remove(0);
    let data = dataset();
    let captions = ImageCaptions::from_labels(&data, "test").unwrap();
    let mut trainer = ClipTrainer::new(config(), &data, &captions, Device::Cpu).unwrap();
    trainer.set_collective(Rc::new(collective));
    let e = trainer.shard().unwrap_err().to_string();
    assert!(e.contains("--batch-size 8"), "{e}");
    let e = trainer.step(&data, &captions).unwrap_err().to_string();
    assert!(e.contains("--batch-size 8"), "{e}");
}
