//! Ranks on threads for the data-parallel tests: [`ThreadCollective`] joins N trainers in one process, summing in rank
//! order so that every rank computes the same sums.

use diffuse_diffusion::train::Collective;
use diffuse_diffusion::Result;
use diffuse_tensor::Tensor;
use std::sync::{Arc, Barrier, Mutex};

/// The contributions of every rank to the collective call in progress.
struct Exchange {
    f32s: Vec<Vec<f32>>,
    f64s: Vec<Vec<f64>>,
}

/// Ranks on threads: each call posts this rank's values, waits for all, and sums them in rank order (so every rank
/// computes the same sums), then waits again before the slots are reused.
pub struct ThreadCollective {
    rank: usize,
    size: usize,
    exchange: Arc<Mutex<Exchange>>,
    barrier: Arc<Barrier>,
}

impl ThreadCollective {
    pub fn world(size: usize) -> Vec<ThreadCollective> {
        let exchange = Arc::new(Mutex::new(Exchange {
            f32s: vec![Vec::new(); size],
            f64s: vec![Vec::new(); size],
        }));
        let barrier = Arc::new(Barrier::new(size));
        (0..size)
            .map(|rank| ThreadCollective {
                rank,
                size,
                exchange: Arc::clone(&exchange),
                barrier: Arc::clone(&barrier),
            })
            .collect()
    }
}

impl Collective for ThreadCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, bucket: &Tensor) -> Result<Tensor> {
        self.exchange.lock().unwrap().f32s[self.rank] = bucket.to_vec()?;
        self.barrier.wait();
        let sum = {
            let exchange = self.exchange.lock().unwrap();
            let mut sum = exchange.f32s[0].clone();
            for part in &exchange.f32s[1..] {
                for (s, x) in sum.iter_mut().zip(part) {
                    *s += x;
                }
            }
            sum
        };
        self.barrier.wait();
        Ok(Tensor::from_vec(sum, bucket.shape(), bucket.device())?)
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.exchange.lock().unwrap().f64s[self.rank] = values.to_vec();
        self.barrier.wait();
        {
            let exchange = self.exchange.lock().unwrap();
            values.copy_from_slice(&exchange.f64s[0]);
            for part in &exchange.f64s[1..] {
                for (s, x) in values.iter_mut().zip(part) {
                    *s += x;
                }
            }
        }
        self.barrier.wait();
        Ok(())
    }

    fn abort(&self, code: i32) {
        panic!("rank {} aborted the job with code {code}", self.rank);
    }
}
