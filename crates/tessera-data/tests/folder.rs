//! Users' folders: corrupt files are skipped and reported, captions are read, empty folders and
//! config mistakes are clear errors.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tessera_data::{DataConfig, Dataset, ImageFolder, Resize};

fn png(path: &Path, w: u32, h: u32, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb([value, 0, 0])).save(path).unwrap();
}

#[test]
fn corrupt_and_truncated_images_are_skipped_counted_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    png(&dir.path().join("a.png"), 40, 30, 10);
    png(&dir.path().join("nested/deeper/b.png"), 30, 40, 20);
    std::fs::write(dir.path().join("c.png"), b"this is not a png").unwrap();
    let good = std::fs::read(dir.path().join("a.png")).unwrap();
    std::fs::write(dir.path().join("d.jpg"), &good[..good.len() / 2]).unwrap();
    std::fs::write(dir.path().join("notes.md"), b"ignored").unwrap();

    let ds = ImageFolder::open(dir.path(), Resize::Eval { size: 16 }).unwrap();
    assert_eq!(ds.len(), 4, "recursive, images only");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for i in 0..ds.len() {
        let s = ds.get(i, &mut rng).expect("a corrupt file never fails the run");
        assert_eq!(s.image.dimensions(), (16, 16));
        assert!([10u8, 20].contains(&s.image.get_pixel(8, 8)[0]));
    }
    let skipped = ds.skipped();
    let names: Vec<String> =
        skipped.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into()).collect();
    assert_eq!(names, vec!["c.png", "d.jpg"]);
}

#[test]
fn training_crops_are_square_and_sized() {
    let dir = tempfile::tempdir().unwrap();
    png(&dir.path().join("wide.png"), 90, 50, 7);
    let ds = ImageFolder::open(dir.path(), Resize::Train { size: 24 }).unwrap();
    let s = ds.get(0, &mut ChaCha8Rng::seed_from_u64(4)).unwrap();
    assert_eq!(s.image.dimensions(), (24, 24));
}

#[test]
fn captions_are_read_per_line_and_uncaptioned_images_skipped() {
    let dir = tempfile::tempdir().unwrap();
    png(&dir.path().join("img/x.png"), 8, 8, 1);
    png(&dir.path().join("img/y.png"), 8, 8, 2);
    png(&dir.path().join("img/z.png"), 8, 8, 3);
    std::fs::create_dir_all(dir.path().join("text")).unwrap();
    std::fs::write(dir.path().join("text/x.txt"), "red 3.\n\n  blue 4.  \n").unwrap();
    std::fs::write(dir.path().join("text/y.txt"), "\n \n").unwrap();
    let ds = ImageFolder::open_captioned(
        &dir.path().join("img"),
        Some(&dir.path().join("text")),
        Resize::Eval { size: 8 },
    )
    .unwrap();
    assert_eq!(ds.len(), 1);
    let s = ds.get(0, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    assert_eq!(s.captions, vec!["red 3.", "blue 4."]);
    let reasons: Vec<String> = ds.skipped().into_iter().map(|(_, r)| r).collect();
    assert_eq!(reasons.len(), 2);
    assert!(reasons[0].contains("is empty") && reasons[1].contains("no caption file"), "{reasons:?}");
}

#[test]
fn empty_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("readme.txt"), "no images here").unwrap();
    let e = ImageFolder::open(dir.path(), Resize::Eval { size: 8 }).unwrap_err().to_string();
    assert!(e.contains("no usable images") && e.contains(".png"), "{e}");
    let e = ImageFolder::open(&dir.path().join("missing"), Resize::Eval { size: 8 }).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn data_config_rejects_unknown_keys_and_names_valid_ones() {
    let e = tessera_core::config::load_str::<DataConfig>("[mnist64]\nsede = 1\n", &[], "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown field `sede`") && e.contains("`seed`") && e.contains("`translated_groups`"),
        "{e}"
    );
    let e = tessera_core::config::load_str::<DataConfig>("source = \"webdataset\"\n", &[], "x.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("mnist64") && e.contains("caption-folder"), "{e}");
    let c: DataConfig =
        tessera_core::config::load_str("", &["loader.batch_size=7".into(), "source=fake".into()], "x")
            .unwrap();
    assert_eq!(c.loader.batch_size, 7);
    assert_eq!(c.source, tessera_data::SourceKind::Fake);
}

#[test]
fn folder_source_without_path_says_so() {
    let c: DataConfig = tessera_core::config::load_str("source = \"folder\"\n", &[], "x").unwrap();
    let e = c.open(tessera_data::Split::Train, Path::new("data")).err().unwrap().to_string();
    assert!(e.contains("data.path"), "{e}");
    let c = DataConfig::default();
    let e = c.open(tessera_data::Split::Train, Path::new("/nonexistent")).err().unwrap().to_string();
    assert!(e.contains("tessera data fetch"), "{e}");
}

/// Bounded work on hostile files: a 1×60000 strip (cheap to decode, gigabytes once its short side
/// is resized) and a file over the pixel limit are skipped with the reason, before the work.
#[test]
fn oversized_and_elongated_images_are_refused_before_decoding_or_resizing() {
    let dir = tempfile::tempdir().unwrap();
    png(&dir.path().join("a_ok.png"), 32, 32, 10);
    png(&dir.path().join("b_strip.png"), 1, 60000, 20);
    png(&dir.path().join("c_big.png"), 300, 300, 30);
    let ds = ImageFolder::open(dir.path(), Resize::Eval { size: 64 }).unwrap().with_max_pixels(80_000);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for i in 0..3 {
        let s = ds.get(i, &mut rng).unwrap();
        assert_eq!(s.image.get_pixel(8, 8)[0], 10, "only the small image is usable");
    }
    let skipped = ds.skipped();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[0].1.contains("too elongated"), "{}", skipped[0].1);
    assert!(skipped[1].1.contains("300×300 = 90000 pixels"), "{}", skipped[1].1);
    // The limit is a config key.
    let c: DataConfig = tessera_core::config::load_str("", &["max_image_pixels=1000".into()], "x").unwrap();
    assert_eq!(c.max_image_pixels, 1000);
    let e =
        tessera_core::config::load_str::<DataConfig>("", &["max_image_pixels=0".into()], "x").unwrap_err();
    assert!(e.to_string().contains("max_image_pixels = 0"), "{e}");
}

/// `image-folder` is torchvision's ImageFolder layout (L-Verse's `--train_dir`): a flat folder is
/// refused with the layout it expects; class sub-folders are read recursively, files beside them
/// are not (as torchvision).
#[test]
fn image_folder_source_needs_class_sub_folders() {
    use tessera_data::{SourceKind, Split};
    let dir = tempfile::tempdir().unwrap();
    png(&dir.path().join("a.png"), 20, 20, 10);
    let cfg = DataConfig {
        source: SourceKind::ImageFolder,
        path: Some(dir.path().to_path_buf()),
        image_size: 16,
        ..DataConfig::default()
    };
    let e = cfg.open(Split::Train, dir.path()).err().expect("a flat folder is refused").to_string();
    assert!(e.contains("no sub-folders") && e.contains("<class>"), "{e}");
    png(&dir.path().join("cats/b.png"), 20, 20, 20);
    png(&dir.path().join("dogs/young/c.png"), 20, 20, 30);
    let ds = cfg.open(Split::Train, dir.path()).unwrap();
    assert_eq!(ds.len(), 2, "cats/b.png and dogs/young/c.png, not a.png");
}
