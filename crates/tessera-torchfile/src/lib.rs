//! Tensors out of PyTorch files without running their pickled code.
//!
//! `torch.save` (PyTorch ≥ 1.6) writes a zip archive: `<name>/data.pkl` is a pickle describing the
//! object (a state_dict, or a Lightning checkpoint `{'state_dict': …, 'optimizer_states': …,
//! 'global_step': …}`), `<name>/data/<key>` holds each storage's raw bytes and `<name>/byteorder`
//! says their endianness. [`TorchFile::open`] reads the pickle with [`pickle::read`], which records
//! globals instead of importing them, and [`TorchFile::tensors`] copies the storages it needs into
//! `tch` tensors. Safetensors files are read too, so callers can take any weight file a user has;
//! TorchScript archives and legacy (PyTorch < 1.6) files are refused with how to re-save them.
//!
//! A crafted file gets an error, never a crash: sizes, strides and offsets are checked before any
//! tch call, and what [`TorchFile::tensors`] allocates is bounded by the file's size.

pub mod pickle;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};
use thiserror::Error;

pub use pickle::{StorageRef, TensorRef, Value};

/// `tensors()` allocates at most 4× the file's size plus this: zero-stride views can't exhaust memory.
const SLACK_BYTES: u64 = 1 << 30;
/// Charged against that bound per tensor on top of its data (its name, libtorch's bookkeeping).
const PER_TENSOR_BYTES: u64 = 1 << 10;

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
    /// Already tensors (safetensors).
    Loaded(Vec<(String, Tensor)>),
}

impl TorchFile {
    /// Open a `torch.save` zip (`.pth`, `.pt`, `.bin`, Lightning `.ckpt`) or a safetensors file.
    /// The format is taken from the bytes, not the extension.
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
        if head.len() >= 9 && head[8] == b'{' {
            let tensors = Tensor::read_safetensors(path).map_err(|e| bad(e.to_string()))?;
            let root =
                Value::Dict(tensors.iter().map(|(k, _)| (Value::Str(k.clone()), Value::None)).collect());
            return Ok(Self { path: path.into(), format: Format::Loaded(tensors), root });
        }
        // A bare pickle (any protocol): the legacy format opens with a pickled magic number.
        if head.first() == Some(&0x80) {
            return Err(bad("the legacy (PyTorch < 1.6) torch.save format is not read; re-save it with \
                 `python -c \"import torch; torch.save(torch.load('IN', weights_only=True), 'OUT.pth')\"`"
                .into()));
        }
        Err(bad(format!(
            "not a PyTorch zip or safetensors file (it starts with {:02x?}); a truncated download?",
            &head[..head.len().min(8)]
        )))
    }

    fn open_zip(path: &Path) -> Result<Self, TorchFileError> {
        let bad = |reason: String| TorchFileError::Bad { path: path.into(), reason };
        let mut zip = Archive::open(path)?;
        let names: Vec<String> = zip.zip.file_names().map(String::from).collect();
        // torch.jit.save writes `<name>/code/…` and `<name>/constants.pkl` next to a data.pkl.
        if names.iter().any(|n| matches!(n.split('/').nth(1), Some("code" | "constants.pkl"))) {
            return Err(bad("a TorchScript archive (torch.jit.save), not a state_dict; save the weights \
                 from Python with `torch.save(model.state_dict(), path)`"
                .into()));
        }
        let Some(pkl) = names.iter().find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1) else {
            return Err(bad("a zip archive without data.pkl: not written by torch.save".into()));
        };
        let prefix = pkl.strip_suffix("data.pkl").unwrap_or("").to_string();
        if let Ok(order) = zip.read(&format!("{prefix}byteorder")) {
            if order != b"little" {
                return Err(bad(format!(
                    "byte order `{}` is not supported",
                    String::from_utf8_lossy(&order)
                )));
            }
        }
        let bytes = zip.read(pkl)?;
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
        let Format::Zip { prefix } = &self.format else { unreachable!() };
        let mut zip = Archive::open(&self.path)?;
        let limit = zip.len.saturating_mul(4).saturating_add(SLACK_BYTES);
        let mut budget = limit;
        let too_big = || {
            bad(format!(
                "its tensors would take over {} MiB, far more than the file holds (a crafted file?)",
                limit >> 20
            ))
        };
        let mut refs = Vec::new();
        flatten(node, String::new(), &mut refs, &mut budget).ok_or_else(too_big)?;
        // Each storage with the first reference to it, which later ones must agree with.
        let mut storages: HashMap<&str, (Tensor, &StorageRef)> = HashMap::new();
        let mut out = Vec::with_capacity(refs.len());
        for (name, r) in refs {
            let s = &r.storage;
            let kind = storage_kind(&s.class)
                .ok_or_else(|| bad(format!("`{name}`: storage type `{}` is not supported", s.class)))?;
            let elt = kind.elt_size_in_bytes() as u64;
            let storage = match storages.entry(s.key.as_str()) {
                Entry::Occupied(e) => {
                    let (t, first) = e.into_mut();
                    if first.class != s.class || first.numel != s.numel {
                        return Err(bad(format!(
                            "`{name}`: storage `{}` is a {} of {} elements, but an earlier tensor has it as a {} of {}",
                            s.key, s.class, s.numel, first.class, first.numel
                        )));
                    }
                    &*t
                }
                Entry::Vacant(e) => {
                    if s.numel < 0 {
                        return Err(bad(format!("`{name}`: storage `{}` has {} elements", s.key, s.numel)));
                    }
                    let entry = format!("{prefix}data/{}", s.key);
                    let bytes = zip.read(&entry)?;
                    if bytes.len() as u64 != (s.numel as u64).saturating_mul(elt) {
                        return Err(bad(format!(
                            "`{entry}` holds {} bytes, not {} × {elt} (a truncated file?)",
                            bytes.len(),
                            s.numel
                        )));
                    }
                    budget = budget.checked_sub(bytes.len() as u64).ok_or_else(too_big)?;
                    let t = Tensor::f_from_data_size(&bytes, &[s.numel], kind)
                        .map_err(|e| bad(format!("`{entry}`: {e}")))?;
                    &e.insert((t, s)).0
                }
            };
            let numel = view_numel(r).ok_or_else(|| {
                bad(format!(
                    "`{name}`: view size {:?} stride {:?} offset {} does not fit its storage of {} elements",
                    r.size, r.stride, r.offset, s.numel
                ))
            })?;
            budget = budget.checked_sub((numel as u64).saturating_mul(elt)).ok_or_else(too_big)?;
            let t = materialise(storage, r, numel == 0, kind).map_err(|e| bad(format!("`{name}`: {e}")))?;
            out.push((name, t));
        }
        Ok(out)
    }

    /// The model weights: a Lightning checkpoint's `state_dict`, else the whole file.
    pub fn state_dict(&self) -> Result<Vec<(String, Tensor)>, TorchFileError> {
        let tensors = match self.root.get("state_dict") {
            Some(Value::Dict(_)) => self.tensors(&["state_dict"])?,
            _ => self.tensors(&[])?,
        };
        if tensors.is_empty() {
            return Err(TorchFileError::Bad {
                path: self.path.clone(),
                reason: "no tensors found in this file".into(),
            });
        }
        Ok(tensors)
    }

    /// An integer at the top level, e.g. a Lightning checkpoint's `global_step`.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.root.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }
}

/// A contiguous copy of the view `r` of `storage` (zeros of its shape when it is empty).
fn materialise(storage: &Tensor, r: &TensorRef, empty: bool, kind: Kind) -> Result<Tensor, tch::TchError> {
    if empty {
        Tensor::f_zeros(r.size.as_slice(), (kind, Device::Cpu))
    } else {
        storage.f_as_strided(r.size.as_slice(), r.stride.as_slice(), r.offset).and_then(|v| v.f_contiguous())
    }
}

/// A zip archive and its file's length, which bounds what an entry can hold.
struct Archive {
    zip: zip::ZipArchive<File>,
    len: u64,
    path: PathBuf,
}

impl Archive {
    fn open(path: &Path) -> Result<Self, TorchFileError> {
        let io = |source| TorchFileError::Io { path: path.into(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let zip = zip::ZipArchive::new(file).map_err(|e| TorchFileError::Bad {
            path: path.into(),
            reason: format!("not a readable zip archive ({e}); a truncated file?"),
        })?;
        Ok(Self { zip, len, path: path.into() })
    }

    /// The bytes of entry `name`, which must be as many as its header declares.
    fn read(&mut self, name: &str) -> Result<Vec<u8>, TorchFileError> {
        let path = &self.path;
        let bad = |reason: String| TorchFileError::Bad { path: path.clone(), reason };
        let mut f = self.zip.by_name(name).map_err(|e| bad(format!("`{name}`: {e}")))?;
        let declared = f.size();
        let mut bytes = Vec::with_capacity(declared.min(self.len) as usize);
        f.read_to_end(&mut bytes).map_err(|e| bad(format!("`{name}`: {e} (a truncated file?)")))?;
        if bytes.len() as u64 != declared {
            return Err(bad(format!("`{name}` declares {declared} bytes but holds {}", bytes.len())));
        }
        Ok(bytes)
    }
}

/// The number of elements of view `r`, if its sizes, strides and offset are non-negative and
/// every element lies inside its storage (no arithmetic overflows on the way).
fn view_numel(r: &TensorRef) -> Option<i64> {
    if r.size.len() != r.stride.len() || r.offset < 0 {
        return None;
    }
    let (mut numel, mut last) = (1i64, r.offset);
    for (&n, &s) in r.size.iter().zip(&r.stride) {
        if n < 0 || s < 0 {
            return None;
        }
        numel = numel.checked_mul(n)?;
        last = last.checked_add((n - 1).max(0).checked_mul(s)?)?;
    }
    (numel == 0 || last < r.storage.numel).then_some(numel)
}

/// Push the tensors under `v` onto `out`, named by their dotted path from `name`. Names (and
/// `PER_TENSOR_BYTES` a tensor) are paid from `budget`; None once it runs out.
fn flatten<'a>(
    v: &'a Value,
    name: String,
    out: &mut Vec<(String, &'a TensorRef)>,
    budget: &mut u64,
) -> Option<()> {
    let tensor = if matches!(v, Value::Tensor(_)) { PER_TENSOR_BYTES } else { 0 };
    *budget = budget.checked_sub(name.len() as u64 + tensor)?;
    let join = |k: &str| if name.is_empty() { k.to_string() } else { format!("{name}.{k}") };
    let wanted =
        |v: &Value| matches!(v, Value::Tensor(_) | Value::Dict(_) | Value::List(_) | Value::Tuple(_));
    match v {
        Value::Tensor(t) => out.push((name, t)),
        Value::Dict(pairs) => {
            for (k, v) in pairs.iter().filter(|(_, v)| wanted(v)) {
                match k {
                    Value::Str(s) => flatten(v, join(s), out, budget)?,
                    Value::Int(i) => flatten(v, join(&i.to_string()), out, budget)?,
                    _ => {}
                }
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, v) in items.iter().enumerate().filter(|(_, v)| wanted(v)) {
                flatten(v, join(&i.to_string()), out, budget)?;
            }
        }
        _ => {}
    }
    Some(())
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
