//! The order of model ids among models made at the same instant: digit runs compare as numbers,
//! so `m10` follows `m9` and `models:/bot/10` follows `models:/bot/9`. Records written by one
//! script, or a registry that keeps whole seconds, often share `created`; ordering their ids
//! byte by byte would make `m9` newer than `m10` and hide every model after the ninth.

use std::cmp::Ordering;

/// A maximal run of digits or of non-digits.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Run<'a> {
    /// Leading zeros dropped; a longer run of significant digits is the greater number, so no
    /// number is parsed and none overflows.
    Number {
        len: usize,
        digits: &'a str,
    },
    Text(&'a str),
}

fn runs(id: &str) -> impl Iterator<Item = Run<'_>> {
    let mut rest = id;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let digit = first.is_ascii_digit();
        let end = rest
            .find(|c: char| c.is_ascii_digit() != digit)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some(if digit {
            let digits = run.trim_start_matches('0');
            Run::Number {
                len: digits.len(),
                digits,
            }
        } else {
            Run::Text(run)
        })
    })
}

/// Compares two ids, numbers within them by value. Ids equal that way (`m01` and `m1`) fall
/// back to their bytes, so the order is total and the newest model is always one and the same.
pub fn cmp(a: &str, b: &str) -> Ordering {
    runs(a).cmp(runs(b)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value_and_text_by_bytes() {
        let ascending = [
            "",
            "1",
            "2",
            "10",
            "a",
            "m",
            "m0",
            "m01",
            "m1",
            "m2",
            "m9",
            "m10",
            "m10a",
            "m10b",
            "m99",
            "m100",
            "model-2026-1",
            "model-2026-12",
            "models:/bot/9",
            "models:/bot/10",
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(cmp(a, b), i.cmp(&j), "{a:?} against {b:?}");
            }
        }
    }

    #[test]
    fn long_numbers_do_not_overflow() {
        let big = "m123456789012345678901234567890";
        let bigger = "m123456789012345678901234567891";
        assert_eq!(cmp(big, bigger), Ordering::Less);
        assert_eq!(cmp("m0000000000000000000000000009", "m10"), Ordering::Less);
    }
}
