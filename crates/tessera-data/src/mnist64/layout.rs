//! Where digits go and what colour they are (spec §2.6, §9.1).
//!
//! The 64×64 canvas is a 2×2 grid of 32×32 cells. A 28×28 digit sits with a 2-px margin in its
//! cell: rows/cols [2,30) or [34,62). The centre digit sits at [18,46)², exactly the upper-left
//! placement shifted by 16 px (4 latent cells at f=4). Background black.

use serde::{Deserialize, Serialize};

pub const CANVAS: usize = 64;
pub const DIGIT: usize = 28;

/// A digit's place on the canvas. The discriminant is the parser's location id (spec §9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    Center = 0,
    UpperLeft = 1,
    UpperRight = 2,
    LowerLeft = 3,
    LowerRight = 4,
}

impl Location {
    /// In the order of the translated set's groups: [CEN, UL, UR, LL, LR] (spec §2.7).
    pub const ALL: [Location; 5] = [
        Location::Center,
        Location::UpperLeft,
        Location::UpperRight,
        Location::LowerLeft,
        Location::LowerRight,
    ];
    pub const QUADRANTS: [Location; 4] =
        [Location::UpperLeft, Location::UpperRight, Location::LowerLeft, Location::LowerRight];

    /// Pixel (row, col) of the digit's top-left corner.
    pub fn origin(self) -> (usize, usize) {
        match self {
            Location::Center => (18, 18),
            Location::UpperLeft => (2, 2),
            Location::UpperRight => (2, 34),
            Location::LowerLeft => (34, 2),
            Location::LowerRight => (34, 34),
        }
    }

    /// The location phrase; `alt` picks "top/bottom" instead of "upper/lower". `None` for the centre.
    pub fn phrase(self, alt: bool) -> Option<&'static str> {
        Some(match (self, alt) {
            (Location::Center, _) => return None,
            (Location::UpperLeft, false) => "upper left",
            (Location::UpperLeft, true) => "top left",
            (Location::UpperRight, false) => "upper right",
            (Location::UpperRight, true) => "top right",
            (Location::LowerLeft, false) => "lower left",
            (Location::LowerLeft, true) => "bottom left",
            (Location::LowerRight, false) => "lower right",
            (Location::LowerRight, true) => "bottom right",
        })
    }

    pub fn from_id(id: usize) -> Option<Location> {
        Location::ALL.get(id).copied()
    }
}

/// Digit colours. The discriminant is the parser's and classifier's colour id (spec §9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    White = 0,
    Red = 1,
    Green = 2,
    Blue = 3,
}

impl Colour {
    pub const ALL: [Colour; 4] = [Colour::White, Colour::Red, Colour::Green, Colour::Blue];

    /// Full-intensity RGB; a digit pixel of gray value g becomes `g/255 · rgb` (exact values are
    /// not in the original sources, spec §12, so these are Tessera's choice).
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::White => [255, 255, 255],
            Colour::Red => [255, 0, 0],
            Colour::Green => [0, 255, 0],
            Colour::Blue => [0, 0, 255],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Colour::White => "white",
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
        }
    }

    pub fn from_id(id: usize) -> Option<Colour> {
        Colour::ALL.get(id).copied()
    }
}

/// One digit on the canvas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedDigit {
    pub location: Location,
    pub colour: Colour,
    pub digit: u8,
    /// Index into the MNIST split the digit was drawn from.
    pub mnist_index: usize,
}

/// What one MNIST64x64 image shows: 1 to 4 digits, in location order, at most one per location.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scene {
    pub digits: Vec<PlacedDigit>,
}

/// Paint the scene: each digit's gray values scaled into its colour on a black canvas.
/// `gray(i)` returns the 28×28 MNIST image with index `i`.
pub fn render<'a>(scene: &Scene, gray: impl Fn(usize) -> &'a [u8]) -> image::RgbImage {
    let mut img = image::RgbImage::new(CANVAS as u32, CANVAS as u32);
    for d in &scene.digits {
        let (r0, c0) = d.location.origin();
        let rgb = d.colour.rgb();
        let src = gray(d.mnist_index);
        for r in 0..DIGIT {
            for c in 0..DIGIT {
                let g = src[r * DIGIT + c] as u16;
                let px = rgb.map(|v| ((g * v as u16 + 127) / 255) as u8);
                img.put_pixel((c0 + c) as u32, (r0 + r) as u32, image::Rgb(px));
            }
        }
    }
    img
}
