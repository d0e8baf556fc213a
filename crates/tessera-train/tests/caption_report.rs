//! The free-text caption report (`tessera eval captions`) on a caption folder: a one-step
//! tokenizer and generator, then the report's numbers, samples, page and determinism.

use std::path::Path;

use tch::Device;
use tessera_train::caption_report::{normalise_caption, write_report, CaptionReportOptions};
use tessera_train::generator::{self, GeneratorRunConfig};
use tessera_train::tokenizer::{self, TokenizerRunConfig};

mod common;
use common::TORCH_RNG;

const CAPTIONS: [&str; 4] =
    ["A red blackbird.", "A blue fish & a <b>tag</b>.", "A green frog.", "A gray owl."];

/// Twelve 40×40 pictures with same-stem captions (one has HTML in it, which the page must escape).
fn caption_folder(dir: &Path) {
    for i in 0..12u8 {
        let img = image::RgbImage::from_fn(40, 40, |x, y| {
            image::Rgb([i * 20, if (x / 8 + y / 8) % 2 == 0 { 200 } else { 40 }, 255 - i * 20])
        });
        img.save(dir.join(format!("s{i:02}.png"))).unwrap();
        std::fs::write(dir.join(format!("s{i:02}.txt")), CAPTIONS[i as usize % 4]).unwrap();
    }
}

fn data_section(folder: &Path) -> String {
    format!("[data]\nsource = \"caption-folder\"\npath = \"{}\"\nimage_size = 32\n", folder.display())
}

fn tiny_runs(folder: &Path, tok: &Path, gen: &Path) {
    let text = format!(
        "{}[data.loader]\nbatch_size = 4\n[model]\nch = 16\nch_mult = [1, 1, 2]\nnum_res_blocks = 1\n\
         attn_resolutions = []\nz_channels = 8\nresolution = 32\n[quantizer]\nnum_codes = 16\ndim = 8\n\
         [loss]\nperceptual_weight = 0.0\ndisc_start = 100\n[train]\nmax_steps = 1\nvalidate_every = 0\n\
         image_every = 0\n[eval]\ntrans_eq = false\nval_batches = 1\nbatch_size = 4\n",
        data_section(folder)
    );
    let cfg: TokenizerRunConfig = tessera_core::config::load_str(&text, &[], "test").unwrap();
    tokenizer::train(cfg, Device::Cpu, Path::new("."), tok, false).unwrap();
    let text = format!(
        "tokenizer = \"{}\"\ndirections = \"joint\"\n{}[data.loader]\nbatch_size = 4\n[model]\nn_layer = 1\n\
         n_head = 2\nn_embd = 32\nhead_dim = 16\ntext_len = 12\nattn_types = [\"full\"]\n[text]\nvocab_size = 40\n\
         [codes]\nbatch_size = 4\n[eval]\nloss_images = 8\ni2t_images = 0\nt2i_images = 0\nbatch_size = 4\n\
         [train]\nmax_steps = 2\nvalidate_every = 0\nimage_every = 0\ncheckpoint_every = 2\n",
        tok.display(),
        data_section(folder)
    );
    let cfg: GeneratorRunConfig = tessera_core::config::load_str(&text, &[], "test").unwrap();
    generator::train(cfg, Device::Cpu, Path::new("."), gen, false).unwrap();
}

#[test]
fn report_shows_samples_numbers_and_escaped_captions_deterministically() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let (folder, tok, gen) = (d.path().join("pics"), d.path().join("tok"), d.path().join("gen"));
    std::fs::create_dir_all(&folder).unwrap();
    caption_folder(&folder);
    tiny_runs(&folder, &tok, &gen);
    // Free-text captions get a tokenizer that decodes word pieces back into words.
    let tk = std::fs::read_to_string(gen.join("tokenizer.json")).unwrap();
    assert!(tk.contains("\"WordPiece\""), "{}", &tk[..tk.len().min(400)]);

    let opts = CaptionReportOptions {
        images: 3,
        captions_per_image: 2,
        images_per_caption: 2,
        ..Default::default()
    };
    let mut task = generator::load_run(&gen, Device::Cpu, Path::new(".")).unwrap();
    let out = d.path().join("report");
    let r = write_report(&mut task, &gen, Path::new("."), &out, &opts).unwrap();
    assert_eq!(r.validation_images, 12);
    assert!(
        r.tokenizer["psnr"].is_finite() && (0.0..=1.0).contains(&r.tokenizer["usage"]),
        "{:?}",
        r.tokenizer
    );
    assert!(r.losses["loss/i2t_text"] > 0.0 && r.losses["loss/t2i_image"] > 0.0, "{:?}", r.losses);
    assert_eq!((r.loss_images, r.match_images), (8, 12));
    assert!((0.0..=1.0).contains(&r.greedy_match));
    assert_eq!(r.i2t.len(), 3);
    assert_eq!(r.t2i.len(), 3);
    for (row, drawn) in r.i2t.iter().zip(&r.t2i) {
        assert_eq!(row.sampled.len(), 2);
        assert_eq!(drawn.caption, row.truth[0]);
        for f in [&row.image, &row.reconstruction] {
            assert_eq!(image::open(out.join(f)).unwrap().to_rgb8().dimensions(), (32, 32));
        }
        // A row of two 32-pixel images with a 2-pixel gap around each.
        assert_eq!(image::open(out.join(&drawn.images)).unwrap().width(), 2 * 32 + 3 * 2);
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("A blue fish &amp; a &lt;b&gt;tag&lt;/b&gt;.") && !html.contains("<b>tag"),
        "escaped"
    );
    assert!(html.contains("src=\"val_000_recon.png\"") && html.contains("src=\"t2i_002.png\""));

    // The same seed gives the same report; another seed other samples.
    let again = d.path().join("again");
    write_report(&mut task, &gen, Path::new("."), &again, &opts).unwrap();
    let json = |p: &Path| std::fs::read_to_string(p.join("report.json")).unwrap();
    assert_eq!(json(&out), json(&again));
    let other = CaptionReportOptions { seed: 7, ..opts.clone() };
    write_report(&mut task, &gen, Path::new("."), &d.path().join("other"), &other).unwrap();
    assert_ne!(json(&out), json(&d.path().join("other")));

    // Bad options name themselves.
    let bad = CaptionReportOptions { images: 0, ..opts };
    let e =
        write_report(&mut task, &gen, Path::new("."), &d.path().join("bad"), &bad).unwrap_err().to_string();
    assert!(e.contains("images = 0"), "{e}");
}

#[test]
fn captions_compare_without_case_or_punctuation() {
    assert_eq!(normalise_caption("A  Blackbird."), "a blackbird");
    assert_eq!(normalise_caption("a blackbird"), normalise_caption("A blackbird!"));
    assert_ne!(normalise_caption("a black bird"), normalise_caption("a blackbird"));
}
