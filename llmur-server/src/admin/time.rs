//! Timestamps on the wire: RFC 3339 UTC strings from Unix milliseconds, and invite
//! validities such as `"30d"`.
//!
//! Owns: [`rfc3339`] and [`parse_validity`]. Must not touch: clocks — callers pass "now".

use llmur_core::store::types::Millis;

/// `2024-05-06T07:08:09.123Z` for a Unix time in milliseconds (UTC, proleptic Gregorian).
pub(crate) fn rfc3339(t: Millis) -> String {
    let ms = t.0;
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Milliseconds in a validity such as `"30d"`, `"2h"`, `"15m"`, `"1w"` or `"90s"`: a
/// positive integer and one unit. `None` when malformed, zero or absurdly long.
pub(crate) fn parse_validity(text: &str) -> Option<i64> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let number: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let per_unit: i64 = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 604_800_000,
        _ => return None,
    };
    // At most ten years: longer is a typo, and no expiry is spelled by leaving it out.
    let ms = number.checked_mul(per_unit)?;
    (number > 0 && ms <= 3_650 * 86_400_000).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(Millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(Millis(951_782_400_000)), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339(Millis(1_715_000_000_123)),
            "2024-05-06T12:53:20.123Z"
        );
        assert_eq!(rfc3339(Millis(-1)), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            rfc3339(Millis(4_102_444_799_000)),
            "2099-12-31T23:59:59.000Z"
        );
    }

    #[test]
    fn parses_validities() {
        assert_eq!(parse_validity("30d"), Some(30 * 86_400_000));
        assert_eq!(parse_validity("2h"), Some(7_200_000));
        assert_eq!(parse_validity("15m"), Some(900_000));
        assert_eq!(parse_validity("1w"), Some(604_800_000));
        assert_eq!(parse_validity("90s"), Some(90_000));
        for bad in [
            "",
            "d",
            "0d",
            "-1d",
            "1y",
            "1.5h",
            "abc",
            "99999999999w",
            "1é",
        ] {
            assert_eq!(parse_validity(bad), None, "{bad}");
        }
    }
}
