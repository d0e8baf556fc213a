//! The StyleGAN2 discriminator ViT-VQGAN trains against (spec §6.1–6.2), as enhancing-transformers
//! builds it from rosinality's stylegan2-pytorch (`enhancing/losses/layers.py`@e1c185d:
//! `StyleDiscriminator`, `StyleBlock`, `ConvLayer`, `Blur`, `EqualConv2d`, `EqualLinear`; the CPU
//! paths of `op/upfirdn2d.py` and `op/fused_act.py`). Parameter names are its state_dict keys.
//!
//! - Equalised learning rate: weights are drawn from N(0, 1) and scaled at run time by
//!   `1/√fan_in` (conv: `in·k²`).
//! - Fused leaky ReLU: `leaky_relu(x + b, 0.2)·√2`, computed as `leaky_relu(conv(x, √2·w, √2·b))`
//!   so the bias and gain ride in the conv.
//! - Blur: the kernel `[1,3,3,1]ᵀ[1,3,3,1]/64`, padded, stride 1, before each stride-2 conv.
//! - `StyleBlock`: `(conv2(conv1(x)) + skip(x))/√2`, conv2 and skip blurred and strided.
//! - Minibatch standard deviation over groups of up to 4 samples, one feature.

use std::f64::consts::SQRT_2;

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Kind, Tensor};

/// `[disc]` of a ViT-VQGAN run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StyleDiscConfig {
    /// Width at 4–32 px (upstream: 512). Wider grids use `width·channel_multiplier·32/res`.
    pub width: i64,
    pub channel_multiplier: i64,
}

impl Default for StyleDiscConfig {
    fn default() -> Self {
        StyleDiscConfig { width: 512, channel_multiplier: 2 }
    }
}

impl StyleDiscConfig {
    /// Channels at a `res`-pixel feature map (upstream's `channels` table).
    pub fn channels(&self, res: i64) -> i64 {
        if res <= 32 {
            self.width
        } else {
            (self.width * self.channel_multiplier * 32 / res).max(1)
        }
    }
}

impl tessera_core::Validate for StyleDiscConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        c.int("width", self.width, 1, 4096, "");
        c.int("channel_multiplier", self.channel_multiplier, 1, 16, "");
    }
}

/// An equalised-lr conv with no bias, optionally preceded by a blur and followed by a fused
/// leaky ReLU (whose bias is the layer's bias).
#[derive(Debug)]
struct ConvLayer {
    blur: Option<(Tensor, i64)>,
    weight: Tensor,
    bias: Option<Tensor>,
    stride: i64,
    padding: i64,
}

impl ConvLayer {
    /// `downsample`: blur (padding `pad`), then stride 2 without padding.
    fn new(p: &nn::Path, cin: i64, cout: i64, k: i64, downsample: bool, activate: bool) -> Self {
        let mut i = 0;
        let blur = downsample.then(|| {
            let pad = (4 - 2) + (k - 1); // upstream: p = (len(kernel) - factor) + (k - 1)
            let kernel = (p / i).zeros_no_train("kernel", &[4, 4]);
            i += 1;
            (kernel, pad)
        });
        if let Some((kernel, _)) = &blur {
            let k1 = Tensor::from_slice(&[1f32, 3., 3., 1.]);
            tch::no_grad(|| kernel.shallow_clone().copy_(&(k1.outer(&k1) / 64.0)));
        }
        let weight = (p / i).randn("weight", &[cout, cin, k, k], 0.0, 1.0);
        i += 1;
        let bias = activate.then(|| (p / i).zeros("bias", &[cout]));
        let (stride, padding) = if downsample { (2, 0) } else { (1, k / 2) };
        ConvLayer { blur, weight, bias, stride, padding }
    }

    /// # Shapes
    /// `(B, cin, H, W)` → `(B, cout, H', W')`
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = match &self.blur {
            Some((kernel, pad)) => blur(x, kernel, *pad),
            None => x.shallow_clone(),
        };
        let fan_in = self.weight.size()[1] * self.weight.size()[2] * self.weight.size()[3];
        let scale = 1.0 / (fan_in as f64).sqrt();
        match &self.bias {
            // leaky(y + b)·√2 = leaky(√2·y + √2·b): the bias and the gain ride in the conv.
            Some(b) => {
                let w = &self.weight * (scale * SQRT_2);
                let y = x.conv2d(&w, Some(&(b * SQRT_2)), [self.stride], [self.padding], [1], 1);
                leaky_relu_02(&y)
            }
            None => {
                let w = &self.weight * scale;
                x.conv2d::<Tensor>(&w, None, [self.stride], [self.padding], [1], 1)
            }
        }
    }
}

/// Total padding `pad` split as upstream does for a 4-tap kernel: `((pad+1)/2, pad/2)`.
fn blur(x: &Tensor, kernel: &Tensor, pad: i64) -> Tensor {
    let c = x.size()[1];
    let (p0, p1) = ((pad + 1) / 2, pad / 2);
    let x = x.constant_pad_nd([p0, p1, p0, p1]);
    let k = kernel.flip([0, 1]).view([1, 1, 4, 4]).expand([c, 1, 4, 4], false);
    x.conv2d::<Tensor>(&k, None, [1], [0], [1], c)
}

/// `leaky_relu(y, 0.2)`: gradient 1 above 0 and 0.2 elsewhere (tch's `leaky_relu` has no slope
/// argument). Upstream's fused `leaky_relu(x + b, 0.2)·√2` is this on `√2·x + √2·b`, which is
/// equal because the function is positively homogeneous.
fn leaky_relu_02(y: &Tensor) -> Tensor {
    // PReLU with a constant slope: one kernel each way (a mask, a select and a product cost 3).
    y.prelu(&Tensor::from_slice(&[0.2f32]).to_device(y.device()))
}

/// An equalised-lr linear layer, optionally with a fused leaky ReLU.
#[derive(Debug)]
struct EqualLinear {
    weight: Tensor,
    bias: Tensor,
    activate: bool,
}

impl EqualLinear {
    fn new(p: &nn::Path, cin: i64, cout: i64, activate: bool) -> Self {
        EqualLinear {
            weight: p.randn("weight", &[cout, cin], 0.0, 1.0),
            bias: p.zeros("bias", &[cout]),
            activate,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let scale = 1.0 / (self.weight.size()[1] as f64).sqrt();
        if self.activate {
            leaky_relu_02(&x.linear(&(&self.weight * (scale * SQRT_2)), Some(&(&self.bias * SQRT_2))))
        } else {
            x.linear(&(&self.weight * scale), Some(&self.bias))
        }
    }
}

/// The discriminator for `size`×`size` images.
#[derive(Debug)]
pub struct StyleDiscriminator {
    from_rgb: ConvLayer,
    blocks: Vec<(ConvLayer, ConvLayer, ConvLayer)>,
    final_conv: ConvLayer,
    final_linear: (EqualLinear, EqualLinear),
}

impl StyleDiscriminator {
    /// `size` must be a power of two ≥ 8.
    pub fn new(p: &nn::Path, config: &StyleDiscConfig, size: i64) -> Self {
        let b = p / "blocks";
        let from_rgb = ConvLayer::new(&(&b / 0), 3, config.channels(size), 1, false, true);
        let mut blocks = Vec::new();
        let mut res = size;
        while res > 4 {
            let (cin, cout) = (config.channels(res), config.channels(res / 2));
            let q = &b / (blocks.len() + 1);
            blocks.push((
                ConvLayer::new(&(&q / "conv1"), cin, cin, 3, false, true),
                ConvLayer::new(&(&q / "conv2"), cin, cout, 3, true, true),
                ConvLayer::new(&(&q / "skip"), cin, cout, 1, true, false),
            ));
            res /= 2;
        }
        let c4 = config.channels(4);
        StyleDiscriminator {
            from_rgb,
            blocks,
            final_conv: ConvLayer::new(&(p / "final_conv"), c4 + 1, c4, 3, false, true),
            final_linear: (
                EqualLinear::new(&(p / "final_linear" / 0), c4 * 16, c4, true),
                EqualLinear::new(&(p / "final_linear" / 1), c4, 1, false),
            ),
        }
    }

    /// One logit per image.
    ///
    /// # Shapes
    /// `x: (B, 3, size, size)` → `(B,)`
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = self.from_rgb.forward(x);
        for (conv1, conv2, skip) in &self.blocks {
            h = (conv2.forward(&conv1.forward(&h)) + skip.forward(&h)) / SQRT_2;
        }
        let h = self.final_conv.forward(&minibatch_stddev(&h));
        let h = self.final_linear.0.forward(&h.flatten(1, -1));
        self.final_linear.1.forward(&h).view([-1])
    }
}

/// Appends the minibatch standard deviation as one channel: groups of `g = B / (B / min(B, 4))`
/// samples `{m, M+m, …}`; sample `b` gets the value of group `b mod M` (upstream's layout).
///
/// # Shapes
/// `(B, C, H, W)` → `(B, C + 1, H, W)`
pub fn minibatch_stddev(x: &Tensor) -> Tensor {
    let (b, c, h, w) = x.size4().expect("(B, C, H, W)");
    let m = b / b.min(4);
    let g = b / m;
    let s = x.view([g, m, 1, c, h, w]);
    let sd = (s.var_dim(0, false, false) + 1e-8).sqrt();
    let sd = sd.mean_dim([2i64, 3, 4].as_slice(), true, Kind::Float).squeeze_dim(2);
    Tensor::cat(&[x.shallow_clone(), sd.repeat([g, 1, h, w])], 1)
}

/// Lazy R1 as enhancing-transformers computes it: `mean_b ‖∂ΣD(x)/∂x‖²` for real images `x`
/// (the caller scales it by `γ·every/2`). Differentiable: the graph of the gradient is kept.
///
/// # Shapes
/// `real: (B, 3, H, W)` → scalar
pub fn r1_penalty(disc: &StyleDiscriminator, real: &Tensor) -> Tensor {
    let x = real.detach().set_requires_grad(true);
    r1_of(&disc.forward(&x), &x)
}

/// R1 from logits already computed on `x` (which requires grad): the discriminator's real
/// forward serves both its GAN loss and the penalty, as upstream's does.
///
/// # Shapes
/// `logits: (B,)`, `x: (B, 3, H, W)` → scalar
pub fn r1_of(logits: &Tensor, x: &Tensor) -> Tensor {
    let grad = Tensor::run_backward(&[logits.sum(Kind::Float)], &[x], true, true).remove(0);
    grad.square().flatten(1, -1).sum_dim_intlist([1i64].as_slice(), false, Kind::Float).mean(Kind::Float)
}
