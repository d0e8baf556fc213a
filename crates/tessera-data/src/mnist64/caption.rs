//! Captions for MNIST64x64 scenes, written only with the BPE vocabulary of spec §2.6:
//! `the is on to this number and left right top bottom upper lower white red green blue`,
//! the digits `0-9`, `,` and `.`.
//!
//! A caption is one segment per digit, in location order, joined by commas. Each segment holds a
//! location phrase (none for the centre), a colour word and the digit, so the parser of spec §9.1
//! recovers every (location, colour, digit) triple from any template.

use super::layout::{PlacedDigit, Scene};

/// Paraphrase templates for one segment (`l` location phrase, `c` colour, `d` digit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Template {
    /// "red 3 on the upper left" / centre: "red 3"
    Plain,
    /// "the upper left number is red 3" / centre: "the number is red 3"
    NumberIs,
    /// "red number 3 is on the upper left" / centre: "red number 3"
    ColourNumber,
    /// "this is red 3 on the upper left" / centre: "this is red 3"
    ThisIs,
}

impl Template {
    pub const ALL: [Template; 4] =
        [Template::Plain, Template::NumberIs, Template::ColourNumber, Template::ThisIs];

    fn segment(self, d: &PlacedDigit, alt_phrase: bool) -> String {
        let (c, n) = (d.colour.name(), d.digit);
        match (self, d.location.phrase(alt_phrase)) {
            (Template::Plain, Some(l)) => format!("{c} {n} on the {l}"),
            (Template::Plain, None) => format!("{c} {n}"),
            (Template::NumberIs, Some(l)) => format!("the {l} number is {c} {n}"),
            (Template::NumberIs, None) => format!("the number is {c} {n}"),
            (Template::ColourNumber, Some(l)) => format!("{c} number {n} is on the {l}"),
            (Template::ColourNumber, None) => format!("{c} number {n}"),
            (Template::ThisIs, Some(l)) => format!("this is {c} {n} on the {l}"),
            (Template::ThisIs, None) => format!("this is {c} {n}"),
        }
    }
}

/// One caption. `alt_phrase` writes "top/bottom" instead of "upper/lower"; `and_last` joins the
/// final segment with ", and".
pub fn caption(scene: &Scene, template: Template, alt_phrase: bool, and_last: bool) -> String {
    let segs: Vec<String> = scene.digits.iter().map(|d| template.segment(d, alt_phrase)).collect();
    let mut out = String::new();
    for (i, s) in segs.iter().enumerate() {
        if i > 0 {
            out.push_str(if and_last && i + 1 == segs.len() { ", and " } else { ", " });
        }
        out.push_str(s);
    }
    out.push('.');
    out
}

/// Every paraphrase of a scene: 4 templates × 2 location phrasings × 2 joiners, the plain one first
/// (the one validation and test use, as Bi-DALL-E reads the first caption line).
pub fn all_captions(scene: &Scene) -> Vec<String> {
    let mut out = Vec::with_capacity(16);
    for t in Template::ALL {
        for alt in [false, true] {
            for and_last in [false, true] {
                let c = caption(scene, t, alt, and_last);
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// The words the original BPE vocabulary holds (spec §2.6), besides digits and punctuation.
pub const VOCABULARY: [&str; 17] = [
    "the", "is", "on", "to", "this", "number", "and", "left", "right", "top", "bottom", "upper", "lower",
    "white", "red", "green", "blue",
];
