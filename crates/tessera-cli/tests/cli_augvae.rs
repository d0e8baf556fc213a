//! `tessera train augvae` as a user runs it: L-Verse's `--fake-data` smoke test, three-grid codes
//! through `encode` / `decode`, and the bad inputs the AugVAE issue names.

mod common;
use common::{stderr, tessera};

const TINY: &str = "[data]\nimage_size = 32\nfake_len = 16\n[data.loader]\nbatch_size = 4\n\
    [model]\nhidden_dim = 8\nch_mult = [1, 2]\nnum_res_blocks = 1\nlevels = [16, 8, 4]\nresolution = 32\n\
    z_channels = 8\n[quantizer]\nnum_codes = 16\ndim = 8\nupdate = \"ema\"\n[loss]\nloss_type = \"mse\"\n\
    [train]\nmax_steps = 2\ncheckpoint_every = 2\nimage_every = 2\nvalidate_every = 2\n\
    [eval]\nval_batches = 1\nbatch_size = 4\ntrans_eq = false\n";

#[test]
fn fake_data_run_encodes_three_grids_and_bad_inputs_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("tiny.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let run = d.path().join("ml");
    let (c, r) = (cfg.to_str().unwrap(), run.to_str().unwrap());
    let o = tessera(&["--device", "cpu", "train", "augvae", "-c", c, "--fake-data", "-o", r]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        run.join("checkpoints/last.safetensors").is_file() && run.join("samples/step_0000002.png").is_file()
    );
    assert!(std::fs::read_to_string(run.join("config.toml")).unwrap().contains("source = \"fake\""));

    // Codes are the three grids, fine to coarse, flat per image; decode takes them back.
    let img = d.path().join("x.png");
    image::RgbImage::from_pixel(32, 32, image::Rgb([30, 200, 10])).save(&img).unwrap();
    let codes = d.path().join("codes.safetensors");
    let o = tessera(&["--device", "cpu", "encode", r, img.to_str().unwrap(), "-o", codes.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(tch::Tensor::read_safetensors(&codes).unwrap()[0].1.size(), [1, 256 + 64 + 16]);
    let out = d.path().join("decoded");
    let o = tessera(&["--device", "cpu", "decode", r, codes.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bad = d.path().join("bad.safetensors");
    let zeros = tch::Tensor::zeros([1, 64], (tch::Kind::Int64, tch::Device::Cpu));
    tch::Tensor::write_safetensors(&[("indices", &zeros)], &bad).unwrap();
    let o = tessera(&["--device", "cpu", "decode", r, bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("(B, 336)"), "{}", stderr(&o));

    // AugVAE-SL without the ML run it fine-tunes, or from a run that is not AugVAE-ML.
    let sl = d.path().join("sl");
    let o =
        tessera(&["train", "augvae", "-c", c, "--set", "model.single_level=8", "-o", sl.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("init_from"), "{}", stderr(&o));
    let ml_is_sl = format!("init_from=\"{}\"", d.path().join("nowhere").display());
    let o = tessera(&[
        "train",
        "augvae",
        "-c",
        c,
        "--fake-data",
        "--set",
        "model.single_level=8",
        "--set",
        &ml_is_sl,
        "-o",
        sl.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("nowhere"), "{}", stderr(&o));

    // An ImageFolder without class sub-folders (L-Verse's --train_dir layout).
    let flat = d.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    image::RgbImage::new(40, 40).save(flat.join("a.png")).unwrap();
    let path = format!("data.path=\"{}\"", flat.display());
    let o = tessera(&[
        "train",
        "augvae",
        "-c",
        c,
        "--set",
        "data.source=\"image-folder\"",
        "--set",
        &path,
        "-o",
        d.path().join("folder").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no sub-folders"), "{}", stderr(&o));
}
