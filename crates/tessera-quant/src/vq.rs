//! The vector quantizer (spec §1.3, §2.2, §2.3, §4.2, §6.2, §7.1).
//!
//! ```text
//! z   = project_in(x)                  (factorized codes only; ViT-VQGAN)
//! ẑ   = l2norm(z)                      (cosine only)
//! k   = argmin_j d(ẑ, e_j)             (chunked search, see distance.rs)
//! z_q = e_k                            (l2norm(e_k) for cosine)
//! L   = β·mean((sg[z_q] − ẑ)²) + mean((z_q − sg[ẑ])²)     (β on commitment: default)
//!     = mean((sg[z_q] − ẑ)²) + β·mean((z_q − sg[ẑ])²)     (taming legacy placement)
//!     = β·mean((sg[z_q] − ẑ)²)                            (EMA codebook: commitment only)
//!     + λ·Σ(ÊÊᵀ − I)²/n²                                  (TE-VQGAN orthogonality, λ > 0)
//! out = project_out(ẑ + sg[z_q − ẑ])                       (straight-through estimator)
//! ```
//! Parameter names follow the original checkpoints: `embedding.weight` (taming, TE-VQGAN,
//! L-Verse), `embedding.cluster_size` and `embedding.embed_avg` (L-Verse's EMA), `project_in` /
//! `project_out` (vector-quantize-pytorch).

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use crate::config::{BetaPlacement, CodebookInit, CodebookUpdate, Distance, StraightThrough, VqConfig};
use crate::distance::{nearest_codes, Metric};
use crate::ema::ema_step;
use crate::kmeans::kmeans;
use crate::l2_normalize;
use crate::ortho::orthogonality_loss;
use crate::stats::CodebookStats;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    #[error(
        "the orthogonality regulariser needs a codebook updated by gradient (update = \"gradient\"); \
         with update = \"ema\" it would silently do nothing"
    )]
    OrthoWithEma,
    #[error("invalid quantizer config: {0}")]
    Config(String),
    #[error("quantizer input must be (B, C, H, W), (B, N, C) or (N, C) with C = {dim}; got {shape:?}")]
    Shape { dim: i64, shape: Vec<i64> },
}

/// The loss terms, each already weighted; `loss` is their sum.
#[derive(Debug)]
pub struct VqLosses {
    /// β·mean((sg[z_q] − z)²), or without β under the legacy placement.
    pub commitment: Tensor,
    /// mean((z_q − sg[z])²), times β under the legacy placement; zero with EMA.
    pub codebook: Tensor,
    /// λ·L_ortho; zero when λ = 0.
    pub orthogonal: Tensor,
    /// CVQ-VAE's contrastive term (`online_reinit.contrastive`, training only); zero otherwise.
    pub contrastive: Tensor,
}

/// What a forward pass returns.
#[derive(Debug)]
pub struct QuantizerOutput {
    /// Straight-through quantized vectors, same shape as the input.
    pub quantized: Tensor,
    /// Code indices: (B, H, W), (B, N) or (N,), int64.
    pub indices: Tensor,
    /// Sum of the loss terms (scalar).
    pub loss: Tensor,
    pub losses: VqLosses,
    /// Perplexity of this batch's assignments.
    pub perplexity: f64,
    /// Codes re-seeded from batch vectors in this step.
    pub revived: usize,
}

/// How the input was laid out, to restore it.
enum Layout {
    Image { b: i64, h: i64, w: i64 },
    Sequence { b: i64, n: i64 },
    Flat,
}

/// A vector quantizer over a codebook of K codes.
#[derive(Debug)]
pub struct VectorQuantizer {
    pub config: VqConfig,
    /// (K, D_lookup), `embedding.weight`.
    pub embedding: Tensor,
    /// (K,) EMA of per-code assignment counts, `embedding.cluster_size`.
    cluster_size: Tensor,
    /// (K, D_lookup) EMA of assigned vector sums, `embedding.embed_avg` (EMA update only).
    embed_avg: Option<Tensor>,
    /// 1 once k-means initialisation has run (scalar, checkpointed).
    initialized: Tensor,
    project_in: Option<nn::Linear>,
    project_out: Option<nn::Linear>,
    pub stats: CodebookStats,
    /// CVQ-VAE's usage EMA (`online_reinit`): `embedding.embed_prob`.
    embed_prob: Option<Tensor>,
    /// Anchor rows to use at the next training step instead of drawing them (parity tests replay
    /// upstream's draws).
    pub replay_anchors: Option<Tensor>,
}

impl VectorQuantizer {
    /// Build under `p` (e.g. `vs.root() / "quantize"`). Validates the config.
    pub fn new(p: &nn::Path, config: VqConfig) -> Result<Self, QuantError> {
        if config.ortho.weight > 0.0 && config.update == CodebookUpdate::Ema {
            return Err(QuantError::OrthoWithEma);
        }
        if config.num_codes < 1 || config.dim < 1 || config.lookup_dim() < 1 {
            return Err(QuantError::Config(format!(
                "num_codes, dim and codebook_dim must be positive: {config:?}"
            )));
        }
        if !(0.0..1.0).contains(&config.ema_decay) || config.search_chunk < 1 {
            return Err(QuantError::Config("ema_decay must be in [0, 1) and search_chunk ≥ 1".into()));
        }
        let (k, d) = (config.num_codes, config.lookup_dim());
        let e = p / "embedding";
        let opts = (Kind::Float, p.device());
        let init = match config.init {
            CodebookInit::Uniform | CodebookInit::Kmeans => {
                Tensor::rand([k, d], opts) * (2.0 / k as f64) - 1.0 / k as f64
            }
            CodebookInit::Normal => Tensor::randn([k, d], opts),
        };
        let ema = config.update == CodebookUpdate::Ema;
        let embedding = e.add("weight", init, !ema);
        let cluster_size = e.zeros_no_train("cluster_size", &[k]);
        let embed_avg = ema.then(|| e.add("embed_avg", embedding.detach().copy(), false));
        let initialized = p.zeros_no_train("initialized", &[]);
        let (project_in, project_out) = if config.factorized() {
            (
                Some(nn::linear(p / "project_in", config.dim, d, Default::default())),
                Some(nn::linear(p / "project_out", d, config.dim, Default::default())),
            )
        } else {
            (None, None)
        };
        let stats = CodebookStats::new(k as usize, config.usage_window);
        let embed_prob = config.online_reinit.is_some().then(|| e.zeros_no_train("embed_prob", &[k]));
        if config.online_reinit.is_some() && (ema || config.distance != Distance::Euclidean) {
            return Err(QuantError::Config(
                "online_reinit needs update = \"gradient\" and distance = \"euclidean\"".into(),
            ));
        }
        Ok(Self {
            config,
            embedding,
            cluster_size,
            embed_avg,
            initialized,
            project_in,
            project_out,
            stats,
            embed_prob,
            replay_anchors: None,
        })
    }

    fn metric(&self) -> Metric {
        match self.config.distance {
            Distance::Euclidean => Metric::Euclidean,
            Distance::Cosine | Distance::CosineRawCodes => Metric::Cosine,
        }
    }

    /// The EMA usage of each code (K,).
    pub fn cluster_size(&self) -> &Tensor {
        &self.cluster_size
    }

    /// The EMA sums (K, D), with the EMA update.
    pub fn embed_avg(&self) -> Option<&Tensor> {
        self.embed_avg.as_ref()
    }

    /// Replace the codebook (tests, imports). Resets EMA sums to match.
    pub fn set_codebook(&mut self, codes: &Tensor) {
        tch::no_grad(|| {
            self.embedding.copy_(codes);
            if let Some(ea) = &mut self.embed_avg {
                ea.copy_(codes);
            }
        });
    }

    fn flatten(&self, x: &Tensor) -> Result<(Tensor, Layout), QuantError> {
        let s = x.size();
        let bad = || QuantError::Shape { dim: self.config.dim, shape: s.clone() };
        match *s.as_slice() {
            [b, c, h, w] if c == self.config.dim => {
                Ok((x.permute([0, 2, 3, 1]).reshape([-1, c]), Layout::Image { b, h, w }))
            }
            [b, n, c] if c == self.config.dim => Ok((x.reshape([-1, c]), Layout::Sequence { b, n })),
            [_, c] if c == self.config.dim => Ok((x.shallow_clone(), Layout::Flat)),
            _ => Err(bad()),
        }
    }

    fn restore(&self, flat: Tensor, layout: &Layout) -> (Tensor, Box<dyn Fn(Tensor) -> Tensor>) {
        match *layout {
            Layout::Image { b, h, w } => {
                let c = flat.size()[1];
                // Contiguous NCHW again: a permuted (channels-last) tensor would make every conv
                // and GroupNorm of the decoder run channels-last, which libtorch's CPU kernels
                // (GroupNorm backward above all) do more slowly than PyTorch's NCHW path.
                (
                    flat.reshape([b, h, w, c]).permute([0, 3, 1, 2]).contiguous(),
                    Box::new(move |i: Tensor| i.reshape([b, h, w])),
                )
            }
            Layout::Sequence { b, n } => {
                let c = flat.size()[1];
                (flat.reshape([b, n, c]), Box::new(move |i: Tensor| i.reshape([b, n])))
            }
            Layout::Flat => (flat, Box::new(|i| i)),
        }
    }

    /// Quantize `x`. In training (`train = true`) the codebook state moves: k-means
    /// initialisation on the first batch, EMA update, dead-code revival, usage statistics.
    ///
    /// # Shapes
    /// `x`: (B, C, H, W) | (B, N, C) | (N, C) with C = `dim` → `quantized` same shape,
    /// `indices` (B, H, W) | (B, N) | (N,)
    pub fn forward_t(&mut self, x: &Tensor, train: bool) -> Result<QuantizerOutput, QuantError> {
        let in_kind = x.kind();
        let (flat, layout) = self.flatten(&x.to_kind(Kind::Float))?;
        let z = match &self.project_in {
            Some(l) => l.forward(&flat),
            None => flat,
        };
        let raw = z.shallow_clone();
        let z = if self.config.distance == Distance::Cosine { l2_normalize(&z) } else { z };
        if train && self.config.init == CodebookInit::Kmeans && self.initialized.double_value(&[]) == 0.0 {
            self.kmeans_init(&z);
        }

        let (search_z, search_e) = match self.config.distance {
            Distance::Euclidean => (z.detach(), self.embedding.detach()),
            Distance::Cosine => (z.detach(), l2_normalize(&self.embedding.detach())),
            Distance::CosineRawCodes => (l2_normalize(&z.detach()), l2_normalize(&self.embedding.detach())),
        };
        let indices = nearest_codes(&search_z, &search_e, self.metric(), self.config.search_chunk);
        let codes = if self.config.distance == Distance::Cosine {
            l2_normalize(&self.graph_codebook())
        } else {
            self.embedding.shallow_clone()
        };
        let z_q = codes.index_select(0, &indices);

        let commit = (&z - z_q.detach()).square().mean(Kind::Float);
        let codebook_term = (&z_q - z.detach()).square().mean(Kind::Float);
        let beta = self.config.beta;
        let zero = || Tensor::zeros([], (Kind::Float, z.device()));
        let (commitment, codebook) = match (self.config.update, self.config.beta_placement) {
            (CodebookUpdate::Ema, _) => (commit * beta, zero()),
            (CodebookUpdate::Gradient, BetaPlacement::Commitment) => (commit * beta, codebook_term),
            (CodebookUpdate::Gradient, BetaPlacement::Legacy) => (commit, codebook_term * beta),
        };
        let counts_t = indices.bincount::<Tensor>(None, self.config.num_codes);
        let orthogonal = if self.config.ortho.weight > 0.0 {
            self.orthogonality(&counts_t) * self.config.ortho.weight
        } else {
            zero()
        };

        // CVQ-VAE: the contrastive term on this step's codebook, then the re-initialisation.
        let contrastive = match (&self.config.online_reinit, train) {
            (Some(c), true) => self.online_reinit(&z.detach(), &counts_t, c.clone()),
            _ => zero(),
        };
        let mut revived = 0;
        if train {
            self.update_codebook_state(&z.detach(), &indices, &counts_t);
            revived = self.revive_dead_codes(&z.detach());
        }
        let counts: Vec<u64> =
            Vec::<i64>::try_from(&counts_t).expect("bincount is int64").iter().map(|&c| c as u64).collect();
        let perplexity = crate::stats::perplexity(&counts);
        if train {
            self.stats.observe(&counts);
        }

        let ste_input = match (self.config.distance, self.config.straight_through) {
            (Distance::Cosine, StraightThrough::Raw) => &raw,
            _ => &z,
        };
        let straight_through = ste_input + (&z_q - ste_input).detach();
        let out = match &self.project_out {
            Some(l) => l.forward(&straight_through),
            None => straight_through,
        };
        let (quantized, shape_indices) = self.restore(out, &layout);
        let loss = &commitment + &codebook + &orthogonal + &contrastive;
        Ok(QuantizerOutput {
            quantized: quantized.to_kind(in_kind),
            indices: shape_indices(indices),
            loss,
            losses: VqLosses { commitment, codebook, orthogonal, contrastive },
            perplexity,
            revived,
        })
    }

    /// The codebook as a fresh autograd node (`E·1`). Losses that save their input for the
    /// backward pass (normalisation) must not save `embedding` itself: the EMA update and
    /// dead-code revival change it in place later in the same step, which would invalidate the
    /// graph. Gradients still reach `embedding` through the product.
    fn graph_codebook(&self) -> Tensor {
        &self.embedding * 1.0
    }

    /// CVQ-VAE's step ([`crate::cvq`]): the contrastive term (graph to the codebook) from the
    /// codebook as it is, then the usage EMA and every code pulled toward its anchor.
    fn online_reinit(&mut self, z: &Tensor, counts: &Tensor, c: crate::cvq::OnlineReinit) -> Tensor {
        let d = crate::cvq::neg_sq_distance(z, &self.graph_codebook());
        let loss = if c.contrastive {
            crate::cvq::contrastive_loss(&d, c.temperature)
        } else {
            Tensor::zeros([], (Kind::Float, z.device()))
        };
        let anchors = match self.replay_anchors.take() {
            Some(a) => a.to_device(z.device()),
            None => tch::no_grad(|| crate::cvq::sample_anchors(&d.detach(), c.anchor)),
        };
        let usage = self.embed_prob.as_mut().expect("online_reinit has its usage EMA");
        let _pull = crate::cvq::reinit(&mut self.embedding, usage, counts, z, &anchors, c.decay);
        loss
    }

    /// λ-free orthogonality term over the configured subset of codes.
    fn orthogonality(&self, counts: &Tensor) -> Tensor {
        let cfg = &self.config.ortho;
        let mut codes = self.graph_codebook();
        if cfg.active_codes_only {
            let active = counts.gt(0).nonzero().squeeze_dim(1);
            codes = codes.index_select(0, &active);
        }
        if let Some(max) = cfg.max_codes {
            let n = codes.size()[0];
            if n > max as i64 {
                let pick = Tensor::randperm(n, (Kind::Int64, codes.device())).narrow(0, 0, max as i64);
                codes = codes.index_select(0, &pick);
            }
        }
        orthogonality_loss(&codes, cfg.normalize)
    }

    fn kmeans_init(&mut self, z: &Tensor) {
        let (means, bins) = kmeans(
            z,
            self.config.num_codes,
            self.config.kmeans_iters,
            self.metric(),
            self.config.search_chunk,
        );
        tch::no_grad(|| {
            self.embedding.copy_(&means);
            if let Some(ea) = &mut self.embed_avg {
                ea.copy_(&(&means * bins.unsqueeze(1)));
                self.cluster_size.copy_(&bins);
            }
            let _ = self.initialized.fill_(1.0);
        });
    }

    /// EMA codebook step (spec §4.2), or, with gradient updates, just the usage EMA that
    /// dead-code revival reads.
    fn update_codebook_state(&mut self, z: &Tensor, indices: &Tensor, counts: &Tensor) {
        let decay = self.config.ema_decay;
        match &mut self.embed_avg {
            Some(ea) => {
                let s = ema_step(z, indices, &self.cluster_size, ea, decay, self.config.ema_eps);
                tch::no_grad(|| {
                    self.cluster_size.copy_(&s.cluster_size);
                    ea.copy_(&s.embed_avg);
                    self.embedding.copy_(&s.weight);
                });
            }
            None if self.config.dead_code_threshold > 0.0 => tch::no_grad(|| {
                let cs = &self.cluster_size * decay + counts.to_kind(Kind::Float) * (1.0 - decay);
                self.cluster_size.copy_(&cs);
            }),
            None => {}
        }
    }

    /// Re-seed codes whose EMA usage is below the threshold with random vectors of this batch,
    /// and reset their EMA state in the same step: `cluster_size := threshold`,
    /// `embed_avg := vector·threshold` (so `embed_avg / cluster_size` is the new code).
    fn revive_dead_codes(&mut self, z: &Tensor) -> usize {
        let t = self.config.dead_code_threshold;
        if t <= 0.0 {
            return 0;
        }
        tch::no_grad(|| {
            let dead = self.cluster_size.lt(t).nonzero().squeeze_dim(1);
            let n_dead = dead.size()[0];
            if n_dead == 0 {
                return 0;
            }
            let pick = Tensor::randint(z.size()[0], [n_dead], (Kind::Int64, z.device()));
            let fresh = z.index_select(0, &pick);
            let _ = self.embedding.index_copy_(0, &dead, &fresh);
            let _ = self.cluster_size.index_fill_(0, &dead, t);
            if let Some(ea) = &mut self.embed_avg {
                let _ = ea.index_copy_(0, &dead, &(&fresh * t));
            }
            n_dead as usize
        })
    }

    /// The vectors for given code indices, projected out to `dim` (normalised for cosine).
    ///
    /// # Shapes
    /// `indices`: (B, H, W) → (B, dim, H, W); any other shape (…) → (…, dim)
    pub fn decode_indices(&self, indices: &Tensor) -> Tensor {
        let codes = if self.config.distance == Distance::Cosine {
            l2_normalize(&self.embedding)
        } else {
            self.embedding.shallow_clone()
        };
        let v = codes.index_select(0, &indices.flatten(0, -1));
        let v = match &self.project_out {
            Some(l) => l.forward(&v),
            None => v,
        };
        let mut shape = indices.size();
        shape.push(self.config.dim);
        let v = v.reshape(shape.as_slice());
        if indices.dim() == 3 {
            v.permute([0, 3, 1, 2]).contiguous() // NCHW, as `forward_t` returns it
        } else {
            v
        }
    }
}
