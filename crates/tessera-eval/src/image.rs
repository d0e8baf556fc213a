//! Pixel metrics on (B, C, H, W) images in [0, 1].

use tch::{Kind, Tensor};

/// Per-image PSNR in dB: `10·log10(1 / mean((x − y)²))`; identical images give +∞.
///
/// # Shapes
/// (B, C, H, W) × 2 → (B,)
pub fn psnr(x: &Tensor, y: &Tensor) -> Tensor {
    let mse = (x - y).square().mean_dim(&[1i64, 2, 3][..], false, Kind::Float);
    mse.log10() * -10.0
}

fn gaussian_window(size: i64, sigma: f64, channels: i64, device: tch::Device) -> Tensor {
    let half = (size - 1) as f64 / 2.0;
    let g: Vec<f64> =
        (0..size).map(|i| (-((i as f64 - half).powi(2)) / (2.0 * sigma * sigma)).exp()).collect();
    let g = Tensor::from_slice(&g).to_device(device);
    let g = &g / g.sum(Kind::Double);
    g.unsqueeze(1).matmul(&g.unsqueeze(0)).view([1, 1, size, size]).repeat([channels, 1, 1, 1])
}

/// Per-image SSIM (Wang et al. 2004) with an 11×11 Gaussian window (σ = 1.5), `C₁ = 0.01²`,
/// `C₂ = 0.03²` for data range 1, "valid" windows only, averaged over channels and positions:
/// ```text
/// SSIM = (2μxμy + C₁)(2σxy + C₂) / ((μx² + μy² + C₁)(σx² + σy² + C₂))
/// ```
///
/// # Shapes
/// (B, C, H, W) × 2 → (B,), H, W ≥ 11
pub fn ssim(x: &Tensor, y: &Tensor) -> Tensor {
    let c = x.size()[1];
    let w = gaussian_window(11, 1.5, c, x.device()).to_kind(x.kind());
    let filt = |t: &Tensor| t.conv2d::<Tensor>(&w, None, [1, 1], [0, 0], [1, 1], c);
    let (mx, my) = (filt(x), filt(y));
    let sxx = filt(&(x * x)) - mx.square();
    let syy = filt(&(y * y)) - my.square();
    let sxy = filt(&(x * y)) - &mx * &my;
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let num = (&mx * &my * 2.0 + c1) * (sxy * 2.0 + c2);
    let den = (mx.square() + my.square() + c1) * (sxx + syy + c2);
    (num / den).mean_dim(&[1i64, 2, 3][..], false, x.kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_hand_value() {
        let x = Tensor::zeros([1, 1, 4, 4], (Kind::Float, tch::Device::Cpu));
        let y = x.ones_like() * 0.1; // mse 0.01 -> 20 dB
        assert!((psnr(&x, &y).double_value(&[0]) - 20.0).abs() < 1e-4);
    }

    #[test]
    fn ssim_is_one_for_identical_and_drops_with_noise() {
        tch::manual_seed(0);
        let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, tch::Device::Cpu));
        let same = ssim(&x, &x);
        assert!((same - 1.0).abs().max().double_value(&[]) < 1e-5);
        let noisy = (&x + Tensor::randn_like(&x) * 0.2).clamp(0.0, 1.0);
        let s = ssim(&x, &noisy).double_value(&[0]);
        assert!(s < 0.9 && s > 0.0, "{s}");
        // A constant offset c on flat images: luminance term only, (2μ(μ+c)+C1)/(μ²+(μ+c)²+C1).
        // In f64: in f32 the zero variances carry ~1e-7 of cancellation error, visible against C2.
        let a = Tensor::full([1, 1, 16, 16], 0.5, (Kind::Double, tch::Device::Cpu));
        let b = &a + 0.1;
        let c1 = 1e-4;
        let want = (2.0 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1);
        let got = ssim(&a, &b).double_value(&[0]);
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }
}
