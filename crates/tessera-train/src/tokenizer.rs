//! Training the VQGAN / TE-VQGAN tokenizer (spec §1.4, §1.5, §2.8).
//!
//! Generator step (taming `VQLPIPSWithDiscriminator`, optimizer_idx 0):
//! ```text
//! rec   = |x − x̂| + w_p·LPIPS(x, x̂)
//! L_nll = mean(rec)
//! g     = −mean(D(x̂))
//! λ     = clamp(‖∇_W L_nll‖ / (‖∇_W g‖ + 1e-4), 0, 1e4)·disc_weight,   W = decoder.conv_out.weight
//! f     = disc_factor if step ≥ disc_start else 0
//! L_G   = L_nll + λ·f·g + codebook_weight·(L_vq + L_ortho)
//! ```
//! Discriminator step: `L_D = f·½(mean relu(1 − D(x)) + mean relu(1 + D(x̂)))` (hinge) or
//! `f·½(mean softplus(−D(x)) + mean softplus(D(x̂)))` (vanilla). Both optimisers are
//! Adam(0.5, 0.9) at `lr = batch·base_lr` (taming's scaling, one device). Before `disc_start`
//! (f = 0) the discriminator's loss and gradients are zero, so its parameters do not move; but
//! taming still calls its Adam, whose step count then stands at `disc_start` when the GAN starts.
//! Adam's bias corrections `1 − βᵗ` are then ≈ 1, so the first real updates are
//! `(1−β1)/√(1−β2) ≈ 1.58×` the cold-start ones (β = 0.5, 0.9). Tessera counts those idle steps
//! too (`loss.disc_adam_counts_idle_steps = true`, the default); `false` starts the count at the
//! first real step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};
use tessera_data::{Batch, DataConfig, DataLoader, Dataset, LoaderConfig, Split};
use tessera_eval::equivariance::TransEq;
use tessera_models::disc::{DiscConfig, PatchGan};
use tessera_models::perceptual::{Backbone, Lpips};
use tessera_models::vqgan::{VqModel, VqganConfig};
use tessera_nn::ema::WeightEma;
use tessera_nn::optim::{Adam, AdamConfig};
use tessera_quant::{CodebookStats, OrthoConfig, VqConfig};

use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::metrics::Record;
use crate::runner::{LoopConfig, Task};
use crate::schedule::{lr_at, Decay};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DiscLoss {
    #[default]
    Hinge,
    Vanilla,
}

/// The pixel term of `L_nll`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelLoss {
    /// `|x − x̂|` (taming, TE-VQGAN).
    #[default]
    L1,
    /// `(x − x̂)²` (VQ-VAE). On sparse images such as MNIST64x64 (mostly black) L1's optimum under
    /// uncertainty is the median, black, and short runs stall there; the squared error does not.
    L2,
}

/// What the discriminator step is shown as fakes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscInput {
    /// Reconstructions by the generator *after* this step's update, as taming (Lightning runs
    /// `training_step` again for the discriminator's optimizer). Computed without gradient in eval
    /// mode, so dropout is off and codebook statistics are not counted twice.
    #[default]
    Recompute,
    /// The reconstructions the generator step was scored on (detached): one forward pass fewer.
    Reuse,
}

/// `[loss]`: taming's `VQLPIPSWithDiscriminator` settings, TE-VQGAN's values (spec §2.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    pub pixel: PixelLoss,
    pub perceptual_weight: f64,
    pub perceptual_backbone: Backbone,
    /// Weights of the perceptual network: `tessera train perceptual` output for `tiny`, or
    /// user-supplied VGG16 + lpips heads for `vgg16` (safetensors, or `.pth` as PyTorch wrote it,
    /// read without running pickled code).
    pub perceptual_weights: Option<PathBuf>,
    /// A second weight file merged into `perceptual_weights`, for VGG16 as users have it: torchvision's
    /// `vgg16-397923af.pth` there and the lpips package's `weights/v0.1/vgg.pth` here.
    pub perceptual_heads: Option<PathBuf>,
    /// Keep taming's Dropout(0.5) in the LPIPS heads active during training (spec §13.3).
    pub perceptual_head_dropout: bool,
    pub disc_weight: f64,
    pub disc_start: i64,
    pub disc_factor: f64,
    pub disc_loss: DiscLoss,
    pub disc_input: DiscInput,
    /// Count the zero-gradient discriminator steps before `disc_start` in its Adam's step count, as
    /// taming does (its first real updates are then ≈ 1.58× larger than a cold start's).
    pub disc_adam_counts_idle_steps: bool,
    pub codebook_weight: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            pixel: PixelLoss::L1,
            perceptual_weight: 1.0,
            perceptual_backbone: Backbone::Tiny,
            perceptual_weights: None,
            perceptual_heads: None,
            perceptual_head_dropout: false,
            disc_weight: 0.8,
            disc_start: 30_001,
            disc_factor: 1.0,
            disc_loss: DiscLoss::Hinge,
            disc_input: DiscInput::Recompute,
            disc_adam_counts_idle_steps: true,
            codebook_weight: 1.0,
        }
    }
}

/// `[optim]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// TE-VQGAN: 8e-6 (spec §2.5).
    pub base_learning_rate: f64,
    /// taming: lr = batch × base_lr (× devices × accumulation, both 1 here).
    pub scale_lr: bool,
    pub warmup_steps: i64,
    pub decay: Decay,
    pub min_lr_ratio: f64,
    pub clip_grad_norm: Option<f64>,
    /// Exponential moving average of the autoencoder's weights, used for validation.
    pub weight_ema: Option<f64>,
    pub adam: AdamConfig,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            base_learning_rate: 8e-6,
            scale_lr: true,
            warmup_steps: 0,
            decay: Decay::Constant,
            min_lr_ratio: 0.0,
            clip_grad_norm: None,
            weight_ema: None,
            adam: AdamConfig::default(),
        }
    }
}

/// `[eval]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Validation batches per validation (0 = the whole split).
    pub val_batches: usize,
    pub batch_size: usize,
    /// Measure Trans_eq_acc on the MNIST64x64 translated set.
    pub trans_eq: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { val_batches: 20, batch_size: 100, trans_eq: true }
    }
}

/// A whole tokenizer run. Defaults: TE-VQGAN's `mnist64x64_vqgan.yaml` (spec §2.5) with λ_o = 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerRunConfig {
    pub data: DataConfig,
    pub model: VqganConfig,
    pub quantizer: VqConfig,
    pub disc: DiscConfig,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub train: LoopConfig,
    pub eval: EvalConfig,
}

impl Default for TokenizerRunConfig {
    fn default() -> Self {
        let mut data = DataConfig::default();
        data.loader.batch_size = 96;
        Self {
            data,
            model: VqganConfig::default(),
            quantizer: VqConfig {
                num_codes: 128,
                dim: 256,
                ortho: OrthoConfig::default(),
                ..VqConfig::default()
            },
            disc: DiscConfig::default(),
            loss: LossConfig::default(),
            optim: OptimConfig::default(),
            train: LoopConfig::default(),
            eval: EvalConfig::default(),
        }
    }
}

impl TokenizerRunConfig {
    pub fn learning_rate(&self) -> f64 {
        if self.optim.scale_lr {
            (self.train.accumulate * self.data.loader.batch_size) as f64 * self.optim.base_learning_rate
        } else {
            self.optim.base_learning_rate
        }
    }

    /// Checks that do not need data.
    pub fn validate(&self) -> Result<()> {
        if self.quantizer.dim <= 0 || self.model.ch < 8 || self.model.ch % 8 != 0 {
            return Err(TrainError::Invalid(format!(
                "model.ch must be a positive multiple of 8 (taming's GroupNorm(32) needs 32; narrower nets use fewer groups), got {}",
                self.model.ch
            )));
        }
        if self.model.resolution % self.model.factor() != 0 {
            return Err(TrainError::Invalid(
                "model.resolution must be divisible by 2^(len(ch_mult)-1)".into(),
            ));
        }
        if self.loss.perceptual_weight > 0.0 && self.loss.perceptual_weights.is_none() {
            return Err(TrainError::Invalid(
                "loss.perceptual_weight > 0 needs loss.perceptual_weights: train the in-domain network with \
                 `tessera train perceptual --out RUN` (or supply VGG16 weights), or set loss.perceptual_weight = 0"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The models and optimisers of a tokenizer run.
pub struct TokenizerTask {
    pub config: TokenizerRunConfig,
    pub device: Device,
    pub vs: VarStore,
    pub model: VqModel,
    pub(crate) disc_vs: VarStore,
    disc: PatchGan,
    lpips: Option<(VarStore, Lpips)>,
    opt_ae: Adam,
    opt_d: Adam,
    ema: Option<WeightEma>,
    val: Option<DataLoader>,
    translated: Option<DataLoader>,
}

fn trainable(vs: &VarStore) -> Vec<(String, Tensor, bool)> {
    let mut v: Vec<(String, Tensor, bool)> =
        vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).map(|(n, t)| (n, t, true)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Load a perceptual network's weights from one or more files (safetensors or `torch.save`
/// `.pth`), merged in order. Names may be Tessera's (`net.features.0.weight`,
/// `lin0.model.0.weight`) or the originals': torchvision's VGG16 `features.0.weight` and the
/// `lpips` package's heads `lin0.model.1.weight` (its Dropout slot).
pub fn load_perceptual(vs: &mut VarStore, files: &[&Path]) -> Result<()> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for path in files {
        let file = tessera_core::torch_file::TorchFile::open(path)
            .and_then(|f| f.state_dict())
            .map_err(|e| TrainError::Invalid(format!("perceptual weights: {e}")))?;
        tensors.extend(file);
    }
    let path = files.first().copied().unwrap_or(Path::new("(no perceptual weight file)"));
    let mut renamed = HashMap::new();
    for (name, t) in tensors {
        let mut n = if name.starts_with("features.") { format!("net.{name}") } else { name };
        if n.starts_with("lin") && n.contains(".model.1.") {
            n = n.replace(".model.1.", ".model.0.");
        }
        renamed.insert(n, t);
    }
    // A network built with head dropout names its heads `model.1`: accept either slot.
    for (name, _) in vs.variables() {
        if name.contains(".model.1.") {
            if let Some(t) = renamed.remove(&name.replace(".model.1.", ".model.0.")) {
                renamed.insert(name, t);
            }
        }
    }
    checkpoint::restore_vars(vs, "", &renamed, path)?;
    vs.freeze();
    Ok(())
}

impl TokenizerTask {
    /// Build everything; `root` is the data cache (for validation sets).
    pub fn new(config: TokenizerRunConfig, device: Device, root: &Path) -> Result<Self> {
        config.validate()?;
        // Same seed, same initial weights: runs are reproducible and comparable (λ_o = 0 vs 10).
        tch::manual_seed(config.train.seed as i64);
        let vs = VarStore::new(device);
        let model = VqModel::new(&vs.root(), config.model.clone(), config.quantizer.clone())?;
        let disc_vs = VarStore::new(device);
        let disc = PatchGan::new(&(disc_vs.root() / "loss" / "discriminator"), &config.disc);
        let lpips = if config.loss.perceptual_weight > 0.0 {
            let mut pvs = VarStore::new(device);
            let lp =
                Lpips::new(&pvs.root(), config.loss.perceptual_backbone, config.loss.perceptual_head_dropout);
            let files: Vec<&Path> = config
                .loss
                .perceptual_weights
                .iter()
                .chain(&config.loss.perceptual_heads)
                .map(|p| p.as_path())
                .collect();
            load_perceptual(&mut pvs, &files)?;
            Some((pvs, lp))
        } else {
            None
        };
        let lr = config.learning_rate();
        let opt_ae = Adam::new(trainable(&vs), lr, config.optim.adam.clone());
        let opt_d = Adam::new(trainable(&disc_vs), lr, config.optim.adam.clone());
        let ema = config
            .optim
            .weight_ema
            .map(|d| WeightEma::new(trainable(&vs).into_iter().map(|(n, t, _)| (n, t)).collect(), d));
        let eval_loader =
            |ds: Arc<dyn Dataset>| DataLoader::new(ds, LoaderConfig::eval(config.eval.batch_size), device);
        let val = Some(eval_loader(config.data.open(Split::Validation, root)?));
        let translated = if config.eval.trans_eq && config.data.source == tessera_data::SourceKind::Mnist64 {
            Some(eval_loader(config.data.translated(root)?))
        } else {
            None
        };
        Ok(Self { config, device, vs, model, disc_vs, disc, lpips, opt_ae, opt_d, ema, val, translated })
    }

    fn disc_loss(&self, real: &Tensor, fake: &Tensor) -> Tensor {
        match self.config.loss.disc_loss {
            DiscLoss::Hinge => {
                ((-real + 1.0).relu().mean(Kind::Float) + (fake + 1.0).relu().mean(Kind::Float)) * 0.5
            }
            DiscLoss::Vanilla => {
                ((-real).softplus().mean(Kind::Float) + fake.softplus().mean(Kind::Float)) * 0.5
            }
        }
    }

    /// Reconstruction of `x` in eval mode (EMA weights if configured), no gradient.
    pub fn reconstruct(&mut self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        let out = tch::no_grad(|| self.model.forward_t(x, false));
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        let out = out?;
        Ok((out.reconstruction, out.quant.indices))
    }

    /// Code indices of `x` in eval mode (EMA weights if configured), row-major per image.
    ///
    /// # Shapes
    /// `x: (B, 3, H, W)` in `[-1, 1]` → `(B, h·w)` int64
    pub fn encode_codes(&mut self, x: &Tensor) -> Result<Tensor> {
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        let out = tch::no_grad(|| self.model.encode(x, false));
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        Ok(out?.indices.view([x.size()[0], -1]))
    }

    /// Images in `[-1, 1]` from code indices (eval mode, EMA weights if configured).
    ///
    /// # Shapes
    /// `codes: (B, h·w)` → `(B, 3, H, W)`
    pub fn decode_codes(&mut self, codes: &Tensor) -> Tensor {
        let side = self.config.model.latent_side();
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        let x = tch::no_grad(|| self.model.decode_indices(&codes.view([-1, side, side])).clamp(-1.0, 1.0));
        if let Some(e) = &mut self.ema {
            e.swap();
        }
        x
    }

    /// Translation equivariance on any data: the fraction of equal codes between each of the first
    /// `n` validation images and the same image moved by `(dy, dx)` pixels (a cyclic roll), compared
    /// on the overlap of the code maps (`shifted_agreement`, the generalisation of Trans_eq_acc to
    /// any data set and any shift that is a multiple of the downsampling factor f).
    pub fn shifted_agreement(&mut self, root: &Path, n: usize, dy: i64, dx: i64) -> Result<f64> {
        let f = self.config.model.factor();
        if dy % f != 0 || dx % f != 0 {
            return Err(TrainError::Invalid(format!(
                "shift ({dy}, {dx}) px is not a multiple of the downsampling factor f = {f}"
            )));
        }
        let ds = self.config.data.open(Split::Validation, root)?;
        let sub: Arc<dyn Dataset> = Arc::new(tessera_data::Subset::new(ds, n));
        let loader =
            DataLoader::new(sub, LoaderConfig::eval(self.config.eval.batch_size.max(1)), self.device);
        let (mut sum, mut count) = (0.0, 0usize);
        for b in loader.epoch(0) {
            let x = b?.images;
            let shifted = x.roll([dy, dx], [2, 3]);
            let side = self.config.model.latent_side();
            let a = self.encode_codes(&x)?.view([-1, side, side]);
            let c = self.encode_codes(&shifted)?.view([-1, side, side]);
            let m = a.size()[0] as usize;
            sum += tessera_eval::equivariance::shifted_agreement(&a, &c, dy / f, dx / f) * m as f64;
            count += m;
        }
        if count == 0 {
            return Err(TrainError::Invalid("the validation set is empty".into()));
        }
        Ok(sum / count as f64)
    }

    /// The generator half of a step: for each of the `k` micro-batches, forward, the losses of
    /// [`Task::train_step`] and backward of `L_G / k` (gradients sum to the mean). Returns the
    /// detached reconstructions when `loss.disc_input = "reuse"` will show them to the
    /// discriminator.
    fn generator_backward(
        &mut self,
        batches: &[Batch],
        step: i64,
        f: f64,
        log: &mut Record,
    ) -> Result<Vec<Tensor>> {
        let cfg = &self.config;
        let k = batches.len() as f64;
        let mut fakes = Vec::new();
        for batch in batches {
            let x = &batch.images;
            let out = self.model.forward_t(x, true)?;
            let xr = &out.reconstruction;
            let pixel = match cfg.loss.pixel {
                PixelLoss::L1 => (x - xr).abs(),
                PixelLoss::L2 => (x - xr).square(),
            };
            let (rec, p_loss) = match &self.lpips {
                Some((_, lp)) => {
                    let p = lp.forward_t(x, xr, true);
                    (pixel + &p * cfg.loss.perceptual_weight, Some(p.mean(Kind::Float)))
                }
                None => (pixel, None),
            };
            let nll = rec.mean(Kind::Float);
            let (g_term, d_weight) = if f > 0.0 {
                let g = -self.disc.forward_t(xr, true).mean(Kind::Float);
                let last = self.model.last_layer();
                let gn = Tensor::run_backward(&[&nll], &[last], true, false)[0].norm().double_value(&[]);
                let gg = Tensor::run_backward(&[&g], &[last], true, false)[0].norm().double_value(&[]);
                let w = (gn / (gg + 1e-4)).clamp(0.0, 1e4) * cfg.loss.disc_weight;
                add_mean(log, "loss/g", finite(step, "g_loss", &g)?, k);
                (g * (w * f), w)
            } else {
                (Tensor::zeros([], (Kind::Float, self.device)), 0.0)
            };
            let qloss = &out.quant.loss;
            let loss = &nll + &g_term + qloss * cfg.loss.codebook_weight;
            add_mean(log, "loss/total", finite(step, "generator loss", &loss)?, k);
            add_mean(log, "loss/rec", finite(step, "nll", &nll)?, k);
            add_mean(log, "loss/q", qloss.double_value(&[]), k);
            add_mean(log, "loss/commit", out.quant.losses.commitment.double_value(&[]), k);
            add_mean(log, "loss/ortho", out.quant.losses.orthogonal.double_value(&[]), k);
            if let Some(p) = p_loss {
                add_mean(log, "loss/perceptual", p.double_value(&[]), k);
            }
            add_mean(log, "d_weight", d_weight, k);
            add_mean(log, "perplexity", out.quant.perplexity, k);
            (loss / k).backward();
            if f > 0.0 && cfg.loss.disc_input == DiscInput::Reuse {
                fakes.push(xr.detach());
            }
        }
        Ok(fakes)
    }

    /// The discriminator half: `L_D / k` backward for each micro-batch, on fakes chosen by
    /// `loss.disc_input` (`fakes` for "reuse"; recomputed by the updated generator otherwise).
    fn discriminator_backward(
        &mut self,
        batches: &[Batch],
        fakes: &[Tensor],
        step: i64,
        f: f64,
        log: &mut Record,
    ) -> Result<()> {
        let k = batches.len() as f64;
        self.opt_d.zero_grad();
        for (i, batch) in batches.iter().enumerate() {
            let x = &batch.images;
            let fake = match self.config.loss.disc_input {
                DiscInput::Reuse => fakes[i].shallow_clone(),
                DiscInput::Recompute => tch::no_grad(|| self.model.forward_t(x, false))?.reconstruction,
            };
            let real = self.disc.forward_t(&x.detach(), true);
            let fake = self.disc.forward_t(&fake, true);
            let d_loss = self.disc_loss(&real, &fake) * f;
            add_mean(log, "loss/disc", finite(step, "discriminator loss", &d_loss)?, k);
            (d_loss / k).backward();
        }
        Ok(())
    }

    /// Validation metrics over `val_batches` of the validation split and the translated set.
    pub fn evaluate(&mut self) -> Result<Record> {
        let mut rec = Record::new();
        let mut stats = CodebookStats::new(self.config.quantizer.num_codes as usize, usize::MAX >> 1);
        let (mut l1, mut psnr, mut ssim, mut n) = (0.0, 0.0, 0.0, 0usize);
        let val = self.val.clone().expect("validation loader");
        let limit = if self.config.eval.val_batches == 0 { usize::MAX } else { self.config.eval.val_batches };
        for batch in val.epoch(0).take(limit) {
            let x = batch?.images;
            let (xr, idx) = self.reconstruct(&x)?;
            let b = x.size()[0] as usize;
            let (x01, r01) = ((&x + 1.0) / 2.0, ((&xr + 1.0) / 2.0).clamp(0.0, 1.0));
            l1 += (&x - &xr).abs().mean(Kind::Float).double_value(&[]) * b as f64;
            psnr += tessera_eval::image::psnr(&x01, &r01).clamp_max(100.0).sum(Kind::Float).double_value(&[]);
            ssim += tessera_eval::image::ssim(&x01, &r01).sum(Kind::Float).double_value(&[]);
            let counts: Vec<i64> =
                Vec::try_from(idx.flatten(0, -1).bincount::<Tensor>(None, self.config.quantizer.num_codes))
                    .unwrap();
            stats.observe(&counts.iter().map(|&c| c as u64).collect::<Vec<_>>());
            n += b;
        }
        let n = n.max(1) as f64;
        rec.insert("rec_l1".into(), l1 / n);
        rec.insert("psnr".into(), psnr / n);
        rec.insert("ssim".into(), ssim / n);
        rec.insert("usage".into(), stats.window_usage());
        rec.insert("perplexity".into(), stats.window_perplexity());
        rec.insert("dead_codes".into(), stats.dead_codes() as f64);
        if let Some(tr) = self.translated.clone() {
            let mut te = TransEq::default();
            for batch in tr.epoch(0) {
                let (_, idx) = self.reconstruct(&batch?.images)?;
                te.add(&idx);
            }
            rec.insert("trans_eq_acc".into(), te.accuracy());
        }
        Ok(rec)
    }
}

/// Adds `v / k` to `log[key]`: the mean of a logged value over `k` micro-batches.
fn add_mean(log: &mut Record, key: &str, v: f64, k: f64) {
    *log.entry(key.into()).or_insert(0.0) += v / k;
}

fn finite(step: i64, name: &str, t: &Tensor) -> Result<f64> {
    let v = t.double_value(&[]);
    if v.is_finite() {
        Ok(v)
    } else {
        Err(TrainError::NonFinite { step, what: format!("{name} = {v}") })
    }
}

impl Task for TokenizerTask {
    fn kind(&self) -> &'static str {
        "vqgan"
    }

    /// taming's two optimizer steps (spec §1.4, §1.5) on one batch or on `accumulate`
    /// micro-batches, each loss divided by their number so that the summed gradients are a mean:
    ///
    /// - generator: `L = L_nll + λ·f·g + codebook_weight·(L_vq + L_ortho)`, with
    ///   `L_nll = mean(|x − x̂| + w_p·P(x, x̂))` (`(x − x̂)²` with `loss.pixel = "l2"`), `g = −mean(D(x̂))` and the adaptive weight
    ///   `λ = clamp(‖∇_W L_nll‖ / (‖∇_W g‖ + 1e-4), 0, 1e4)·disc_weight` on the last decoder layer
    ///   `W`, per micro-batch; `f = disc_factor` from `disc_start` on, else 0;
    /// - discriminator (when `f > 0`): `L_D = f·½(mean relu(1 − D(x)) + mean relu(1 + D(x̂)))`
    ///   (hinge) on reconstructions chosen by `loss.disc_input`.
    fn train_step(&mut self, batches: &[Batch], step: i64) -> Result<Record> {
        let cfg = &self.config;
        let lr = lr_at(
            cfg.learning_rate(),
            step,
            cfg.train.max_steps,
            cfg.optim.warmup_steps,
            cfg.optim.decay,
            cfg.optim.min_lr_ratio,
        );
        let f = if step >= cfg.loss.disc_start { cfg.loss.disc_factor } else { 0.0 };
        let clip = cfg.optim.clip_grad_norm;
        self.opt_ae.lr = lr;
        self.opt_d.lr = lr;
        let mut log = Record::new();
        self.opt_ae.zero_grad();
        // The discriminator is frozen during the generator step (Lightning's `toggle_optimizer`):
        // `g` still back-propagates through it to x̂, but no gradient is computed for its weights.
        self.disc_vs.freeze();
        let fakes = self.generator_backward(batches, step, f, &mut log);
        self.disc_vs.unfreeze();
        let fakes = fakes?;
        log.insert("usage_window".into(), self.model.quantize.stats.window_usage());
        log.insert("lr".into(), lr);
        if let Some(c) = clip {
            log.insert("grad_norm".into(), self.opt_ae.clip_grad_norm(c));
        }
        self.opt_ae.step();
        if let Some(e) = &mut self.ema {
            e.update();
        }
        if f > 0.0 {
            self.discriminator_backward(batches, &fakes, step, f, &mut log)?;
            self.opt_d.step();
        } else if self.config.loss.disc_adam_counts_idle_steps {
            // taming's zero-gradient step: moments stay 0, parameters stay put, the count grows.
            self.opt_d.step += 1;
        }
        Ok(log)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut s = checkpoint::vars(&self.vs, "model.");
        s.extend(checkpoint::vars(&self.disc_vs, "disc."));
        s.extend(self.opt_ae.state("opt_ae"));
        s.extend(self.opt_d.state("opt_d"));
        if let Some(e) = &self.ema {
            s.extend(e.state("ema"));
        }
        s
    }

    fn load_state(&mut self, t: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        checkpoint::restore_vars(&self.vs, "model.", t, path)?;
        checkpoint::restore_vars(&self.disc_vs, "disc.", t, path)?;
        let mismatch = |e: tessera_nn::optim::OptimError| TrainError::Mismatch {
            path: path.into(),
            reason: e.to_string(),
        };
        self.opt_ae.load_state("opt_ae", t).map_err(mismatch)?;
        self.opt_d.load_state("opt_d", t).map_err(mismatch)?;
        if let Some(e) = &mut self.ema {
            e.load_state("ema", t);
        }
        Ok(())
    }

    fn validate(&mut self, _step: i64) -> Result<Record> {
        self.evaluate()
    }

    fn sample_grid(&mut self, batch: &Batch) -> Result<image::RgbImage> {
        let n = batch.images.size()[0].min(8);
        let x = batch.images.narrow(0, 0, n);
        let (xr, _) = self.reconstruct(&x)?;
        let mut imgs = tessera_data::tensor::tensor_to_images(&x)?;
        imgs.extend(tessera_data::tensor::tensor_to_images(&xr)?);
        Ok(tessera_core::viz::image_grid(&imgs, n as usize, 2))
    }

    fn plots(&self) -> Vec<(&'static str, &'static str, Vec<&'static str>, bool)> {
        vec![
            ("train_losses", "train", vec!["loss/total", "loss/rec", "loss/q", "loss/perceptual"], true),
            ("gan", "train", vec!["loss/g", "loss/disc"], false),
            ("val_quality", "val", vec!["psnr"], false),
            ("val_codes", "val", vec!["usage", "trans_eq_acc", "ssim"], false),
        ]
    }
}

/// Train a tokenizer into `dir`.
pub fn train(
    config: TokenizerRunConfig,
    device: Device,
    root: &Path,
    dir: &Path,
    resume: bool,
) -> Result<(TokenizerTask, crate::runner::Summary)> {
    let toml = tessera_core::config::to_toml(&config);
    let train_set = config.data.open(Split::Train, root)?;
    let loader = DataLoader::new(train_set, config.data.loader.clone(), device);
    let mut task = TokenizerTask::new(config.clone(), device, root)?;
    let summary = crate::runner::run(&mut task, &loader, &config.train, dir, &toml, resume)?;
    Ok((task, summary))
}

/// Rebuild a trained tokenizer from its run directory (config + last checkpoint).
pub fn load_run(dir: &Path, device: Device, root: &Path) -> Result<TokenizerTask> {
    let ckpt = dir.join("checkpoints/last.safetensors");
    let ck: checkpoint::Checkpoint<crate::runner::Meta> = checkpoint::load(&ckpt)?;
    if ck.meta.kind != "vqgan" {
        let reason = format!("it is a `{}` run, not a VQGAN tokenizer", ck.meta.kind);
        return Err(TrainError::Mismatch { path: ckpt, reason });
    }
    let config: TokenizerRunConfig =
        tessera_core::config::load_str(&ck.meta.config, &[], &ckpt.display().to_string())
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
    let mut task = TokenizerTask::new(config, device, root)?;
    task.load_state(&ck.tensors, &ckpt)?;
    Ok(task)
}

/// What [`import_taming`] did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub loaded: usize,
    /// Tessera-only variables kept at their initial values (codebook statistics).
    pub kept: Vec<String>,
    /// Checkpoint tensors with no Tessera counterpart (LPIPS, blur filters, …).
    pub ignored: Vec<String>,
}

/// Read a checkpoint's model tensors without executing pickled code
/// ([`tessera_core::torch_file`]): a `torch.save` state_dict (`.pth`, `.pt`, `.bin`), a
/// PyTorch-Lightning `.ckpt` (its `state_dict`; optimizer states are not read), or safetensors.
/// Returns the tensors and the Lightning `global_step` when there is one.
pub fn read_checkpoint_tensors(path: &Path) -> Result<(HashMap<String, Tensor>, Option<i64>)> {
    let bad = |e: tessera_core::torch_file::TorchFileError| TrainError::BadCheckpoint {
        path: path.into(),
        reason: e.to_string(),
    };
    let file = tessera_core::torch_file::TorchFile::open(path).map_err(bad)?;
    let tensors = file.state_dict().map_err(bad)?;
    // A state_dict saved from inside a Lightning module may still carry the `state_dict.` prefix.
    let tensors = tensors
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("state_dict.").map(String::from).unwrap_or(k), v))
        .collect();
    Ok((tensors, file.int("global_step")))
}

/// Turn a taming / TE-VQGAN checkpoint into a Tessera run at step 0: every model parameter is
/// looked up by its taming state_dict key (`encoder.…`, `decoder.…`, `quant_conv.…`,
/// `quantize.embedding.weight`, `loss.discriminator.…`).
pub fn import_taming(
    config: TokenizerRunConfig,
    tensors: &HashMap<String, Tensor>,
    device: Device,
    root: &Path,
    dir: &Path,
) -> Result<ImportReport> {
    let toml = tessera_core::config::to_toml(&config);
    let task = TokenizerTask::new(config, device, root)?;
    let mut report = ImportReport::default();
    let mut used = std::collections::HashSet::new();
    let tessera_only =
        |n: &str| n.ends_with("cluster_size") || n.ends_with("embed_avg") || n.ends_with("initialized");
    for (vs, optional) in [(&task.vs, false), (&task.disc_vs, true)] {
        tch::no_grad(|| -> Result<()> {
            for (name, mut var) in vs.variables() {
                match tensors.get(&name) {
                    Some(src) if src.size() == var.size() => {
                        var.copy_(src);
                        used.insert(name.clone());
                        report.loaded += 1;
                    }
                    Some(src) => {
                        return Err(TrainError::Invalid(format!(
                            "`{name}` is {:?} in the checkpoint but {:?} in this config: check [model] and [quantizer]",
                            src.size(),
                            var.size()
                        )))
                    }
                    None if optional || tessera_only(&name) => report.kept.push(name),
                    None => {
                        return Err(TrainError::Invalid(format!(
                            "the checkpoint has no `{name}`: is the config the one it was trained with \
                             (use_replicationpad changes encoder keys to `….1.weight`)?"
                        )))
                    }
                }
            }
            Ok(())
        })?;
    }
    report.ignored = tensors.keys().filter(|k| !used.contains(*k)).cloned().collect();
    report.ignored.sort();
    let meta = crate::runner::Meta {
        format: crate::runner::FORMAT.into(),
        kind: "vqgan".into(),
        step: 0,
        config: toml.clone(),
    };
    checkpoint::save(&dir.join("checkpoints/last.safetensors"), &task.state(), &meta)?;
    tessera_core::fsutil::write_atomic(&dir.join("config.toml"), toml.as_bytes())
        .map_err(|e| TrainError::io(dir, e))?;
    Ok(report)
}

#[cfg(test)]
mod tests;
