//! Writing any [`Dataset`] in Bi-directional DALL-E's folder layout (spec §2.6), for interop with
//! the Python tools: `<out>/<prefix>_img/<prefix>_NNNNNN.png` and `<out>/<prefix>_text/<prefix>_NNNNNN.txt`
//! (one caption per line), matched by stem. Zero-padded indices keep sorted order = dataset order,
//! so an exported translated set keeps its groups of five (spec §2.7).

use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::mnist64::stream;

/// Write the first `limit` samples (all if `None`); `tick` is called once per sample.
/// Returns the image and text folders.
pub fn export_bidalle(
    dataset: &dyn Dataset,
    out: &Path,
    prefix: &str,
    limit: Option<usize>,
    tick: &dyn Fn(),
) -> Result<(PathBuf, PathBuf)> {
    let img_dir = out.join(format!("{prefix}_img"));
    let txt_dir = out.join(format!("{prefix}_text"));
    for d in [&img_dir, &txt_dir] {
        std::fs::create_dir_all(d).map_err(|e| DataError::io(d, e))?;
    }
    let n = limit.map_or(dataset.len(), |l| l.min(dataset.len()));
    for i in 0..n {
        let sample = dataset.get(i, &mut stream(0, 500, i as u64))?;
        let stem = format!("{prefix}_{i:06}");
        let png = img_dir.join(format!("{stem}.png"));
        sample.image.save(&png).map_err(|e| DataError::Image { path: png.clone(), reason: e.to_string() })?;
        let txt = txt_dir.join(format!("{stem}.txt"));
        let mut text = sample.captions.join("\n");
        text.push('\n');
        std::fs::write(&txt, text).map_err(|e| DataError::io(&txt, e))?;
        tick();
    }
    Ok((img_dir, txt_dir))
}
