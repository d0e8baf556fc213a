//! Linear probe: a multinomial logistic regression on frozen features (ViT-VQGAN §4.2 after
//! iGPT; spec §9.4). Features are standardised with the training set's mean and deviation, then
//! `softmax(W x + b)` is fitted by full-batch Adam on `CE + λ‖W‖²`, and scored by accuracy.
//!
//! The same probe runs on every representation (VIM's block features, the tokenizer's codes, raw
//! pixels), so only the features differ between the rows of a comparison.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// How the probe is fitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    /// Full-batch Adam steps.
    pub steps: usize,
    pub learning_rate: f64,
    /// λ of the L2 penalty on the weights (not the bias).
    pub l2: f64,
    pub seed: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self { steps: 500, learning_rate: 0.01, l2: 1e-4, seed: 0 }
    }
}

impl tessera_core::Validate for ProbeConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        c.int("steps", self.steps, 1, 1_000_000, "");
        c.float_above("learning_rate", self.learning_rate, 0.0, 10.0, "");
        c.float("l2", self.l2, 0.0, 100.0, "");
    }
}

/// What a probe scored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Feature width.
    pub dim: i64,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
}

fn accuracy(logits: &Tensor, y: &Tensor) -> f64 {
    logits.argmax(1, false).eq_tensor(y).to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
}

/// Fit on `(train_x, train_y)`, score on both sets.
///
/// # Shapes
/// `train_x: (N, D)`, `train_y: (N,)` int64 in `0..classes`, `test_x: (M, D)`, `test_y: (M,)`
pub fn linear_probe(
    train_x: &Tensor,
    train_y: &Tensor,
    test_x: &Tensor,
    test_y: &Tensor,
    classes: i64,
    cfg: &ProbeConfig,
) -> Result<ProbeResult, String> {
    tessera_core::Validate::validate(cfg)?;
    let (n, d) = match train_x.size()[..] {
        [n, d] => (n, d),
        ref s => return Err(format!("probe training features must be (N, D), got {s:?}")),
    };
    if test_x.dim() != 2 || test_x.size()[1] != d {
        return Err(format!("probe test features {:?} do not match the training width {d}", test_x.size()));
    }
    if train_y.size() != [n] || test_y.size() != [test_x.size()[0]] {
        return Err(format!(
            "probe labels {:?} / {:?} do not match {n} / {} feature rows",
            train_y.size(),
            test_y.size(),
            test_x.size()[0]
        ));
    }
    let in_range =
        |y: &Tensor| y.numel() == 0 || (y.min().int64_value(&[]) >= 0 && y.max().int64_value(&[]) < classes);
    if !in_range(train_y) || !in_range(test_y) {
        return Err(format!("probe labels must lie in 0..{classes}"));
    }
    let _guard = tch::no_grad_guard();
    let f = |x: &Tensor| x.to_device(Device::Cpu).to_kind(Kind::Float);
    let (xtr, xte) = (f(train_x), f(test_x));
    let (ytr, yte) = (train_y.to_device(Device::Cpu), test_y.to_device(Device::Cpu));
    let mean = xtr.mean_dim(0, true, Kind::Float);
    let std = xtr.std_dim(0, false, true).clamp_min(1e-6);
    let (xtr, xte) = ((&xtr - &mean) / &std, (&xte - &mean) / &std);
    drop(_guard);
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let head = nn::linear(vs.root() / "probe", d, classes, Default::default());
    let mut opt = nn::Adam::default().build(&vs, cfg.learning_rate).map_err(|e| e.to_string())?;
    for _ in 0..cfg.steps {
        let loss =
            head.forward(&xtr).cross_entropy_for_logits(&ytr) + head.ws.square().sum(Kind::Float) * cfg.l2;
        opt.backward_step(&loss);
    }
    tch::no_grad(|| {
        Ok(ProbeResult {
            dim: d,
            train_accuracy: accuracy(&head.forward(&xtr), &ytr),
            test_accuracy: accuracy(&head.forward(&xte), &yte),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three Gaussian blobs in 5-d, the class in the first two dims, noise in the rest.
    fn blobs(n: i64, seed: i64) -> (Tensor, Tensor) {
        tch::manual_seed(seed);
        let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3);
        let centres = Tensor::from_slice2(&[[4.0f32, 0.0], [-4.0, 0.0], [0.0, 4.0]]);
        let x =
            Tensor::cat(&[centres.index_select(0, &y), Tensor::zeros([n, 3], (Kind::Float, Device::Cpu))], 1)
                + Tensor::randn([n, 5], (Kind::Float, Device::Cpu));
        (x, y)
    }

    #[test]
    fn separable_classes_are_found_and_random_labels_are_not() {
        let (x, y) = blobs(600, 1);
        let (tx, ty) = blobs(300, 2);
        let r = linear_probe(&x, &y, &tx, &ty, 3, &ProbeConfig::default()).unwrap();
        assert_eq!(r.dim, 5);
        assert!(r.test_accuracy > 0.95, "{r:?}");
        // Labels unrelated to the features: the probe cannot beat chance on held-out data.
        let shuffled = y.index_select(0, &Tensor::randperm(600, (Kind::Int64, Device::Cpu))).roll([1], [0]);
        let noise = Tensor::randn([600, 5], (Kind::Float, Device::Cpu));
        let tnoise = Tensor::randn([300, 5], (Kind::Float, Device::Cpu));
        let r = linear_probe(&noise, &shuffled, &tnoise, &ty, 3, &ProbeConfig::default()).unwrap();
        assert!(r.test_accuracy < 0.45, "{r:?}");
    }

    #[test]
    fn mismatched_shapes_and_labels_are_errors() {
        let (x, y) = blobs(30, 1);
        let cfg = ProbeConfig::default();
        let e = linear_probe(&x, &y, &x.narrow(1, 0, 4), &y, 3, &cfg).unwrap_err();
        assert!(e.contains("width 5"), "{e}");
        let e = linear_probe(&x, &y.narrow(0, 0, 10), &x, &y, 3, &cfg).unwrap_err();
        assert!(e.contains("labels"), "{e}");
        let e = linear_probe(&x, &y, &x, &y, 2, &cfg).unwrap_err();
        assert!(e.contains("0..2"), "{e}");
        let bad = ProbeConfig { steps: 0, ..cfg };
        assert!(linear_probe(&x, &y, &x, &y, 3, &bad).unwrap_err().contains("steps"));
    }
}
