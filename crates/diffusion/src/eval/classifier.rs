//! The feature extractor of the evaluation metrics: a small convolutional image classifier, for C×H×W images of
//! K classes (the shipped one reads Fashion-MNIST's 1×28×28 images of 10 classes).
//!
//! ```text
//! x (N,C,H,W) in [−1, 1]
//!   conv1  C→32, 3×3, pad 1            → (N,32,H,W),         ReLU
//!   conv2 32→64, 3×3, stride 2, pad 1  → (N,64,⌈H/2⌉,⌈W/2⌉), ReLU
//!   conv3 64→64, 3×3, stride 2, pad 1  → (N,64,⌈H/4⌉,⌈W/4⌉), ReLU
//!   flatten                            → (N,64·⌈H/4⌉·⌈W/4⌉)
//!   fc1  →128, ReLU                    → (N,128)   the features
//!   fc2   128→K                        → (N,K)     the logits
//! ```
//!
//! The 128 features play the part Inception-v3's pool-3 activations play for FID on natural images: the metrics of
//! this module compare distributions in that space. Parameter names follow PyTorch's (`conv1.weight`, `fc2.bias`), so
//! a checkpoint written by [`ParamStore::save`] loads with [`ImageClassifier::load`]. A classifier trained on another
//! dataset is a folder ([`ImageClassifier::save_folder`]): `config.json` (what it reads, its classes, its name) beside
//! `model.safetensors`.

use crate::error::{Error, Result};
use diffuse_autograd::Var;
use diffuse_models::folder::{
    file_error, load_weights, read_config, save_folder, sync_dir, TRANSFORMERS_WEIGHTS_FILE,
};
use diffuse_nn::{Conv2d, Linear, Module, ParamStore, Path};
use diffuse_tensor::{Conv2dParams, Device, Error as TensorError};
use serde::{Deserialize, Serialize};

/// Side length of the square grey-scale images the shipped Fashion-MNIST classifier reads.
pub const IMAGE_SIZE: usize = 28;
/// Number of classes of the shipped classifier (the Fashion-MNIST labels 0–9).
pub const NUM_CLASSES: usize = 10;
/// Width of the feature layer.
pub const FEATURE_DIM: usize = 128;
/// The shipped classifier's name, used in [`super::EvalReport`].
pub const NAME: &str = "fashion_classifier";
/// `_class_name` of a classifier folder's `config.json`.
pub const CLASS_NAME: &str = "DiffuseImageClassifier";
/// Most weights `fc1` may have (2²⁶, 256 MiB of f32): larger images must be resized before they are classified.
const MAX_FC1_WEIGHTS: usize = 1 << 26;

/// What a classifier reads and predicts, and what its features are called.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// The extractor's name in reports.
    pub name: String,
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
}

impl ClassifierConfig {
    /// The shipped classifier's: 1×28×28 images of the 10 Fashion-MNIST classes.
    pub fn fashion_mnist() -> ClassifierConfig {
        ClassifierConfig {
            name: NAME.into(),
            in_channels: 1,
            height: IMAGE_SIZE,
            width: IMAGE_SIZE,
            num_classes: NUM_CLASSES,
        }
    }

    /// Inputs of `fc1`: 64 channels of ⌈H/4⌉×⌈W/4⌉.
    fn flat_features(&self) -> usize {
        64 * self.height.div_ceil(4) * self.width.div_ceil(4)
    }

    /// Refuses empty shapes, fewer than two classes and images whose feature layer would be too large.
    pub fn validate(&self) -> Result<()> {
        let fail = |message: String| -> Result<()> {
            Err(TensorError::argument("ClassifierConfig", message).into())
        };
        if self.in_channels == 0 || self.height == 0 || self.width == 0 {
            return fail(format!(
                "images of {}×{}×{}: every side must be at least 1",
                self.in_channels, self.height, self.width
            ));
        }
        if self.num_classes < 2 {
            return fail(format!(
                "{} class{}: a classifier needs at least two",
                self.num_classes,
                if self.num_classes == 1 { "" } else { "es" }
            ));
        }
        let weights = self.flat_features().saturating_mul(FEATURE_DIM);
        if weights > MAX_FC1_WEIGHTS {
            return fail(format!(
                "{}×{} images would give the feature layer {weights} weights (at most {MAX_FC1_WEIGHTS}); resize                  the images (--resolution 128 or less)",
                self.height, self.width
            ));
        }
        Ok(())
    }
}

/// The folder's `config.json`: the config under the class name that says what the folder is.
#[derive(Serialize, Deserialize)]
struct ConfigFile {
    #[serde(rename = "_class_name")]
    class_name: String,
    #[serde(flatten)]
    config: ClassifierConfig,
    feature_dim: usize,
}

/// The CNN above; its parameters live in [`ImageClassifier::store`].
pub struct ImageClassifier {
    pub store: ParamStore,
    config: ClassifierConfig,
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
    /// (N, K) unnormalised log-probabilities.
    pub logits: Var,
}

impl ImageClassifier {
    /// A freshly initialised classifier (PyTorch's default initialisation from Philox stream `seed`).
    pub fn new(config: ClassifierConfig, seed: u64, device: Device) -> Result<ImageClassifier> {
        config.validate()?;
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
        Ok(ImageClassifier {
            conv1: conv(&root.sub("conv1"), config.in_channels, 32, same)?,
            conv2: conv(&root.sub("conv2"), 32, 64, halve)?,
            conv3: conv(&root.sub("conv3"), 64, 64, halve)?,
            fc1: Linear::new(&root.sub("fc1"), config.flat_features(), FEATURE_DIM, true)?,
            fc2: Linear::new(&root.sub("fc2"), FEATURE_DIM, config.num_classes, true)?,
            store,
            config,
        })
    }

    /// A classifier of `config` with the weights of the safetensors file at `path` (as written by the
    /// `fashion_classifier` example, e.g. `data/classifier/fashion-classifier.safetensors`).
    pub fn load(
        path: impl AsRef<std::path::Path>,
        config: ClassifierConfig,
        device: Device,
    ) -> Result<ImageClassifier> {
        let model = ImageClassifier::new(config, 0, device)?;
        model.store.load(path)?;
        Ok(model)
    }

    /// A classifier of `config` with the weights of safetensors bytes (e.g. a file embedded in a program); errors
    /// name `source`.
    pub fn from_bytes(
        bytes: &[u8],
        source: &std::path::Path,
        config: ClassifierConfig,
        device: Device,
    ) -> Result<ImageClassifier> {
        let model = ImageClassifier::new(config, 0, device)?;
        model.store.load_bytes(bytes, source)?;
        Ok(model)
    }

    /// The classifier folder `dir` ([`ImageClassifier::save_folder`]'s layout).
    pub fn open_folder(dir: &std::path::Path, device: Device) -> Result<ImageClassifier> {
        let file: ConfigFile = read_config(dir, |text| {
            serde_json::from_str(text).map_err(|e| {
                diffuse_models::Error::model(
                    "config.json",
                    format!(
                        "not a classifier config ({e}); write one with `diffuse classifier train`"
                    ),
                )
            })
        })
        .map_err(Error::from)?;
        if file.class_name != CLASS_NAME || file.feature_dim != FEATURE_DIM {
            return Err(Error::from(file_error(
                &dir.join("config.json"),
                format!(
                    "describes a {} with {} features, not a {CLASS_NAME} with {FEATURE_DIM}",
                    file.class_name, file.feature_dim
                ),
            )));
        }
        let model = ImageClassifier::new(file.config, 0, device)?;
        load_weights(&model.store, &dir.join(TRANSFORMERS_WEIGHTS_FILE)).map_err(Error::from)?;
        Ok(model)
    }

    /// Writes the classifier as the folder `dir`, atomically: into a temporary sibling, synced, then renamed over
    /// `dir`, so a crash leaves the old folder or the new one.
    pub fn save_folder(&self, dir: &std::path::Path) -> Result<()> {
        let name = dir
            .file_name()
            .ok_or_else(|| Error::from(file_error(dir, "not a folder path")))?;
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::from(file_error(parent, e)))?;
        let tmp = parent.join(format!(".tmp-{}", name.to_string_lossy()));
        let io = |path: &std::path::Path, e: std::io::Error| Error::from(file_error(path, e));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        }
        let file = ConfigFile {
            class_name: CLASS_NAME.into(),
            config: self.config.clone(),
            feature_dim: FEATURE_DIM,
        };
        let json =
            serde_json::to_string_pretty(&file).map_err(|e| Error::from(file_error(&tmp, e)))?;
        save_folder(
            &tmp,
            &format!("{json}\n"),
            &self.store,
            TRANSFORMERS_WEIGHTS_FILE,
        )
        .map_err(Error::from)?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| io(dir, e))?;
        sync_dir(parent).map_err(Error::from)
    }

    /// What it reads and predicts.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// Features and logits of a batch `x` of shape (N, C, H, W).
    pub fn forward(&self, x: &Var) -> Result<ClassifierOutput> {
        let [.., features] = self.activations(x)?;
        let logits = self.fc2.forward(&features)?;
        Ok(ClassifierOutput { features, logits })
    }

    /// The ReLU activations of every hidden layer for a batch `x` (N, C, H, W): conv1 (N, 32, H, W), conv2
    /// (N, 64, ⌈H/2⌉, ⌈W/2⌉), conv3 (N, 64, ⌈H/4⌉, ⌈W/4⌉) and fc1 (N, 128), the last being the features.
    pub fn activations(&self, x: &Var) -> Result<[Var; 4]> {
        let c = &self.config;
        let want = [c.in_channels, c.height, c.width];
        if x.shape().len() != 4 || x.shape()[1..] != want {
            return Err(TensorError::shape(
                "ImageClassifier",
                format!(
                    "input has shape {:?}, expected (N, {}, {}, {})",
                    x.shape(),
                    c.in_channels,
                    c.height,
                    c.width
                ),
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
    fn a_classifier_folder_round_trips_and_other_folders_are_refused() {
        let config = ClassifierConfig {
            name: "tiny".into(),
            in_channels: 3,
            height: 10,
            width: 7,
            num_classes: 4,
        };
        let model = ImageClassifier::new(config.clone(), 5, Device::Cpu).unwrap();
        let dir = std::env::temp_dir().join(format!("diffuse-classifier-{}", std::process::id()));
        let folder = dir.join("cls");
        model.save_folder(&folder).unwrap();
        // Saving again replaces the folder whole, through a temporary that does not stay behind.
        model.save_folder(&folder).unwrap();
        assert!(!dir.join(".tmp-cls").exists());
        let back = ImageClassifier::open_folder(&folder, Device::Cpu).unwrap();
        assert_eq!(back.config(), &config);
        let x = Var::constant(
            Tensor::from_vec(
                (0..2 * 3 * 10 * 7)
                    .map(|i| (i as f32 * 0.37).sin())
                    .collect(),
                &[2, 3, 10, 7],
                Device::Cpu,
            )
            .unwrap(),
        );
        let (a, b) = (model.forward(&x).unwrap(), back.forward(&x).unwrap());
        // Same weights, same order of operations: bit-identical outputs.
        assert_eq!(
            a.logits.tensor().to_vec().unwrap(),
            b.logits.tensor().to_vec().unwrap()
        );
        assert_eq!(a.features.shape(), &[2, FEATURE_DIM]);
        assert_eq!(a.logits.shape(), &[2, 4]);
        std::fs::write(
            folder.join("config.json"),
            r#"{"_class_name": "UNet2DModel"}"#,
        )
        .unwrap();
        let message = ImageClassifier::open_folder(&folder, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.contains("config.json") && message.contains("diffuse classifier train"),
            "{message}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn configs_that_cannot_make_a_classifier_are_refused_by_name() {
        let base = ClassifierConfig::fashion_mnist();
        let one_class = ClassifierConfig {
            num_classes: 1,
            ..base.clone()
        };
        assert!(one_class
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at least two"));
        let huge = ClassifierConfig {
            height: 1024,
            width: 1024,
            ..base.clone()
        };
        assert!(huge
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--resolution"));
        let empty = ClassifierConfig {
            in_channels: 0,
            ..base
        };
        assert!(empty.validate().is_err());
    }

    #[test]
    fn forward_gives_features_and_logits_of_the_documented_shapes() {
        let model =
            ImageClassifier::new(ClassifierConfig::fashion_mnist(), 1, Device::Cpu).unwrap();
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
