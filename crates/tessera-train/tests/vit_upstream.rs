//! ViT-VQGAN against thuanz123/enhancing-transformers@e1c185d (fixtures from
//! `reference/vitvq_step_fixtures.py`, which runs upstream's own modules):
//!
//! - two whole training steps (autoencoder AdamW step, then discriminator AdamW step on the
//!   updated autoencoder's reconstructions; lazy R1 on the first), as upstream's
//!   `ViTVQ.training_step` and `configure_optimizers` run under PyTorch Lightning 1.5;
//! - `tessera import vit-vqgan` of an upstream Lightning checkpoint: the same codes and decodes.

use std::collections::HashMap;

use tch::{Device, Tensor};
use tessera_data::Batch;
use tessera_models::stylegan_disc::StyleDiscConfig;
use tessera_models::vit::{StackConfig, VitConfig};
use tessera_quant::{Distance, StraightThrough, VqConfig};
use tessera_train::vit_tokenizer::{VitRunConfig, VitTrainer};

fn fixture_path(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(file)
}

fn fixture() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture_path("vit_step.safetensors")).unwrap().into_iter().collect()
}

fn scalar(f: &HashMap<String, Tensor>, k: &str) -> f64 {
    f[k].double_value(&[])
}

/// The fixture's model: 32-px images, 8-px patches, 2 blocks of width 64, 64 codes of 8 dims,
/// the discriminator at 1/16 of upstream's widths, no perceptual term.
fn config(f: &HashMap<String, Tensor>) -> VitRunConfig {
    let stack = StackConfig { dim: 64, depth: 2, heads: 2, mlp_dim: 128, dim_head: 32 };
    let mut c = VitRunConfig::default();
    c.data.image_size = 32;
    c.model =
        VitConfig { resolution: 32, patch_size: 8, in_channels: 3, encoder: stack.clone(), decoder: stack };
    c.quantizer = VqConfig {
        num_codes: 64,
        dim: 8,
        distance: Distance::Cosine,
        straight_through: StraightThrough::Raw,
        ..VqConfig::default()
    };
    c.disc = StyleDiscConfig { width: 32, channel_multiplier: 2 };
    c.loss.perceptual_weight = 0.0;
    c.loss.adversarial_weight = scalar(f, "adversarial_weight");
    c.loss.codebook_weight = scalar(f, "codebook_weight");
    c.loss.r1_gamma = scalar(f, "r1_gamma");
    c.loss.r1_every = scalar(f, "r1_every") as i64;
    c.loss.disc_start = 0;
    let betas = Vec::<f64>::try_from(&f["betas"]).unwrap();
    c.optim.adam.beta1 = betas[0];
    c.optim.adam.beta2 = betas[1];
    c.optim.adam.eps = scalar(f, "eps");
    c.optim.adam.weight_decay = scalar(f, "weight_decay");
    c.optim.adam.decoupled = true;
    c
}

/// Every variable of both stores by its upstream name (`loss.discriminator.…` for D), without
/// the quantizer's Tessera-only bookkeeping (EMA counts and the k-means flag, unused by this
/// codebook).
fn variables(t: &VitTrainer) -> HashMap<String, Tensor> {
    let mut v = t.vs.variables();
    v.extend(t.disc_vs.variables());
    v.retain(|k, _| k != "quantizer.embedding.cluster_size" && k != "quantizer.initialized");
    v
}

/// Load `init.<key>` into the variable named `key`; every variable and every fixture key must
/// find its partner.
fn load_init(t: &VitTrainer, f: &HashMap<String, Tensor>) {
    let vars = variables(t);
    let keys: Vec<&str> = f.keys().filter_map(|k| k.strip_prefix("init.")).collect();
    let mut extra: Vec<&String> = vars.keys().filter(|k| !keys.contains(&k.as_str())).collect();
    extra.sort();
    assert_eq!(extra, Vec::<&String>::new(), "Tessera variables upstream does not have");
    tch::no_grad(|| {
        for k in keys {
            let mut v =
                vars.get(k).unwrap_or_else(|| panic!("no variable for upstream `{k}`")).shallow_clone();
            v.copy_(&f[&format!("init.{k}")]);
        }
    });
}

/// Largest `max |a − b| / max(1, max |b|)` over all variables against `prefix<key>`, and the
/// variable it is in.
fn worst(t: &VitTrainer, f: &HashMap<String, Tensor>, prefix: &str) -> (f64, String) {
    let mut out = (0.0, String::new());
    for (k, v) in variables(t) {
        let b = &f[&format!("{prefix}{k}")];
        let scale = b.abs().max().double_value(&[]).max(1.0);
        let d = (&v - b).abs().max().double_value(&[]) / scale;
        if d > out.0 {
            out = (d, k);
        }
    }
    out
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{what}: {a} vs upstream {b}");
}

#[test]
fn two_training_steps_match_upstream_with_r1_on_the_first() {
    let f = fixture();
    let mut t = VitTrainer::new(config(&f), Device::Cpu, std::path::Path::new("unused")).unwrap();
    load_init(&t, &f);
    let lr = scalar(&f, "lr");
    for s in 0..2 {
        let batch = Batch { images: f[&format!("x{s}")].shallow_clone(), captions: vec![], indices: vec![] };
        let log = t.step(std::slice::from_ref(&batch), s, lr).unwrap();
        close(log["loss/total"], scalar(&f, &format!("s{s}.g_total")), "L_G");
        close(log["loss/rec"], scalar(&f, &format!("s{s}.rec_loss")), "L2");
        close(log["loss/q"], scalar(&f, &format!("s{s}.q_loss")), "L_VQ");
        close(log["loss/g"], scalar(&f, &format!("s{s}.g_loss")), "g_loss");
        close(log["loss/disc"], scalar(&f, &format!("s{s}.d_loss")), "L_D (+ R1)");
        assert_eq!(log.contains_key("r1"), s == 0, "lazy R1 on step 0 of every 16 only");
        if s == 0 {
            close(log["r1"], scalar(&f, "s0.r1"), "R1");
        }
        // AdamW's first steps move a weight by about lr whatever its gradient, so a weight whose
        // gradient is near Adam's ε (a few dozen of 200k here) amplifies float noise: the bound
        // is the 1e-5 relative, not a fraction of a step.
        let (d, name) = worst(&t, &f, &format!("s{s}.after."));
        eprintln!("step {s}: worst parameter `{name}`, {d:e} relative");
        assert!(d < 1e-5, "step {s}: `{name}` differs by {d:e} (lr {lr})");
    }
    // The steps did something: the autoencoder and the discriminator moved.
    let moved = |k: &str| (&variables(&t)[k] - &f[&format!("init.{k}")]).abs().max().double_value(&[]);
    assert!(moved("quantizer.embedding.weight") > 0.1 * lr);
    assert!(moved("loss.discriminator.final_linear.1.weight") > 0.1 * lr);
}

/// An upstream Lightning checkpoint imports by state_dict names, every model tensor consumed,
/// and the run encodes and decodes as upstream's `encode_codes` / `decode_codes`.
#[test]
fn upstream_checkpoint_imports_with_the_same_codes() {
    use tessera_models::tokenizer::ImageTokenizer;
    use tessera_train::tokenizer::read_checkpoint_tensors;
    let config = config(&fixture());
    let (tensors, step) = read_checkpoint_tensors(&fixture_path("vit_import.ckpt")).unwrap();
    assert_eq!(step, Some(1234));
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let report =
        tessera_train::vit_tokenizer::import(config.clone(), &tensors, false, Device::Cpu, &run).unwrap();
    assert_eq!(report.loaded, tensors.len(), "every checkpoint tensor has its place");
    assert!(report.unused.is_empty() && report.ignored.is_empty());
    assert_eq!(report.kept, ["quantizer.embedding.cluster_size", "quantizer.initialized"]);

    let f: HashMap<String, Tensor> =
        Tensor::read_safetensors(fixture_path("vit_import.safetensors")).unwrap().into_iter().collect();
    let mut tok = tessera_train::frozen::load_tokenizer(&run, Device::Cpu).unwrap();
    assert_eq!(tok.kind(), "vit-vqgan");
    let codes = tok.encode(&f["input"]).unwrap();
    assert_eq!(codes, f["indices"]);
    // Decoding gives images: upstream's decode_codes clamped to [−1, 1].
    let want = f["xrec_codes"].clamp(-1.0, 1.0);
    assert!(want.abs().lt(1.0).to_kind(tch::Kind::Float).mean(tch::Kind::Float).double_value(&[]) > 0.5);
    let xrec = tok.decode(&codes);
    assert!((&xrec - &want).abs().max().double_value(&[]) < 1e-5);

    // A checkpoint with a tensor the model lacks is refused unless asked; one missing a
    // tensor is refused, naming it.
    let mut extra: HashMap<String, Tensor> =
        tensors.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
    extra.insert(
        "encoder.transformer.layers.2.0.norm.weight".into(),
        Tensor::ones([64], tch::kind::FLOAT_CPU),
    );
    let e = tessera_train::vit_tokenizer::import(
        config.clone(),
        &extra,
        false,
        Device::Cpu,
        &dir.path().join("x"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("layers.2.0.norm.weight"), "{e}");
    let r = tessera_train::vit_tokenizer::import(
        config.clone(),
        &extra,
        true,
        Device::Cpu,
        &dir.path().join("y"),
    );
    assert_eq!(r.unwrap().unused, ["encoder.transformer.layers.2.0.norm.weight"]);
    extra.remove("post_quant.weight");
    let e = tessera_train::vit_tokenizer::import(config, &extra, true, Device::Cpu, &dir.path().join("z"))
        .unwrap_err();
    assert!(e.to_string().contains("`post_quant.weight`"), "{e}");
}
