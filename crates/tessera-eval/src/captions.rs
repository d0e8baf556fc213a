//! Text→image and image→text accuracy of Bi-directional DALL-E (spec §9.1), over triples
//! (location, colour, digit) read by the caption parser.
//!
//! - **T2I**: for every ground-truth triple, the generated image is cropped at that location and
//!   classified; the predicted triple (same location, predicted colour and digit) is correct when
//!   it is in the ground-truth list. Colour-only and digit-only count a match of that attribute.
//! - **I2T**: every triple parsed from the generated caption is correct when it is in the
//!   ground-truth list; colour-only and digit-only count when the generated location exists in the
//!   ground truth and that attribute matches there.
//!
//! Both are `count / (ground-truth labels + 1e-8)`, bucketed by the number of ground-truth labels:
//! 4 → `quad4`, 3 → `quad3`, 2 → `quad2`, 1 → `center` (location 0) or `quad1`. The paper's overall
//! aggregation was not found (spec §9.1); `all` here is the micro-average over every label.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tessera_data::mnist64::{Colour, Location, Triple};

/// Counts of one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub exact: usize,
    pub colour: usize,
    pub digit: usize,
    pub labels: usize,
}

/// Accuracies of one bucket, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub acc: f64,
    pub colour_acc: f64,
    pub digit_acc: f64,
    pub labels: usize,
}

/// Bucket name of a ground-truth list (spec §9.1).
pub fn bucket(gt: &[Triple]) -> &'static str {
    match gt.len() {
        0 => "empty",
        1 if gt[0].location == Location::Center => "center",
        1 => "quad1",
        2 => "quad2",
        3 => "quad3",
        _ => "quad4",
    }
}

/// Whether one segment of a generated caption is right: its (location, colour, digit) is in the
/// ground truth.
pub fn i2t_segment_right(gt: &[Triple], generated: &Triple) -> bool {
    gt.contains(generated)
}

/// Accumulated counts per bucket.
#[derive(Clone, Debug, Default)]
pub struct CaptionScores {
    buckets: BTreeMap<&'static str, Counts>,
}

impl CaptionScores {
    pub fn new() -> Self {
        Self::default()
    }

    /// T2I: `predicted[i]` is the classifier's (colour, digit) on the crop at `gt[i].location`.
    /// Returns this image's counts (for per-image intervals and records).
    pub fn add_t2i(&mut self, gt: &[Triple], predicted: &[(Colour, u8)]) -> Counts {
        assert_eq!(gt.len(), predicted.len(), "one prediction per ground-truth location");
        let mut one = Counts { labels: gt.len(), ..Counts::default() };
        for (g, &(colour, digit)) in gt.iter().zip(predicted) {
            let p = Triple { location: g.location, colour: Some(colour), digit: Some(digit) };
            one.exact += usize::from(gt.contains(&p));
            one.colour += usize::from(g.colour == Some(colour));
            one.digit += usize::from(g.digit == Some(digit));
        }
        self.add(gt, one);
        one
    }

    /// I2T: `generated` is the parse of the generated caption. Returns this image's counts.
    pub fn add_i2t(&mut self, gt: &[Triple], generated: &[Triple]) -> Counts {
        let mut one = Counts { labels: gt.len(), ..Counts::default() };
        for g in generated {
            one.exact += usize::from(i2t_segment_right(gt, g));
            if let Some(t) = gt.iter().find(|t| t.location == g.location) {
                one.colour += usize::from(g.colour.is_some() && t.colour == g.colour);
                one.digit += usize::from(g.digit.is_some() && t.digit == g.digit);
            }
        }
        self.add(gt, one);
        one
    }

    fn add(&mut self, gt: &[Triple], one: Counts) {
        let c = self.buckets.entry(bucket(gt)).or_default();
        c.exact += one.exact;
        c.colour += one.colour;
        c.digit += one.digit;
        c.labels += one.labels;
    }

    pub fn counts(&self, bucket: &str) -> Counts {
        self.buckets.get(bucket).copied().unwrap_or_default()
    }

    /// Accuracy per bucket plus `all` (micro-average).
    pub fn report(&self) -> BTreeMap<String, Accuracy> {
        let acc = |c: &Counts| {
            let d = c.labels as f64 + 1e-8;
            Accuracy {
                acc: c.exact as f64 / d,
                colour_acc: c.colour as f64 / d,
                digit_acc: c.digit as f64 / d,
                labels: c.labels,
            }
        };
        let mut out: BTreeMap<String, Accuracy> =
            self.buckets.iter().map(|(k, c)| (k.to_string(), acc(c))).collect();
        let mut all = Counts::default();
        for c in self.buckets.values() {
            all.exact += c.exact;
            all.colour += c.colour;
            all.digit += c.digit;
            all.labels += c.labels;
        }
        out.insert("all".into(), acc(&all));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_data::mnist64::parse_caption;

    #[test]
    fn image_to_text_on_hand_made_captions() {
        let mut s = CaptionScores::new();
        let gt = parse_caption("the upper left is red 3, the lower right is blue 7");
        // Right digit at the right place in the right colour; the second has a wrong colour.
        s.add_i2t(&gt, &parse_caption("upper left is red 3, lower right is green 7"));
        assert_eq!(s.counts("quad2"), Counts { exact: 1, colour: 1, digit: 2, labels: 2 });
        // A single centre digit, generated at a quadrant: nothing counts.
        let gt = parse_caption("this is white 0");
        s.add_i2t(&gt, &parse_caption("the upper right is white 0"));
        assert_eq!(s.counts("center"), Counts { exact: 0, colour: 0, digit: 0, labels: 1 });
        let r = s.report();
        assert!((r["quad2"].acc - 0.5).abs() < 1e-6 && (r["quad2"].digit_acc - 1.0).abs() < 1e-6);
        assert!((r["all"].acc - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn text_to_image_on_hand_made_predictions() {
        let mut s = CaptionScores::new();
        let gt = parse_caption("upper left red 3, upper right green 1, lower left blue 2");
        s.add_t2i(&gt, &[(Colour::Red, 3), (Colour::Green, 7), (Colour::White, 2)]);
        assert_eq!(s.counts("quad3"), Counts { exact: 1, colour: 2, digit: 2, labels: 3 });
        let gt = parse_caption("the lower right is white 5");
        s.add_t2i(&gt, &[(Colour::White, 5)]);
        assert_eq!(s.counts("quad1"), Counts { exact: 1, colour: 1, digit: 1, labels: 1 });
        assert!((s.report()["all"].acc - 0.5).abs() < 1e-6);
    }
}
