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

/// Distinct line colours for plots.
const PALETTE: [Rgb<u8>; 6] = [
    Rgb([31, 119, 180]),
    Rgb([255, 127, 14]),
    Rgb([44, 160, 44]),
    Rgb([214, 39, 40]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
];

/// A line plot of named (x, y) series, with the y range and x range written on the axes and a
/// legend; non-finite points are skipped. `log_y` plots log10(y) for positive y.
pub fn line_plot(
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
    width: u32,
    height: u32,
    log_y: bool,
) -> RgbImage {
    let mut img = RgbImage::from_pixel(width, height, BACKGROUND);
    let (left, right, top, bottom) = (72u32, 12u32, 24u32, 36u32);
    let (pw, ph) = (width - left - right, height - top - bottom);
    draw_text(&mut img, left, 6, title, 1, INK);
    let tf = |y: f64| if log_y { y.log10() } else { y };
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
        .map(|(x, y)| (x, tf(y)))
        .collect();
    // Axes.
    for x in left..left + pw {
        img.put_pixel(x, top + ph, INK);
    }
    for y in top..=top + ph {
        img.put_pixel(left, y, INK);
    }
    if pts.is_empty() {
        draw_text(&mut img, left + 8, top + ph / 2, "no data yet", 1, INK);
        return img;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1e-9_f64.max(y0.abs() * 1e-3);
    }
    let fmt = |v: f64| if log_y { format!("{:.3e}", 10f64.powf(v)) } else { format!("{v:.4}") };
    draw_text(&mut img, 2, top, &fmt(y1), 1, INK);
    draw_text(&mut img, 2, top + ph - 8, &fmt(y0), 1, INK);
    draw_text(&mut img, left, top + ph + 6, &format!("{x0}"), 1, INK);
    let xl = format!("{x1}");
    draw_text(&mut img, (left + pw).saturating_sub(8 * xl.len() as u32), top + ph + 6, &xl, 1, INK);
    let px = |x: f64| left + ((x - x0) / (x1 - x0) * (pw - 1) as f64).round() as u32;
    let py = |y: f64| top + ph - ((y - y0) / (y1 - y0) * ph as f64).round() as u32;
    for (k, (name, s)) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let mut prev: Option<(u32, u32)> = None;
        for &(x, y) in s {
            if !(x.is_finite() && y.is_finite()) || (log_y && y <= 0.0) {
                continue;
            }
            let p = (px(x), py(tf(y)));
            if let Some(q) = prev {
                draw_line(&mut img, q, p, color);
            }
            prev = Some(p);
        }
        let ly = top + 4 + 12 * k as u32;
        for dx in 0..12 {
            img.put_pixel(left + pw - 180 + dx, ly + 3, color);
        }
        draw_text(&mut img, left + pw - 164, ly, name, 1, color);
    }
    img
}

fn draw_line(img: &mut RgbImage, a: (u32, u32), b: (u32, u32), color: Rgb<u8>) {
    let (dx, dy) = (b.0 as i64 - a.0 as i64, b.1 as i64 - a.1 as i64);
    let n = dx.abs().max(dy.abs()).max(1);
    for i in 0..=n {
        let x = a.0 as i64 + dx * i / n;
        let y = a.1 as i64 + dy * i / n;
        if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
            img.put_pixel(x as u32, y as u32, color);
        }
    }
}

#[cfg(test)]
mod plot_tests {
    use super::*;

    #[test]
    fn plot_draws_each_series_in_its_colour() {
        let s = vec![
            ("a".to_string(), vec![(0.0, 1.0), (10.0, 0.5), (20.0, f64::NAN), (30.0, 0.25)]),
            ("b".to_string(), vec![(0.0, 0.3), (30.0, 0.9)]),
        ];
        let img = line_plot("loss", &s, 400, 200, false);
        let count = |c: Rgb<u8>| img.pixels().filter(|p| **p == c).count();
        assert!(count(PALETTE[0]) > 100 && count(PALETTE[1]) > 100);
        let empty = line_plot("loss", &[], 200, 100, true);
        assert_eq!(empty.dimensions(), (200, 100));
    }
}
