//! The `tessera` binary end to end, as a user runs it.

use std::process::Command;

mod common;
use common::{stderr, tessera};

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
    // Fashion-MNIST missing from the cache names the fetch that brings it.
    let o = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["--data-dir", empty.path().to_str().unwrap(), "train", "classifier", "--fashion", "-o"])
        .arg(empty.path().join("clf"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("tessera data fetch --fashion"), "{}", stderr(&o));
    // A data config beside --fashion would be ignored, so it is refused.
    let o = tessera(&["train", "classifier", "--fashion", "--set", "mnist64.seed=1", "-o", "/tmp/none"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("drop -c / --set"), "{}", stderr(&o));
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

/// A tiny tokenizer run on fake 16×16 data, trained through the CLI.
fn tiny_run(dir: &std::path::Path) {
    let cfg = dir.join("tiny.toml");
    std::fs::write(
        &cfg,
        "[data]\nsource = \"fake\"\nimage_size = 16\nfake_len = 16\n[data.loader]\nbatch_size = 4\n\
         [model]\nch = 32\nch_mult = [1, 2]\nattn_resolutions = []\nresolution = 16\nz_channels = 32\n\
         [quantizer]\nnum_codes = 16\ndim = 16\n[disc]\nndf = 8\nn_layers = 2\n\
         [loss]\nperceptual_weight = 0.0\ndisc_start = 1\n\
         [train]\nmax_steps = 2\ncheckpoint_every = 2\nimage_every = 2\nvalidate_every = 2\n\
         [eval]\nval_batches = 1\nbatch_size = 4\ntrans_eq = false\n",
    )
    .unwrap();
    let run = dir.join("run");
    let o = tessera(&[
        "--device",
        "cpu",
        "train",
        "tokenizer",
        "-c",
        cfg.to_str().unwrap(),
        "-o",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn tokenizer_commands_and_their_bad_inputs() {
    let d = tempfile::tempdir().unwrap();
    tiny_run(d.path());
    let run = d.path().join("run");
    let r = run.to_str().unwrap();
    for f in [
        "config.toml",
        "checkpoints/last.safetensors",
        "metrics.jsonl",
        "samples/step_0000002.png",
        "plots/val_codes.svg",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    // eval prints the metrics the issue names.
    let o = tessera(&["--device", "cpu", "eval", "tokenizer", r]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for k in ["psnr", "ssim", "usage", "perplexity", "dead_codes"] {
        assert!(v[k].is_number(), "{k} missing in {v}");
    }
    // encode → decode round trip, reconstruct.
    let good = d.path().join("good.png");
    image::RgbImage::from_pixel(16, 16, image::Rgb([200, 10, 10])).save(&good).unwrap();
    let codes = d.path().join("codes.safetensors");
    let o = tessera(&[
        "--device",
        "cpu",
        "encode",
        r,
        good.to_str().unwrap(),
        good.to_str().unwrap(),
        "-o",
        codes.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let idx = &tch::Tensor::read_safetensors(&codes).unwrap()[0].1;
    assert_eq!(idx.size(), vec![2, 8, 8]);
    let out = d.path().join("decoded");
    let o = tessera(&["--device", "cpu", "decode", r, codes.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(image::open(out.join("00001.png")).unwrap().width(), 16);
    let rec = d.path().join("rec.png");
    let o =
        tessera(&["--device", "cpu", "reconstruct", r, good.to_str().unwrap(), "-o", rec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Wrong size, alpha channel, codes out of range, a truncated checkpoint: clear errors.
    let big = d.path().join("big.png");
    image::RgbImage::new(20, 16).save(&big).unwrap();
    let o =
        tessera(&["--device", "cpu", "reconstruct", r, big.to_str().unwrap(), "-o", rec.to_str().unwrap()]);
    assert!(
        !o.status.success() && stderr(&o).contains("is 20×16") && stderr(&o).contains("16×16"),
        "{}",
        stderr(&o)
    );
    let rgba = d.path().join("rgba.png");
    image::RgbaImage::new(16, 16).save(&rgba).unwrap();
    let o = tessera(&["--device", "cpu", "encode", r, rgba.to_str().unwrap(), "-o", codes.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("alpha"), "{}", stderr(&o));
    let bad = d.path().join("bad.safetensors");
    tch::Tensor::write_safetensors(
        &[("indices", tch::Tensor::full([1, 8, 8], 99i64, (tch::Kind::Int64, tch::Device::Cpu)))],
        &bad,
    )
    .unwrap();
    let o = tessera(&["--device", "cpu", "decode", r, bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("0..16"), "{}", stderr(&o));
    // Float codes, a wrong grid and an empty file: errors naming the expected shape, no panic.
    for t in [
        tch::Tensor::zeros([1, 8, 8], (tch::Kind::Float, tch::Device::Cpu)),
        tch::Tensor::zeros([1, 4, 4], (tch::Kind::Int64, tch::Device::Cpu)),
        tch::Tensor::zeros([0, 8, 8], (tch::Kind::Int64, tch::Device::Cpu)),
    ] {
        tch::Tensor::write_safetensors(&[("indices", &t)], &bad).unwrap();
        let o =
            tessera(&["--device", "cpu", "decode", r, bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("(B, 8, 8)"), "{}", stderr(&o));
    }
    let ck = run.join("checkpoints/last.safetensors");
    let bytes = std::fs::read(&ck).unwrap();
    std::fs::write(&ck, &bytes[..100]).unwrap();
    let o = tessera(&["--device", "cpu", "eval", "tokenizer", r]);
    assert!(!o.status.success() && stderr(&o).contains("truncated"), "{}", stderr(&o));
}
