//! The generator task on real MNIST64x64 captions with a one-step tokenizer: exact resume, a
//! missing tokenizer, evaluation end to end.

use std::path::Path;

use tch::Device;
use tessera_data::mnist64::Split;
use tessera_train::classifier::{train_classifier, Classifier, ClassifierRunConfig};
use tessera_train::generator::{self, GeneratorRunConfig};
use tessera_train::tokenizer::{self, TokenizerRunConfig};

mod common;
use common::{assert_same_state, data_root, final_state, train_losses as losses, TORCH_RNG};

/// A 64×64 → 8×8 tokenizer trained for one step (its codes are all the generator needs).
fn tiny_tokenizer(dir: &Path) {
    let text = r#"
[data.loader]
batch_size = 2
[model]
ch = 32
ch_mult = [1, 1, 2, 2]
num_res_blocks = 1
attn_resolutions = []
z_channels = 16
[quantizer]
num_codes = 32
dim = 16
[loss]
perceptual_weight = 0.0
disc_start = 100
[train]
max_steps = 1
validate_every = 0
image_every = 0
[eval]
trans_eq = false
val_batches = 1
batch_size = 4
"#;
    let cfg: TokenizerRunConfig = tessera_core::config::load_str(text, &[], "test").unwrap();
    tokenizer::train(cfg, Device::Cpu, &data_root(), dir, false).unwrap();
}

fn tiny_generator(tok: &Path, max_steps: i64) -> GeneratorRunConfig {
    let text = format!(
        r#"
tokenizer = "{}"
directions = "separate"
[data.loader]
batch_size = 4
[model]
n_layer = 2
n_head = 2
n_embd = 32
head_dim = 16
text_len = 24
attn_types = ["full", "axial_row", "conv_like"]
conv_kernel = 3
[optim]
warmup_steps = 2
[text]
corpus_images = 200
[codes]
train_images = 16
batch_size = 8
[eval]
loss_images = 8
i2t_images = 4
batch_size = 4
images = 4
[train]
max_steps = {max_steps}
checkpoint_every = 3
image_every = 3
validate_every = 3
log_every = 1
"#,
        tok.display()
    );
    tessera_core::config::load_str(&text, &[], "test").unwrap()
}

#[test]
fn generator_resumes_exactly_and_evaluates() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let tok = tempfile::tempdir().unwrap();
    tiny_tokenizer(tok.path());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = data_root();
    // A briefly trained classifier reads the generated images during validation and evaluation.
    let cdir = tempfile::tempdir().unwrap();
    let g = tessera_data::DataConfig::default().mnist64(&root).unwrap();
    let ccfg = ClassifierRunConfig { steps: 2, batch_size: 8, val_crops: 16, ..Default::default() };
    let report = train_classifier(g, &ccfg, Device::Cpu, cdir.path()).unwrap();
    assert!((0.0..=1.0).contains(&report.digit_accuracy));
    let with_classifier = |steps| {
        let mut c = tiny_generator(tok.path(), steps);
        c.eval.classifier = Some(cdir.path().to_path_buf());
        c.eval.t2i_images = 4;
        c
    };
    generator::train(with_classifier(6), Device::Cpu, &root, a.path(), false).unwrap();
    generator::train(with_classifier(3), Device::Cpu, &root, b.path(), false).unwrap();
    generator::train(with_classifier(6), Device::Cpu, &root, b.path(), true).unwrap();
    let sa = final_state(a.path());
    assert!(sa.keys().any(|k| k.starts_with("opt.")) && sa.contains_key("model.seg_emb.weight"));
    assert_same_state(a.path(), b.path(), "resume");
    let (la, lb) = (losses(a.path()), losses(b.path()));
    assert_eq!(la.len(), 6);
    assert_eq!(la, lb);
    assert!(la[0].contains("loss/t2i_image") && la[0].contains("grad_norm/i2t"));
    assert!(a.path().join("samples/step_0000006.png").is_file());
    assert!(a.path().join("tokenizer.json").is_file() && a.path().join("codes_train.safetensors").is_file());
    // The run names its tokenizer relative to itself (runs can move), and loads from that.
    let stored = std::fs::read_to_string(a.path().join("config.toml")).unwrap();
    let want = tessera_core::fsutil::relative_to(tok.path(), a.path());
    assert!(want.starts_with(".."), "{want:?}");
    assert!(stored.contains(&format!("tokenizer = \"{}\"", want.display())), "{stored}");
    generator::load_run(a.path(), Device::Cpu, &root).expect("reloads through the run-relative path");
    let val = std::fs::read_to_string(a.path().join("metrics.jsonl")).unwrap();
    assert!(val.contains("i2t_acc") && val.contains("t2i_acc"), "validation logs both accuracies");

    // Evaluation end to end.
    let clf = Classifier::load(cdir.path(), Device::Cpu).unwrap();
    let mut task = generator::load_run(a.path(), Device::Cpu, &root).unwrap();
    let s =
        tessera_train::gen_eval::evaluate_split(&mut task, &clf, Split::TestUnseen, 4, &root, Some(a.path()))
            .unwrap();
    assert_eq!(s.images, 4);
    assert!(s.t2i["all"].labels >= 4 && s.i2t["all"].labels == s.t2i["all"].labels);
    assert!(a.path().join("t2i_test-unseen.png").is_file());
    // Every sample is also saved as text, its readings and segments marked right or wrong, and
    // they add up to the reported accuracy.
    let t2i: Vec<serde_json::Value> = std::fs::read_to_string(a.path().join("t2i_test-unseen.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(t2i.len(), 4);
    let right: u64 = t2i
        .iter()
        .flat_map(|r| r["readings"].as_array().unwrap().iter())
        .map(|x| u64::from(x["right"].as_bool().unwrap()))
        .sum();
    let acc = s.t2i["all"].acc;
    assert!((right as f64 / s.t2i["all"].labels as f64 - acc).abs() < 1e-6);
    let ci = s.t2i_ci.unwrap();
    assert!(ci.lo <= acc + 1e-12 && acc <= ci.hi + 1e-12, "{ci:?} around {acc}");
    assert!(a.path().join("i2t_test-unseen.jsonl").is_file() && s.i2t_ci.is_some());

    // Bad input for image→text: an image of the wrong size names both sizes.
    let small = a.path().join("small.png");
    image::RgbImage::new(32, 32).save(&small).unwrap();
    let e = generator::load_image_for(&task, &small).err().unwrap().to_string();
    assert!(e.contains("32×32") && e.contains("64×64"), "{e}");
    // An RGBA image is refused as `encode` refuses it, not silently flattened.
    let rgba = a.path().join("rgba.png");
    image::RgbaImage::new(64, 64).save(&rgba).unwrap();
    let e = generator::load_image_for(&task, &rgba).err().unwrap().to_string();
    assert!(e.contains("rgba.png") && e.contains("alpha"), "{e}");
    // Words outside the caption vocabulary are named (the CLI warns with them).
    assert_eq!(task.text.unknown_words("the upper left is purple 3"), vec!["purple".to_string()]);
}

/// The generator's frozen tokenizer encodes and decodes exactly as the training task does, and
/// a run of another kind is refused by name.
#[test]
fn frozen_tokenizer_matches_the_training_task_and_checks_the_kind() {
    use tessera_models::tokenizer::ImageTokenizer;
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let tok = tempfile::tempdir().unwrap();
    tiny_tokenizer(tok.path());
    let root = data_root();
    let mut task = tokenizer::load_run(tok.path(), Device::Cpu, &root).unwrap();
    let mut frozen = tessera_train::frozen::load_tokenizer(tok.path(), Device::Cpu).unwrap();
    assert_eq!((frozen.kind(), frozen.num_codes(), frozen.resolution()), ("vqgan", 32, 64));
    let x = tch::Tensor::rand([3, 3, 64, 64], (tch::Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let (a, b) = (task.encode_codes(&x).unwrap(), frozen.encode(&x).unwrap());
    assert!(a.equal(&b), "same codes");
    assert!(task.decode_codes(&a).equal(&frozen.decode(&b)), "same images");
    // `eval tokenizer` scores any kind through the interface, and gets the training task's numbers.
    task.config.eval.val_batches = 2;
    let want = task.evaluate().unwrap();
    let mut opts = tessera_train::tokenizer_eval::EvalOptions {
        val_batches: 2,
        batch_size: frozen.eval_batch_size,
        trans_eq: false,
    };
    assert_eq!(frozen.eval_batch_size, task.config.eval.batch_size, "read from the stored config");
    let data = frozen.data.clone();
    let got = tessera_train::tokenizer_eval::evaluate(&mut frozen, &data, &root, &opts, Device::Cpu).unwrap();
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
    for (k, v) in want.iter().filter(|(k, _)| *k != "rec_l1") {
        // Codes are the same; image metrics agree to float32 rounding.
        assert!((v - got[k]).abs() <= 1e-6 * v.abs().max(1.0), "{k}: task {v}, interface {}", got[k]);
    }
    // The interface decodes to images (clamped to [-1, 1]); training logs taming's L1 of the raw
    // decoder output. Inputs lie in [-1, 1], so clamping can only bring the output closer.
    assert!(got["rec_l1"] <= want["rec_l1"] + 1e-6, "{got:?} {want:?}");
    assert_eq!((want["usage"], want["dead_codes"]), (got["usage"], got["dead_codes"]));
    opts.trans_eq = true;
    let with_te =
        tessera_train::tokenizer_eval::evaluate(&mut frozen, &data, &root, &opts, Device::Cpu).unwrap();
    assert!((0.0..=1.0).contains(&with_te["trans_eq_acc"]), "{with_te:?}");

    let gen = tempfile::tempdir().unwrap();
    generator::train(tiny_generator(tok.path(), 1), Device::Cpu, &root, gen.path(), false).unwrap();
    let e = tessera_train::frozen::load_tokenizer(gen.path(), Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("`biart` run") && e.contains("vqgan"), "{e}");
    let e = tokenizer::load_run(gen.path(), Device::Cpu, &root).err().unwrap().to_string();
    assert!(e.contains("`biart` run"), "{e}");
}

#[test]
fn missing_tokenizer_run_is_a_clear_error() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let cfg = tiny_generator(&d.path().join("no-such-run"), 3);
    let e = generator::train(cfg, Device::Cpu, &data_root(), &d.path().join("gen"), false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no-such-run") && e.contains("tessera train tokenizer"), "{e}");
}
