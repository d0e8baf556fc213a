//! Quantizer settings. Defaults are TE-VQGAN's (spec §2.3, §2.5) with taming's codebook size.

use serde::{Deserialize, Serialize};

/// How the nearest code is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Distance {
    /// `d = ‖z‖² + ‖e‖² − 2 z·e` (taming, TE-VQGAN `L2`).
    #[default]
    Euclidean,
    /// Inputs and codes l2-normalised, nearest by cosine; the output is the *normalised* code and
    /// losses are computed on normalised vectors (ViT-VQGAN, spec §6.2).
    Cosine,
    /// Nearest by cosine but the output is the *raw* code (TE-VQGAN's `cos_sim`, spec §2.3).
    CosineRawCodes,
}

/// Where β goes in the VQ loss (spec §1.3, §13.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BetaPlacement {
    /// `β·mean((sg[z_q] − z)²) + mean((z_q − sg[z])²)`: β on the commitment term, as in the VQ-VAE
    /// paper, TE-VQGAN and taming with `legacy=False`.
    #[default]
    Commitment,
    /// taming's `legacy=True` default: `mean((sg[z_q] − z)²) + β·mean((z_q − sg[z])²)`, β on the
    /// codebook term (taming-transformers#46, #57). For reproducing taming and LG-VQ numbers.
    Legacy,
}

/// How codes move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CodebookUpdate {
    /// By gradient of the codebook term (and the orthogonality term).
    #[default]
    Gradient,
    /// By exponential moving averages of assigned vectors (spec §4.2); the loss is then the
    /// commitment term only.
    Ema,
}

/// How the codebook starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CodebookInit {
    /// `U(−1/K, 1/K)` (taming, TE-VQGAN).
    #[default]
    Uniform,
    /// `N(0, 1)` (L-Verse's EMA codebook, ViT-VQGAN).
    Normal,
    /// k-means on the first training batch (vector-quantize-pytorch `kmeans_init`).
    Kmeans,
}

/// TE-VQGAN's codebook orthogonality regulariser (spec §2.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrthoConfig {
    /// λ_o: 0 for VQGAN, 10 for TE-VQGAN.
    pub weight: f64,
    /// l2-normalise the rows before the Gram matrix (TE default); false = `force_emb_len_1`.
    pub normalize: bool,
    /// Only codes used in the current batch (vector-quantize-pytorch option).
    pub active_codes_only: bool,
    /// A random subset of at most this many codes each step.
    pub max_codes: Option<usize>,
}

impl Default for OrthoConfig {
    fn default() -> Self {
        Self { weight: 0.0, normalize: true, active_codes_only: false, max_codes: None }
    }
}

/// A vector quantizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VqConfig {
    /// K, the number of codes (`n_embed`).
    pub num_codes: i64,
    /// Width of the vectors the quantizer receives (`embed_dim`).
    pub dim: i64,
    /// Width of the lookup space. When smaller than `dim`, inputs are projected in by a Linear
    /// layer, looked up, and projected back out (ViT-VQGAN factorized codes, 32 there).
    pub codebook_dim: Option<i64>,
    pub distance: Distance,
    /// β = 0.25.
    pub beta: f64,
    pub beta_placement: BetaPlacement,
    pub update: CodebookUpdate,
    /// EMA decay (0.99, L-Verse).
    pub ema_decay: f64,
    /// Laplace smoothing ε of the EMA cluster sizes (1e-5).
    pub ema_eps: f64,
    pub init: CodebookInit,
    pub kmeans_iters: usize,
    /// Codes whose EMA usage (cluster size) falls below this are re-seeded from batch vectors.
    /// 0 = off.
    pub dead_code_threshold: f64,
    pub ortho: OrthoConfig,
    /// Steps in the sliding window of usage statistics.
    pub usage_window: usize,
    /// Input vectors per chunk of the nearest-code search: at most `chunk × K` distances exist at once.
    pub search_chunk: i64,
    /// With `distance = "cosine"`: the vector the straight-through estimator passes the output's
    /// gradient to (the value is the normalised code either way).
    pub straight_through: StraightThrough,
    /// CVQ-VAE's online re-initialisation and contrastive term (LG-CVQ); absent = off. Needs
    /// gradient updates and Euclidean lookup.
    pub online_reinit: Option<crate::cvq::OnlineReinit>,
}

/// Where the straight-through estimator `x + sg[ẑ_q − x]` takes `x` from, with cosine lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StraightThrough {
    /// The l2-normalised input: the gradient goes through the normalisation
    /// (vector-quantize-pytorch's `use_cosine_sim`).
    #[default]
    Normalized,
    /// The input before normalisation, as enhancing-transformers' ViT-VQGAN
    /// (`z + (z_qnorm − z).detach()`, enhancing/modules/stage1/quantizers.py@e1c185d).
    Raw,
}

impl Default for VqConfig {
    fn default() -> Self {
        Self {
            num_codes: 1024,
            dim: 256,
            codebook_dim: None,
            distance: Distance::Euclidean,
            beta: 0.25,
            beta_placement: BetaPlacement::Commitment,
            update: CodebookUpdate::Gradient,
            ema_decay: 0.99,
            ema_eps: 1e-5,
            init: CodebookInit::Uniform,
            kmeans_iters: 10,
            dead_code_threshold: 0.0,
            ortho: OrthoConfig::default(),
            usage_window: 100,
            search_chunk: 8192,
            straight_through: StraightThrough::Normalized,
            online_reinit: None,
        }
    }
}

/// The most codes a codebook may have (2^18).
pub const MAX_CODES: i64 = 1 << 18;
/// The widest code vector.
pub const MAX_DIM: i64 = 8192;

impl tessera_core::Validate for OrthoConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        c.weight("weight", self.weight);
        if let Some(m) = self.max_codes {
            c.int("max_codes", m, 1, MAX_CODES as usize, "codes in the Gram matrix");
        }
    }
}

impl tessera_core::Validate for VqConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        c.int("num_codes", self.num_codes, 1, MAX_CODES, "");
        c.int("dim", self.dim, 1, MAX_DIM, "");
        if let Some(d) = self.codebook_dim {
            c.int("codebook_dim", d, 1, MAX_DIM, "");
        }
        c.weight("beta", self.beta);
        c.unit_open("ema_decay", self.ema_decay, "");
        c.float_above("ema_eps", self.ema_eps, 0.0, 1.0, "Laplace smoothing");
        c.int("kmeans_iters", self.kmeans_iters, 0, 10_000, "");
        c.float("dead_code_threshold", self.dead_code_threshold, 0.0, 1e12, "0 = off");
        c.int("usage_window", self.usage_window, 1, 1_000_000, "steps");
        c.int("search_chunk", self.search_chunk, 1, 1 << 24, "vectors per search chunk");
        c.section("ortho", &self.ortho);
        if let Some(r) = &self.online_reinit {
            c.unit_open("online_reinit.decay", r.decay, "usage EMA decay");
            c.float_above("online_reinit.temperature", r.temperature, 0.0, 1e6, "");
            c.rule(
                self.update == CodebookUpdate::Gradient && self.distance == Distance::Euclidean,
                "online_reinit",
                "needs update = \"gradient\" and distance = \"euclidean\" (CVQ-VAE's l2 codebook)",
            );
        }
    }
}

impl VqConfig {
    /// Width of the vectors in the codebook.
    pub fn lookup_dim(&self) -> i64 {
        self.codebook_dim.unwrap_or(self.dim)
    }

    /// Whether inputs are projected to a smaller lookup space.
    pub fn factorized(&self) -> bool {
        self.lookup_dim() != self.dim
    }
}
