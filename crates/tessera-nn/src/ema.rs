//! An exponential moving average of model weights, evaluated in place of the live weights:
//! `shadow ← decay·shadow + (1 − decay)·param` after each optimiser step.

use tch::Tensor;

#[derive(Debug)]
pub struct WeightEma {
    pub decay: f64,
    /// (name, live parameter, shadow copy).
    slots: Vec<(String, Tensor, Tensor)>,
}

impl WeightEma {
    pub fn new(params: Vec<(String, Tensor)>, decay: f64) -> Self {
        let slots = params.into_iter().map(|(n, p)| {
            let shadow = p.detach().copy();
            (n, p, shadow)
        });
        Self { decay, slots: slots.collect() }
    }

    pub fn update(&mut self) {
        tch::no_grad(|| {
            for (_, p, s) in &mut self.slots {
                let _ = s.lerp_(&p.detach(), 1.0 - self.decay);
            }
        });
    }

    /// Exchange live and shadow weights (call twice to restore).
    pub fn swap(&mut self) {
        tch::no_grad(|| {
            for (_, p, s) in &mut self.slots {
                let live = p.detach().copy();
                p.copy_(s);
                s.copy_(&live);
            }
        });
    }

    /// Shadow weights as named tensors `<prefix>.<name>`.
    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.slots.iter().map(|(n, _, s)| (format!("{prefix}.{n}"), s.shallow_clone())).collect()
    }

    /// Restore shadow weights; names missing from `tensors` keep their current values.
    pub fn load_state(&mut self, prefix: &str, tensors: &std::collections::HashMap<String, Tensor>) {
        tch::no_grad(|| {
            for (n, _, s) in &mut self.slots {
                if let Some(t) = tensors.get(&format!("{prefix}.{n}")) {
                    s.copy_(t);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_and_swaps() {
        let mut p = Tensor::from_slice(&[0.0f32]);
        let mut ema = WeightEma::new(vec![("p".into(), p.shallow_clone())], 0.9);
        tch::no_grad(|| p.copy_(&Tensor::from_slice(&[10.0f32])));
        ema.update();
        assert!((ema.state("e")[0].1.double_value(&[0]) - 1.0).abs() < 1e-6);
        ema.swap();
        assert!((p.double_value(&[0]) - 1.0).abs() < 1e-6);
        ema.swap();
        assert!((p.double_value(&[0]) - 10.0).abs() < 1e-6);
    }
}
