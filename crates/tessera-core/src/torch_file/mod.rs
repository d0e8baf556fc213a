//! Tensors out of PyTorch files without running their pickled code.
//!
//! `torch.save` (PyTorch ≥ 1.6) writes a zip archive: `<name>/data.pkl` is a pickle describing the
//! object (a state_dict, or a Lightning checkpoint `{'state_dict': …, 'optimizer_states': …,
//! 'global_step': …}`), `<name>/data/<key>` holds each storage's raw bytes and `<name>/byteorder`
//! says their endianness. [`TorchFile::open`] reads the pickle with [`pickle::read`], which records
//! globals instead of importing them, and [`TorchFile::tensors`] copies the storages it needs into
//! `tch` tensors. Safetensors files and TorchScript archives are read too, so callers can take any
//! weight file a user has.

pub mod pickle;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};
use thiserror::Error;

pub use pickle::{StorageRef, TensorRef, Value};

#[derive(Debug, Error)]
pub enum TorchFileError {
    #[error("{path}: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// An opened PyTorch file: its object tree, with tensors still on disk.
pub struct TorchFile {
    path: PathBuf,
    format: Format,
    /// The unpickled object (a dict of tensors for state_dict files).
    pub root: Value,
}

enum Format {
    /// `torch.save` zip: storages at `<prefix>data/<key>`.
    Zip { prefix: String },
    /// Already tensors (safetensors, TorchScript).
    Loaded(Vec<(String, Tensor)>),
}

impl TorchFile {
    /// Open a `torch.save` zip (`.pth`, `.pt`, `.bin`, Lightning `.ckpt`), a safetensors file, or a
    /// TorchScript archive. The format is taken from the bytes, not the extension.
    pub fn open(path: &Path) -> Result<Self, TorchFileError> {
        let bad = |reason: String| TorchFileError::Bad { path: path.into(), reason };
        let mut head = [0u8; 16];
        let n = File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .map_err(|source| TorchFileError::Io { path: path.into(), source })?;
        let head = &head[..n];
        if head.starts_with(b"PK\x03\x04") {
            return Self::open_zip(path);
        }
        if head.starts_with(&[0x80, 0x02, 0x8a, 0x0a]) {
            return Err(bad("the legacy (PyTorch < 1.6) torch.save format is not read; re-save it with \
                 `python -c \"import torch; torch.save(torch.load('IN', weights_only=True), 'OUT.pth')\"`"
                .into()));
        }
        if head.len() >= 9 && head[8] == b'{' {
            let tensors = Tensor::read_safetensors(path).map_err(|e| bad(e.to_string()))?;
            let root =
                Value::Dict(tensors.iter().map(|(k, _)| (Value::Str(k.clone()), Value::None)).collect());
            return Ok(Self { path: path.into(), format: Format::Loaded(tensors), root });
        }
        Err(bad(format!(
            "not a PyTorch zip, safetensors or TorchScript file (it starts with {:02x?}); a truncated download?",
            &head[..head.len().min(8)]
        )))
    }

    fn open_zip(path: &Path) -> Result<Self, TorchFileError> {
        let bad = |reason: String| TorchFileError::Bad { path: path.into(), reason };
        let mut zip = archive(path)?;
        let names: Vec<String> = zip.file_names().map(String::from).collect();
        let Some(pkl) = names.iter().find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1) else {
            if names.iter().any(|n| n.ends_with("constants.pkl")) {
                // TorchScript: libtorch itself loads the module's parameters.
                let tensors = Tensor::load_multi(path).map_err(|e| bad(e.to_string()))?;
                let root =
                    Value::Dict(tensors.iter().map(|(k, _)| (Value::Str(k.clone()), Value::None)).collect());
                return Ok(Self { path: path.into(), format: Format::Loaded(tensors), root });
            }
            return Err(bad("a zip archive without data.pkl: not written by torch.save".into()));
        };
        let prefix = pkl.strip_suffix("data.pkl").unwrap_or("").to_string();
        if let Ok(order) = read_entry(&mut zip, &format!("{prefix}byteorder"), path) {
            if order != b"little" {
                return Err(bad(format!(
                    "byte order `{}` is not supported",
                    String::from_utf8_lossy(&order)
                )));
            }
        }
        let bytes = read_entry(&mut zip, pkl, path)?;
        let root = pickle::read(&bytes).map_err(|e| bad(format!("{pkl}: {e}")))?;
        Ok(Self { path: path.into(), format: Format::Zip { prefix }, root })
    }

    /// Every tensor under the dict path `under` (e.g. `["state_dict"]`, or `[]` for all), flattened
    /// with `.` between dict keys and list indices, in file order. Non-tensor leaves are skipped.
    pub fn tensors(&self, under: &[&str]) -> Result<Vec<(String, Tensor)>, TorchFileError> {
        let bad = |reason: String| TorchFileError::Bad { path: self.path.clone(), reason };
        if let Format::Loaded(tensors) = &self.format {
            if !under.is_empty() {
                return Err(bad(format!("no `{}` in a flat tensor file", under.join("."))));
            }
            return Ok(tensors.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect());
        }
        let mut node = &self.root;
        for key in under {
            node = node.get(key).ok_or_else(|| bad(format!("no `{key}` in the checkpoint")))?;
        }
        let mut refs = Vec::new();
        flatten(node, String::new(), &mut refs);
        let Format::Zip { prefix } = &self.format else { unreachable!() };
        let mut zip = archive(&self.path)?;
        let mut storages: HashMap<String, Tensor> = HashMap::new();
        let mut out = Vec::with_capacity(refs.len());
        for (name, r) in refs {
            let kind = storage_kind(&r.storage.class).ok_or_else(|| {
                bad(format!("`{name}`: storage type `{}` is not supported", r.storage.class))
            })?;
            if !storages.contains_key(&r.storage.key) {
                let entry = format!("{prefix}data/{}", r.storage.key);
                let bytes = read_entry(&mut zip, &entry, &self.path)?;
                let numel = r.storage.numel;
                if bytes.len() as i64 != numel * kind.elt_size_in_bytes() as i64 {
                    return Err(bad(format!(
                        "`{entry}` holds {} bytes, not {numel} × {} (a truncated file?)",
                        bytes.len(),
                        kind.elt_size_in_bytes()
                    )));
                }
                storages.insert(r.storage.key.clone(), Tensor::from_data_size(&bytes, &[numel], kind));
            }
            let storage = &storages[&r.storage.key];
            let last =
                r.offset + r.size.iter().zip(&r.stride).map(|(&n, &s)| (n - 1).max(0) * s).sum::<i64>();
            let empty = r.size.contains(&0);
            if r.size.len() != r.stride.len() || r.offset < 0 || (!empty && last >= r.storage.numel) {
                return Err(bad(format!(
                    "`{name}`: view {:?}/{:?}+{} lies outside its storage",
                    r.size, r.stride, r.offset
                )));
            }
            let t = if empty {
                Tensor::zeros(r.size.as_slice(), (kind, tch::Device::Cpu))
            } else {
                storage.as_strided(r.size.as_slice(), r.stride.as_slice(), Some(r.offset)).contiguous()
            };
            out.push((name, t));
        }
        Ok(out)
    }

    /// The model weights: a Lightning checkpoint's `state_dict`, else the whole file.
    pub fn state_dict(&self) -> Result<Vec<(String, Tensor)>, TorchFileError> {
        match self.root.get("state_dict") {
            Some(Value::Dict(_)) => self.tensors(&["state_dict"]),
            _ => self.tensors(&[]),
        }
    }

    /// An integer at the top level, e.g. a Lightning checkpoint's `global_step`.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.root.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }
}

fn archive(path: &Path) -> Result<zip::ZipArchive<File>, TorchFileError> {
    let file = File::open(path).map_err(|source| TorchFileError::Io { path: path.into(), source })?;
    zip::ZipArchive::new(file).map_err(|e| TorchFileError::Bad {
        path: path.into(),
        reason: format!("not a readable zip archive ({e}); a truncated file?"),
    })
}

fn read_entry(zip: &mut zip::ZipArchive<File>, name: &str, path: &Path) -> Result<Vec<u8>, TorchFileError> {
    let bad = |reason: String| TorchFileError::Bad { path: path.into(), reason };
    let mut f = zip.by_name(name).map_err(|e| bad(format!("`{name}`: {e}")))?;
    let mut bytes = Vec::with_capacity(f.size() as usize);
    f.read_to_end(&mut bytes).map_err(|e| bad(format!("`{name}`: {e} (a truncated file?)")))?;
    Ok(bytes)
}

fn flatten<'a>(v: &'a Value, prefix: String, out: &mut Vec<(String, &'a TensorRef)>) {
    let join = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match v {
        Value::Tensor(t) => out.push((prefix, t)),
        Value::Dict(pairs) => {
            for (k, v) in pairs {
                match k {
                    Value::Str(s) => flatten(v, join(s), out),
                    Value::Int(i) => flatten(v, join(&i.to_string()), out),
                    _ => {}
                }
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(v, join(&i.to_string()), out);
            }
        }
        _ => {}
    }
}

/// The element type of a typed storage class (`torch.FloatStorage` …).
fn storage_kind(class: &str) -> Option<Kind> {
    Some(match class {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}
