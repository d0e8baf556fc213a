//! AugVAE runs end to end on fake data (L-Verse's `--fake_data`): an ML run resumes to the bit
//! (plateau scheduler and EMA codebook included); an SL run fine-tunes it, and refuses a run that
//! is not AugVAE-ML; the ML run's three-grid codes go through a frozen tokenizer and a BiART
//! generator.

use std::path::Path;

use tch::{Device, Kind, Tensor};
use tessera_models::tokenizer::{CodeLayout, ImageTokenizer};
use tessera_train::augvae::{self, AugVaeRunConfig};

mod common;
use common::{assert_same_state, final_state, train_losses, TORCH_RNG};

fn tiny(max_steps: i64, sl: Option<&Path>) -> AugVaeRunConfig {
    let text = format!(
        r#"
[data]
source = "fake"
image_size = 32
fake_len = 40
[data.loader]
batch_size = 4
workers = 2
[model]
hidden_dim = 8
ch_mult = [1, 2]
num_res_blocks = 1
levels = [16, 8, 4]
resolution = 32
z_channels = 8
[quantizer]
num_codes = 16
dim = 8
update = "ema"
init = "kmeans"
dead_code_threshold = 0.05
[loss]
loss_type = "mse"
[optim]
learning_rate = 1e-4
[optim.plateau]
every_steps = 1
patience = 0
threshold = 0.9
cooldown = 0
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
    let mut c: AugVaeRunConfig = tessera_core::config::load_str(&text, &[], "test").unwrap();
    if let Some(ml) = sl {
        c.init_from = Some(ml.to_path_buf());
        c.model.single_level = Some(8);
    }
    c
}

#[test]
fn resumed_ml_run_equals_uninterrupted_run_and_the_plateau_cuts_the_rate() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new("unused-data-root");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    augvae::train(tiny(6, None), Device::Cpu, root, a.path(), false).unwrap();
    augvae::train(tiny(3, None), Device::Cpu, root, b.path(), false).unwrap();
    augvae::train(tiny(6, None), Device::Cpu, root, b.path(), true).unwrap();
    assert_same_state(a.path(), b.path(), "resume");
    assert_eq!(train_losses(a.path()), train_losses(b.path()));
    // patience 0 and threshold 0.9: a check that is not 90 % below the best halves the rate.
    let lrs: Vec<f64> = std::fs::read_to_string(a.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["lr"].as_f64())
        .collect();
    assert_eq!(lrs[0], 1e-4 * 4.0, "base × batch");
    assert!(lrs.windows(2).all(|w| w[1] <= w[0]) && lrs.last() < lrs.first(), "{lrs:?}");
}

#[test]
fn sl_fine_tunes_an_ml_run_and_codes_flow_to_the_generator() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new("unused-data-root");
    let d = tempfile::tempdir().unwrap();
    let (ml, sl) = (d.path().join("ml"), d.path().join("sl"));
    augvae::train(tiny(2, None), Device::Cpu, root, &ml, false).unwrap();
    let (task, _) = augvae::train(tiny(2, Some(&ml)), Device::Cpu, root, &sl, false).unwrap();
    // The kept encoder starts where the ML run ended (then moved for two steps).
    let ml_state = final_state(&ml);
    let start = &ml_state["model.encoders.1.conv_out.weight"];
    let now = &task.trainer.vs.variables()["encoders.1.conv_out.weight"];
    let moved = (now - start).abs().max().double_value(&[]);
    assert!(moved > 0.0 && moved < 0.05, "fine-tuned from the ML weights: {moved}");

    // Frozen tokenizers: ML codes are three grids, SL codes one.
    let mut ml_tok = tessera_train::frozen::load_tokenizer(&ml, Device::Cpu).unwrap();
    let mut sl_tok = tessera_train::frozen::load_tokenizer(&sl, Device::Cpu).unwrap();
    assert_eq!(ml_tok.layout(), CodeLayout { grids: vec![(16, 16), (8, 8), (4, 4)] });
    assert_eq!(sl_tok.layout(), CodeLayout::square(8));
    let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let codes = ml_tok.encode(&x).unwrap();
    assert_eq!(codes.size(), [2, 256 + 64 + 16]);
    assert_eq!(ml_tok.decode(&codes).size(), [2, 3, 32, 32]);
    assert_eq!(sl_tok.encode(&x).unwrap().size(), [2, 64]);

    // An SL run from an SL run (or any non-ML run) is refused, naming what it is.
    let e = augvae::train(tiny(2, Some(&sl)), Device::Cpu, root, &d.path().join("sl2"), false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("must be an AugVAE-ML run") && e.contains("AugVAE-SL run"), "{e}");
    let e =
        augvae::train(tiny(2, Some(&d.path().join("none"))), Device::Cpu, root, &d.path().join("sl3"), false)
            .err()
            .unwrap()
            .to_string();
    assert!(e.contains("none"), "{e}");
}

#[test]
fn biart_reads_several_code_grids() {
    use tessera_models::biart::sample::SampleConfig;
    use tessera_models::biart::{Biart, BiartConfig, Direction};
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    for positions in ["fixed", "learned"] {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let mut cfg = BiartConfig { coarser_sides: vec![2], ..BiartConfig::reference_fixture() };
        cfg.image_positions = serde_json::from_str(&format!("\"{positions}\"")).unwrap();
        let m = Biart::new(&vs.root(), cfg.clone()).unwrap();
        assert_eq!(m.geometry.image_len(), 9 + 4);
        let vars = vs.variables();
        assert!(vars.contains_key("image_grid_emb"));
        assert_eq!(vars.contains_key("image_pos_row_1"), positions == "learned");
        let text = Tensor::from_slice(&[1i64, 5, 6, 2, 0, 0]).view([1, 6]).repeat([2, 1]);
        let codes = m.generate(Direction::T2i, &text, &SampleConfig::default());
        assert_eq!(codes.size(), [2, 13]);
        assert!(codes.min().int64_value(&[]) >= 0 && codes.max().int64_value(&[]) < cfg.image_vocab as i64);
        let caption = m.generate(Direction::I2t, &codes, &SampleConfig::default());
        assert_eq!(caption.size(), [2, 6]);
    }
}
