//! Tests of the tokenizer task: discriminator inputs, its Adam before `disc_start`, pixel losses,
//! extra loss terms.
use super::*;
use std::sync::Arc;
use tch::Kind;
use tessera_data::{Dataset, FakeData, LoaderConfig};

fn config(disc_input: DiscInput) -> TokenizerRunConfig {
    let text = "[data]\nsource = \"fake\"\nimage_size = 32\nfake_len = 8\n[data.loader]\nbatch_size = 4\n\
                [model]\nch = 32\nch_mult = [1, 2]\nattn_resolutions = []\nresolution = 32\nz_channels = 16\n\
                [quantizer]\nnum_codes = 16\ndim = 16\n[disc]\nndf = 8\nn_layers = 2\n\
                [loss]\nperceptual_weight = 0.0\ndisc_start = 0\n[optim]\nbase_learning_rate = 1e-3\n\
                [eval]\ntrans_eq = false\n";
    let mut c: TokenizerRunConfig = tessera_core::config::load_str(text, &[], "test").unwrap();
    c.loss.disc_input = disc_input;
    c
}

fn batch() -> Batch {
    let ds: Arc<dyn Dataset> = Arc::new(FakeData { len: 8, size: 32, seed: 3 });
    let loader = DataLoader::new(ds, LoaderConfig { batch_size: 4, ..LoaderConfig::default() }, Device::Cpu);
    loader.epoch(0).next().unwrap().unwrap()
}

/// `recompute` shows the discriminator the reconstructions of the generator *after* its update
/// (taming); `reuse` the ones the generator step was scored on. The generator step is the same.
#[test]
fn discriminator_sees_the_updated_generator_unless_told_to_reuse() {
    let _serial = crate::TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new("unused");
    let b = batch();
    let mut recompute = TokenizerTask::new(config(DiscInput::Recompute), Device::Cpu, root).unwrap();
    let mut reuse = TokenizerTask::new(config(DiscInput::Reuse), Device::Cpu, root).unwrap();
    let d0: Vec<(String, Tensor)> =
        checkpoint::vars(&reuse.disc_vs, "").into_iter().map(|(n, t)| (n, t.detach().copy())).collect();
    let x0 = tch::no_grad(|| reuse.model.forward_t(&b.images, false)).unwrap().reconstruction;

    tch::manual_seed(0);
    let log_recompute = recompute.train_step(std::slice::from_ref(&b), 0).unwrap();
    tch::manual_seed(0);
    let log_reuse = reuse.train_step(std::slice::from_ref(&b), 0).unwrap();
    for ((n, a), (_, c)) in checkpoint::vars(&recompute.vs, "").iter().zip(checkpoint::vars(&reuse.vs, "")) {
        assert!(a.equal(&c), "generator parameter {n} differs");
    }
    assert_ne!(log_recompute["loss/disc"], log_reuse["loss/disc"]);
    // Frozen for the generator step, trainable again for its own.
    let moved = checkpoint::vars(&recompute.disc_vs, "")
        .iter()
        .zip(&d0)
        .filter(|((_, a), (_, b))| a.requires_grad() && !a.equal(b))
        .count();
    assert!(moved > 0, "the discriminator step updated no parameter");
    assert!(recompute.disc_vs.trainable_variables().iter().all(|t| t.requires_grad()));

    // The logged discriminator losses, recomputed by hand from the initial discriminator.
    let x1 = tch::no_grad(|| reuse.model.forward_t(&b.images, false)).unwrap().reconstruction;
    let fresh = TokenizerTask::new(config(DiscInput::Reuse), Device::Cpu, root).unwrap();
    let hand = |fake: &Tensor| -> f64 {
        tch::no_grad(|| fresh.loss.discriminator(&b.images, fake).double_value(&[]))
    };
    for ((n, a), (_, c)) in checkpoint::vars(&fresh.disc_vs, "").iter().zip(&d0) {
        assert!(a.equal(c), "{n}: the fresh discriminator starts where the others did");
    }
    assert!((hand(&x1) - log_recompute["loss/disc"]).abs() < 1e-6, "recompute uses x̂ after the update");
    assert!((hand(&x0) - log_reuse["loss/disc"]).abs() < 1e-6, "reuse uses x̂ before the update");
}

/// Before `disc_start` the discriminator does not move, but by default its Adam counts the
/// idle steps as taming's does; the first real update is then (1−β1)/√(1−β2) ≈ 1.58× the
/// cold-start one.
#[test]
fn discriminator_adam_counts_idle_steps_unless_told_not_to() {
    const IDLE: i64 = 40;
    let _serial = crate::TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new("unused");
    let b = batch();
    let mut first_update = Vec::new();
    for counts in [true, false] {
        let mut c = config(DiscInput::Reuse);
        c.loss.disc_start = IDLE;
        c.loss.disc_adam_counts_idle_steps = counts;
        let mut task = TokenizerTask::new(c, Device::Cpu, root).unwrap();
        let snapshot = |t: &TokenizerTask| -> Vec<Tensor> {
            checkpoint::vars(&t.disc_vs, "").into_iter().map(|(_, t)| t.detach().copy()).collect()
        };
        let d0 = snapshot(&task);
        for step in 0..IDLE {
            task.train_step(std::slice::from_ref(&b), step).unwrap();
        }
        assert!(snapshot(&task).iter().zip(&d0).all(|(a, b)| a.equal(b)), "idle steps move nothing");
        assert_eq!(task.opt_d.step, if counts { IDLE } else { 0 });
        // Trainable weights only: BatchNorm's running statistics move the same in both.
        let weights = |t: &TokenizerTask| -> Vec<Tensor> {
            t.disc_vs.trainable_variables().iter().map(|t| t.detach().copy()).collect()
        };
        let before = weights(&task);
        tch::manual_seed(0);
        task.train_step(std::slice::from_ref(&b), IDLE).unwrap();
        let moved: f64 = weights(&task)
            .iter()
            .zip(&before)
            .map(|(a, b)| (a - b).abs().max().double_value(&[]))
            .fold(0.0, f64::max);
        first_update.push(moved);
    }
    // Adam's first update is lr·sign(g) cold; after t − 1 idle steps it is
    // lr·(1−β1)/(1−β1ᵗ)·√(1−β2ᵗ)/√(1−β2)·sign(g), per coordinate (≈ 1.58 lr for large t).
    let t = (IDLE + 1) as i32;
    let want = 0.5 / (1.0 - 0.5f64.powi(t)) * (1.0 - 0.9f64.powi(t)).sqrt() / 0.1f64.sqrt();
    let ratio = first_update[0] / first_update[1];
    assert!((ratio - want).abs() < 0.01 * want, "ratio {ratio}, want {want}");
}

/// `loss.pixel`: taming's L1 by default, the squared error as an option.
#[test]
fn pixel_loss_is_l1_or_squared_error() {
    let _serial = crate::TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new("unused");
    let b = batch();
    for pixel in [PixelLoss::L1, PixelLoss::L2] {
        let mut c = config(DiscInput::Recompute);
        c.loss.disc_start = 1_000;
        c.loss.pixel = pixel;
        let mut task = TokenizerTask::new(c, Device::Cpu, root).unwrap();
        let xr = tch::no_grad(|| task.model.forward_t(&b.images, false)).unwrap().reconstruction;
        let d = &b.images - xr;
        let want = match pixel {
            PixelLoss::L1 => d.abs(),
            PixelLoss::L2 => &d * &d,
        }
        .mean(Kind::Float)
        .double_value(&[]);
        let log = task.train_step(std::slice::from_ref(&b), 0).unwrap();
        assert!((log["loss/rec"] - want).abs() < 1e-6 * want, "{pixel:?}: {} vs {want}", log["loss/rec"]);
    }
}

/// A test term: `weight · mean|x̂|`, with a graph to the decoder.
struct MeanAbsReconstruction(f64);

impl ExtraLoss for MeanAbsReconstruction {
    fn terms(
        &self,
        inputs: &tessera_models::tokenizer::LossInputs,
    ) -> std::result::Result<Vec<tessera_models::tokenizer::ExtraTerm>, String> {
        assert_eq!(inputs.captions.len() as i64, inputs.images.size()[0], "one caption slot per image");
        assert_eq!(inputs.codes.size()[0], inputs.images.size()[0], "codes are (B, N, C)");
        let value = inputs.reconstruction.abs().mean(Kind::Float);
        Ok(vec![tessera_models::tokenizer::ExtraTerm { name: "mean_abs".into(), value, weight: self.0 }])
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// An extra term joins `L_G`: it is logged under its name, added to the total, and its gradient
/// reaches the model; without it the step is unchanged.
#[test]
fn extra_loss_terms_join_the_generator_loss() {
    let _serial = crate::TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new("unused");
    let b = batch();
    let mut c = config(DiscInput::Recompute);
    c.loss.disc_start = 1_000;
    let mut plain = TokenizerTask::new(c.clone(), Device::Cpu, root).unwrap();
    let mut extra = TokenizerTask::new(c, Device::Cpu, root).unwrap();
    extra.add_loss_term(Box::new(MeanAbsReconstruction(0.5)));
    tch::manual_seed(0);
    let log_plain = plain.train_step(std::slice::from_ref(&b), 0).unwrap();
    tch::manual_seed(0);
    let log_extra = extra.train_step(std::slice::from_ref(&b), 0).unwrap();
    assert!(!log_plain.contains_key("loss/mean_abs"));
    let term = log_extra["loss/mean_abs"];
    assert!(term > 0.0);
    assert!((log_extra["loss/total"] - log_plain["loss/total"] - 0.5 * term).abs() < 1e-5, "{log_extra:?}");
    assert_eq!(log_extra["loss/rec"], log_plain["loss/rec"], "the forward pass is the same");
    let moved_apart = checkpoint::vars(&plain.vs, "")
        .iter()
        .zip(checkpoint::vars(&extra.vs, ""))
        .any(|((_, a), (_, b))| !a.equal(&b));
    assert!(moved_apart, "the term's gradient changed the update");
}

/// Config values without meaning are refused with the key that holds them.
#[test]
fn meaningless_values_name_their_key() {
    let mut c = config(DiscInput::Recompute);
    c.optim.base_learning_rate = f64::NAN;
    assert!(c.validate().unwrap_err().to_string().contains("base_learning_rate"));
    let mut c = config(DiscInput::Recompute);
    c.quantizer.dim = 0;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("[quantizer] dim") && !e.contains("model.ch"), "{e}");
    let mut c = config(DiscInput::Recompute);
    c.model.ch = 12;
    assert!(c.validate().unwrap_err().to_string().contains("[model] ch = 12"));
}
