//! Image transforms as L-Verse uses them (spec §4.5): training `RandomResizedCrop(size,
//! scale=(0.75, 1), ratio=(1, 1))`, evaluation `Resize(size)` + `CenterCrop(size)`.

use image::{imageops, RgbImage};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const FILTER: imageops::FilterType = imageops::FilterType::Triangle;

/// torchvision's `RandomResizedCrop` with a square aspect ratio: pick an area fraction s ~ U(lo, hi),
/// a square of side √(s·W·H) at a uniform position (10 tries), falling back to the centred largest
/// square; resize to `size`×`size`.
pub fn random_resized_crop(img: &RgbImage, size: u32, scale: (f64, f64), rng: &mut ChaCha8Rng) -> RgbImage {
    let (w, h) = img.dimensions();
    let area = (w as f64) * (h as f64);
    for _ in 0..10 {
        let s = rng.gen_range(scale.0..=scale.1);
        let side = (s * area).sqrt().round() as u32;
        if side >= 1 && side <= w && side <= h {
            let x = rng.gen_range(0..=w - side);
            let y = rng.gen_range(0..=h - side);
            return imageops::resize(
                &imageops::crop_imm(img, x, y, side, side).to_image(),
                size,
                size,
                FILTER,
            );
        }
    }
    let side = w.min(h);
    let crop = imageops::crop_imm(img, (w - side) / 2, (h - side) / 2, side, side).to_image();
    imageops::resize(&crop, size, size, FILTER)
}

/// `Resize(size)` (shorter side to `size`, aspect kept) then `CenterCrop(size)`.
pub fn resize_center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if (w, h) == (size, size) {
        return img.clone();
    }
    let (nw, nh) = if w <= h {
        (size, ((h as f64) * size as f64 / w as f64).round().max(size as f64) as u32)
    } else {
        (((w as f64) * size as f64 / h as f64).round().max(size as f64) as u32, size)
    };
    let resized = imageops::resize(img, nw, nh, FILTER);
    imageops::crop_imm(&resized, (nw - size) / 2, (nh - size) / 2, size, size).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn shapes_and_determinism() {
        let img = RgbImage::from_fn(100, 60, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let a = random_resized_crop(&img, 32, (0.75, 1.0), &mut ChaCha8Rng::seed_from_u64(1));
        let b = random_resized_crop(&img, 32, (0.75, 1.0), &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(a.dimensions(), (32, 32));
        assert_eq!(a, b);
        let c = resize_center_crop(&img, 30);
        assert_eq!(c.dimensions(), (30, 30));
        // Centre crop of a horizontal gradient: the middle column comes from near x = 50.
        let mid = c.get_pixel(15, 15)[0] as i32;
        assert!((mid - 50).abs() <= 3, "{mid}");
    }

    #[test]
    fn square_crop_of_square_image_keeps_at_least_the_scale_floor() {
        // With scale (1, 1) the crop is the whole image: resize to the same size is identity.
        let img = RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 10, y as u8 * 10, 7]));
        let out = random_resized_crop(&img, 16, (1.0, 1.0), &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(out, img);
    }
}
