//! The caption parser of Bi-directional DALL-E's `MnistLabelParser` (spec §9.1), used to score
//! image→text output and to read ground truth for text→image.
//!
//! A caption is split on `,`. In each segment: location = the first of `upper left|top left` (1),
//! `upper right|top right` (2), `lower left|bottom left` (3), `lower right|bottom right` (4) that
//! occurs, else the centre (0); colour = the first of white, red, green, blue (checked in that order)
//! that occurs, else none (−101 in the original); digit = the **smallest** digit whose character
//! occurs anywhere in the segment (the original's `get_number_index` loops `for i in range(10)`),
//! else none (−102). Segments with no letters or digits at all (e.g. after a trailing comma) are
//! skipped.

use super::layout::{Colour, Location};

/// One parsed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Triple {
    pub location: Location,
    pub colour: Option<Colour>,
    pub digit: Option<u8>,
}

const LOCATION_PHRASES: [(Location, [&str; 2]); 4] = [
    (Location::UpperLeft, ["upper left", "top left"]),
    (Location::UpperRight, ["upper right", "top right"]),
    (Location::LowerLeft, ["lower left", "bottom left"]),
    (Location::LowerRight, ["lower right", "bottom right"]),
];

/// Parse one segment.
pub fn parse_segment(segment: &str) -> Triple {
    let s = segment.to_lowercase();
    let location = LOCATION_PHRASES
        .iter()
        .find(|(_, phrases)| phrases.iter().any(|p| s.contains(p)))
        .map_or(Location::Center, |(l, _)| *l);
    let colour = Colour::ALL.into_iter().find(|c| s.contains(c.name()));
    let digit = (0..10u8).find(|d| s.contains(char::from(b'0' + d)));
    Triple { location, colour, digit }
}

/// Parse a whole caption into its triples, in order.
pub fn parse_caption(caption: &str) -> Vec<Triple> {
    caption.split(',').filter(|seg| seg.chars().any(|c| c.is_alphanumeric())).map(parse_segment).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hand_written_captions() {
        let t = parse_caption("Red 3 on the upper left, and the bottom right number is blue 7.");
        assert_eq!(
            t,
            vec![
                Triple { location: Location::UpperLeft, colour: Some(Colour::Red), digit: Some(3) },
                Triple { location: Location::LowerRight, colour: Some(Colour::Blue), digit: Some(7) },
            ]
        );
        assert_eq!(
            parse_caption("this is green 0.")[0],
            Triple { location: Location::Center, colour: Some(Colour::Green), digit: Some(0) }
        );
        // Missing pieces are None, like the original's -101 / -102.
        assert_eq!(
            parse_caption("on the top right")[0],
            Triple { location: Location::UpperRight, colour: None, digit: None }
        );
        assert!(parse_caption(" , .").is_empty());
        // Priority rules: colour checked in order white, red, green, blue; the smallest digit.
        assert_eq!(parse_segment("blue red 12").colour, Some(Colour::Red));
        assert_eq!(parse_segment("blue red 12").digit, Some(1));
        // Two digits in one segment: the original takes the smallest, not the first.
        assert_eq!(parse_segment("red 7 3 on the upper left").digit, Some(3));
        assert_eq!(parse_segment("blue 94").digit, Some(4));
        assert_eq!(parse_segment("the lower right number is green 80").digit, Some(0));
        // Location by priority, not by position in the text.
        assert_eq!(parse_segment("lower right upper left").location, Location::UpperLeft);
    }
}
