//! The `tessera` binary end to end, as a user runs it.

use std::path::PathBuf;
use std::process::{Command, Output};

fn data_root() -> PathBuf {
    std::env::var_os("TESSERA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data"))
}

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("--data-dir")
        .arg(data_root())
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run tessera")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn data_show_writes_a_grid_and_the_resolved_config() {
    let out = tempfile::tempdir().unwrap();
    let o = tessera(&[
        "data",
        "show",
        "--split",
        "test-unseen",
        "-n",
        "5",
        "--set",
        "mnist64.seed=7",
        "-o",
        out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let png = out.path().join("samples_test-unseen.png");
    let img = image::open(&png).unwrap().to_rgb8();
    // Five rows of a 128-px (2× zoomed) image plus gutters.
    assert!(img.height() >= 5 * 128, "{:?}", img.dimensions());
    let cfg = std::fs::read_to_string(out.path().join("config.toml")).unwrap();
    assert!(cfg.contains("seed = 7"), "{cfg}");
}

#[test]
fn export_writes_bidalle_layout() {
    let out = tempfile::tempdir().unwrap();
    let o = tessera(&[
        "data",
        "export",
        "--split",
        "translated",
        "--limit",
        "10",
        "-o",
        out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut pngs: Vec<_> = std::fs::read_dir(out.path().join("mnist_translated_img"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    pngs.sort();
    assert_eq!(pngs.len(), 10);
    assert_eq!(pngs[0], "mnist_translated_000000.png");
    let txt = std::fs::read_to_string(out.path().join("mnist_translated_text/mnist_translated_000001.txt"))
        .unwrap();
    assert!(txt.lines().count() >= 4 && txt.contains("upper left"), "{txt}");
}

#[test]
fn cuda_without_gpu_unknown_keys_and_missing_data_are_clear_errors() {
    if tch::Cuda::device_count() == 0 {
        let o = tessera(&["--device", "cuda", "data", "show", "-n", "1", "-o", "/tmp/none"]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("--device cpu"), "{}", stderr(&o));
    }
    let o = tessera(&["data", "show", "--set", "mnist64.seeed=1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown field `seeed`") && stderr(&o).contains("`seed`"), "{}", stderr(&o));

    let empty = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["--data-dir", empty.path().to_str().unwrap(), "data", "show"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("run `tessera data fetch` first"), "{}", stderr(&o));
}

#[test]
fn tokenizer_command_trains_on_mnist64_captions() {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("tok.json");
    let o = tessera(&["data", "tokenizer", "--limit", "500", "-o", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tk = tessera_data::TextTokenizer::load(&path).unwrap();
    // Every vocabulary word of spec §2.6 is a single token.
    for w in ["upper", "bottom", "number", "green", "this"] {
        assert!(tk.unknown_words(w).is_empty(), "{w}");
    }
    let e = tk.encode("red 3 on the upper left.", 50).unwrap();
    assert_eq!(e.mask.iter().filter(|&&m| m).count(), 2 + 7, "[CLS] red 3 on the upper left . [SEP]");
}
