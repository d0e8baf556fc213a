//! Files written so that a crash never leaves a half-written one behind, and paths stored inside
//! a run relative to it (so that runs can move).

use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Name prefix of [`write_atomic`]'s temporary files, so that a run can remove the ones a killed
/// process left behind.
pub const TEMP_PREFIX: &str = ".tessera-tmp";

/// Write `bytes` to `path` atomically: a temporary file in the same directory is written,
/// flushed to disk and renamed over `path`. Parent directories are created.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// `path` relative to the directory `base` (e.g. `../tokenizer`), both taken as absolute from the
/// working directory; `path` itself when they share no root.
pub fn relative_to(path: &Path, base: &Path) -> PathBuf {
    let (Ok(p), Ok(b)) = (std::path::absolute(path), std::path::absolute(base)) else {
        return path.to_path_buf();
    };
    let (p, b) = (clean_components(&p), clean_components(&b));
    if p.first() != b.first() {
        return path.to_path_buf();
    }
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn clean_components(x: &Path) -> Vec<Component<'_>> {
    x.components().filter(|c| !matches!(c, Component::CurDir)).collect()
}

/// A path stored in the run `dir`: relative ones are taken relative to the run when they exist
/// there, else (runs written before paths were stored relative to the run) to the working
/// directory.
pub fn resolve_in_run(path: &Path, dir: &Path) -> PathBuf {
    if path.is_relative() && dir.join(path).exists() && !path.exists() {
        dir.join(path)
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_relative_to_a_run_survive_a_move() {
        assert_eq!(relative_to(Path::new("/a/b/tok"), Path::new("/a/b/gen")), PathBuf::from("../tok"));
        assert_eq!(relative_to(Path::new("/a/b/gen/x"), Path::new("/a/b/gen")), PathBuf::from("x"));
        assert_eq!(relative_to(Path::new("/a"), Path::new("/a")), PathBuf::from("."));
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("moved/tok")).unwrap();
        std::fs::create_dir_all(d.path().join("moved/gen")).unwrap();
        let stored = relative_to(&d.path().join("study/tok"), &d.path().join("study/gen"));
        assert_eq!(resolve_in_run(&stored, &d.path().join("moved/gen")), d.path().join("moved/gen/../tok"));
    }

    #[test]
    fn replaces_whole_file_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/a.bin");
        write_atomic(&p, b"first version, longer").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }
}
