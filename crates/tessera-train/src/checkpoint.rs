//! Checkpoints: one safetensors file with every tensor a run needs to continue exactly, and a
//! JSON metadata record stored as the u8 tensor `__meta__` (so the file stays a plain safetensors
//! file any tool can open). Written to a temporary file in the same directory, then renamed:
//! a crash never leaves a half-written checkpoint. A SHA-256 of every tensor (name, dtype, shape
//! and bytes, in name order) is stored as the u8 tensor `__sha256__` and verified on load, so a
//! file whose bytes changed after it was written (a flipped bit, a bad copy) is refused.
//! Checkpoints written before the checksum existed load without that check.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};
use tch::{Kind, Tensor};

use crate::error::{Result, TrainError};

const META: &str = "__meta__";
const CHECKSUM: &str = "__sha256__";

/// SHA-256 over `(name, dtype, shape, bytes)` of each tensor, in name order.
fn checksum(tensors: &[(&str, &Tensor)]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&(&str, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Sha256::new();
    for (name, t) in sorted {
        let t = t.to_device(tch::Device::Cpu).contiguous();
        h.update(name.as_bytes());
        h.update(format!("|{:?}|{:?}|", t.kind(), t.size()).as_bytes());
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.copy_data_u8(&mut bytes, numel);
        h.update(&bytes);
    }
    h.finalize().to_vec()
}

/// Write `tensors` and `meta` to `path` atomically.
pub fn save<M: Serialize>(path: &Path, tensors: &[(String, Tensor)], meta: &M) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let json = serde_json::to_vec(meta).expect("metadata serializes");
    let mut all: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().to_device(tch::Device::Cpu).contiguous()))
        .collect();
    all.push((META.to_string(), Tensor::from_slice(&json).to_kind(Kind::Uint8)));
    let digest = checksum(&all.iter().map(|(n, t)| (n.as_str(), t)).collect::<Vec<_>>());
    all.push((CHECKSUM.to_string(), Tensor::from_slice(&digest)));
    let tmp =
        tempfile::Builder::new().prefix(".ckpt").tempfile_in(dir).map_err(|e| TrainError::io(dir, e))?;
    Tensor::write_safetensors(&all, tmp.path())?;
    tmp.as_file().sync_all().map_err(|e| TrainError::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| TrainError::io(path, e.error))?;
    Ok(())
}

/// A loaded checkpoint.
pub struct Checkpoint<M> {
    pub path: PathBuf,
    pub tensors: HashMap<String, Tensor>,
    pub meta: M,
}

/// Read a checkpoint; a truncated or foreign file is a [`TrainError::BadCheckpoint`].
pub fn load<M: DeserializeOwned>(path: &Path) -> Result<Checkpoint<M>> {
    let bad = |reason: String| TrainError::BadCheckpoint { path: path.into(), reason };
    if !path.is_file() {
        return Err(bad("no such file".into()));
    }
    let mut tensors: HashMap<String, Tensor> =
        Tensor::read_safetensors(path).map_err(|e| bad(e.to_string()))?.into_iter().collect();
    if let Some(stored) = tensors.remove(CHECKSUM) {
        let stored = Vec::<u8>::try_from(&stored).map_err(|e| bad(e.to_string()))?;
        let fresh = checksum(&tensors.iter().map(|(n, t)| (n.as_str(), t)).collect::<Vec<_>>());
        if stored != fresh {
            return Err(bad("its tensors do not match the checksum stored with them: the file changed after it was written (disk or copy error); use another checkpoint of the run, e.g. checkpoints/last-good.safetensors".into()));
        }
    }
    let meta = tensors.remove(META).ok_or_else(|| bad("no Tessera metadata".into()))?;
    let bytes = Vec::<u8>::try_from(&meta).map_err(|e| bad(e.to_string()))?;
    let meta = serde_json::from_slice(&bytes).map_err(|e| bad(format!("metadata: {e}")))?;
    Ok(Checkpoint { path: path.into(), tensors, meta })
}

/// Copy `tensors[prefix + name]` into each variable of `vs`; every variable must be present with
/// its shape.
pub fn restore_vars(
    vs: &tch::nn::VarStore,
    prefix: &str,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<()> {
    tessera_nn::weights::copy_named(vs, prefix, tensors)
        .map_err(|reason| TrainError::Mismatch { path: path.into(), reason })
}

/// Variables of `vs` as named tensors with `prefix`.
pub fn vars(vs: &tch::nn::VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(n, t)| (format!("{prefix}{n}"), t)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.safetensors");
        let t = Tensor::from_slice(&[1.5f32, 2.5]);
        save(&p, &[("a".into(), t.shallow_clone())], &serde_json::json!({"step": 7})).unwrap();
        let c: Checkpoint<serde_json::Value> = load(&p).unwrap();
        assert_eq!(c.meta["step"], 7);
        assert_eq!(c.tensors["a"], t);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        let e = load::<serde_json::Value>(&p).err().unwrap().to_string();
        assert!(e.contains("truncated"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary files left");
    }

    #[test]
    fn a_changed_tensor_byte_fails_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.safetensors");
        let t = Tensor::from_slice(&[1.5f32, 2.5, -3.0, 4.0]);
        save(&p, &[("a".into(), t)], &serde_json::json!({"step": 1})).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        // The tensor data follows the JSON header; flip one bit of the first float.
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let text = String::from_utf8_lossy(&bytes[8..8 + header]).to_string();
        let at = text.find("\"a\"").unwrap();
        let offsets = &text[at..];
        let start: usize = offsets[offsets.find("data_offsets").unwrap()..]
            .split(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .unwrap()
            .parse()
            .unwrap();
        bytes[8 + header + start] ^= 0x01;
        std::fs::write(&p, &bytes).unwrap();
        let e = load::<serde_json::Value>(&p).err().unwrap().to_string();
        assert!(e.contains("checksum"), "{e}");
    }
}
