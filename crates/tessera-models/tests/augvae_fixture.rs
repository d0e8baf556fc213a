//! AugVAE-ML and -SL against L-Verse's own modules, weights imported by their state_dict names.
//! Fixtures from `reference/augvae_fixtures.py`, which imports tgisaturday/L-Verse@e52ed9f
//! (`latent_verse/models/vqvae.py` AugVAE, `modules/vqvae/{vae,quantize}.py`) from a checkout.

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tessera_models::augvae::{lverse_quantizer, sl_name_of_ml, AugVae, AugVaeConfig};
use tessera_models::tokenizer::{CodeLayout, ImageTokenizer};

fn fixtures(name: &str) -> HashMap<String, Tensor> {
    let path = format!("{}/tests/fixtures/augvae_{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// `max |a − b| / max(1, max |b|)`.
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    let scale = b.abs().max().double_value(&[]).max(1.0);
    (a - b).abs().max().double_value(&[]) / scale
}

/// The fixtures' model (32 codes of 8 dims in the quantizer).
fn ml_config() -> AugVaeConfig {
    AugVaeConfig::reference_fixture()
}

fn sl_config(reference_quantisation: bool) -> AugVaeConfig {
    AugVaeConfig { single_level: Some(8), quantize_all_kept_levels: reference_quantisation, ..ml_config() }
}

/// Copy upstream's `param.<name>` tensors into `vs` through `rename` (`None`: not in this model).
/// A tensor upstream shares under several names must equal the one loaded.
fn load(vs: &VarStore, f: &HashMap<String, Tensor>, rename: impl Fn(&str) -> Option<String>) -> usize {
    let vars = vs.variables();
    let mut loaded = 0;
    tch::no_grad(|| {
        for (key, t) in f.iter().filter(|(k, _)| k.starts_with("param.")) {
            let upstream = &key["param.".len()..];
            let shared = upstream.starts_with("quantizers.") && !upstream.starts_with("quantizers.0.")
                || upstream.ends_with(".weight")
                    && (upstream.starts_with("pre_quants.") || upstream.starts_with("post_quants."))
                    && !upstream.contains("quants.0.");
            if shared {
                let canonical = upstream.replacen(upstream.split('.').nth(1).unwrap(), "0", 1);
                assert_eq!(t, &f[&format!("param.{canonical}")], "{upstream} is shared with {canonical}");
                continue;
            }
            let Some(name) = rename(upstream) else { continue };
            let mut v = vars
                .get(&name)
                .unwrap_or_else(|| panic!("no variable for upstream `{upstream}`"))
                .shallow_clone();
            assert_eq!(v.size(), t.size(), "{name}");
            v.copy_(t);
            loaded += 1;
        }
    });
    loaded
}

fn ml_model(vs: &VarStore) -> AugVae {
    let m = AugVae::new(&vs.root(), ml_config(), lverse_quantizer(32, 8)).unwrap();
    let loaded = load(vs, &fixtures("ml"), |n| Some(n.to_string()));
    // Every variable but the `initialized` flag of Tessera's quantizer comes from upstream.
    assert_eq!(loaded + 1, vs.variables().len());
    m
}

#[test]
fn ml_encodes_and_decodes_as_upstream() {
    let f = fixtures("ml");
    let vs = VarStore::new(Device::Cpu);
    let mut m = ml_model(&vs);
    assert_eq!(m.layout(), CodeLayout { grids: vec![(16, 16), (8, 8), (4, 4)] });
    let x = &f["input"];
    let out = tch::no_grad(|| m.forward_t(x, false)).unwrap();
    assert_eq!(m.codes(&out), f["codes"], "stage-2 codes, fine to coarse");
    assert!(rel_diff(&out.reconstruction, &f["xrec_eval"]) < 1e-5);
    assert!(rel_diff(&out.loss, &f["qloss_eval"]) < 1e-5);
    // Through the tokenizer interface: the same codes, and decoding them is upstream's feed_seq path.
    assert_eq!(ImageTokenizer::encode(&mut m, x).unwrap(), f["codes"]);
    let wrong = Tensor::zeros([1, 3, 16, 16], (Kind::Float, Device::Cpu));
    let e = ImageTokenizer::encode(&mut m, &wrong).unwrap_err().to_string();
    assert!(e.contains("(B, 3, 32, 32)"), "{e}");
    let decoded = tch::no_grad(|| m.decode_codes(&f["codes"]));
    // Upstream's own two routes to this image (forward's straight-through `z + (e − z)` and the
    // looked-up `e`) differ by 1.8e-5 after three decoders: float32 rounding, amplified. The codes
    // are identical; the tolerance is that floor.
    let floor = rel_diff(&f["xrec_eval"], &f["decoded"]);
    assert!(
        floor < 3e-5 && rel_diff(&decoded, &f["decoded"]) < 3e-5,
        "{}",
        rel_diff(&decoded, &f["decoded"])
    );
}

#[test]
fn ml_training_forward_moves_the_shared_codebook_as_upstream() {
    let f = fixtures("ml");
    let vs = VarStore::new(Device::Cpu);
    let mut m = ml_model(&vs);
    let x = &f["input"];
    let out = m.forward_t(x, true).unwrap();
    for l in &out.levels {
        assert_eq!(l.indices.flatten(0, -1), f[&format!("step1.indices.{}", l.level)], "level {}", l.level);
    }
    assert!(rel_diff(&out.reconstruction, &f["step1.xrec"]) < 1e-5);
    assert!(rel_diff(&out.loss, &f["step1.qloss"]) < 1e-5);
    let perplexity = out.perplexity(32);
    assert!((perplexity - f["step1.perplexity"].double_value(&[])).abs() < 1e-4, "{perplexity}");
    let vars = vs.variables();
    for buf in ["weight", "cluster_size", "embed_avg"] {
        let name = format!("quantizers.0.embedding.{buf}");
        assert!(rel_diff(&vars[&name], &f[&format!("step1.state.{name}")]) < 1e-5, "{name}");
    }
    // Upstream's loss (loss_type 'mse': nn.MSELoss() + the summed commitments) and its gradients,
    // through the straight-through codes and the shared pre-/post-quant weights.
    let rec = out.reconstruction.mse_loss(x, tch::Reduction::Mean);
    assert!(rel_diff(&rec, &f["step1.rec"]) < 1e-5);
    let loss = &rec + &out.loss;
    assert!(rel_diff(&loss, &f["step1.loss"]) < 1e-5);
    loss.backward();
    for (key, want) in f.iter().filter(|(k, _)| k.starts_with("step1.grad.")) {
        let name = &key["step1.grad.".len()..];
        let got = vars[name].grad();
        // The first encoder conv's gradient crosses three decoders and three encoders: 1.2e-5.
        let tol = if name.starts_with("encoders.0") { 3e-5 } else { 1e-5 };
        assert!(rel_diff(&got, want) < tol, "grad of {name}: {}", rel_diff(&got, want));
    }
}

fn sl_model(vs: &VarStore, reference_quantisation: bool) -> AugVae {
    let cfg = sl_config(reference_quantisation);
    let m = AugVae::new(&vs.root(), cfg.clone(), lverse_quantizer(32, 8)).unwrap();
    let from_ml = load(vs, &fixtures("ml"), |n| sl_name_of_ml(&cfg, n));
    let connectors = load(vs, &fixtures("sl"), |n| Some(n.to_string()));
    assert_eq!((from_ml + connectors + 1, connectors), (vs.variables().len(), 4));
    m
}

#[test]
fn sl_fine_tune_keeps_what_upstream_keeps_and_decodes_as_upstream() {
    let (f, ml) = (fixtures("sl"), fixtures("ml"));
    let vs = VarStore::new(Device::Cpu);
    let mut m = sl_model(&vs, true);
    assert_eq!(m.layout(), CodeLayout::square(8));
    let x = &ml["input"];
    let out = tch::no_grad(|| m.forward_t(x, false)).unwrap();
    assert_eq!(out.levels.iter().map(|l| l.level).collect::<Vec<_>>(), [0, 1], "both kept levels quantised");
    assert_eq!(m.codes(&out), f["codes"], "only the 8×8 level is stage 2's");
    assert!(rel_diff(&out.reconstruction, &f["xrec_eval"]) < 1e-5);
    assert!(rel_diff(&out.loss, &f["qloss_eval"]) < 1e-5);
    assert!(rel_diff(&tch::no_grad(|| m.decode_codes(&f["codes"])), &f["decoded"]) < 1e-5);

    // Training as upstream: each kept level moves the codebook and adds its commitment.
    let out = m.forward_t(x, true).unwrap();
    for l in &out.levels {
        assert_eq!(l.indices.flatten(0, -1), f[&format!("step1.indices.{}", l.level)]);
    }
    assert!(rel_diff(&out.reconstruction, &f["step1.xrec"]) < 1e-5);
    assert!(rel_diff(&out.loss, &f["step1.qloss"]) < 1e-5);
    let vars = vs.variables();
    let name = "quantizers.0.embedding.embed_avg";
    assert!(rel_diff(&vars[name], &f[&format!("step1.state.{name}")]) < 1e-5);
}

#[test]
fn sl_by_default_quantises_only_the_level_it_decodes() {
    let (f, ml) = (fixtures("sl"), fixtures("ml"));
    let (vs_ref, vs) = (VarStore::new(Device::Cpu), VarStore::new(Device::Cpu));
    let (mut reference, mut m) = (sl_model(&vs_ref, true), sl_model(&vs, false));
    let x = &ml["input"];
    let want = tch::no_grad(|| reference.forward_t(x, false)).unwrap();
    let out = tch::no_grad(|| m.forward_t(x, false)).unwrap();
    assert_eq!(out.levels.len(), 1);
    assert_eq!(out.levels[0].level, 1);
    assert!(rel_diff(&out.reconstruction, &f["xrec_eval"]) < 1e-5, "the same image either way");
    assert!(rel_diff(&out.loss, &want.levels[1].loss) < 1e-6, "only the 8×8 commitment");
    assert!(out.loss.double_value(&[]) < want.loss.double_value(&[]));
    // In training only one EMA update happens: the cluster sizes gain one level's count.
    let before = vs.variables()["quantizers.0.embedding.cluster_size"].sum(Kind::Float).double_value(&[]);
    m.forward_t(x, true).unwrap();
    let after = vs.variables()["quantizers.0.embedding.cluster_size"].sum(Kind::Float).double_value(&[]);
    let n = (2 * 8 * 8) as f64;
    assert!((after - (0.99 * before + 0.01 * n)).abs() < 1e-3, "{before} → {after}");
}

#[test]
fn sl_names_follow_setup_finetune() {
    let cfg = sl_config(false);
    let map = |n: &str| sl_name_of_ml(&cfg, n);
    assert_eq!(map("encoders.1.conv_in.weight").as_deref(), Some("encoders.1.conv_in.weight"));
    assert_eq!(map("encoders.2.conv_in.weight"), None);
    assert_eq!(map("decoders.0.conv_in.weight"), None);
    assert_eq!(
        map("decoders.1.mid.block_1.conv1.bias").as_deref(),
        Some("decoders.0.mid.block_1.conv1.bias")
    );
    assert_eq!(map("decoders.2.conv_out.weight").as_deref(), Some("decoders.1.conv_out.weight"));
    assert_eq!(map("post_quants.1.bias"), None);
    assert_eq!(map("pre_quants.1.bias").as_deref(), Some("pre_quants.1.bias"));
    assert_eq!(sl_name_of_ml(&ml_config(), "encoders.0.conv_in.weight"), None, "not an SL config");
}
