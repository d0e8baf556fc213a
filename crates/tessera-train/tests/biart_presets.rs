//! The BiART presets parse, and the paper preset asks for Bi-DALL-E's blocks while the quick
//! preset keeps minGPT's (spec §3.2).

use std::path::Path;

use tessera_models::biart::{BiartConfig, DropoutSites, FeedForward};
use tessera_train::generator::{DirectionSteps, GeneratorRunConfig};
use tessera_train::schedule::Decay;

fn preset(name: &str) -> GeneratorRunConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    tessera_core::config::load_str(&text, &[], name).unwrap()
}

#[test]
fn paper_preset_uses_bidalle_blocks() {
    let p = preset("mnist64-biart.toml");
    // Bi-DALL-E's optimiser: Adam (PyTorch defaults, no decay), 6-cycle hard-restart cosine, alternate.
    assert_eq!(p.optim.decay, Decay::CosineHardRestarts);
    assert_eq!((p.optim.restart_cycles, p.optim.min_lr_ratio), (6, 0.0));
    let a = &p.optim.adam;
    assert_eq!((a.beta1, a.beta2, a.weight_decay, a.decoupled), (0.9, 0.999, 0.0, false));
    assert_eq!(p.directions, DirectionSteps::Separate);
    let m = p.model;
    assert_eq!(m.feed_forward, FeedForward::Geglu);
    assert!(m.layer_scale);
    assert!(!m.qkv_bias);
    assert!(m.head_bias);
    assert_eq!(m.dropout_sites, DropoutSites::Dalle);
    assert_eq!(m.ff_mult, 4);
    assert_eq!((m.n_layer, m.n_embd, m.n_head, m.head_dim), (8, 256, 8, 64));
}

#[test]
fn quick_preset_and_defaults_keep_mingpt_blocks() {
    let d = BiartConfig::default();
    assert_eq!(d.feed_forward, FeedForward::GeluMlp);
    assert_eq!(d.dropout_sites, DropoutSites::MinGpt);
    assert!(!d.layer_scale && d.qkv_bias && !d.head_bias);
    let m = preset("mnist64-biart-quick.toml").model;
    assert_eq!(
        (m.feed_forward, m.dropout_sites, m.layer_scale, m.qkv_bias, m.head_bias),
        (d.feed_forward, d.dropout_sites, d.layer_scale, d.qkv_bias, d.head_bias)
    );
    // The option names are the documented TOML spellings.
    let parsed: BiartConfig = tessera_core::config::load_str(
        "feed_forward = \"gelu_mlp\"\ndropout_sites = \"mingpt\"\n",
        &[],
        "inline",
    )
    .unwrap();
    assert_eq!((parsed.feed_forward, parsed.dropout_sites), (FeedForward::GeluMlp, DropoutSites::MinGpt));
}
