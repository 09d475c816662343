//! The duration parser of `pollInterval` and `lambdaTimeout`
//! (`modelsync_api::modelsync::parse_duration`), and the controller's use of what it returns.

use std::sync::OnceLock;
use std::time::Instant;

use modelsync_api::modelsync::{DURATION_PATTERN, LONGEST_DURATION, parse_duration};
use modelsync_controller::plan::jittered;
use proptest::prelude::*;
use regex::Regex;

use crate::mutate::{self, Mutation};
use crate::target::{Target, Verdict};

pub struct Durations;

/// A duration written from parts (`1h`, `30m`, `1.5s`), padded, maybe mutated.
#[derive(Clone, Debug)]
pub struct Written {
    pub parts: Vec<(String, &'static str)>,
    pub before: &'static str,
    pub after: &'static str,
    pub mutations: Vec<Mutation>,
}

impl Written {
    fn text(&self) -> String {
        let mut text = self.before.to_string();
        for (number, unit) in &self.parts {
            text.push_str(number);
            text.push_str(unit);
        }
        text.push_str(self.after);
        mutate::apply(&text, &self.mutations)
    }
}

const TOKENS: &[&str] = &[
    "-", "+", ".", "e", "e5", "E", "µs", "us", "ns", "d", "y", "ms", "s", "m", "h", "0", "1", "١",
    " ", "_", "0x1", "inf", "NaN",
];

impl Target for Durations {
    const NAME: &'static str = "duration";
    const ABOUT: &'static str =
        "pollInterval and lambdaTimeout durations (parse_duration) and the controller's jitter";
    type Input = Written;

    fn inputs() -> BoxedStrategy<Written> {
        let number = prop_oneof![
            6 => "[0-9]{1,4}",
            3 => "[0-9]{1,3}\\.[0-9]{1,4}",
            1 => "[1-9][0-9]{8,22}",
            1 => "[0-9]{0,2}\\.?[0-9]{0,2}",
        ];
        let unit = proptest::sample::select(vec!["ms", "s", "m", "h"]);
        let pad = prop_oneof![8 => Just(""), 1 => Just(" "), 1 => Just("\t"), 1 => Just("\n")];
        let mutations = prop_oneof![2 => Just(Vec::new()), 1 => mutate::mutations(TOKENS, 3)];
        (
            proptest::collection::vec((number, unit), 0..5),
            pad.clone(),
            pad,
            mutations,
        )
            .prop_map(|(parts, before, after, mutations)| Written {
                parts,
                before,
                after,
                mutations,
            })
            .boxed()
    }

    fn check(written: &Written) -> Verdict {
        let text = written.text();
        // The parser trims, so a padded text means what the text inside says.
        let meant = schema_seconds(text.trim());
        match parse_duration(&text) {
            Ok(d) => {
                if let Some(want) = meant
                    && (d.as_secs_f64() - want).abs() > want * 1e-12 + 1e-9
                {
                    return Verdict::broken("value", format!("{text:?} read as {d:?}"));
                }
                if d > LONGEST_DURATION {
                    return Verdict::broken("range", format!("{text:?} read as {d:?}"));
                }
                // What the controller does with a poll interval: jitter it and add it to now.
                let _due = Instant::now() + jittered(d, 1.0);
                Verdict::Accepted
            }
            Err(message) => {
                if !message.contains(&format!("{text:?}")) {
                    return Verdict::broken(
                        "names",
                        format!("{message:?} does not quote {text:?}"),
                    );
                }
                let too_long = message.contains("longer than");
                let longest = LONGEST_DURATION.as_secs_f64();
                match meant {
                    Some(want) if want <= longest * 0.999 => {
                        return Verdict::broken(
                            "schema-accepted",
                            format!("{text:?} matches the CRD's pattern but: {message}"),
                        );
                    }
                    Some(want) if want > longest * 1.001 && !too_long => {
                        return Verdict::broken(
                            "says-why",
                            format!("{text:?} is too long but the message says: {message}"),
                        );
                    }
                    _ => {}
                }
                Verdict::Rejected(
                    if too_long {
                        "too_long"
                    } else {
                        "not_a_duration"
                    }
                    .into(),
                )
            }
        }
    }

    fn show(written: &Written) -> String {
        format!("text: {:?}\nbuilt from: {written:?}\n", written.text())
    }
}

/// The seconds a text matching the CRD's pattern stands for, worked out apart from the parser;
/// `None` for a text the pattern refuses.
fn schema_seconds(text: &str) -> Option<f64> {
    static PART: OnceLock<Regex> = OnceLock::new();
    if !pattern().is_match(text) {
        return None;
    }
    let part = PART.get_or_init(|| Regex::new(r"([0-9.]+)(ms|s|m|h)").expect("compiles"));
    let mut total = 0.0;
    for c in part.captures_iter(text) {
        let unit = match &c[2] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            _ => 3600.0,
        };
        total += c[1].parse::<f64>().ok()? * unit;
    }
    Some(total)
}

fn pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| Regex::new(DURATION_PATTERN).expect("the CRD's pattern compiles"))
}
