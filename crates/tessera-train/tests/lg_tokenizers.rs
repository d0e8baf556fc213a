//! `[lg]` (LG-VQ's losses) on every tokenizer: VQGAN, TE-VQGAN, ViT-VQGAN and AugVAE train with
//! it on captioned images, log the three losses, checkpoint the heads, and resume exactly; the
//! losses reach the encoder through the straight-through codes and never the codebook; a missing
//! text encoder or uncaptioned data is a clear error. The text encoder is all-MiniLM-L6-v2 from
//! the data cache (`tessera data fetch --text-encoder`).

use std::path::Path;

use tch::Device;
use tessera_data::{DataLoader, LoaderConfig, Split};
use tessera_train::runner::Task;
use tessera_train::tokenizer::{TokenizerRunConfig, TokenizerTask};
use tessera_train::{augvae, tokenizer, vit_tokenizer};

mod common;
use common::{assert_same_state, data_root, final_state, train_losses, TORCH_RNG};

const LG: &str = "[lg]\ntext_len = 12\n";

/// Eight 32×32 pictures with captions.
fn caption_folder(dir: &Path) {
    let words = ["a red square.", "a blue frog on a log.", "the green owl.", "two grey cats."];
    for i in 0..8u8 {
        let img = image::RgbImage::from_fn(32, 32, |x, y| {
            image::Rgb([i * 30, ((x + y) % 7 * 30) as u8, 200 - i * 20])
        });
        img.save(dir.join(format!("p{i}.png"))).unwrap();
        std::fs::write(dir.join(format!("p{i}.txt")), words[i as usize % 4]).unwrap();
    }
}

fn data(folder: &Path, side: i64) -> String {
    format!(
        "[data]\nsource = \"caption-folder\"\npath = \"{}\"\nimage_size = {side}\n[data.loader]\nbatch_size = 4\n",
        folder.display()
    )
}

const TRAIN: &str =
    "[train]\nmax_steps = 2\ncheckpoint_every = 1\nimage_every = 0\nvalidate_every = 0\nlog_every = 1\n";

fn vqgan(folder: &Path, te: bool) -> String {
    let arch = if te {
        "use_replicationpad = true\nversion = \"v2\"\n"
    } else {
        "use_replicationpad = false\nversion = \"v1\"\n"
    };
    let ortho = if te { "[quantizer.ortho]\nweight = 10.0\n" } else { "" };
    format!(
        "{}[model]\nch = 16\nch_mult = [1, 1, 2]\nnum_res_blocks = 1\nattn_resolutions = []\nz_channels = 8\n\
         resolution = 32\n{arch}[quantizer]\nnum_codes = 16\ndim = 8\n{ortho}[loss]\nperceptual_weight = 0.0\n\
         disc_start = 100\n{TRAIN}[eval]\ntrans_eq = false\nval_batches = 1\nbatch_size = 4\n{LG}",
        data(folder, 32)
    )
}

fn vit(folder: &Path) -> String {
    let block = "dim = 32\ndepth = 1\nheads = 2\nmlp_dim = 64\ndim_head = 16\n";
    format!(
        "{}[model]\nresolution = 16\npatch_size = 4\n[model.encoder]\n{block}[model.decoder]\n{block}\
         [quantizer]\nnum_codes = 16\ndim = 8\n[disc]\nwidth = 8\n[loss]\nperceptual_weight = 0.0\ndisc_start = 100\n\
         {TRAIN}[eval]\ntrans_eq = false\nval_batches = 1\nbatch_size = 4\n{LG}",
        data(folder, 16)
    )
}

fn augvae_ml(folder: &Path) -> String {
    format!(
        "{}[model]\nhidden_dim = 8\nch_mult = [1, 2]\nnum_res_blocks = 1\nlevels = [16, 8, 4]\nresolution = 32\n\
         z_channels = 8\n[quantizer]\nnum_codes = 16\ndim = 8\nupdate = \"ema\"\n[loss]\nloss_type = \"mse\"\n\
         {TRAIN}[eval]\ntrans_eq = false\nval_batches = 1\nbatch_size = 4\n{LG}",
        data(folder, 32)
    )
}

fn load(text: &str) -> TokenizerRunConfig {
    tessera_core::config::load_str(text, &[], "test").unwrap()
}

/// Train `kind` for two steps into `dir` (and, with `resume`, one step then one more).
fn train(kind: &str, text: &str, dir: &Path, max_steps: i64, resume: bool) {
    let root = data_root();
    let over = [format!("train.max_steps={max_steps}")];
    match kind {
        "vit" => {
            let cfg = tessera_core::config::load_str(text, &over, "test").unwrap();
            drop(vit_tokenizer::train(cfg, Device::Cpu, &root, dir, resume).unwrap())
        }
        "augvae" => {
            let cfg = tessera_core::config::load_str(text, &over, "test").unwrap();
            drop(augvae::train(cfg, Device::Cpu, &root, dir, resume).unwrap())
        }
        _ => {
            let cfg = tessera_core::config::load_str(text, &over, "test").unwrap();
            drop(tokenizer::train(cfg, Device::Cpu, &root, dir, resume).unwrap())
        }
    }
}

#[test]
fn every_tokenizer_trains_with_lg_and_resumes_exactly() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let folder = d.path().join("pics");
    std::fs::create_dir_all(&folder).unwrap();
    caption_folder(&folder);
    let kinds = [
        ("vqgan", vqgan(&folder, false)),
        ("te-vqgan", vqgan(&folder, true)),
        ("vit", vit(&folder)),
        ("augvae", augvae_ml(&folder)),
    ];
    for (kind, text) in &kinds {
        let (a, b) = (d.path().join(format!("{kind}-a")), d.path().join(format!("{kind}-b")));
        train(kind, text, &a, 2, false);
        let logged = train_losses(&a);
        assert_eq!(logged.len(), 2, "{kind}");
        for key in ["loss/lg_gsa", "loss/lg_mtp", "loss/lg_ras"] {
            assert!(logged[0].contains(key), "{kind} logs {key}: {}", logged[0]);
        }
        let state = final_state(&a);
        for name in [
            "model.lg.quant_tf.class_embedding",
            "model.lg.mask_dec.layers.0.norm1.gamma",
            "model.lg.mask_param",
        ] {
            assert!(state.contains_key(name), "{kind} checkpoints {name}");
        }
        // One step, then resume for the second: the same run to the bit (mask draws included).
        train(kind, text, &b, 1, false);
        train(kind, text, &b, 2, true);
        assert_same_state(&a, &b, &format!("{kind} resume with [lg]"));
        assert_eq!(train_losses(&a), train_losses(&b), "{kind}");
    }
}

/// One training step of a VQGAN task with or without `[lg]`, from the same initial weights.
fn one_step(folder: &Path, with_lg: bool) -> TokenizerTask {
    let mut text = vqgan(folder, false);
    if !with_lg {
        text = text.replace(LG, "");
    }
    let cfg: TokenizerRunConfig = load(&text);
    let root = data_root();
    let loader =
        DataLoader::new(cfg.data.open(Split::Train, &root).unwrap(), LoaderConfig::eval(4), Device::Cpu);
    let batch = loader.epoch(0).next().unwrap().unwrap();
    let mut task = TokenizerTask::new(cfg, Device::Cpu, &root).unwrap();
    tch::manual_seed(0);
    task.train_step(std::slice::from_ref(&batch), 0).unwrap();
    task
}

#[test]
fn lg_reaches_the_encoder_through_the_straight_through_codes_not_the_codebook() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    caption_folder(d.path());
    let (plain, lg) = (one_step(d.path(), false), one_step(d.path(), true));
    let (p, l) = (plain.vs.variables(), lg.vs.variables());
    assert!(l.contains_key("lg.wrs.fc.weight") && !p.contains_key("lg.wrs.fc.weight"));
    // Compare the step's gradients (Adam's first update is ±lr whatever their size).
    let grad = |vars: &std::collections::HashMap<String, tch::Tensor>, n: &str| vars[n].grad();
    for n in ["encoder.conv_in.weight", "quant_conv.weight"] {
        assert!(!grad(&p, n).equal(&grad(&l, n)), "LG's gradient reaches {n}");
    }
    for n in ["quantize.embedding.weight", "decoder.conv_out.weight", "post_quant_conv.weight"] {
        assert!(grad(&p, n).equal(&grad(&l, n)), "but not {n}");
    }
}

#[test]
fn a_missing_encoder_or_uncaptioned_data_is_a_clear_error() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    caption_folder(d.path());
    let cfg: TokenizerRunConfig = load(&vqgan(d.path(), false));
    let empty_cache = tempfile::tempdir().unwrap();
    let e = TokenizerTask::new(cfg, Device::Cpu, empty_cache.path()).err().unwrap().to_string();
    assert!(e.contains("tessera data fetch --text-encoder"), "{e}");
    // A plain image folder has no captions: the first step says so.
    let plain = vqgan(d.path(), false).replace("source = \"caption-folder\"", "source = \"folder\"");
    let cfg: TokenizerRunConfig = load(&plain);
    let root = data_root();
    let loader =
        DataLoader::new(cfg.data.open(Split::Train, &root).unwrap(), LoaderConfig::eval(4), Device::Cpu);
    let batch = loader.epoch(0).next().unwrap().unwrap();
    let mut task = TokenizerTask::new(cfg, Device::Cpu, &root).unwrap();
    let e = task.train_step(std::slice::from_ref(&batch), 0).err().unwrap().to_string();
    assert!(e.contains("[lg]") && e.contains("captions"), "{e}");
    // Values without meaning name their key.
    let bad = vqgan(d.path(), false).replace(LG, "[lg]\ntext_len = 1\n");
    let e = TokenizerTask::new(load(&bad), Device::Cpu, &root).err().unwrap().to_string();
    assert!(e.contains("text_len"), "{e}");
}
