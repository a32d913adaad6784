//! The feature extractor of the evaluation metrics: a small convolutional Fashion-MNIST classifier.
//!
//! ```text
//! x (N,1,28,28) in [−1, 1]
//!   conv1  1→32, 3×3, pad 1            → (N,32,28,28), ReLU
//!   conv2 32→64, 3×3, stride 2, pad 1  → (N,64,14,14), ReLU
//!   conv3 64→64, 3×3, stride 2, pad 1  → (N,64,7,7),   ReLU
//!   flatten                            → (N,3136)
//!   fc1  3136→128, ReLU                → (N,128)   the features
//!   fc2   128→10                       → (N,10)    the logits
//! ```
//!
//! The 128 features play the part Inception-v3's pool-3 activations play for FID on natural images: the metrics of
//! this module compare distributions in that space. Parameter names follow PyTorch's (`conv1.weight`, `fc2.bias`), so
//! a checkpoint written by [`ParamStore::save`] loads with [`FashionClassifier::load`].

use crate::error::Result;
use diffuse_autograd::Var;
use diffuse_nn::{Conv2d, Linear, Module, ParamStore, Path};
use diffuse_tensor::{Conv2dParams, Device, Error as TensorError};

/// Side length of the square grey-scale images the classifier reads.
pub const IMAGE_SIZE: usize = 28;
/// Number of classes (the Fashion-MNIST labels 0–9).
pub const NUM_CLASSES: usize = 10;
/// Width of the feature layer.
pub const FEATURE_DIM: usize = 128;
/// The extractor's name, used in [`super::EvalReport`] and file names.
pub const NAME: &str = "fashion_classifier";

/// The CNN above; its parameters live in [`FashionClassifier::store`].
pub struct FashionClassifier {
    pub store: ParamStore,
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    fc1: Linear,
    fc2: Linear,
}

/// What one forward pass gives: the penultimate activations and the class scores.
pub struct ClassifierOutput {
    /// (N, [`FEATURE_DIM`]) ReLU activations of `fc1`.
    pub features: Var,
    /// (N, [`NUM_CLASSES`]) unnormalised log-probabilities.
    pub logits: Var,
}

impl FashionClassifier {
    /// A freshly initialised classifier (PyTorch's default initialisation from Philox stream `seed`).
    pub fn new(seed: u64, device: Device) -> Result<FashionClassifier> {
        let store = ParamStore::new(seed, device);
        let root = store.root();
        let same = Conv2dParams {
            padding: (1, 1),
            ..Conv2dParams::default()
        };
        let halve = Conv2dParams {
            stride: (2, 2),
            ..same
        };
        let conv = |path: &Path, cin, cout, p| Conv2d::new(path, cin, cout, (3, 3), p, true);
        let flat = 64 * (IMAGE_SIZE / 4) * (IMAGE_SIZE / 4);
        Ok(FashionClassifier {
            conv1: conv(&root.sub("conv1"), 1, 32, same)?,
            conv2: conv(&root.sub("conv2"), 32, 64, halve)?,
            conv3: conv(&root.sub("conv3"), 64, 64, halve)?,
            fc1: Linear::new(&root.sub("fc1"), flat, FEATURE_DIM, true)?,
            fc2: Linear::new(&root.sub("fc2"), FEATURE_DIM, NUM_CLASSES, true)?,
            store,
        })
    }

    /// A classifier with the weights of the safetensors file at `path` (as written by the `fashion_classifier`
    /// example, e.g. `data/classifier/fashion-classifier.safetensors`).
    pub fn load(path: impl AsRef<std::path::Path>, device: Device) -> Result<FashionClassifier> {
        let model = FashionClassifier::new(0, device)?;
        model.store.load(path)?;
        Ok(model)
    }

    /// A classifier with the weights of safetensors bytes (e.g. a file embedded in a program); errors name `source`.
    pub fn from_bytes(
        bytes: &[u8],
        source: &std::path::Path,
        device: Device,
    ) -> Result<FashionClassifier> {
        let model = FashionClassifier::new(0, device)?;
        model.store.load_bytes(bytes, source)?;
        Ok(model)
    }

    /// Features and logits of a batch `x` of shape (N, 1, 28, 28).
    pub fn forward(&self, x: &Var) -> Result<ClassifierOutput> {
        let [.., features] = self.activations(x)?;
        let logits = self.fc2.forward(&features)?;
        Ok(ClassifierOutput { features, logits })
    }

    /// The ReLU activations of every hidden layer for a batch `x` (N, 1, 28, 28): conv1 (N, 32, 28, 28), conv2
    /// (N, 64, 14, 14), conv3 (N, 64, 7, 7) and fc1 (N, 128), the last being the features.
    pub fn activations(&self, x: &Var) -> Result<[Var; 4]> {
        let want = [1, IMAGE_SIZE, IMAGE_SIZE];
        if x.shape().len() != 4 || x.shape()[1..] != want {
            return Err(TensorError::shape(
                "FashionClassifier",
                format!("input has shape {:?}, expected (N, 1, 28, 28)", x.shape()),
            )
            .into());
        }
        let n = x.shape()[0];
        let h1 = self.conv1.forward(x)?.relu()?;
        let h2 = self.conv2.forward(&h1)?.relu()?;
        let h3 = self.conv3.forward(&h2)?.relu()?;
        let flat = h3.reshape(&[n, h3.tensor().numel() / n.max(1)])?;
        let features = self.fc1.forward(&flat)?.relu()?;
        Ok([h1, h2, h3, features])
    }
}

/// Mean cross-entropy `−(1/N) Σ_i log softmax(logits_i)[y_i]` of (N, K) logits against labels `y`.
pub fn cross_entropy(logits: &Var, labels: &[u32]) -> Result<Var> {
    let (n, k) = match logits.shape() {
        &[n, k] => (n, k),
        other => {
            return Err(TensorError::shape(
                "cross_entropy",
                format!("logits have shape {other:?}, expected (N, K)"),
            )
            .into())
        }
    };
    if labels.len() != n {
        return Err(TensorError::shape(
            "cross_entropy",
            format!("{} labels for {n} rows of logits", labels.len()),
        )
        .into());
    }
    if let Some(&bad) = labels.iter().find(|&&y| y as usize >= k) {
        return Err(TensorError::argument(
            "cross_entropy",
            format!("label {bad} is out of range for {k} classes"),
        )
        .into());
    }
    let index: Vec<usize> = labels.iter().map(|&y| y as usize).collect();
    let picked = logits.log_softmax(1)?.gather(1, &[n, 1], &index)?;
    Ok(picked.mean_all()?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffuse_tensor::Tensor;

    #[test]
    fn cross_entropy_matches_a_hand_computation_and_its_gradient() {
        // Row 0: softmax(0, ln 3) = (¼, ¾), label 1 → −ln ¾. Row 1: uniform over 2, label 0 → ln 2.
        let logits = Var::leaf(
            Tensor::from_slice(&[0.0, 3f32.ln(), 5.0, 5.0], &[2, 2], Device::Cpu).unwrap(),
        );
        let loss = cross_entropy(&logits, &[1, 0]).unwrap();
        let want = (-(0.75f64).ln() + 2f64.ln()) / 2.0;
        assert!((f64::from(loss.tensor().to_scalar().unwrap()) - want).abs() < 1e-6);
        // ∂loss/∂logits = (softmax − onehot)/N.
        let grad = loss
            .backward()
            .unwrap()
            .get(&logits)
            .unwrap()
            .to_vec()
            .unwrap();
        let want = [0.125, -0.125, -0.25, 0.25];
        assert!(
            grad.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6),
            "{grad:?}"
        );
    }

    #[test]
    fn cross_entropy_refuses_bad_labels() {
        let logits =
            Var::constant(Tensor::zeros(&[2, 3], diffuse_tensor::DType::F32, Device::Cpu).unwrap());
        assert!(cross_entropy(&logits, &[0])
            .unwrap_err()
            .to_string()
            .contains("1 labels for 2 rows"));
        assert!(cross_entropy(&logits, &[0, 3])
            .unwrap_err()
            .to_string()
            .contains("label 3"));
    }

    #[test]
    fn forward_gives_features_and_logits_of_the_documented_shapes() {
        let model = FashionClassifier::new(1, Device::Cpu).unwrap();
        // 32·9+32 + 64·32·9+64 + 64·64·9+64 + 3136·128+128 + 128·10+10 parameters.
        assert_eq!(model.store.numel(), 320 + 18_496 + 36_928 + 401_536 + 1_290);
        let x = Var::constant(
            Tensor::zeros(&[3, 1, 28, 28], diffuse_tensor::DType::F32, Device::Cpu).unwrap(),
        );
        let y = model.forward(&x).unwrap();
        assert_eq!(y.features.shape(), &[3, FEATURE_DIM]);
        assert_eq!(y.logits.shape(), &[3, NUM_CLASSES]);
        let wrong = Var::constant(
            Tensor::zeros(&[3, 1, 32, 32], diffuse_tensor::DType::F32, Device::Cpu).unwrap(),
        );
        assert!(model.forward(&wrong).is_err());
    }
}
