//! MNIST64x64 on the real MNIST: placements, colours, captions, parser, splits, determinism,
//! the unseen rule and the translated groups.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use tessera_data::mnist64::{
    all_captions, caption, is_unseen, parse_caption, render, Colour, Location, PlacedDigit, Scene, Template,
    Triple, VOCABULARY,
};
use tessera_data::{Mnist64, Mnist64Config, Split};

fn generator(seed: u64) -> Arc<Mnist64> {
    Arc::new(Mnist64::new(common::mnist(), Mnist64Config { seed, ..Mnist64Config::default() }).unwrap())
}

#[test]
fn real_mnist_matches_published_counts_and_mean() {
    let m = common::mnist();
    assert_eq!(m.train.len(), 60_000);
    assert_eq!(m.test.len(), 10_000);
    assert_eq!(m.train.label_counts(), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    assert_eq!(m.test.label_counts(), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    assert!((m.train.pixel_mean() - 0.1307).abs() < 5e-5, "{}", m.train.pixel_mean());
    // The very first training image is a 5, as everyone who has looked at MNIST knows.
    assert_eq!(m.train.label(0), 5);
}

#[test]
fn every_placement_and_colour_paints_exactly_its_box() {
    let m = common::mnist();
    let gray = m.test.image(0);
    for location in Location::ALL {
        for colour in Colour::ALL {
            let scene = Scene {
                digits: vec![PlacedDigit { location, colour, digit: m.test.label(0), mnist_index: 0 }],
            };
            let img = render(&scene, |i| m.test.image(i));
            let (r0, c0) = location.origin();
            for y in 0..64usize {
                for x in 0..64usize {
                    let inside = (r0..r0 + 28).contains(&y) && (c0..c0 + 28).contains(&x);
                    let px = img.get_pixel(x as u32, y as u32).0;
                    if inside {
                        let g = gray[(y - r0) * 28 + (x - c0)] as u32;
                        let want = colour.rgb().map(|v| ((g * v as u32 + 127) / 255) as u8);
                        assert_eq!(px, want, "{location:?} {colour:?} at ({x},{y})");
                    } else {
                        assert_eq!(px, [0, 0, 0], "{location:?} background at ({x},{y})");
                    }
                }
            }
        }
    }
    // The boxes of spec §2.6: quadrants at 2 and 34, centre at 18.
    assert_eq!(Location::UpperRight.origin(), (2, 34));
    assert_eq!(Location::LowerLeft.origin(), (34, 2));
    assert_eq!(Location::Center.origin(), (18, 18));
}

fn triples(scene: &Scene) -> Vec<Triple> {
    scene
        .digits
        .iter()
        .map(|d| Triple { location: d.location, colour: Some(d.colour), digit: Some(d.digit) })
        .collect()
}

#[test]
fn every_template_round_trips_through_the_parser() {
    let g = generator(23);
    for split in Split::ALL {
        for i in 0..300 {
            let scene = g.scene(split, i);
            for t in Template::ALL {
                for alt in [false, true] {
                    for and_last in [false, true] {
                        let c = caption(&scene, t, alt, and_last);
                        assert_eq!(parse_caption(&c), triples(&scene), "{c}");
                    }
                }
            }
            // Distinct paraphrases: 4 templates, × 2 phrasings unless centre, × 2 joiners if 2+ digits.
            let n = scene.digits.len();
            let want = 4
                * if scene.digits[0].location == Location::Center { 1 } else { 2 }
                * if n > 1 { 2 } else { 1 };
            assert_eq!(all_captions(&scene).len(), want);
        }
    }
}

#[test]
fn captions_use_only_the_original_vocabulary() {
    let g = generator(5);
    let mut seen_words = HashSet::new();
    for i in 0..500 {
        for c in all_captions(&g.scene(Split::Train, i)) {
            for w in
                c.split(|ch: char| ch.is_whitespace() || ch == ',' || ch == '.').filter(|w| !w.is_empty())
            {
                let ok = VOCABULARY.contains(&w) || (w.len() == 1 && w.as_bytes()[0].is_ascii_digit());
                assert!(ok, "word `{w}` in `{c}` is outside the vocabulary of spec §2.6");
                seen_words.insert(w.to_string());
            }
        }
    }
    assert!(seen_words.contains("bottom") && seen_words.contains("upper") && seen_words.contains("and"));
}

#[test]
fn same_seed_same_data_other_seed_other_data() {
    let (a, b, c) = (generator(1), generator(1), generator(2));
    let mut differ = 0;
    for i in 0..50 {
        assert_eq!(a.scene(Split::Train, i), b.scene(Split::Train, i));
        assert_eq!(a.sample(Split::Validation, i).image, b.sample(Split::Validation, i).image);
        differ += (a.scene(Split::Train, i) != c.scene(Split::Train, i)) as usize;
    }
    assert!(differ > 40, "only {differ} of 50 scenes changed with the seed");
    // Splits are independent streams: the same index gives different scenes.
    assert_ne!(a.scene(Split::Validation, 0), a.scene(Split::Test, 0));
}

#[test]
fn scenes_have_one_to_four_digits_in_distinct_places() {
    let g = generator(23);
    let mut counts = [0usize; 5];
    let mut centre = 0;
    for i in 0..2000 {
        let s = g.scene(Split::Train, i);
        let n = s.digits.len();
        counts[n] += 1;
        let locs: HashSet<_> = s.digits.iter().map(|d| d.location).collect();
        assert_eq!(locs.len(), n);
        if locs.contains(&Location::Center) {
            assert_eq!(n, 1, "the centre is only used for single digits");
            centre += 1;
        }
        let m = common::mnist();
        assert!(s.digits.iter().all(|d| m.train.label(d.mnist_index) == d.digit));
    }
    assert_eq!(counts[0], 0);
    assert!(counts[1..].iter().all(|&c| c > 400), "{counts:?}");
    assert!(centre > 50, "{centre}");
}

#[test]
fn splits_draw_from_disjoint_mnist_images() {
    let g = generator(23);
    let used = |split: Split| -> HashSet<usize> {
        (0..2000).flat_map(|i| g.scene(split, i).digits.into_iter().map(|d| d.mnist_index)).collect()
    };
    let (val, test, unseen) = (used(Split::Validation), used(Split::Test), used(Split::TestUnseen));
    assert!(val.iter().all(|&i| i < 5000));
    assert!(test.iter().chain(unseen.iter()).all(|&i| (5000..10000).contains(&i)));
    assert!(val.is_disjoint(&test));
    // Train indexes MNIST *train*, which no other split touches.
    assert!(
        std::ptr::eq(g.source(Split::Train).0, &common::mnist().train)
            || g.source(Split::Train).0.len() == 60_000
    );
    assert_eq!(g.source(Split::Validation).0.len(), 10_000);
}

#[test]
fn unseen_pairs_never_in_train_and_always_in_test_unseen() {
    let g = generator(23);
    let has_unseen = |s: &Scene| s.digits.iter().any(|d| is_unseen(d.digit, d.colour));
    for i in 0..20_000 {
        assert!(!has_unseen(&g.scene(Split::Train, i)), "train image {i} shows an unseen pair");
    }
    for split in [Split::Validation, Split::Test] {
        assert!((0..2000).all(|i| !has_unseen(&g.scene(split, i))));
    }
    assert!((0..2000).all(|i| has_unseen(&g.scene(Split::TestUnseen, i))));
    // The rule itself: 10 of the 40 pairs, one colour per digit, every colour held out somewhere.
    let held: Vec<(u8, Colour)> = (0..10)
        .flat_map(|d| Colour::ALL.into_iter().map(move |c| (d, c)))
        .filter(|&(d, c)| is_unseen(d, c))
        .collect();
    assert_eq!(held.len(), 10);
    assert_eq!(held[0], (0, Colour::White));
    assert_eq!(held[3], (3, Colour::Blue));
}

#[test]
fn translated_groups_are_one_digit_shifted_to_five_places() {
    let g = generator(23);
    for group in 0..20 {
        let scenes = g.translated_group(group);
        let imgs = g.translated_images(group);
        let d0 = scenes[0].digits[0];
        for (k, s) in scenes.iter().enumerate() {
            assert_eq!(s.digits.len(), 1);
            let d = s.digits[0];
            assert_eq!(d.location, Location::ALL[k], "order is [CEN, UL, UR, LL, LR]");
            assert_eq!((d.colour, d.digit, d.mnist_index), (d0.colour, d0.digit, d0.mnist_index));
        }
        // The centre image is the upper-left one shifted by exactly 16 px.
        for y in 0..28 {
            for x in 0..28 {
                assert_eq!(imgs[0].get_pixel(18 + x, 18 + y), imgs[1].get_pixel(2 + x, 2 + y));
                assert_eq!(imgs[1].get_pixel(2 + x, 2 + y), imgs[4].get_pixel(34 + x, 34 + y));
            }
        }
    }
}
