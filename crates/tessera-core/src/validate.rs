//! Range checks for config values, run when a config is resolved ([`crate::ConfigSource::load`]).
//!
//! Every config struct implements [`Validate`]: it names each numeric key with its allowed range,
//! and [`Check`] collects every violation so one run reports all bad keys at once, each as
//! `[section] key = value: allowed lo ..= hi (why)`. Upper bounds are there so that no value a user
//! can type allocates without limit or overflows a step counter; they are far above any preset.

use std::fmt::Display;

/// The largest step count or interval a loop accepts (10^12 steps; larger would overflow nothing,
/// but no run can reach it, so it is a typo).
pub const MAX_STEPS: i64 = 1_000_000_000_000;
/// The largest batch, in images or sequences.
pub const MAX_BATCH: usize = 65_536;
/// The largest loss weight (weights are ratios; a larger one only turns the loss into inf).
pub const MAX_WEIGHT: f64 = 1e4;
/// The largest count of images a data set, cache or evaluation may ask for.
pub const MAX_IMAGES: usize = 10_000_000;

/// A config struct that knows the allowed range of each of its keys.
pub trait Validate {
    /// Record every out-of-range key of `self` in `c` (section names come from the caller).
    fn check(&self, c: &mut Check);

    /// All problems of `self`, one per line, or Ok.
    fn validate(&self) -> Result<(), String> {
        let mut c = Check::default();
        self.check(&mut c);
        c.finish()
    }
}

/// All problems of `value` checked as the section `name` (`[name] key = …`), or Ok.
pub fn validate_section(name: &str, value: &dyn Validate) -> Result<(), String> {
    let mut c = Check::default();
    c.section(name, value);
    c.finish()
}

/// Collects the problems of one config, with the section each key lives in.
#[derive(Debug, Default)]
pub struct Check {
    path: Vec<String>,
    problems: Vec<String>,
}

impl Check {
    /// Check `value` as the section `name` (nested under the current one).
    pub fn section(&mut self, name: &str, value: &dyn Validate) {
        self.path.push(name.to_string());
        value.check(self);
        self.path.pop();
    }

    fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("[{}] {key}", self.path.join("."))
        }
    }

    /// Record a problem with `key` unless `ok`. A message that starts with `=` (the value) follows
    /// the key directly: `[s] key = 3: …`; any other follows a colon: `[s] key: …`.
    pub fn rule(&mut self, ok: bool, key: &str, message: impl Display) {
        if !ok {
            let (k, m) = (self.key(key), message.to_string());
            let sep = if m.starts_with('=') { " " } else { ": " };
            self.problems.push(format!("{k}{sep}{m}"));
        }
    }

    /// An integer key within `lo ..= hi`.
    pub fn int<T: PartialOrd + Display + Copy>(&mut self, key: &str, value: T, lo: T, hi: T, why: &str) {
        let ok = value >= lo && value <= hi;
        self.rule(ok, key, format_args!("= {value}: allowed {lo} ..= {hi}{}", paren(why)));
    }

    /// A finite float key within `lo ..= hi`.
    pub fn float(&mut self, key: &str, value: f64, lo: f64, hi: f64, why: &str) {
        let ok = value.is_finite() && value >= lo && value <= hi;
        self.rule(ok, key, format_args!("= {value}: allowed {lo} ..= {hi}{}", paren(why)));
    }

    /// A finite float key with `lo < value <= hi`.
    pub fn float_above(&mut self, key: &str, value: f64, lo: f64, hi: f64, why: &str) {
        let ok = value.is_finite() && value > lo && value <= hi;
        self.rule(ok, key, format_args!("= {value}: allowed above {lo}, up to {hi}{}", paren(why)));
    }

    /// A probability-like key with `0 <= value < 1`.
    pub fn unit_open(&mut self, key: &str, value: f64, why: &str) {
        let ok = value.is_finite() && (0.0..1.0).contains(&value);
        self.rule(ok, key, format_args!("= {value}: allowed 0 ..< 1{}", paren(why)));
    }

    /// A loss weight: finite, `0 ..= MAX_WEIGHT`.
    pub fn weight(&mut self, key: &str, value: f64) {
        self.float(key, value, 0.0, MAX_WEIGHT, "a loss weight");
    }

    /// All problems, one per line.
    pub fn finish(self) -> Result<(), String> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(self.problems.join("\n"))
        }
    }
}

fn paren(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Inner {
        n: i64,
        lr: f64,
    }
    impl Validate for Inner {
        fn check(&self, c: &mut Check) {
            c.int("n", self.n, 1, 10, "");
            c.float_above("lr", self.lr, 0.0, 1.0, "Adam");
        }
    }
    struct Outer {
        inner: Inner,
        p: f64,
    }
    impl Validate for Outer {
        fn check(&self, c: &mut Check) {
            c.section("inner", &self.inner);
            c.unit_open("p", self.p, "dropout");
        }
    }

    #[test]
    fn every_problem_is_named_with_its_section_and_range() {
        assert!(Outer { inner: Inner { n: 3, lr: 0.1 }, p: 0.5 }.validate().is_ok());
        let e = Outer { inner: Inner { n: 0, lr: f64::NAN }, p: 1.0 }.validate().unwrap_err();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert_eq!(lines[0], "[inner] n = 0: allowed 1 ..= 10");
        assert_eq!(lines[1], "[inner] lr = NaN: allowed above 0, up to 1 (Adam)");
        assert_eq!(lines[2], "p = 1: allowed 0 ..< 1 (dropout)");
    }

    #[test]
    fn infinities_and_bounds() {
        let bad = |lr: f64| Outer { inner: Inner { n: 1, lr }, p: 0.0 }.validate().is_err();
        assert!(bad(f64::INFINITY) && bad(0.0) && bad(1.5) && bad(-1.0));
        assert!(!bad(1.0) && !bad(1e-9));
    }
}
