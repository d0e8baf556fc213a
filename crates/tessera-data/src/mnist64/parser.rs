//! The caption parser of Bi-directional DALL-E's `MnistLabelParser` (spec §9.1), used to score
//! image→text output and to read ground truth for text→image.
//!
//! A caption is split on `,`. In each segment: location = the first of `upper left|top left` (1),
//! `upper right|top right` (2), `lower left|bottom left` (3), `lower right|bottom right` (4) that
//! occurs, else the centre (0); colour = the first of white, red, green, blue (checked in that order)
//! that occurs, else none (−101 in the original); digit = the first character `0`–`9`, else none
//! (−102). Segments with no letters or digits at all (e.g. after a trailing comma) are skipped.

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
    let digit = s.chars().find(|c| c.is_ascii_digit()).map(|c| c as u8 - b'0');
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
        // First-match rules: colour checked in order white, red, green, blue; first digit char.
        assert_eq!(parse_segment("blue red 12").colour, Some(Colour::Red));
        assert_eq!(parse_segment("blue red 12").digit, Some(1));
    }
}
