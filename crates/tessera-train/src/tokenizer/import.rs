//! Weights from outside a Tessera run: the perceptual network's files, and taming / TE-VQGAN
//! checkpoints (`tessera import taming`), read without running pickled code.

use std::collections::HashMap;
use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::{TokenizerRunConfig, TokenizerTask};
use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::runner::Task;

/// Load a perceptual network's weights from one or more files (safetensors or `torch.save`
/// `.pth`), merged in order. Names may be Tessera's (`net.features.0.weight`,
/// `lin0.model.0.weight`) or the originals': torchvision's VGG16 `features.0.weight` and the
/// `lpips` package's heads `lin0.model.1.weight` (its Dropout slot).
pub fn load_perceptual(vs: &mut VarStore, files: &[&Path]) -> Result<()> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for path in files {
        let file = tessera_torchfile::TorchFile::open(path)
            .and_then(|f| f.state_dict())
            .map_err(|e| TrainError::Invalid(format!("perceptual weights: {e}")))?;
        tensors.extend(file);
    }
    let path = files.first().copied().unwrap_or(Path::new("(no perceptual weight file)"));
    let mut renamed = HashMap::new();
    for (name, t) in tensors {
        let mut n = if name.starts_with("features.") { format!("net.{name}") } else { name };
        if n.starts_with("lin") && n.contains(".model.1.") {
            n = n.replace(".model.1.", ".model.0.");
        }
        renamed.insert(n, t);
    }
    // A network built with head dropout names its heads `model.1`: accept either slot.
    for (name, _) in vs.variables() {
        if name.contains(".model.1.") {
            if let Some(t) = renamed.remove(&name.replace(".model.1.", ".model.0.")) {
                renamed.insert(name, t);
            }
        }
    }
    checkpoint::restore_vars(vs, "", &renamed, path)?;
    vs.freeze();
    Ok(())
}

/// The perceptual network a tokenizer loss asks for: none when `weight` is 0, else `backbone`
/// loaded (frozen) from `files` ([`load_perceptual`]), with its own VarStore.
pub fn perceptual_net<'a>(
    weight: f64,
    backbone: tessera_models::perceptual::Backbone,
    head_dropout: bool,
    files: impl Iterator<Item = &'a std::path::PathBuf>,
    device: Device,
) -> Result<(Option<VarStore>, Option<tessera_models::perceptual::Lpips>)> {
    if weight <= 0.0 {
        return Ok((None, None));
    }
    let mut vs = VarStore::new(device);
    let lp = tessera_models::perceptual::Lpips::new(&vs.root(), backbone, head_dropout);
    let files: Vec<&Path> = files.map(|p| p.as_path()).collect();
    load_perceptual(&mut vs, &files)?;
    Ok((Some(vs), Some(lp)))
}

/// Tensors that an import skips on purpose: the LPIPS network and fixed blur filters.
fn skipped_on_purpose(key: &str) -> bool {
    key.starts_with("loss.perceptual_loss.") || key.ends_with(".filt")
}

/// What [`import_taming`] did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub loaded: usize,
    /// Tessera-only variables kept at their initial values (codebook statistics).
    pub kept: Vec<String>,
    /// Checkpoint tensors skipped on purpose: the LPIPS network (`loss.perceptual_loss.…`,
    /// loaded separately from `loss.perceptual_weights`) and fixed blur filters (`….filt`, which
    /// Tessera computes).
    pub ignored: Vec<String>,
    /// Model tensors left unused (only with `allow_unused`).
    pub unused: Vec<String>,
}

/// Read a checkpoint's model tensors without executing pickled code
/// ([`tessera_torchfile`]): a `torch.save` state_dict (`.pth`, `.pt`, `.bin`), a
/// PyTorch-Lightning `.ckpt` (its `state_dict`; optimizer states are not read), or safetensors.
/// Returns the tensors and the Lightning `global_step` when there is one.
pub fn read_checkpoint_tensors(path: &Path) -> Result<(HashMap<String, Tensor>, Option<i64>)> {
    let bad = |e: tessera_torchfile::TorchFileError| TrainError::BadCheckpoint {
        path: path.into(),
        reason: e.to_string(),
    };
    let file = tessera_torchfile::TorchFile::open(path).map_err(bad)?;
    let tensors = file.state_dict().map_err(bad)?;
    // A state_dict saved from inside a Lightning module may still carry the `state_dict.` prefix.
    let tensors = tensors
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("state_dict.").map(String::from).unwrap_or(k), v))
        .collect();
    Ok((tensors, file.int("global_step")))
}

/// Turn a taming / TE-VQGAN checkpoint into a Tessera run at step 0: every model parameter is
/// looked up by its taming state_dict key (`encoder.…`, `decoder.…`, `quant_conv.…`,
/// `quantize.embedding.weight`, `loss.discriminator.…`). Every other checkpoint tensor must be
/// one that is skipped on purpose (LPIPS, blur filters) unless `allow_unused`.
pub fn import_taming(
    config: TokenizerRunConfig,
    tensors: &HashMap<String, Tensor>,
    allow_unused: bool,
    device: Device,
    root: &Path,
    dir: &Path,
) -> Result<ImportReport> {
    let toml = tessera_core::config::to_toml(&config);
    let task = TokenizerTask::new(config, device, root)?;
    let hint = "is the config the one it was trained with (use_replicationpad changes encoder keys to `….1.weight`)?";
    let report = import_vars(&[(&task.vs, false), (&task.disc_vs, true)], tensors, allow_unused, hint)?;
    write_imported_run(dir, &task.state(), super::KIND, &toml)?;
    Ok(report)
}

/// Copy each checkpoint tensor into the variable of the same name, for every variable of
/// `stores` (`(store, optional)`: a variable of an optional store, like the discriminator's,
/// may be absent from the checkpoint and keeps its initial value; so may Tessera-only
/// codebook statistics). Shapes must agree. Every checkpoint tensor not consumed must be one
/// skipped on purpose (LPIPS, blur filters), unless `allow_unused`. `missing_hint` ends the
/// error for a missing variable.
pub(crate) fn import_vars(
    stores: &[(&VarStore, bool)],
    tensors: &HashMap<String, Tensor>,
    allow_unused: bool,
    missing_hint: &str,
) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let mut used = std::collections::HashSet::new();
    let tessera_only =
        |n: &str| n.ends_with("cluster_size") || n.ends_with("embed_avg") || n.ends_with("initialized");
    for &(vs, optional) in stores {
        tch::no_grad(|| -> Result<()> {
            for (name, mut var) in vs.variables() {
                match tensors.get(&name) {
                    Some(src) if src.size() == var.size() => {
                        var.copy_(src);
                        used.insert(name.clone());
                        report.loaded += 1;
                    }
                    Some(src) => {
                        return Err(TrainError::Invalid(format!(
                            "`{name}` is {:?} in the checkpoint but {:?} in this config: check [model] and [quantizer]",
                            src.size(),
                            var.size()
                        )))
                    }
                    None if optional || tessera_only(&name) => report.kept.push(name),
                    None => {
                        return Err(TrainError::Invalid(format!("the checkpoint has no `{name}`: {missing_hint}")))
                    }
                }
            }
            Ok(())
        })?;
    }
    let mut unused: Vec<String> = tensors.keys().filter(|k| !used.contains(*k)).cloned().collect();
    unused.sort();
    let (ignored, model): (Vec<String>, Vec<String>) =
        unused.into_iter().partition(|k| skipped_on_purpose(k));
    if !model.is_empty() && !allow_unused {
        let shown: Vec<&str> = model.iter().take(8).map(String::as_str).collect();
        return Err(TrainError::Invalid(format!(
            "{} checkpoint tensors of the model have no place in this config (e.g. {}): the config has fewer \
             layers or blocks than the checkpoint, so its codes would be wrong. Use the config it was trained \
             with, or pass --allow-unused to import anyway",
            model.len(),
            shown.join(", ")
        )));
    }
    report.ignored = ignored;
    report.unused = model;
    report.kept.sort();
    Ok(report)
}

/// Write an imported run at step 0: `checkpoints/last.safetensors` of kind `kind` and
/// `config.toml`.
pub(crate) fn write_imported_run(
    dir: &Path,
    state: &[(String, Tensor)],
    kind: &str,
    toml: &str,
) -> Result<()> {
    let meta = crate::runner::Meta {
        format: crate::runner::FORMAT.into(),
        kind: kind.into(),
        step: 0,
        config: toml.into(),
    };
    checkpoint::save(&dir.join("checkpoints/last.safetensors"), state, &meta)?;
    tessera_core::fsutil::write_atomic(&dir.join("config.toml"), toml.as_bytes())
        .map_err(|e| TrainError::io(dir, e))
}
