//! Pictures a person would rather look at than read: image grids and labelled rows, as PNG.
//!
//! Text is drawn with the public-domain 8×8 bitmap font of the `font8x8` crate, so nothing depends
//! on fonts installed on the machine.

use font8x8::{UnicodeFonts, BASIC_FONTS};
use image::{imageops, Rgb, RgbImage};

const GLYPH: u32 = 8;
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);

/// Draw `text` with its top-left corner at (x, y), each font pixel `scale`×`scale`.
/// Characters outside the font are drawn as `?`. Pixels falling outside the image are skipped.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32, color: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = BASIC_FONTS.get(ch).or_else(|| BASIC_FONTS.get('?')).expect("'?' is in the font");
        let x0 = x + i as u32 * GLYPH * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..GLYPH {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (x0 + col * scale + dx, y + row as u32 * scale + dy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, color);
                        }
                    }
                }
            }
        }
    }
}

/// Greedy word wrap to at most `width` characters a line (words longer than a line are split).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        while word.chars().count() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
        }
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Images (all the same size) tiled `cols` to a row with a `pad`-pixel white gutter.
pub fn image_grid(images: &[RgbImage], cols: usize, pad: u32) -> RgbImage {
    let Some(first) = images.first() else {
        return RgbImage::from_pixel(1, 1, BACKGROUND);
    };
    let (w, h) = first.dimensions();
    let cols = cols.clamp(1, images.len());
    let rows = images.len().div_ceil(cols);
    let mut out =
        RgbImage::from_pixel(cols as u32 * (w + pad) + pad, rows as u32 * (h + pad) + pad, BACKGROUND);
    for (i, img) in images.iter().enumerate() {
        let (c, r) = ((i % cols) as u32, (i / cols) as u32);
        imageops::overlay(&mut out, img, (pad + c * (w + pad)) as i64, (pad + r * (h + pad)) as i64);
    }
    out
}

/// One row per item: the image scaled up by `zoom` (nearest neighbour), its label wrapped beside it.
pub fn labelled_rows(items: &[(RgbImage, String)], zoom: u32, text_chars: usize) -> RgbImage {
    let pad = 8;
    let Some((first, _)) = items.first() else {
        return RgbImage::from_pixel(1, 1, BACKGROUND);
    };
    let (w, h) = (first.width() * zoom, first.height() * zoom);
    let row_h = h.max(GLYPH) + pad;
    let width = pad + w + pad + text_chars as u32 * GLYPH + pad;
    let mut out = RgbImage::from_pixel(width, pad + items.len() as u32 * row_h, BACKGROUND);
    for (i, (img, label)) in items.iter().enumerate() {
        let y = pad + i as u32 * row_h;
        let big = imageops::resize(img, w, h, imageops::FilterType::Nearest);
        imageops::overlay(&mut out, &big, pad as i64, y as i64);
        for (l, line) in wrap(label, text_chars).iter().enumerate() {
            let ly = y + l as u32 * (GLYPH + 4);
            if ly + GLYPH <= y + row_h {
                draw_text(&mut out, pad + w + pad, ly, line, 1, INK);
            }
        }
    }
    out
}

/// A line of text in [`marked_rows`]: neutral, right (green, prefixed `+`) or wrong (red, `x`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub text: String,
    pub right: Option<bool>,
}

impl Mark {
    pub fn plain(text: impl Into<String>) -> Self {
        Self { text: text.into(), right: None }
    }
    pub fn judged(text: impl Into<String>, right: bool) -> Self {
        Self { text: text.into(), right: Some(right) }
    }
}

const RIGHT: Rgb<u8> = Rgb([0, 140, 0]);
const WRONG: Rgb<u8> = Rgb([200, 0, 0]);

/// One row per item: the image scaled up by `zoom`, and beside it one line per [`Mark`], green
/// with `+ ` when right, red with `x ` when wrong (so it reads in grey-scale too), lines cut at
/// `text_chars`.
pub fn marked_rows(items: &[(RgbImage, Vec<Mark>)], zoom: u32, text_chars: usize) -> RgbImage {
    let pad = 8;
    let Some((first, _)) = items.first() else {
        return RgbImage::from_pixel(1, 1, BACKGROUND);
    };
    let (w, h) = (first.width() * zoom, first.height() * zoom);
    let line_h = GLYPH + 4;
    let most = items.iter().map(|(_, m)| m.len() as u32).max().unwrap_or(0);
    let row_h = h.max(most * line_h) + pad;
    let width = pad + w + pad + text_chars as u32 * GLYPH + pad;
    let mut out = RgbImage::from_pixel(width, pad + items.len() as u32 * row_h, BACKGROUND);
    for (i, (img, marks)) in items.iter().enumerate() {
        let y = pad + i as u32 * row_h;
        let big = imageops::resize(img, w, h, imageops::FilterType::Nearest);
        imageops::overlay(&mut out, &big, pad as i64, y as i64);
        for (l, m) in marks.iter().enumerate() {
            let (prefix, color) = match m.right {
                None => ("", INK),
                Some(true) => ("+ ", RIGHT),
                Some(false) => ("x ", WRONG),
            };
            let line: String = format!("{prefix}{}", m.text).chars().take(text_chars).collect();
            draw_text(&mut out, pad + w + pad, y + l as u32 * line_h, &line, 1, color);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_respects_width_and_keeps_words() {
        let lines = wrap("red 3 on the upper left, blue 7 on the lower right.", 16);
        assert!(lines.iter().all(|l| l.chars().count() <= 16), "{lines:?}");
        assert_eq!(lines.join(" "), "red 3 on the upper left, blue 7 on the lower right.");
        assert_eq!(wrap("abcdefgh", 3), vec!["abc", "def", "gh"]);
    }

    #[test]
    fn grid_places_each_image() {
        let a = RgbImage::from_pixel(4, 4, Rgb([255, 0, 0]));
        let b = RgbImage::from_pixel(4, 4, Rgb([0, 0, 255]));
        let g = image_grid(&[a, b.clone(), b], 2, 1);
        assert_eq!(g.dimensions(), (2 * 5 + 1, 2 * 5 + 1));
        assert_eq!(g.get_pixel(1, 1), &Rgb([255, 0, 0]));
        assert_eq!(g.get_pixel(6, 1), &Rgb([0, 0, 255]));
        assert_eq!(g.get_pixel(1, 6), &Rgb([0, 0, 255]));
        assert_eq!(g.get_pixel(6, 6), &BACKGROUND);
    }

    #[test]
    fn marked_rows_colour_right_and_wrong_lines() {
        let img = RgbImage::from_pixel(4, 4, Rgb([0, 0, 0]));
        let marks = vec![Mark::plain("cap"), Mark::judged("ok", true), Mark::judged("bad", false)];
        let out = marked_rows(&[(img, marks)], 2, 10);
        // Three lines of 12 px fit beside an 8 px image: the row grows to the text.
        assert_eq!(out.height(), 8 + 3 * 12 + 8);
        let count = |c: Rgb<u8>| out.pixels().filter(|p| **p == c).count();
        assert!(count(INK) > 0 && count(RIGHT) > 0 && count(WRONG) > 0);
    }

    #[test]
    fn text_puts_ink_only_inside_its_box() {
        let mut img = RgbImage::from_pixel(40, 12, BACKGROUND);
        draw_text(&mut img, 2, 2, "1", 1, INK);
        let inked: Vec<(u32, u32)> =
            img.enumerate_pixels().filter(|(_, _, p)| **p == INK).map(|(x, y, _)| (x, y)).collect();
        assert!(!inked.is_empty());
        assert!(inked.iter().all(|&(x, y)| (2..10).contains(&x) && (2..10).contains(&y)));
    }
}
