//! The evaluation classifier of Bi-directional DALL-E (spec §3.6): torchvision's ResNet-18 with
//! `fc = Identity` and two heads, colour (4) and digit (10), on 28×28 RGB crops in `[0, 1]`.
//!
//! Parameter names follow torchvision (`conv1`, `bn1`, `layer{1..4}.{0,1}.{conv1,bn1,conv2,bn2,
//! downsample.0,downsample.1}`) so a converted `MNIST_Resnet18.ckpt` state_dict maps by name; the
//! heads are `color_head` and `number_head`. `width` scales every stage (64 = torchvision).
//!
//! On a 28×28 input the stem (7×7/2 conv, 3×3/2 max-pool) gives 7×7, and the four stages give
//! 7, 4, 2, 1.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Channels of the first stage (torchvision: 64; stages use 1, 2, 4, 8 × width).
    pub width: i64,
    /// Basic blocks per stage (ResNet-18: 2, 2, 2, 2).
    pub blocks: [usize; 4],
}

impl tessera_core::Validate for ClassifierConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        c.int("width", self.width, 1, 1024, "");
        for (i, b) in self.blocks.iter().enumerate() {
            c.int(&format!("blocks[{i}]"), *b, 1, 64, "");
        }
    }
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self { width: 64, blocks: [2, 2, 2, 2] }
    }
}

fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig { stride, padding: k / 2, bias: false, ..Default::default() };
    nn::conv2d(p, i, o, k, cfg)
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// torchvision's `BasicBlock`: two 3×3 convs with BN, identity or 1×1/stride downsample shortcut.
#[derive(Debug)]
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl BasicBlock {
    fn new(p: nn::Path, i: i64, o: i64, stride: i64) -> Self {
        let downsample = (stride != 1 || i != o)
            .then(|| (conv(&p / "downsample" / 0, i, o, 1, stride), bn(&p / "downsample" / 1, o)));
        Self {
            conv1: conv(&p / "conv1", i, o, 3, stride),
            bn1: bn(&p / "bn1", o),
            conv2: conv(&p / "conv2", o, o, 3, 1),
            bn2: bn(&p / "bn2", o),
            downsample,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.bn1.forward_t(&self.conv1.forward(x), train).relu();
        let h = self.bn2.forward_t(&self.conv2.forward(&h), train);
        let skip = match &self.downsample {
            Some((c, b)) => b.forward_t(&c.forward(x), train),
            None => x.shallow_clone(),
        };
        (h + skip).relu()
    }
}

/// Predicted classes and logits.
#[derive(Debug)]
pub struct ClassifierOutput {
    /// `(B, 4)`: white, red, green, blue.
    pub colour: Tensor,
    /// `(B, 10)`.
    pub digit: Tensor,
}

/// torchvision's ResNet-18 trunk without `fc`: stem, four stages, global average pool.
#[derive(Debug)]
pub struct ResNetTrunk {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    layers: Vec<Vec<BasicBlock>>,
    /// Width of the pooled features (8 × `width`).
    pub out_dim: i64,
}

impl ResNetTrunk {
    /// Parameters at `p` itself (`conv1`, `bn1`, `layer{1..4}`), as torchvision.
    pub fn new(p: &nn::Path, c: &ClassifierConfig) -> Self {
        let w = c.width;
        let mut layers = Vec::new();
        let mut ch = w;
        for (s, &n) in c.blocks.iter().enumerate() {
            let out = w << s;
            let stride = if s == 0 { 1 } else { 2 };
            let stage = (0..n)
                .map(|b| {
                    let blk = BasicBlock::new(
                        p / format!("layer{}", s + 1) / b,
                        ch,
                        out,
                        if b == 0 { stride } else { 1 },
                    );
                    ch = out;
                    blk
                })
                .collect();
            layers.push(stage);
        }
        Self { conv1: conv(p / "conv1", 3, w, 7, 2), bn1: bn(p / "bn1", w), layers, out_dim: ch }
    }

    /// # Shapes
    /// `x: (B, 3, H, W)` in `[0, 1]` → `(B, out_dim)` pooled features
    pub fn features(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = self.bn1.forward_t(&self.conv1.forward(x), train).relu();
        h = h.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for stage in &self.layers {
            for blk in stage {
                h = blk.forward_t(&h, train);
            }
        }
        h.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

/// Bi-DALL-E's MNIST64x64 classifier: the trunk with a colour and a digit head.
#[derive(Debug)]
pub struct DigitClassifier {
    trunk: ResNetTrunk,
    color_head: nn::Linear,
    number_head: nn::Linear,
}

impl DigitClassifier {
    pub fn new(p: &nn::Path, c: &ClassifierConfig) -> Self {
        let trunk = ResNetTrunk::new(p, c);
        let ch = trunk.out_dim;
        Self {
            trunk,
            color_head: nn::linear(p / "color_head", ch, 4, Default::default()),
            number_head: nn::linear(p / "number_head", ch, 10, Default::default()),
        }
    }

    /// # Shapes
    /// `x: (B, 3, 28, 28)` in `[0, 1]` → colour `(B, 4)`, digit `(B, 10)` logits
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ClassifierOutput {
        let f = self.trunk.features(x, train);
        ClassifierOutput { colour: self.color_head.forward(&f), digit: self.number_head.forward(&f) }
    }
}

/// The same trunk with one head of `classes` logits (`class_head`): the Fashion-MNIST
/// evaluation classifier of VIM, trained the way the MNIST64x64 one is.
#[derive(Debug)]
pub struct LabelClassifier {
    trunk: ResNetTrunk,
    class_head: nn::Linear,
}

impl LabelClassifier {
    pub fn new(p: &nn::Path, c: &ClassifierConfig, classes: i64) -> Self {
        let trunk = ResNetTrunk::new(p, c);
        let class_head = nn::linear(p / "class_head", trunk.out_dim, classes, Default::default());
        Self { trunk, class_head }
    }

    /// # Shapes
    /// `x: (B, 3, 28, 28)` in `[0, 1]` → `(B, classes)` logits
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.class_head.forward(&self.trunk.features(x, train))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device, Kind};

    #[test]
    fn resnet18_names_and_shapes() {
        let vs = VarStore::new(Device::Cpu);
        let m = DigitClassifier::new(&vs.root(), &ClassifierConfig::default());
        let vars = vs.variables();
        for name in
            ["conv1.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.running_var", "color_head.weight"]
        {
            assert!(vars.contains_key(name), "{name}");
        }
        assert!(!vars.contains_key("layer1.0.downsample.0.weight"));
        // torchvision ResNet-18 without fc has 11,176,512 parameters; the heads add 512·14 + 14.
        let n: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert_eq!(n, 11_176_512 + 512 * 14 + 14);
        let out = m.forward_t(&Tensor::rand([2, 3, 28, 28], (Kind::Float, Device::Cpu)), false);
        assert_eq!(out.colour.size(), vec![2, 4]);
        assert_eq!(out.digit.size(), vec![2, 10]);
    }

    #[test]
    fn label_classifier_shares_the_trunk_names() {
        let vs = VarStore::new(Device::Cpu);
        let c = ClassifierConfig { width: 8, blocks: [1, 1, 1, 1] };
        let m = LabelClassifier::new(&vs.root(), &c, 10);
        let vars = vs.variables();
        assert!(vars.contains_key("layer4.0.conv2.weight") && vars.contains_key("class_head.bias"));
        assert_eq!(vars["class_head.weight"].size(), vec![10, 64]);
        let out = m.forward_t(&Tensor::rand([3, 3, 28, 28], (Kind::Float, Device::Cpu)), false);
        assert_eq!(out.size(), vec![3, 10]);
    }
}
