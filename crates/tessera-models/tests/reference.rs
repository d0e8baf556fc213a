//! The VQGAN, PatchGAN and LPIPS against the upstream PyTorch code, with weights imported by their
//! taming state_dict names. Fixtures from `reference/upstream_vqgan_fixtures.py`, which imports
//! the modules from checkouts of CompVis/taming-transformers@3ba01b2 (`taming/models/vqgan.py`
//! VQModel: `vqgan_taming`) and wcshin-git/TE-VQGAN@248f883 (VQModel: `vqgan_te`, `vqgan_te_blur`;
//! `taming/modules/discriminator/model.py`; `taming/modules/losses/lpips.py` LPIPS on Tessera's own
//! Tiny backbone, as upstream's VGG16 needs ImageNet weights).

use std::collections::HashMap;

use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};
use tessera_models::disc::{DiscConfig, PatchGan};
use tessera_models::perceptual::{Backbone, Lpips};
use tessera_models::vqgan::{EncoderVersion, VqModel, VqganConfig};
use tessera_nn::blocks::DownsamplingMethod;
use tessera_quant::VqConfig;

fn fixtures(name: &str) -> HashMap<String, Tensor> {
    let path = format!("{}/tests/fixtures/vqgan_{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// Copy `prefix + name` tensors into the VarStore; variables the original has no tensor for
/// (Tessera's codebook statistics) keep their values. Returns how many were loaded.
fn load(vs: &VarStore, f: &HashMap<String, Tensor>, prefix: &str) -> usize {
    let mut n = 0;
    tch::no_grad(|| {
        for (name, mut v) in vs.variables() {
            if let Some(t) = f.get(&format!("{prefix}{name}")) {
                assert_eq!(v.size(), t.size(), "{name}");
                v.copy_(t);
                n += 1;
            }
        }
    });
    n
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn check(name: &str, replicate: bool, method: DownsamplingMethod) {
    let f = fixtures(name);
    let cfg = VqganConfig {
        ch: 32,
        ch_mult: vec![1, 2],
        num_res_blocks: 1,
        attn_resolutions: vec![8],
        resolution: 16,
        z_channels: 32,
        use_replicationpad: replicate,
        downsampling_method: method,
        version: if replicate { EncoderVersion::V2 } else { EncoderVersion::V1 },
        ..VqganConfig::default()
    };
    let vs = VarStore::new(Device::Cpu);
    let model =
        VqModel::new(&vs.root(), cfg, VqConfig { num_codes: 24, dim: 16, ..VqConfig::default() }).unwrap();
    let expected = f.keys().filter(|k| k.starts_with("param.") && !k.ends_with(".filt")).count();
    assert_eq!(load(&vs, &f, "param."), expected, "every original parameter has a Tessera twin");
    let mut model = model;
    let x = &f["input"];
    let h = model.encoder.forward_t(x, false);
    assert!(max_diff(&h, &f["h"]) < 1e-5, "{name} encoder: {}", max_diff(&h, &f["h"]));
    let z = model.encode_latent(x, false);
    assert!(max_diff(&z, &f["z"]) < 1e-5);
    let q = model.quantize.forward_t(&z, false).unwrap();
    // Indices agree except where the reference itself nearly ties (gap < 1e-4).
    let dist = &f["dist"];
    let (best, _) = dist.min_dim(-1, false);
    let ours = dist.gather(-1, &q.indices.unsqueeze(-1), false).squeeze_dim(-1);
    assert!((ours - best).max().double_value(&[]) < 1e-4, "{name}: a code far from the nearest");
    let agree = q.indices.eq_tensor(&f["indices"]).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    assert!(agree > 0.98, "{name}: {agree}");
    let xrec = model.decode(&f["zq"], false);
    assert!(max_diff(&xrec, &f["xrec"]) < 1e-5, "{name} decoder: {}", max_diff(&xrec, &f["xrec"]));
    eprintln!(
        "{name}: max |diff| h {:.1e}, z {:.1e}, xrec {:.1e}; indices agree {agree}",
        max_diff(&h, &f["h"]),
        max_diff(&z, &f["z"]),
        max_diff(&xrec, &f["xrec"])
    );
}

#[test]
fn taming_vqgan_matches_pytorch() {
    check("taming", false, DownsamplingMethod::StridedConv);
}

#[test]
fn te_vqgan_replication_padding_matches_pytorch() {
    check("te", true, DownsamplingMethod::StridedConv);
}

#[test]
fn te_vqgan_convblurpool_matches_pytorch() {
    check("te_blur", true, DownsamplingMethod::Convblurpool);
}

#[test]
fn patchgan_matches_pytorch() {
    let f = fixtures("te");
    let vs = VarStore::new(Device::Cpu);
    let d = PatchGan::new(&vs.root(), &DiscConfig { in_channels: 3, ndf: 16, n_layers: 3 });
    assert_eq!(load(&vs, &f, "disc.param."), vs.variables().len());
    let logits = d.forward_t(&f["disc_input"], false);
    eprintln!("PatchGAN logits: max |diff| {:.1e}", max_diff(&logits, &f["disc_logits"]));
    assert!(max_diff(&logits, &f["disc_logits"]) < 1e-5, "{}", max_diff(&logits, &f["disc_logits"]));
}

#[test]
fn lpips_formula_matches_pytorch() {
    let f = fixtures("te");
    let vs = VarStore::new(Device::Cpu);
    let lp = Lpips::new(&vs.root(), Backbone::Tiny, false);
    assert_eq!(load(&vs, &f, "lpips.param."), vs.variables().len());
    let v = lp.forward_t(&f["input"], &f["xrec"], false);
    eprintln!("LPIPS: max |diff| {:.1e}", max_diff(&v, &f["lpips_value"]));
    assert!(max_diff(&v, &f["lpips_value"]) < 1e-5, "{}", max_diff(&v, &f["lpips_value"]));
    // Identical images are at distance 0.
    assert!(lp.forward_t(&f["input"], &f["input"], false).abs().max().double_value(&[]) < 1e-7);
}
