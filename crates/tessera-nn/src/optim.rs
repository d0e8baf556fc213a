//! Adam and AdamW whose whole state (moments and step) is a list of named tensors, so a
//! checkpoint can hold it and a resumed run continues exactly. (tch's built-in optimisers keep
//! their state inside libtorch where it cannot be saved.)
//!
//! The update is PyTorch's single-tensor Adam:
//! ```text
//! g ← g + wd·p            (Adam, L2)         |  p ← p·(1 − lr·wd)   (AdamW, decoupled)
//! m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²
//! p ← p − lr/(1−β₁ᵗ) · m / (√v / √(1−β₂ᵗ) + ε)
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW's decoupled weight decay instead of Adam's L2 term.
    pub decoupled: bool,
}

impl tessera_core::Validate for AdamConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        c.unit_open("beta1", self.beta1, "");
        c.unit_open("beta2", self.beta2, "");
        c.float_above("eps", self.eps, 0.0, 1.0, "");
        c.float("weight_decay", self.weight_decay, 0.0, 10.0, "");
    }
}

impl Default for AdamConfig {
    /// taming's `Adam(betas=(0.5, 0.9))` (spec §1.5).
    fn default() -> Self {
        Self { beta1: 0.5, beta2: 0.9, eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    #[error("optimiser state is missing `{0}` (checkpoint from another model?)")]
    Missing(String),
    #[error("optimiser state `{name}` has shape {found:?}, expected {expected:?}")]
    Shape { name: String, found: Vec<i64>, expected: Vec<i64> },
}

/// One parameter and its moments.
#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    m: Tensor,
    v: Tensor,
    /// Weight decay applies (false for biases, norms and embeddings in AdamW setups).
    decay: bool,
}

#[derive(Debug)]
pub struct Adam {
    pub config: AdamConfig,
    pub lr: f64,
    pub step: i64,
    slots: Vec<Slot>,
}

impl Adam {
    /// `params`: (name, tensor, apply weight decay) for every trainable tensor.
    pub fn new(params: Vec<(String, Tensor, bool)>, lr: f64, config: AdamConfig) -> Self {
        let slots = params
            .into_iter()
            .map(|(name, param, decay)| {
                let m = tch::no_grad(|| param.zeros_like());
                let v = tch::no_grad(|| param.zeros_like());
                Slot { name, param, m, v, decay }
            })
            .collect();
        Self { config, lr, step: 0, slots }
    }

    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            let mut g = s.param.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }

    /// Scale gradients so their global l2 norm is at most `max_norm`; returns the norm before.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self.slots.iter().map(|s| s.param.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let total = tch::no_grad(|| {
            let sq: Vec<Tensor> =
                grads.iter().map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float)).collect();
            Tensor::stack(&sq, 0).sum(Kind::Float).sqrt().double_value(&[])
        });
        let coef = max_norm / (total + 1e-6);
        if coef < 1.0 {
            tch::no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(coef);
                }
            });
        }
        total
    }

    /// The global l2 norm of the current gradients.
    pub fn grad_norm(&self) -> f64 {
        tch::no_grad(|| {
            self.slots
                .iter()
                .map(|s| s.param.grad())
                .filter(|g| g.defined())
                .map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float).double_value(&[]))
                .sum::<f64>()
                .sqrt()
        })
    }

    pub fn step(&mut self) {
        self.step += 1;
        let c = &self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let step_size = self.lr / bc1;
        tch::no_grad(|| {
            for s in &mut self.slots {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                let mut g = g.shallow_clone();
                if s.decay && c.weight_decay != 0.0 {
                    if c.decoupled {
                        s.param *= 1.0 - self.lr * c.weight_decay;
                    } else {
                        // Out of place, as PyTorch: `g += …` would alter the stored gradient.
                        g = g.f_add(&(&s.param * c.weight_decay)).expect("same shape");
                    }
                }
                // In place where PyTorch's Adam is (`lerp_`, `mul_().addcmul_()`, `addcdiv_`):
                // three temporaries a parameter instead of seven.
                let _ = s.m.lerp_(&g, 1.0 - c.beta1);
                s.v *= c.beta2;
                let _ = s.v.addcmul_(&g, &(&g * (1.0 - c.beta2)));
                let mut denom = s.v.sqrt();
                denom /= bc2_sqrt;
                denom += c.eps;
                let _ = s.param.addcdiv_(&(&s.m * -step_size), &denom);
            }
        })
    }

    /// The state as named tensors: `<prefix>.m.<param>`, `<prefix>.v.<param>`, `<prefix>.step`.
    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.slots.len() + 1);
        for s in &self.slots {
            out.push((format!("{prefix}.m.{}", s.name), s.m.shallow_clone()));
            out.push((format!("{prefix}.v.{}", s.name), s.v.shallow_clone()));
        }
        out.push((format!("{prefix}.step"), Tensor::from(self.step)));
        out
    }

    /// Restore from tensors named as [`state`](Self::state) names them.
    pub fn load_state(&mut self, prefix: &str, tensors: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        let get = |k: String| tensors.get(&k).ok_or(OptimError::Missing(k));
        for s in &mut self.slots {
            for (which, dst) in [("m", &mut s.m), ("v", &mut s.v)] {
                let name = format!("{prefix}.{which}.{}", s.name);
                let src = get(name.clone())?;
                if src.size() != dst.size() {
                    return Err(OptimError::Shape { name, found: src.size(), expected: dst.size() });
                }
                tch::no_grad(|| dst.copy_(src));
            }
        }
        self.step = get(format!("{prefix}.step"))?.int64_value(&[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two hand-computed Adam steps on f(p) = p²/2 (gradient p), lr 0.1, β (0.5, 0.9), ε 1e-8.
    #[test]
    fn matches_hand_computed_adam() {
        let p = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let mut opt = Adam::new(
            vec![("p".into(), p.shallow_clone(), true)],
            0.1,
            AdamConfig { eps: 1e-8, ..Default::default() },
        );
        let (mut m, mut v, mut x) = (0.0f64, 0.0f64, 1.0f64);
        for t in 1..=2 {
            opt.zero_grad();
            (&p * &p / 2.0).sum(Kind::Double).backward();
            opt.step();
            let g = x;
            m = 0.5 * m + 0.5 * g;
            v = 0.9 * v + 0.1 * g * g;
            let mhat = 0.1 / (1.0 - 0.5f64.powi(t));
            x -= mhat * m / (v.sqrt() / (1.0 - 0.9f64.powi(t)).sqrt() + 1e-8);
            assert!((p.double_value(&[0]) - x).abs() < 1e-12, "step {t}: {} vs {x}", p.double_value(&[0]));
        }
    }

    #[test]
    fn state_round_trips_and_resumes_identically() {
        let run = |resume_at: Option<usize>| {
            let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
            let cfg = AdamConfig { weight_decay: 0.1, decoupled: true, ..Default::default() };
            let mut opt = Adam::new(vec![("w".into(), p.shallow_clone(), true)], 0.05, cfg.clone());
            for i in 0..6 {
                if Some(i) == resume_at {
                    let saved: HashMap<String, Tensor> =
                        opt.state("opt").into_iter().map(|(k, v)| (k, v.copy())).collect();
                    opt = Adam::new(vec![("w".into(), p.shallow_clone(), true)], 0.05, cfg.clone());
                    opt.load_state("opt", &saved).unwrap();
                }
                opt.zero_grad();
                (&p * &p).sum(Kind::Float).backward();
                opt.step();
            }
            Vec::<f32>::try_from(&p.detach()).unwrap()
        };
        assert_eq!(run(None), run(Some(3)));
        let empty = HashMap::new();
        let p = Tensor::zeros([1], (Kind::Float, tch::Device::Cpu));
        let mut opt = Adam::new(vec![("w".into(), p, true)], 0.1, AdamConfig::default());
        assert!(opt.load_state("opt", &empty).unwrap_err().to_string().contains("opt.m.w"));
    }

    #[test]
    fn clipping_caps_the_global_norm() {
        let p = Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
        let mut opt = Adam::new(vec![("p".into(), p.shallow_clone(), true)], 0.1, AdamConfig::default());
        (&p * &p / 2.0).sum(Kind::Float).backward(); // grad = (3, 4), norm 5
        assert!((opt.clip_grad_norm(1.0) - 5.0).abs() < 1e-6);
        assert!((opt.grad_norm() - 1.0).abs() < 1e-5);
    }
}
