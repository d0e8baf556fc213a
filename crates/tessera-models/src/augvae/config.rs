//! AugVAE's `[model]` section (spec §4.1, §4.3; L-Verse `train_vae.py` arguments and
//! `configs/imagenet_augvae_{ml,sl}.yaml`@e52ed9f).

use serde::{Deserialize, Serialize};
use tessera_nn::blocks::DownsamplingMethod;

use crate::vqgan::{EncoderVersion, VqganConfig};

/// Encoder/decoder chain of an AugVAE. Defaults: `imagenet_augvae_ml.yaml` (256 px, levels
/// 64/32/16/8, hidden 128, z 256).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugVaeConfig {
    /// `hidden_dim` (taming's `ch`).
    pub hidden_dim: i64,
    /// Channel multipliers of the first encoder (and the last decoder).
    pub ch_mult: Vec<i64>,
    pub num_res_blocks: i64,
    /// `attn_resolutions`: the side of each level's code grid, finest first. Each level after the
    /// first halves the side.
    pub levels: Vec<i64>,
    /// Image side.
    pub resolution: i64,
    pub z_channels: i64,
    pub dropout: f64,
    /// Attention blocks (L-Verse `use_attn`, off in both configs).
    pub use_attn: bool,
    /// AugVAE-SL: the side of the one level kept (32 in `imagenet_augvae_sl.yaml`); `None` is
    /// AugVAE-ML. An SL model keeps the encoders down to that level and the decoders from it up,
    /// joined by new 1×1 `connectors` (spec §4.3).
    pub single_level: Option<i64>,
    /// AugVAE-SL as L-Verse runs it: quantise the output of every kept encoder (each updates the
    /// shared EMA codebook and adds its commitment loss) although only the kept level is decoded
    /// (`encode`'s `i == len(self.encoders)` is never true). Off: only the kept level is quantised.
    pub quantize_all_kept_levels: bool,
}

impl Default for AugVaeConfig {
    fn default() -> Self {
        Self {
            hidden_dim: 128,
            ch_mult: vec![1, 2, 4],
            num_res_blocks: 2,
            levels: vec![64, 32, 16, 8],
            resolution: 256,
            z_channels: 256,
            dropout: 0.0,
            use_attn: false,
            single_level: None,
            quantize_all_kept_levels: false,
        }
    }
}

impl tessera_core::Validate for AugVaeConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        let groups = "a multiple of 8: GroupNorm(32) needs 32, narrower nets use fewer groups";
        c.int("hidden_dim", self.hidden_dim, 8, 2048, groups);
        c.rule(
            self.hidden_dim % 8 == 0,
            "hidden_dim",
            format_args!("= {}: must be {groups}", self.hidden_dim),
        );
        c.int("ch_mult.len()", self.ch_mult.len(), 1, 8, "");
        for (i, m) in self.ch_mult.iter().enumerate() {
            c.int(&format!("ch_mult[{i}]"), *m, 1, 16, "");
        }
        c.int("num_res_blocks", self.num_res_blocks, 1, 16, "");
        c.int("resolution", self.resolution, 8, 4096, "image side");
        c.int("z_channels", self.z_channels, 1, 8192, "");
        c.float("dropout", self.dropout, 0.0, 1.0, "");
        c.int("levels.len()", self.levels.len(), 1, 8, "code grids, finest first");
        if (1..=8).contains(&self.ch_mult.len()) && !self.levels.is_empty() {
            let first = self.resolution >> (self.ch_mult.len() - 1);
            c.rule(
                self.levels[0] == first && self.resolution % (1 << (self.ch_mult.len() - 1)) == 0,
                "levels[0]",
                format_args!(
                    "= {}: the first encoder maps {} px to {first} (resolution / 2^(len(ch_mult) − 1))",
                    self.levels[0], self.resolution
                ),
            );
            for (i, w) in self.levels.windows(2).enumerate() {
                c.rule(
                    w[1] * 2 == w[0],
                    &format!("levels[{}]", i + 1),
                    format_args!("= {}: each level halves the one before ({})", w[1], w[0]),
                );
            }
        }
        if let Some(s) = self.single_level {
            let pos = self.levels.iter().position(|&l| l == s);
            c.rule(
                pos.is_some_and(|k| k + 1 < self.levels.len()),
                "single_level",
                format_args!(
                    "= {s}: must be one of levels {:?} other than the coarsest (its decoder takes the \
                     concatenated 2·z_channels a connector feeds)",
                    self.levels
                ),
            );
        }
        c.rule(
            !self.quantize_all_kept_levels || self.single_level.is_some(),
            "quantize_all_kept_levels",
            "is an AugVAE-SL option: set single_level too",
        );
    }
}

/// L-Verse's quantizer (spec §4.2, `EMAVectorQuantizer`): euclidean lookup in an `N(0, 1)`
/// codebook moved by EMA (decay 0.99, ε 1e-5), commitment-only loss with β = 0.25.
pub fn lverse_quantizer(num_codes: i64, dim: i64) -> tessera_quant::VqConfig {
    use tessera_quant::config::{CodebookInit, CodebookUpdate};
    tessera_quant::VqConfig {
        num_codes,
        dim,
        update: CodebookUpdate::Ema,
        init: CodebookInit::Normal,
        beta: 0.25,
        ema_decay: 0.99,
        ema_eps: 1e-5,
        ..Default::default()
    }
}

impl AugVaeConfig {
    /// The model of `reference/augvae_fixtures.py`'s fixtures (parity tests): 32 px, levels
    /// 16/8/4, hidden 8, z 16.
    pub fn reference_fixture() -> Self {
        Self {
            hidden_dim: 8,
            ch_mult: vec![1, 2],
            num_res_blocks: 1,
            levels: vec![16, 8, 4],
            resolution: 32,
            z_channels: 16,
            ..Self::default()
        }
    }

    /// Index of the kept level of an SL model.
    pub fn kept_level(&self) -> Option<usize> {
        self.single_level.and_then(|s| self.levels.iter().position(|&l| l == s))
    }

    /// The levels whose codes are stage 2's tokens, finest first.
    pub fn code_levels(&self) -> Vec<usize> {
        match self.kept_level() {
            Some(k) => vec![k],
            None => (0..self.levels.len()).collect(),
        }
    }

    fn coder(
        &self,
        ch_mult: Vec<i64>,
        resolution: i64,
        in_ch: i64,
        z: i64,
        out: i64,
        attn: i64,
    ) -> VqganConfig {
        VqganConfig {
            ch: self.hidden_dim,
            ch_mult,
            num_res_blocks: self.num_res_blocks,
            attn_resolutions: if self.use_attn { vec![attn] } else { vec![] },
            resolution,
            in_channels: in_ch,
            out_ch: out,
            z_channels: z,
            dropout: self.dropout,
            use_replicationpad: false,
            downsampling_method: DownsamplingMethod::StridedConv,
            version: EncoderVersion::V1,
            mid_attention: self.use_attn,
        }
    }

    /// Encoder `j`: image → level 0 with `ch_mult`; level j−1 → level j with `[2, 4]`.
    pub(crate) fn encoder(&self, j: usize) -> VqganConfig {
        let z = self.z_channels;
        if j == 0 {
            self.coder(self.ch_mult.clone(), self.resolution, 3, z, z, self.levels[0])
        } else {
            self.coder(vec![2, 4], self.levels[j - 1], z, z, z, self.levels[j])
        }
    }

    /// Decoder `i` of the ML chain (`L` = number of levels): for i < L−1, level L−1−i → level
    /// L−2−i with `[2, 4]`, taking z channels (i = 0) or the 2z of a concatenation; the last one
    /// maps level 0 to the image with `ch_mult`.
    pub(crate) fn decoder(&self, i: usize) -> VqganConfig {
        let (l, z) = (self.levels.len(), self.z_channels);
        let z_in = if i == 0 { z } else { 2 * z };
        if i + 1 == l {
            self.coder(self.ch_mult.clone(), self.resolution, 3, z_in, 3, self.levels[0])
        } else {
            self.coder(vec![2, 4], self.levels[l - 2 - i], z, z_in, z, self.levels[l - 1 - i])
        }
    }
}
