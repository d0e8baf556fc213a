//! Tessera's in-domain perceptual network: the LPIPS formula over a small conv net trained here
//! to recognise digit and colour on 28×28 crops of MNIST64x64 training images. It stands in for
//! ImageNet VGG16, which cannot be fetched on this project's machines; everything it measures is
//! reported as "in-domain perceptual (substitute, not LPIPS)".
//!
//! The saved file holds the [`Lpips`] VarStore (`net.features.*`, uniform `1/C` heads
//! `lin{i}.model.0.weight`), ready for `loss.perceptual_weights`.

use std::path::Path;
use std::sync::Arc;

use rand::Rng;
use serde::Serialize;
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};
use tessera_data::mnist64::{stream, Mnist64, Split};
use tessera_data::tensor::images_to_tensor;
use tessera_models::perceptual::{Backbone, Lpips};
use tessera_nn::optim::{Adam, AdamConfig};

use crate::error::{Result, TrainError};

/// A batch of 28×28 digit crops with (digit, colour) labels.
pub fn digit_crops(
    g: &Mnist64,
    split: Split,
    start: usize,
    n: usize,
    seed: u64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let mut imgs = Vec::with_capacity(n);
    let (mut digits, mut colours) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in start..start + n {
        let idx = i % g.len(split);
        let scene = g.scene(split, idx);
        let img = g.render(split, &scene);
        let pick = stream(seed, 900, i as u64).gen_range(0..scene.digits.len());
        let d = scene.digits[pick];
        let (r, c) = d.location.origin();
        imgs.push(image::imageops::crop_imm(&img, c as u32, r as u32, 28, 28).to_image());
        digits.push(d.digit as i64);
        colours.push(d.colour as i64);
    }
    Ok((images_to_tensor(&imgs)?, Tensor::from_slice(&digits), Tensor::from_slice(&colours)))
}

#[derive(Debug, Serialize)]
pub struct PerceptualReport {
    pub steps: i64,
    pub digit_accuracy: f64,
    pub colour_accuracy: f64,
    pub label: &'static str,
}

/// Train for `steps` batches of 128 crops and write `dir/perceptual.safetensors`.
pub fn train_perceptual(
    g: Arc<Mnist64>,
    steps: i64,
    device: Device,
    dir: &Path,
    seed: u64,
) -> Result<PerceptualReport> {
    tch::manual_seed(seed as i64);
    let vs = VarStore::new(device);
    let lp = Lpips::new(&vs.root(), Backbone::Tiny, false);
    let heads_vs = VarStore::new(device);
    let digit_head = nn::linear(heads_vs.root() / "digit", 128, 10, Default::default());
    let colour_head = nn::linear(heads_vs.root() / "colour", 128, 4, Default::default());
    let mut params: Vec<(String, Tensor, bool)> =
        vs.trainable_variables().into_iter().enumerate().map(|(i, t)| (format!("n{i}"), t, false)).collect();
    params.extend(
        heads_vs.trainable_variables().into_iter().enumerate().map(|(i, t)| (format!("h{i}"), t, false)),
    );
    let mut opt = Adam::new(params, 1e-3, AdamConfig { beta1: 0.9, beta2: 0.999, ..AdamConfig::default() });
    // Heads of LPIPS are not trained here: only the feature network.
    let logits = |x: &Tensor| {
        let f = lp.net.features(x).pop().expect("three taps").mean_dim(&[2i64, 3][..], false, Kind::Float);
        (digit_head.forward(&f), colour_head.forward(&f))
    };
    let pb = crate::progress_bar("perceptual", steps as u64);
    for step in 0..steps {
        let (x, d, c) = digit_crops(&g, Split::Train, step as usize * 128, 128, seed)?;
        let (ld, lc) = logits(&x.to_device(device));
        let loss = ld.cross_entropy_for_logits(&d.to_device(device))
            + lc.cross_entropy_for_logits(&c.to_device(device));
        if !loss.double_value(&[]).is_finite() {
            return Err(TrainError::NonFinite { step, what: "perceptual classifier loss".into() });
        }
        opt.zero_grad();
        loss.backward();
        opt.step();
        pb.inc(1);
    }
    pb.finish_and_clear();
    let (x, d, c) = digit_crops(&g, Split::Validation, 0, 2000, seed)?;
    let (ld, lc) = tch::no_grad(|| logits(&x.to_device(device)));
    let acc = |l: &Tensor, y: &Tensor| {
        l.argmax(1, false)
            .eq_tensor(&y.to_device(device))
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[])
    };
    let report = PerceptualReport {
        steps,
        digit_accuracy: acc(&ld, &d),
        colour_accuracy: acc(&lc, &c),
        label: Backbone::Tiny.label(),
    };
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let tensors = crate::checkpoint::vars(&vs, "");
    let tmp = dir.join(".perceptual.safetensors.tmp");
    Tensor::write_safetensors(&tensors, &tmp)?;
    std::fs::rename(&tmp, dir.join("perceptual.safetensors")).map_err(|e| TrainError::io(dir, e))?;
    let json = serde_json::to_string_pretty(&report).expect("report serializes");
    tessera_core::fsutil::write_atomic(&dir.join("perceptual.json"), json.as_bytes())
        .map_err(|e| TrainError::io(dir, e))?;
    Ok(report)
}
