//! A ViT-VQGAN run resumes exactly: 6 steps straight equal 3 steps + `--resume` + 3 steps, to
//! the bit, with the GAN, lazy R1 (every 2 steps, so on both sides of the break), k-means
//! codebook initialisation and dead-code revival active.

use std::path::Path;

use tch::Device;
use tessera_train::vit_tokenizer::{self, VitRunConfig};

mod common;
use common::{final_state, train_losses, TORCH_RNG};

fn tiny(max_steps: i64) -> VitRunConfig {
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
resolution = 16
patch_size = 4
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
distance = "cosine"
straight_through = "raw"
init = "kmeans"
dead_code_threshold = 0.05
[disc]
width = 8
[loss]
perceptual_weight = 0.0
disc_start = 1
r1_every = 2
[optim]
learning_rate = 1e-3
warmup_steps = 2
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
fn resumed_vit_run_equals_uninterrupted_run() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new("unused-data-root");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    vit_tokenizer::train(tiny(6), Device::Cpu, root, a.path(), false).unwrap();
    vit_tokenizer::train(tiny(3), Device::Cpu, root, b.path(), false).unwrap();
    let e = vit_tokenizer::train(tiny(6), Device::Cpu, root, b.path(), false).err().unwrap().to_string();
    assert!(e.contains("--resume"), "{e}");
    vit_tokenizer::train(tiny(6), Device::Cpu, root, b.path(), true).unwrap();

    let (sa, sb) = (final_state(a.path()), final_state(b.path()));
    assert_eq!(sa.len(), sb.len());
    for k in ["opt_d.m.loss.discriminator.final_linear.1.weight", "model.quantizer.initialized"] {
        assert!(sa.keys().any(|n| n == k), "the checkpoint holds `{k}`");
    }
    let differ: Vec<&String> = sa.iter().filter(|(k, t)| *t != &sb[*k]).map(|(k, _)| k).collect();
    assert!(
        differ.is_empty(),
        "{} tensors differ after resume: {:?}",
        differ.len(),
        &differ[..differ.len().min(5)]
    );
    let losses = train_losses(a.path());
    assert_eq!(losses, train_losses(b.path()));
    assert_eq!(losses.len(), 6);
    assert_eq!(
        losses.iter().filter(|l| l.contains("\"r1\"")).count(),
        2,
        "R1 on steps 2 and 4 (step 0 is before disc_start)"
    );
}
