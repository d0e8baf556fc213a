//! Images ↔ tensors in Tessera's convention: (B, 3, H, W) float32 in [-1, 1], `x/127.5 − 1`
//! (spec §1.1).

use image::RgbImage;
use tch::{Kind, Tensor};

use crate::error::{DataError, Result};

/// Stack same-size RGB images into a (B, 3, H, W) float tensor in [-1, 1].
pub fn images_to_tensor(images: &[RgbImage]) -> Result<Tensor> {
    let Some(first) = images.first() else {
        return Err(DataError::Invalid("cannot make a tensor from zero images".into()));
    };
    let (w, h) = first.dimensions();
    let plane = (w * h) as usize;
    let mut data = vec![0f32; images.len() * 3 * plane];
    for (b, img) in images.iter().enumerate() {
        if img.dimensions() != (w, h) {
            return Err(DataError::MixedSizes { first: (w, h), other: img.dimensions() });
        }
        let base = b * 3 * plane;
        for (p, px) in img.pixels().enumerate() {
            for c in 0..3 {
                data[base + c * plane + p] = px[c] as f32 / 127.5 - 1.0;
            }
        }
    }
    Ok(Tensor::from_slice(&data).view([images.len() as i64, 3, h as i64, w as i64]))
}

/// The inverse: a (B, 3, H, W) tensor in [-1, 1] (clamped) back to RGB images.
pub fn tensor_to_images(t: &Tensor) -> Result<Vec<RgbImage>> {
    let size = t.size();
    if size.len() != 4 || size[1] != 3 {
        return Err(DataError::Invalid(format!("expected a (B, 3, H, W) tensor, got {size:?}")));
    }
    let (b, h, w) = (size[0] as usize, size[2] as u32, size[3] as u32);
    let bytes = ((t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float).clamp(-1.0, 1.0) + 1.0)
        * 127.5)
        .round()
        .to_kind(Kind::Uint8)
        .permute([0, 2, 3, 1])
        .contiguous();
    let flat: Vec<u8> =
        Vec::<u8>::try_from(bytes.view([-1])).map_err(|e| DataError::Invalid(e.to_string()))?;
    let n = (h * w * 3) as usize;
    Ok((0..b)
        .map(|i| RgbImage::from_raw(w, h, flat[i * n..(i + 1) * n].to_vec()).expect("sized buffer"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_convention() {
        let a = RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 100, y as u8 * 255, 0]));
        let t = images_to_tensor(&[a.clone(), a.clone()]).unwrap();
        assert_eq!(t.size(), vec![2, 3, 2, 3]);
        // Pixel (x=1, y=0) red = 100 -> 100/127.5 - 1.
        let v = t.double_value(&[0, 0, 0, 1]);
        assert!((v - (100.0 / 127.5 - 1.0)).abs() < 1e-6);
        assert_eq!(t.double_value(&[1, 1, 1, 0]), 1.0);
        assert_eq!(t.double_value(&[1, 2, 1, 0]), -1.0);
        assert_eq!(tensor_to_images(&t).unwrap(), vec![a.clone(), a]);
    }

    #[test]
    fn mixed_sizes_are_an_error() {
        let e = images_to_tensor(&[RgbImage::new(2, 2), RgbImage::new(3, 2)]).unwrap_err();
        assert!(e.to_string().contains("mixes image sizes"), "{e}");
    }
}
