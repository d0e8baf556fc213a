//! ViT-VQGAN against the upstream PyTorch modules, weights imported by their state_dict names.
//! Fixtures from `reference/vitvq_fixtures.py`, which imports thuanz123/enhancing-transformers@e1c185d
//! (`enhancing/modules/stage1/layers.py` ViTEncoder/ViTDecoder, `quantizers.py` VectorQuantizer
//! with `use_norm=True`, `vitvqgan.py` ViTVQ) from a checkout.

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::{Device, Tensor};
use tessera_models::tokenizer::ImageTokenizer;
use tessera_models::vit::coder::{sincos_2d, VitDecoder, VitEncoder};
use tessera_models::vit::{StackConfig, VitConfig, VitVq};
use tessera_quant::{Distance, StraightThrough, VectorQuantizer, VqConfig};

fn fixtures(name: &str) -> HashMap<String, Tensor> {
    let path = format!("{}/tests/fixtures/vit_{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// Copy every `param.<name>` of the fixture into the VarStore (each must find its variable).
fn load(vs: &VarStore, f: &HashMap<String, Tensor>) {
    let vars = vs.variables();
    tch::no_grad(|| {
        for (key, t) in f.iter().filter(|(k, _)| k.starts_with("param.")) {
            let name = &key["param.".len()..];
            let mut v =
                vars.get(name).unwrap_or_else(|| panic!("no variable for upstream `{name}`")).shallow_clone();
            assert_eq!(v.size(), t.size(), "{name}");
            v.copy_(t);
        }
    });
}

/// `max |a − b| / max(1, max |b|)`.
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    let scale = b.abs().max().double_value(&[]).max(1.0);
    (a - b).abs().max().double_value(&[]) / scale
}

fn tiny() -> StackConfig {
    StackConfig { dim: 64, depth: 2, heads: 2, mlp_dim: 128, dim_head: 32 }
}

#[test]
fn encoder_matches_upstream_on_square_and_rectangular_images() {
    let f = fixtures("encoder");
    let vs = VarStore::new(Device::Cpu);
    let enc = VitEncoder::new(&vs.root(), &tiny(), (32, 32), 8, 3);
    load(&vs, &f);
    assert_eq!(sincos_2d(64, 4, 4), f["param.en_pos_embedding"], "the fixed positions, exactly");
    assert!(rel_diff(&enc.forward(&f["input"]), &f["output"]) < 1e-5);
    // A 4×6 grid checks which half of the positions is the row and which the column.
    assert!(rel_diff(&sincos_2d(64, 4, 6), &f["rect.pos_embedding"]) == 0.0);
    let rect_vs = VarStore::new(Device::Cpu);
    let rect = VitEncoder::new(&rect_vs.root(), &tiny(), (32, 48), 8, 3);
    let mut rect_f: HashMap<String, Tensor> = f.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
    rect_f.insert("param.en_pos_embedding".into(), f["rect.pos_embedding"].shallow_clone());
    load(&rect_vs, &rect_f);
    assert!(rel_diff(&rect.forward(&f["rect.input"]), &f["rect.output"]) < 1e-5);
}

#[test]
fn decoder_matches_upstream() {
    let f = fixtures("decoder");
    let vs = VarStore::new(Device::Cpu);
    let dec = VitDecoder::new(&vs.root(), &tiny(), (32, 32), 8, 3);
    load(&vs, &f);
    assert!(rel_diff(&dec.forward(&f["input"]), &f["output"]) < 1e-5);
    let rect_vs = VarStore::new(Device::Cpu);
    let rect = VitDecoder::new(&rect_vs.root(), &tiny(), (32, 48), 8, 3);
    let mut rect_f: HashMap<String, Tensor> = f.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
    rect_f.insert("param.de_pos_embedding".into(), f["rect.pos_embedding"].shallow_clone());
    load(&rect_vs, &rect_f);
    assert!(rel_diff(&rect.forward(&f["rect.input"]), &f["rect.output"]) < 1e-5);
}

fn vit_quant(k: i64, d: i64) -> VqConfig {
    VqConfig {
        num_codes: k,
        dim: d,
        distance: Distance::Cosine,
        straight_through: StraightThrough::Raw,
        ..VqConfig::default()
    }
}

#[test]
fn l2_normalised_quantizer_matches_upstream() {
    let f = fixtures("quantizer");
    let vs = VarStore::new(Device::Cpu);
    let mut q = VectorQuantizer::new(&(vs.root() / "q"), vit_quant(64, 8)).unwrap();
    q.set_codebook(&f["param.embedding.weight"]);
    let out = q.forward_t(&f["input"], false).unwrap();
    assert_eq!(out.indices, f["indices"]);
    assert!(rel_diff(&out.quantized, &f["zq"]) < 1e-6, "the straight-through output, from the raw input");
    assert!(rel_diff(&out.loss, &f["loss"]) < 1e-6);
}

#[test]
fn whole_model_matches_upstream_and_its_codes_decode_the_same() {
    let f = fixtures("model");
    let vs = VarStore::new(Device::Cpu);
    let config =
        VitConfig { resolution: 32, patch_size: 8, in_channels: 3, encoder: tiny(), decoder: tiny() };
    let mut m = VitVq::new(&vs.root(), config, vit_quant(64, 8)).unwrap();
    load(&vs, &f);
    let out = m.forward_t(&f["input"], false).unwrap();
    assert_eq!(out.quant.indices, f["indices"]);
    assert!(rel_diff(&out.reconstruction, &f["xrec"]) < 1e-5);
    assert!(rel_diff(&out.quant.loss, &f["qloss"]) < 1e-5);
    assert!(rel_diff(&m.decode_indices(&f["indices"]), &f["xrec_codes"]) < 1e-5);
    // Through the tokenizer interface: codes (B, 16) on a 4×4 grid, 64 of them.
    assert_eq!((m.kind(), m.num_codes(), m.layout().single_square()), ("vit-vqgan", 64, Some(4)));
    assert_eq!(ImageTokenizer::encode(&mut m, &f["input"]).unwrap(), f["indices"]);
    let e = ImageTokenizer::encode(&mut m, &Tensor::zeros([1, 3, 30, 30], tch::kind::FLOAT_CPU)).unwrap_err();
    assert!(e.to_string().contains("(B, 3, 32, 32)"), "{e}");
}

/// The StyleGAN2 discriminator (widths /16 of upstream's, as the fixture script builds it), its
/// minibatch-stddev grouping for 8 and 6 images, lazy R1 and the GAN losses.
#[test]
fn stylegan_discriminator_and_r1_match_upstream() {
    use tessera_models::stylegan_disc::{r1_penalty, StyleDiscConfig, StyleDiscriminator};
    let f = fixtures("disc");
    let vs = VarStore::new(Device::Cpu);
    let d = StyleDiscriminator::new(&vs.root(), &StyleDiscConfig { width: 32, channel_multiplier: 2 }, 32);
    let names: std::collections::BTreeSet<String> = vs.variables().into_keys().collect();
    let upstream: std::collections::BTreeSet<String> =
        f.keys().filter_map(|k| k.strip_prefix("param.")).map(String::from).collect();
    assert_eq!(names, upstream, "the same parameters and buffers, by name");
    for k in ["param.blocks.1.conv2.0.kernel", "param.blocks.2.skip.0.kernel"] {
        assert!(rel_diff(&vs.variables()[&k["param.".len()..]], &f[k]) == 0.0, "blur kernel {k}");
    }
    load(&vs, &f);
    assert!(rel_diff(&d.forward(&f["disc_input"]), &f["disc_logits"]) < 1e-5);
    assert!(rel_diff(&d.forward(&f["disc_fake"]), &f["disc_logits_fake"]) < 1e-5);
    assert!(rel_diff(&d.forward(&f["disc_input_b6"]), &f["disc_logits_b6"]) < 1e-5, "a group of 6");
    let r1 = r1_penalty(&d, &f["disc_input"]);
    assert!(rel_diff(&r1, &f["r1"]) < 1e-5, "{r1:?} vs {:?}", f["r1"]);
    // R1 is differentiable: its gradient reaches the discriminator's weights.
    r1.backward();
    assert!(vs.variables()["final_conv.0.weight"].grad().abs().sum(tch::Kind::Float).double_value(&[]) > 0.0);
}

/// Upstream's generator and discriminator losses: reconstructions `disc_fake` of `disc_input`,
/// a codebook loss of 0.123, perceptual weight 0 (its VGG16 weights cannot be fetched), R1 on.
#[test]
fn generator_and_discriminator_losses_match_upstream() {
    use tessera_models::stylegan_disc::{StyleDiscConfig, StyleDiscriminator};
    use tessera_models::vit::loss::{GanLoss, VitLoss, VitLossConfig};
    let f = fixtures("disc");
    let vs = VarStore::new(Device::Cpu);
    let d = StyleDiscriminator::new(&vs.root(), &StyleDiscConfig { width: 32, channel_multiplier: 2 }, 32);
    load(&vs, &f);
    let (real, fake) = (&f["disc_logits"], &f["disc_logits_fake"]);
    for (loss, name) in
        [(GanLoss::Vanilla, "vanilla"), (GanLoss::Hinge, "hinge"), (GanLoss::LeastSquare, "lsq")]
    {
        assert!(rel_diff(&loss.generator(fake), &f[&format!("loss.{name}_g")]) < 1e-6, "{name} g");
        assert!(rel_diff(&loss.discriminator(real, fake), &f[&format!("loss.{name}_d")]) < 1e-6, "{name} d");
    }
    let config = VitLossConfig { perceptual_weight: 0.0, ..VitLossConfig::default() };
    let loss = VitLoss::new(config, d, None);
    let q = Tensor::from(0.123f32);
    let parts = loss.generator(&f["disc_input"], &f["disc_fake"], &q, 0);
    assert!(rel_diff(&parts.rec, &f["rec_loss"]) < 1e-5);
    assert!(rel_diff(&parts.total, &f["g_total"]) < 1e-5);
    let (d_loss, r1) = loss.discriminator(&f["disc_input"], &f["disc_fake"], 0);
    assert!(rel_diff(&d_loss, &f["d_loss"]) < 1e-5, "GAN term + 10·16/2·R1 at step 0");
    assert!(rel_diff(&r1.unwrap(), &f["r1"]) < 1e-5);
    let (no_r1, none) = loss.discriminator(&f["disc_input"], &f["disc_fake"], 5);
    assert!(none.is_none() && rel_diff(&no_r1, &f["d_loss_gan"]) < 1e-5, "R1 only every 16 steps");
}

/// The patch convs start as upstream's `init_weights` leaves them: xavier-uniform on the weight
/// viewed as `(dim, ch·p²)` (bound √(6/(ch·p² + dim))), PyTorch's default bias `U(±1/√(ch·p²))`.
#[test]
fn patch_convs_initialise_as_upstream() {
    let vs = VarStore::new(Device::Cpu);
    let config =
        VitConfig { resolution: 32, patch_size: 8, in_channels: 3, encoder: tiny(), decoder: tiny() };
    let _m = VitVq::new(&vs.root(), config, vit_quant(64, 8)).unwrap();
    let v = vs.variables();
    let max = |k: &str| v[k].abs().max().double_value(&[]);
    let (w, b) = ((6.0f64 / (192.0 + 64.0)).sqrt(), 1.0 / 192f64.sqrt());
    for k in ["encoder.to_patch_embedding.0", "decoder.to_pixel.1"] {
        let (mw, mb) = (max(&format!("{k}.weight")), max(&format!("{k}.bias")));
        assert!(mw <= w && mw > 0.95 * w, "{k}.weight: max {mw} vs bound {w}");
        assert!(mb <= b && mb > 0.3 * b, "{k}.bias: max {mb} vs bound {b}");
    }
}
