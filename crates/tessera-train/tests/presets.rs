//! Every preset in `configs/` resolves as the config it is for (unknown keys and out-of-range
//! values are errors), and the ViT-VQGAN size presets carry the paper's stacks.

use std::path::{Path, PathBuf};

use tessera_models::vit::StackConfig;
use tessera_train::generator::GeneratorRunConfig;
use tessera_train::study::StudyConfig;
use tessera_train::tokenizer::TokenizerRunConfig;
use tessera_train::vit_tokenizer::VitRunConfig;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn load<T: serde::de::DeserializeOwned + tessera_core::Validate>(name: &str) -> T {
    let text = std::fs::read_to_string(configs_dir().join(name)).unwrap();
    tessera_core::config::load_str(&text, &[], name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_preset_resolves_as_its_kind() {
    let mut names: Vec<String> = std::fs::read_dir(configs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 15, "{names:?}");
    for name in &names {
        if name.starts_with("study-") {
            load::<StudyConfig>(name);
        } else if name.starts_with("data-") {
            load::<tessera_data::DataConfig>(name);
        } else if name.contains("augvae") {
            load::<tessera_train::augvae::AugVaeRunConfig>(name);
        } else if name.contains("vit-") {
            load::<VitRunConfig>(name);
        } else if name.contains("biart") || name.contains("-vim-") {
            load::<GeneratorRunConfig>(name);
        } else {
            load::<TokenizerRunConfig>(name);
        }
    }
}

/// The ablation pair differs only in `[quantizer]`, and keeps upstream's codebook start.
#[test]
fn vit_ablation_pair_differs_only_in_its_codes() {
    let (a, b): (VitRunConfig, VitRunConfig) =
        (load("mnist64-vit-ablation-l2.toml"), load("mnist64-vit-ablation-plain.toml"));
    assert_eq!(VitRunConfig { quantizer: a.quantizer.clone(), ..b.clone() }, a);
    for q in [&a.quantizer, &b.quantizer] {
        assert_eq!((q.init, q.dead_code_threshold), (tessera_quant::CodebookInit::Normal, 0.0));
    }
    assert_eq!((a.quantizer.dim, b.quantizer.dim), (32, 256));
}

/// The SL preset fine-tunes the ML preset: the same model but for `single_level`.
#[test]
fn augvae_sl_preset_fits_the_ml_preset() {
    use tessera_train::augvae::AugVaeRunConfig;
    let (ml, sl): (AugVaeRunConfig, AugVaeRunConfig) =
        (load("mnist64-augvae-quick.toml"), load("mnist64-augvae-sl-quick.toml"));
    assert_eq!(tessera_models::augvae::AugVaeConfig { single_level: None, ..sl.model.clone() }, ml.model);
    assert_eq!((sl.model.single_level, ml.model.single_level), (Some(8), None));
    assert_eq!((&sl.quantizer.num_codes, &sl.quantizer.dim), (&ml.quantizer.num_codes, &ml.quantizer.dim));
}

#[test]
fn vit_size_presets_are_the_papers_stacks() {
    let s = StackConfig::default();
    for (name, enc, dec) in [
        ("vit-vqgan-ss.toml", s.clone(), s.clone()),
        ("vit-vqgan-bb.toml", StackConfig::base(), StackConfig::base()),
        ("vit-vqgan-sl.toml", s.clone(), StackConfig::large()),
    ] {
        let c: VitRunConfig = load(name);
        assert_eq!((c.model.encoder, c.model.decoder), (enc, dec), "{name}");
        assert_eq!(
            (c.model.resolution, c.model.patch_size, c.quantizer.num_codes, c.quantizer.dim),
            (256, 8, 8192, 32)
        );
        assert_eq!(
            (
                c.loss.perceptual_weight,
                c.loss.adversarial_weight,
                c.loss.codebook_weight,
                c.loss.loglaplace_weight
            ),
            (0.1, 0.1, 1.0, 0.0),
            "{name}"
        );
    }
}
