//! Exact resume: 6 steps straight equal 3 steps + resume + 3 steps, to the bit; and the loop's
//! guards (existing checkpoint, truncated checkpoint, non-finite losses).

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Tensor};
use tessera_train::tokenizer::{self, TokenizerRunConfig};

mod common;
use common::{final_state, train_losses, TORCH_RNG};

fn tiny(max_steps: i64) -> TokenizerRunConfig {
    let text = format!(
        r#"
[data]
source = "fake"
image_size = 16
fake_len = 40
[data.loader]
batch_size = 4
workers = 2
[model]
ch = 32
ch_mult = [1, 2]
attn_resolutions = [8]
resolution = 16
z_channels = 32
[quantizer]
num_codes = 16
dim = 16
dead_code_threshold = 0.05
[quantizer.ortho]
weight = 10.0
[disc]
ndf = 8
n_layers = 2
[loss]
perceptual_weight = 0.0
disc_start = 2
[optim]
base_learning_rate = 1e-4
weight_ema = 0.9
clip_grad_norm = 1.0
[train]
max_steps = {max_steps}
checkpoint_every = 3
image_every = 3
validate_every = 0
log_every = 1
[eval]
val_batches = 1
batch_size = 4
trans_eq = false
"#
    );
    tessera_core::config::load_str(&text, &[], "test").unwrap()
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new("unused-data-root");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    tokenizer::train(tiny(6), Device::Cpu, root, a.path(), false).unwrap();
    tokenizer::train(tiny(3), Device::Cpu, root, b.path(), false).unwrap();
    // Without --resume an existing run is refused, and nothing is touched.
    let e = tokenizer::train(tiny(6), Device::Cpu, root, b.path(), false).err().unwrap().to_string();
    assert!(e.contains("--resume"), "{e}");
    tokenizer::train(tiny(6), Device::Cpu, root, b.path(), true).unwrap();

    let (sa, sb) = (final_state(a.path()), final_state(b.path()));
    assert_eq!(sa.len(), sb.len());
    assert!(
        sa.keys().any(|k| k.starts_with("opt_d.m."))
            && sa.contains_key("model.quantize.embedding.cluster_size")
    );
    let mut diffs: Vec<(f64, &String)> = sa
        .iter()
        .map(|(k, t)| {
            (
                (t.to_kind(tch::Kind::Double) - sb[k].to_kind(tch::Kind::Double))
                    .abs()
                    .max()
                    .double_value(&[]),
                k,
            )
        })
        .filter(|(d, _)| *d > 0.0)
        .collect();
    diffs.sort_by(|a, b| b.0.total_cmp(&a.0));
    assert!(
        diffs.is_empty(),
        "{} tensors differ after resume, largest: {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(5)]
    );
    assert_eq!(train_losses(a.path()), train_losses(b.path()));
    assert_eq!(train_losses(a.path()).len(), 6);
    // The GAN was active for part of the run (so its state was resumed too).
    assert!(train_losses(a.path()).iter().any(|l| l.contains("loss/disc")));
    assert!(a.path().join("samples/step_0000006.png").is_file());
}

#[test]
fn truncated_checkpoint_is_a_clear_error() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new("unused-data-root");
    let d = tempfile::tempdir().unwrap();
    tokenizer::train(tiny(3), Device::Cpu, root, d.path(), false).unwrap();
    let p = d.path().join("checkpoints/last.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = tokenizer::train(tiny(6), Device::Cpu, root, d.path(), true).err().unwrap().to_string();
    assert!(e.contains("truncated") && e.contains("last.safetensors"), "{e}");
}

#[test]
fn perceptual_loss_without_weights_says_how_to_get_them() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = tiny(1);
    c.loss.perceptual_weight = 1.0;
    let e = tessera_train::tokenizer::TokenizerTask::new(c, Device::Cpu, Path::new("x"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("tessera train perceptual"), "{e}");
}

#[test]
fn taming_checkpoint_imports_by_state_dict_names() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    // Codes and reconstruction of TE-VQGAN's own VQModel (reference/upstream_vqgan_fixtures.py).
    let fx: HashMap<String, Tensor> = Tensor::read_safetensors(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tessera-models/tests/fixtures/vqgan_te.safetensors"
    ))
    .unwrap()
    .into_iter()
    .collect();
    // The same model's weights as PyTorch Lightning writes them: a `.ckpt` from `torch.save`, with
    // optimizer states, hyper-parameters as a pickled Namespace and an LPIPS key Tessera has no
    // slot for. Written by the project's own PyTorch (the venv libtorch comes from).
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("te.ckpt");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("reference/torch_files.py"))
        .arg("--taming-ckpt")
        .arg(&file)
        .status()
        .expect("the project's venv (scripts/setup.sh) runs reference/torch_files.py");
    assert!(status.success());

    let text = "[data]\nsource = \"fake\"\nimage_size = 16\n[model]\nch = 32\nch_mult = [1, 2]\nattn_resolutions = [8]\n\
                resolution = 16\nz_channels = 32\n[quantizer]\nnum_codes = 24\ndim = 16\n[loss]\nperceptual_weight = 0.0\n\
                [disc]\nn_layers = 2\n[eval]\ntrans_eq = false\n";
    let cfg: TokenizerRunConfig = tessera_core::config::load_str(text, &[], "t").unwrap();
    let (tensors, step) = tokenizer::read_checkpoint_tensors(&file).unwrap();
    assert_eq!(step, Some(1234));
    // Every weight came through bit for bit.
    for (k, v) in fx.iter().filter_map(|(k, v)| k.strip_prefix("param.").map(|n| (n, v))) {
        assert!(tensors[k].equal(v), "{k}");
    }
    let run = d.path().join("run");
    let rep =
        tokenizer::import_taming(cfg.clone(), &tensors, false, Device::Cpu, Path::new("x"), &run).unwrap();
    assert!(rep.loaded > 50, "{rep:?}");
    assert_eq!(rep.ignored, vec!["loss.perceptual_loss.lin0.model.1.weight".to_string()]);
    let mut task = tokenizer::load_run(&run, Device::Cpu, Path::new("x")).unwrap();
    let (xrec, idx) = task.reconstruct(&fx["input"]).unwrap();
    let agree =
        idx.eq_tensor(&fx["indices"]).to_kind(tch::Kind::Float).mean(tch::Kind::Float).double_value(&[]);
    assert!(agree > 0.98, "{agree}");
    if agree == 1.0 {
        assert!((xrec - &fx["xrec"]).abs().max().double_value(&[]) < 1e-5);
    }
    // A config that does not match the checkpoint says which key and why.
    let mut wrong = cfg.clone();
    wrong.model.use_replicationpad = false;
    let e =
        tokenizer::import_taming(wrong, &tensors, false, Device::Cpu, Path::new("x"), &d.path().join("r2"))
            .unwrap_err()
            .to_string();
    assert!(e.contains("the checkpoint has no `encoder.") && e.contains("use_replicationpad"), "{e}");
    // A config with fewer blocks than the checkpoint leaves model tensors unused: refused, naming
    // them, unless --allow-unused.
    let mut fewer = cfg.clone();
    fewer.model.attn_resolutions = vec![];
    let e = tokenizer::import_taming(
        fewer.clone(),
        &tensors,
        false,
        Device::Cpu,
        Path::new("x"),
        &d.path().join("r3"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("have no place in this config") && e.contains(".attn") && e.contains("--allow-unused"),
        "{e}"
    );
    let rep =
        tokenizer::import_taming(fewer, &tensors, true, Device::Cpu, Path::new("x"), &d.path().join("r4"))
            .unwrap();
    assert!(!rep.unused.is_empty() && rep.unused.iter().all(|k| k.contains("attn")), "{:?}", rep.unused);
    // A checkpoint cut short is refused with the file's name.
    let bytes = std::fs::read(&file).unwrap();
    let cut = d.path().join("cut.ckpt");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = tokenizer::read_checkpoint_tensors(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.ckpt") && e.contains("truncated"), "{e}");
}

#[test]
fn user_supplied_vgg16_lpips_weights_load_under_original_names() {
    use tessera_models::perceptual::{Backbone, Lpips};
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    // Weights we generate, written under torchvision / lpips names as a user would supply them.
    let src = tch::nn::VarStore::new(Device::Cpu);
    let lp = Lpips::new(&src.root(), Backbone::Vgg16, false);
    let named: Vec<(String, Tensor)> = src
        .variables()
        .into_iter()
        .map(|(n, t)| {
            (n.strip_prefix("net.").map(String::from).unwrap_or(n).replace(".model.0.", ".model.1."), t * 1.5)
        })
        .collect();
    assert!(
        named.iter().any(|(n, _)| n == "features.28.weight")
            && named.iter().any(|(n, _)| n == "lin4.model.1.weight")
    );
    // Two files, as users have them: torchvision's VGG16 and the lpips package's heads.
    let d = tempfile::tempdir().unwrap();
    let (vgg, heads) = (d.path().join("vgg16.safetensors"), d.path().join("lpips_vgg.safetensors"));
    let (features, lins): (Vec<_>, Vec<_>) = named
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .partition(|(n, _)| n.starts_with("features."));
    Tensor::write_safetensors(&features, &vgg).unwrap();
    Tensor::write_safetensors(&lins, &heads).unwrap();
    let mut dst = tch::nn::VarStore::new(Device::Cpu);
    let loaded = Lpips::new(&dst.root(), Backbone::Vgg16, false);
    tokenizer::load_perceptual(&mut dst, &[&vgg, &heads]).unwrap();
    let x = Tensor::rand([1, 3, 32, 32], (tch::Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let y = Tensor::rand([1, 3, 32, 32], (tch::Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    // The loaded network computes what the source network with the same (scaled) weights does.
    tch::no_grad(|| {
        for (_, mut t) in src.variables() {
            let _ = t.g_mul_scalar_(1.5);
        }
    });
    let (a, b) = (lp.forward_t(&x, &y, false), loaded.forward_t(&x, &y, false));
    assert!((a - b).abs().max().double_value(&[]) < 1e-6);
    // Without the heads file the heads are missing, and the error names one.
    let mut again = tch::nn::VarStore::new(Device::Cpu);
    let _ = Lpips::new(&again.root(), Backbone::Vgg16, false);
    let e = tokenizer::load_perceptual(&mut again, &[&vgg]).unwrap_err().to_string();
    assert!(e.contains("missing tensor `lin"), "{e}");
}

#[test]
fn shifted_agreement_on_any_data() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new("unused-data-root");
    let d = tempfile::tempdir().unwrap();
    tokenizer::train(tiny(1), Device::Cpu, root, d.path(), false).unwrap();
    let mut tok = tessera_train::frozen::load_tokenizer(d.path(), Device::Cpu).unwrap();
    let data = tok.data.clone();
    let mut agree = |shift| {
        tessera_train::tokenizer_eval::shifted_agreement(&mut tok, &data, root, 8, shift, 4, Device::Cpu)
    };
    // No shift: every code agrees with itself.
    assert_eq!(agree((0, 0)).unwrap(), 1.0);
    let v = agree((4, -2)).unwrap();
    assert!((0.0..=1.0).contains(&v));
    // f = 2 here: a 3-pixel shift is not a whole number of code cells.
    let e = agree((3, 0)).err().unwrap().to_string();
    assert!(e.contains("multiple of the downsampling factor f = 2"), "{e}");
}

#[test]
fn accumulated_micro_batches_step_like_one_large_batch() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new("unused-data-root");
    // What depends on the batch beyond a mean is switched off: the GAN (BatchNorm statistics, λ
    // per batch) and dead-code re-seeding (draws from the batch).
    let base = |batch: usize, accumulate: usize| {
        let mut c = tiny(3);
        c.data.loader.batch_size = batch;
        c.train.accumulate = accumulate;
        c.loss.disc_start = 1_000;
        c.quantizer.dead_code_threshold = 0.0;
        c
    };
    let (big, small) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    tokenizer::train(base(8, 1), Device::Cpu, root, big.path(), false).unwrap();
    tokenizer::train(base(4, 2), Device::Cpu, root, small.path(), false).unwrap();
    // The same learning rate (accumulate × batch × base_lr), the same eight images per step.
    assert_eq!(base(8, 1).learning_rate(), base(4, 2).learning_rate());
    // Adam turns the near-zero gradients of biases in front of GroupNorm into full-size steps of
    // rounding noise, so the weights are compared through what they compute.
    let x = Tensor::rand([2, 3, 16, 16], (tch::Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let rec = |dir: &Path| tokenizer::load_run(dir, Device::Cpu, root).unwrap().reconstruct(&x).unwrap();
    let ((ra, ia), (rb, ib)) = (rec(big.path()), rec(small.path()));
    assert!(ia.equal(&ib), "codes differ");
    let diff = (&ra - &rb).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "reconstructions differ by {diff}");
    // Logged losses are the large batch's (the mean of the micro-batches' means), and so is the
    // gradient norm before clipping (Adam alone would hide a gradient of the wrong scale).
    let logged = |dir: &Path, key: &str| -> Vec<f64> {
        train_losses(dir)
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[key].as_f64().unwrap())
            .collect()
    };
    let (la, lb) = (logged(big.path(), "loss/total"), logged(small.path(), "loss/total"));
    assert_eq!(la.len(), 3);
    for (x, y) in la.iter().zip(&lb) {
        assert!((x - y).abs() < 1e-5 * x.abs(), "{la:?} vs {lb:?}");
    }
    let (ga, gb) = (logged(big.path(), "grad_norm"), logged(small.path(), "grad_norm"));
    for (x, y) in ga.iter().zip(&gb) {
        assert!((x - y).abs() < 1e-4 * x.abs(), "grad norms {ga:?} vs {gb:?}");
    }
    // Not trivially equal: the first step moved the weights.
    assert_ne!(la[0], la[2]);
    // Resume with accumulation continues exactly: 1 + resume + 2 == 3.
    let part = tempfile::tempdir().unwrap();
    let mut first = base(4, 2);
    first.train.max_steps = 1;
    tokenizer::train(first, Device::Cpu, root, part.path(), false).unwrap();
    tokenizer::train(base(4, 2), Device::Cpu, root, part.path(), true).unwrap();
    let (b, c) = (final_state(small.path()), final_state(part.path()));
    for (k, v) in b.iter().filter(|(k, _)| k.starts_with("model.")) {
        assert!(v.equal(&c[k]), "{k} differs after resume");
    }
}

/// A run names its perceptual weights relative to itself, so a run moved together with its
/// weights still loads, and resumes.
#[test]
fn perceptual_weight_paths_are_stored_relative_to_the_run() {
    use tessera_models::perceptual::{Backbone, Lpips};
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let (old, new) = (d.path().join("old"), d.path().join("new"));
    std::fs::create_dir_all(old.join("weights")).unwrap();
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _net = Lpips::new(&vs.root(), Backbone::Tiny, false);
    vs.save(old.join("weights/perceptual.safetensors")).unwrap();
    let mut cfg = tiny(2);
    cfg.loss.perceptual_weight = 0.1;
    cfg.loss.perceptual_backbone = Backbone::Tiny;
    cfg.loss.perceptual_weights = Some(old.join("weights/perceptual.safetensors"));
    let run = old.join("runs/a");
    tokenizer::train(cfg, Device::Cpu, Path::new("x"), &run, false).unwrap();
    let stored = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(stored.contains("perceptual_weights = \"../../weights/perceptual.safetensors\""), "{stored}");
    std::fs::rename(&old, &new).unwrap();
    let moved = new.join("runs/a");
    let task = tokenizer::load_run(&moved, Device::Cpu, Path::new("x")).expect("loads after the move");
    assert_eq!(task.config.loss.perceptual_weights, Some(moved.join("../../weights/perceptual.safetensors")));
    // --resume reads the stored (relative) config, as the CLI does.
    let again: TokenizerRunConfig =
        tessera_core::config::load_str(&stored, &["train.max_steps=3".into()], "t").unwrap();
    tokenizer::train(again, Device::Cpu, Path::new("x"), &moved, true).expect("resumes after the move");
}
