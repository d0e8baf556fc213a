//! Helpers shared by the training integration tests.
#![allow(dead_code)] // each test binary uses a subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::Tensor;
use tessera_train::checkpoint;
use tessera_train::runner::Meta;

/// libtorch's random generator is global to the process: tests that train must not interleave.
pub static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `$TESSERA_DATA`, else the workspace's `data/` (real MNIST, fetched by `tessera data fetch`).
pub fn data_root() -> PathBuf {
    std::env::var_os("TESSERA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data"))
}

/// Every tensor of a run's last checkpoint.
pub fn final_state(dir: &Path) -> HashMap<String, Tensor> {
    checkpoint::load::<Meta>(&dir.join("checkpoints/last.safetensors")).unwrap().tensors
}

/// Two runs' last checkpoints hold the same tensors, bit for bit (`why` names the break).
pub fn assert_same_state(a: &Path, b: &Path, why: &str) {
    let (sa, sb) = (final_state(a), final_state(b));
    assert_eq!(sa.len(), sb.len());
    for (k, t) in &sa {
        assert!(t.equal(&sb[k]), "{k} differs after {why}");
    }
}

/// A run's logged training records as JSON text, without what legitimately differs after a
/// resume: timing, and the sliding usage window (in-memory statistics that restart).
pub fn train_losses(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["split"] != "train" {
                return None;
            }
            let o = v.as_object_mut().unwrap();
            o.remove("it_per_s");
            o.remove("usage_window");
            Some(v.to_string())
        })
        .collect()
}
