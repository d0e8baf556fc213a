//! taming's `Encoder` and `Decoder` (spec §1.2), module names as in the original.

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;
use tessera_nn::blocks::{normalize, AttnBlock, Downsample, ResnetBlock, Upsample};
use tessera_nn::conv::{Conv3x3, PadMode};
use tessera_nn::swish;

use super::{EncoderVersion, VqganConfig};

/// One resolution level: residual blocks, each optionally followed by attention.
#[derive(Debug)]
struct Level {
    block: Vec<ResnetBlock>,
    attn: Vec<AttnBlock>,
}

impl Level {
    fn forward_t(&self, mut h: Tensor, train: bool) -> Tensor {
        for (i, b) in self.block.iter().enumerate() {
            h = b.forward_t(&h, train);
            if let Some(a) = self.attn.get(i) {
                h = a.forward(&h);
            }
        }
        h
    }
}

/// `mid`: ResnetBlock, AttnBlock (unless `mid_attention` is off, as L-Verse's `use_attn = False`),
/// ResnetBlock.
#[derive(Debug)]
struct Mid {
    block_1: ResnetBlock,
    attn_1: Option<AttnBlock>,
    block_2: ResnetBlock,
}

impl Mid {
    fn new(p: &nn::Path, c: i64, dropout: f64, pad: PadMode, attention: bool) -> Self {
        Self {
            block_1: ResnetBlock::new(&(p / "block_1"), c, c, dropout, pad),
            attn_1: attention.then(|| AttnBlock::new(&(p / "attn_1"), c)),
            block_2: ResnetBlock::new(&(p / "block_2"), c, c, dropout, pad),
        }
    }
    fn forward_t(&self, h: &Tensor, train: bool) -> Tensor {
        let mut h = self.block_1.forward_t(h, train);
        if let Some(a) = &self.attn_1 {
            h = a.forward(&h);
        }
        self.block_2.forward_t(&h, train)
    }
}

/// x (B, in, H, W) → z (B, z_channels, H/f, W/f).
#[derive(Debug)]
pub struct Encoder {
    conv_in: Conv3x3,
    down: Vec<(Level, Option<Downsample>)>,
    mid: Mid,
    norm_out: nn::GroupNorm,
    conv_out: Conv3x3,
}

impl Encoder {
    pub fn new(p: &nn::Path, c: &VqganConfig) -> Self {
        let pad = if c.use_replicationpad { PadMode::Replicate } else { PadMode::Zeros };
        let replicate_down = c.use_replicationpad && c.version == EncoderVersion::V2;
        let n = c.ch_mult.len();
        let mut in_mult = vec![1];
        in_mult.extend_from_slice(&c.ch_mult);
        let mut curr_res = c.resolution;
        let mut block_in = c.ch;
        let mut down = Vec::with_capacity(n);
        for (i, &mult) in c.ch_mult.iter().enumerate() {
            let lp = p / "down" / i;
            block_in = c.ch * in_mult[i];
            let block_out = c.ch * mult;
            let mut level = Level { block: vec![], attn: vec![] };
            for j in 0..c.num_res_blocks {
                level.block.push(ResnetBlock::new(&(&lp / "block" / j), block_in, block_out, c.dropout, pad));
                block_in = block_out;
                if c.attn_resolutions.contains(&curr_res) {
                    level.attn.push(AttnBlock::new(&(&lp / "attn" / j), block_in));
                }
            }
            let ds = (i != n - 1).then(|| {
                curr_res /= 2;
                Downsample::new(
                    &(&lp / "downsample"),
                    block_in,
                    c.downsampling_method,
                    replicate_down,
                    c.version == EncoderVersion::V2,
                )
            });
            down.push((level, ds));
        }
        Self {
            conv_in: Conv3x3::new(&(p / "conv_in"), c.in_channels, c.ch, pad),
            down,
            mid: Mid::new(&(p / "mid"), block_in, c.dropout, pad, c.mid_attention),
            norm_out: normalize(&(p / "norm_out"), block_in),
            conv_out: Conv3x3::new(&(p / "conv_out"), block_in, c.z_channels, pad),
        }
    }
}

impl ModuleT for Encoder {
    /// # Shapes
    /// (B, in_channels, H, W) → (B, z_channels, H/f, W/f)
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = self.conv_in.forward(x);
        for (level, ds) in &self.down {
            h = level.forward_t(h, train);
            if let Some(ds) = ds {
                h = ds.forward(&h);
            }
        }
        let h = self.mid.forward_t(&h, train);
        self.conv_out.forward(&swish(&h.apply(&self.norm_out)))
    }
}

/// z (B, z_channels, h, w) → x̂ (B, out_ch, h·f, w·f). Always zero padding (TE changes only the encoder).
#[derive(Debug)]
pub struct Decoder {
    conv_in: nn::Conv2D,
    mid: Mid,
    /// Indexed by level as taming's `up` list: `up[0]` is the finest and runs last.
    up: Vec<(Level, Option<Upsample>)>,
    norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl Decoder {
    pub fn new(p: &nn::Path, c: &VqganConfig) -> Self {
        let n = c.ch_mult.len();
        let conv3 =
            |p: nn::Path, i, o| nn::conv2d(p, i, o, 3, nn::ConvConfig { padding: 1, ..Default::default() });
        let mut block_in = c.ch * c.ch_mult[n - 1];
        let mut curr_res = c.resolution / (1 << (n - 1));
        let conv_in = conv3(p / "conv_in", c.z_channels, block_in);
        let mid = Mid::new(&(p / "mid"), block_in, c.dropout, PadMode::Zeros, c.mid_attention);
        let mut up: Vec<Option<(Level, Option<Upsample>)>> = (0..n).map(|_| None).collect();
        for i in (0..n).rev() {
            let lp = p / "up" / i;
            let block_out = c.ch * c.ch_mult[i];
            let mut level = Level { block: vec![], attn: vec![] };
            for j in 0..=c.num_res_blocks {
                level.block.push(ResnetBlock::new(
                    &(&lp / "block" / j),
                    block_in,
                    block_out,
                    c.dropout,
                    PadMode::Zeros,
                ));
                block_in = block_out;
                if c.attn_resolutions.contains(&curr_res) {
                    level.attn.push(AttnBlock::new(&(&lp / "attn" / j), block_in));
                }
            }
            let us = (i != 0).then(|| {
                curr_res *= 2;
                Upsample::new(&(&lp / "upsample"), block_in)
            });
            up[i] = Some((level, us));
        }
        Self {
            conv_in,
            mid,
            up: up.into_iter().map(|l| l.expect("every level built")).collect(),
            norm_out: normalize(&(p / "norm_out"), block_in),
            conv_out: conv3(p / "conv_out", block_in, c.out_ch),
        }
    }

    pub fn last_layer(&self) -> &Tensor {
        &self.conv_out.ws
    }
}

impl ModuleT for Decoder {
    /// # Shapes
    /// (B, z_channels, h, w) → (B, out_ch, h·f, w·f)
    fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        let h = z.apply(&self.conv_in);
        let mut h = self.mid.forward_t(&h, train);
        for (level, us) in self.up.iter().rev() {
            h = level.forward_t(h, train);
            if let Some(us) = us {
                h = us.forward(&h);
            }
        }
        swish(&h.apply(&self.norm_out)).apply(&self.conv_out)
    }
}
