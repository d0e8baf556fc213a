//! Valid inputs for each target, built in code. `tessera-fuzz seed` writes them to
//! `fuzz/corpus/<target>/`, where they are committed; the fuzzer starts from that folder.

use std::io::Write;

use tch::Tensor;

fn idx_bytes(magic_dims: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, magic_dims];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// An image file (2 images of 4×4), a label file, and the image file gzipped.
pub fn idx() -> Vec<Vec<u8>> {
    let images = idx_bytes(3, &[2, 4, 4], &(0..32).collect::<Vec<u8>>());
    let labels = idx_bytes(1, &[3], &[7, 2, 9]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&images).expect("in memory");
    vec![images, labels, gz.finish().expect("in memory")]
}

/// The shipped presets, some with `--set` lines.
pub fn configs() -> Vec<Vec<u8>> {
    let presets = [
        include_str!("../../../configs/mnist64-te-tiny.toml"),
        include_str!("../../../configs/mnist64-biart-quick.toml"),
        include_str!("../../../configs/study-te-quick.toml"),
        include_str!("../../../configs/data-mnist64.toml"),
    ];
    let mut out: Vec<Vec<u8>> = presets.iter().map(|p| p.as_bytes().to_vec()).collect();
    out.push(format!("{}\n--set train.max_steps=5\n--set model.ch_mult=[1, 2]\n", presets[0]).into_bytes());
    out.push(b"--set data.loader.batch_size=3\n--set optim.adam.beta1=0.5\n".to_vec());
    out
}

/// A Tessera checkpoint with metadata and checksum, and a plain safetensors file.
pub fn checkpoints() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (ck, plain) = (dir.path().join("ck.safetensors"), dir.path().join("plain.safetensors"));
    let tensors = vec![
        ("model.w".to_string(), Tensor::from_slice(&[0.5f32, -1.0, 2.0, 3.5, 0.0, 1.0]).view([2, 3])),
        ("opt.step".to_string(), Tensor::from_slice(&[7i64])),
    ];
    let config = include_str!("../../../configs/mnist64-te-tiny.toml").to_string();
    let meta = tessera_train::runner::Meta {
        format: tessera_train::runner::FORMAT.into(),
        kind: "vqgan".into(),
        step: 3,
        config,
    };
    tessera_train::checkpoint::save(&ck, &tensors, &meta).expect("a checkpoint");
    Tensor::write_safetensors(&tensors, &plain).expect("a safetensors file");
    vec![std::fs::read(ck).expect("written"), std::fs::read(plain).expect("written")]
}

/// torch.save archives (the reader's own fixtures) and the raw pickle inside one.
pub fn pickles() -> Vec<Vec<u8>> {
    let mixed = include_bytes!("../../tessera-torchfile/tests/fixtures/mixed.pth").to_vec();
    let evil = include_bytes!("../../tessera-torchfile/tests/fixtures/evil.pth").to_vec();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&mixed)).expect("a zip fixture");
    let name = (0..zip.len())
        .map(|i| zip.by_index(i).expect("an entry").name().to_string())
        .find(|n| n.ends_with("data.pkl"))
        .expect("a data.pkl entry");
    let mut pkl = Vec::new();
    std::io::Read::read_to_end(&mut zip.by_name(&name).expect("the entry"), &mut pkl).expect("readable");
    // A protocol-2 pickle of {"a": [1, 2.5, "x"], "b": (True, None)}.
    let small = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xq\x03eX\x01\x00\x00\x00bq\x04\x88N\x86q\x05u.".to_vec();
    vec![mixed, evil, pkl, small]
}

/// Small PNG (RGB, gray, RGBA), JPEG and WebP files.
pub fn images() -> Vec<Vec<u8>> {
    use image::{DynamicImage, ImageFormat};
    let rgb = DynamicImage::ImageRgb8(image::RgbImage::from_fn(8, 8, |x, y| {
        image::Rgb([x as u8 * 30, y as u8 * 30, 90])
    }));
    let encode = |img: &DynamicImage, format| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("in memory");
        out.into_inner()
    };
    vec![
        encode(&rgb, ImageFormat::Png),
        encode(&DynamicImage::ImageLuma8(rgb.to_luma8()).crop_imm(0, 0, 8, 6), ImageFormat::Png),
        encode(&DynamicImage::ImageRgba8(rgb.to_rgba8()), ImageFormat::Png),
        encode(&rgb, ImageFormat::Jpeg),
        encode(&rgb, ImageFormat::WebP),
    ]
}

/// MNIST64x64 captions as the generator writes them, and hand-written ones.
pub fn captions() -> Vec<Vec<u8>> {
    [
        "red 3 on the upper left, and blue 7 on the lower right",
        "a green 0 in the center",
        "Yellow 5 at the bottom left, cyan 1 at the top right, and magenta 8 at the upper left.",
        "white 9",
        ", , ,",
    ]
    .iter()
    .map(|c| c.as_bytes().to_vec())
    .collect()
}
