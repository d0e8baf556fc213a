//! VIM end to end on real Fashion-MNIST at toy size: a one-step ViT-VQGAN at 32×32, a
//! text→image-only BiART with caption dropout that resumes exactly, the Fashion-MNIST classifier,
//! and `evaluate_vim` (per-class samples, three linear probes), plus its refusals.

use std::path::Path;

use tch::Device;
use tessera_train::article_classifier::{train_article_classifier, ArticleClassifier};
use tessera_train::classifier::ClassifierRunConfig;
use tessera_train::generator::{self, GeneratorRunConfig};
use tessera_train::vim::{evaluate_vim, VimEvalConfig};
use tessera_train::vit_tokenizer::{self, VitRunConfig};

mod common;
use common::{assert_same_state, data_root, train_losses, TORCH_RNG};

fn tiny_vit(dir: &Path) {
    let text = r#"
[data]
source = "fashion-mnist"
image_size = 32
[data.loader]
batch_size = 4
[model]
resolution = 32
patch_size = 8
[model.encoder]
dim = 32
depth = 1
heads = 2
mlp_dim = 64
dim_head = 16
[model.decoder]
dim = 32
depth = 1
heads = 2
mlp_dim = 64
dim_head = 16
[quantizer]
num_codes = 16
dim = 8
[disc]
width = 8
[loss]
perceptual_weight = 0.0
disc_start = 100
[train]
max_steps = 1
validate_every = 0
image_every = 0
[eval]
val_batches = 1
batch_size = 4
"#;
    let cfg: VitRunConfig = tessera_core::config::load_str(text, &[], "test").unwrap();
    vit_tokenizer::train(cfg, Device::Cpu, &data_root(), dir, false).unwrap();
}

fn tiny_vim(tok: &Path, max_steps: i64) -> GeneratorRunConfig {
    let text = format!(
        r#"
tokenizer = "{}"
directions = "t2i"
[data]
source = "fashion-mnist"
image_size = 32
[data.loader]
batch_size = 4
[model]
n_layer = 2
n_head = 2
n_embd = 32
head_dim = 16
text_len = 3
[text]
corpus_images = 200
drop_caption = 0.5
[codes]
train_images = 16
batch_size = 8
[eval]
loss_images = 8
i2t_images = 0
t2i_images = 0
batch_size = 8
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
fn vim_trains_t2i_only_resumes_exactly_and_evaluates() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let root = data_root();
    let tok = tempfile::tempdir().unwrap();
    tiny_vit(tok.path());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    generator::train(tiny_vim(tok.path(), 6), Device::Cpu, &root, a.path(), false).unwrap();
    generator::train(tiny_vim(tok.path(), 3), Device::Cpu, &root, b.path(), false).unwrap();
    generator::train(tiny_vim(tok.path(), 6), Device::Cpu, &root, b.path(), true).unwrap();
    assert_same_state(a.path(), b.path(), "resume (caption dropout must replay)");
    let la = train_losses(a.path());
    assert_eq!(la, train_losses(b.path()));
    assert!(
        la[0].contains("loss/t2i") && !la[0].contains("loss/i2t"),
        "only text→image is trained: {}",
        la[0]
    );
    // Each class word is one BPE token: `[CLS] class [SEP]` fills text_len = 3 exactly.
    let mut task = generator::load_run(a.path(), Device::Cpu, &root).unwrap();
    for name in tessera_data::fashion::FASHION_CLASSES {
        let e = task.text.encode(name, 3).unwrap();
        assert!(!e.truncated && !e.ids.contains(&0), "{name}: {:?}", e.ids);
    }

    // The Fashion-MNIST classifier, trained for two steps, loads and reads 32×32 and 64×64 images.
    let cdir = tempfile::tempdir().unwrap();
    let mut small = ClassifierRunConfig { steps: 2, batch_size: 8, val_crops: 20, ..Default::default() };
    small.model.width = 8;
    let report = train_article_classifier(&root, &small, Device::Cpu, cdir.path()).unwrap();
    assert!((0.0..=1.0).contains(&report.test_accuracy));
    let clf = ArticleClassifier::load(cdir.path(), Device::Cpu).unwrap();
    assert_eq!(clf.classify(&tch::Tensor::rand([3, 3, 64, 64], tch::kind::FLOAT_CPU)).len(), 3);

    let out = tempfile::tempdir().unwrap();
    let cfg = VimEvalConfig {
        samples_per_class: 2,
        grid_per_class: 2,
        probe_train_images: 40,
        probe_test_images: 30,
        probe: tessera_eval::probe::ProbeConfig { steps: 20, ..Default::default() },
        ..Default::default()
    };
    let r = evaluate_vim(&mut task, cdir.path(), &root, &cfg, out.path()).unwrap();
    assert_eq!(r.per_class_accuracy.len(), 10);
    assert_eq!(r.probe_block, 1, "0 picks the middle block of 2");
    let dims: Vec<i64> = r.probe.iter().map(|p| p.result.dim).collect();
    assert_eq!(dims, vec![32, 16, 1024], "VIM width, codebook size, 32×32 gray pixels");
    assert!(r.probe.iter().all(|p| (0.0..=1.0).contains(&p.result.test_accuracy)));
    assert!(out.path().join("vim.json").is_file() && out.path().join("samples_per_class.png").is_file());

    // Refusals name what is wrong.
    let bad = VimEvalConfig { probe_block: 3, ..cfg.clone() };
    let e = evaluate_vim(&mut task, cdir.path(), &root, &bad, out.path()).unwrap_err().to_string();
    assert!(e.contains("probe_block = 3") && e.contains("2 blocks"), "{e}");
    let e = evaluate_vim(&mut task, tok.path(), &root, &cfg, out.path()).unwrap_err().to_string();
    assert!(e.contains("train classifier --fashion"), "{e}");
    task.config.data.source = tessera_data::SourceKind::Mnist64;
    let e = evaluate_vim(&mut task, cdir.path(), &root, &cfg, out.path()).unwrap_err().to_string();
    assert!(e.contains("fashion-mnist"), "{e}");
}
