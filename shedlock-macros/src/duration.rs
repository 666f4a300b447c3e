//! Duration strings of the attribute (`"30s"`, `"1h 30m"`, `"PT30S"`), parsed at compile time.

use std::time::Duration;

/// What the error messages show as accepted forms.
const EXAMPLES: &str = "write a humantime duration such as \"30s\", \"5m\", \"1h 30m\", \"500ms\", \
                        or an ISO-8601 duration such as \"PT30S\", \"PT1H30M\", \"PT0.5S\", \"P1D\"";

/// Parses `text` as an ISO-8601 duration when it starts with `P` (ShedLock's
/// `lockAtMostFor = "PT30S"`), otherwise as a humantime duration.
///
/// The error is a complete message for the user.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let parsed = if trimmed.is_empty() {
        Err("it is empty".to_owned())
    } else if trimmed.starts_with(['P', 'p']) {
        parse_iso8601(trimmed)
    } else {
        humantime::parse_duration(trimmed).map_err(|err| err.to_string())
    };
    parsed.map_err(|reason| format!("invalid duration {text:?} ({reason}): {EXAMPLES}"))
}

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// `PnDTnHnMnS` as `java.time.Duration` reads it, plus weeks (`PnW`); any
/// letter may be lowercase, and the last number may have a fraction (`PT0.5S`,
/// `PT1,5H`). Years and months are refused: they have no fixed length.
fn parse_iso8601(text: &str) -> Result<Duration, String> {
    let upper = text.to_ascii_uppercase();
    let rest = upper
        .strip_prefix('P')
        .ok_or_else(|| "an ISO-8601 duration starts with `P`".to_owned())?;
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    let mut components = parse_components(date, &[('W', 7 * 86_400), ('D', 86_400)])?;
    if let Some(time) = time {
        if time.is_empty() {
            return Err("`T` must be followed by hours, minutes or seconds".to_owned());
        }
        components.extend(parse_components(
            time,
            &[('H', 3_600), ('M', 60), ('S', 1)],
        )?);
    }
    if components.is_empty() {
        return Err("it has no number of days, hours, minutes or seconds".to_owned());
    }
    let last = components.len() - 1;
    let mut total_nanos: u128 = 0;
    for (index, component) in components.iter().enumerate() {
        if component.fraction.is_some() && index != last {
            return Err("only the last number may have a fraction".to_owned());
        }
        total_nanos = total_nanos
            .checked_add(component.nanos()?)
            .ok_or_else(too_long)?;
    }
    let secs = u64::try_from(total_nanos / NANOS_PER_SECOND).map_err(|_| too_long())?;
    // The remainder is below one second, so it fits in u32.
    let nanos = u32::try_from(total_nanos % NANOS_PER_SECOND).map_err(|_| too_long())?;
    Ok(Duration::new(secs, nanos))
}

fn too_long() -> String {
    "it is too long".to_owned()
}

/// One `<number><unit>` of an ISO-8601 duration.
struct Component<'a> {
    whole: &'a str,
    fraction: Option<&'a str>,
    unit_seconds: u128,
}

impl Component<'_> {
    fn nanos(&self) -> Result<u128, String> {
        let unit_nanos = self.unit_seconds * NANOS_PER_SECOND;
        let whole: u128 = self.whole.parse().map_err(|_| too_long())?;
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_long)?;
        if let Some(fraction) = self.fraction {
            // At most 9 digits, so 10^len divides unit_nanos and the result is exact.
            let digits = u32::try_from(fraction.len()).map_err(|_| too_long())?;
            let value: u128 = fraction.parse().map_err(|_| too_long())?;
            nanos = nanos
                .checked_add(value * unit_nanos / 10u128.pow(digits))
                .ok_or_else(too_long)?;
        }
        Ok(nanos)
    }
}

/// Reads `<number><unit>` pairs from `text`, whose units must come from
/// `units` (letter, seconds), in that order, each at most once.
fn parse_components<'a>(
    text: &'a str,
    units: &[(char, u128)],
) -> Result<Vec<Component<'a>>, String> {
    let mut components = Vec::new();
    let mut rest = text;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
            .ok_or_else(|| format!("`{rest}` has no unit letter after the number"))?;
        let (number, after) = rest.split_at(number_len);
        let mut chars = after.chars();
        let unit = chars.next().unwrap_or_default();
        rest = chars.as_str();
        let (whole, fraction) = match number.split_once(['.', ',']) {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (number, None),
        };
        let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if number.is_empty() {
            return Err(format!("expected a number before `{unit}`"));
        }
        if !is_digits(whole) || fraction.is_some_and(|f| !is_digits(f)) {
            return Err(format!(
                "expected a number before `{unit}`, found `{number}`"
            ));
        }
        if fraction.is_some_and(|f| f.len() > 9) {
            return Err("a fraction has at most 9 digits (nanoseconds)".to_owned());
        }
        let (position, &(_, unit_seconds)) = units
            .get(next_unit..)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .find(|(_, (letter, _))| *letter == unit)
            .ok_or_else(|| unexpected_unit(unit, units))?;
        next_unit += position + 1;
        components.push(Component {
            whole,
            fraction,
            unit_seconds,
        });
    }
    Ok(components)
}

fn unexpected_unit(unit: char, units: &[(char, u128)]) -> String {
    let in_time = units.iter().any(|&(letter, _)| letter == 'H');
    match unit {
        'Y' if !in_time => "years have no fixed length; use days, e.g. P365D".to_owned(),
        'M' if !in_time => {
            "months have no fixed length; use days (P30D), or minutes after `T` (PT30M)".to_owned()
        }
        'H' | 'S' if !in_time => format!("`{unit}` belongs after `T`, e.g. PT1{unit}"),
        'D' | 'W' if in_time => format!("`{unit}` belongs before `T`, e.g. P1{unit}"),
        _ => {
            let expected: Vec<String> = units.iter().map(|(l, _)| format!("`{l}`")).collect();
            format!(
                "unexpected `{unit}`: expected {}, in that order, each at most once",
                expected.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Duration {
        match parse_duration(text) {
            Ok(duration) => duration,
            Err(message) => panic!("{text:?} was rejected: {message}"), // allow-panic: test helper
        }
    }

    fn rejected(text: &str) -> String {
        match parse_duration(text) {
            Ok(duration) => panic!("{text:?} was accepted as {duration:?}"), // allow-panic: test helper
            Err(message) => message,
        }
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn humantime_forms() {
        assert_eq!(ok("30s"), 30 * SEC);
        assert_eq!(ok("5m"), 300 * SEC);
        assert_eq!(ok("1h 30m"), 5_400 * SEC);
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("2days"), 2 * 86_400 * SEC);
        assert_eq!(ok(" 10s "), 10 * SEC);
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn iso8601_forms() {
        assert_eq!(ok("PT30S"), 30 * SEC);
        assert_eq!(ok("PT1H30M"), 5_400 * SEC);
        assert_eq!(ok("PT0.5S"), Duration::from_millis(500));
        assert_eq!(ok("PT0,25S"), Duration::from_millis(250));
        assert_eq!(ok("P1D"), 86_400 * SEC);
        assert_eq!(ok("P1DT2H"), 93_600 * SEC);
        assert_eq!(ok("P2W"), 14 * 86_400 * SEC);
        assert_eq!(ok("PT1.5H"), 5_400 * SEC);
        assert_eq!(ok("PT1H2M3.000000004S"), Duration::new(3_723, 4));
        assert_eq!(ok("PT0S"), Duration::ZERO);
    }

    #[test]
    fn iso8601_is_case_insensitive() {
        assert_eq!(ok("pt30s"), 30 * SEC);
        assert_eq!(ok("p1dT2h"), 93_600 * SEC);
    }

    #[test]
    fn rejects_garbage_with_examples() {
        for text in ["", "  ", "soon", "30", "30 parsecs", "-5s"] {
            let message = rejected(text);
            assert!(message.contains("\"30s\""), "{message}");
            assert!(message.contains("\"PT30S\""), "{message}");
        }
    }

    #[test]
    fn rejects_malformed_iso8601() {
        for text in [
            "P",
            "PT",
            "P1",
            "PT5",
            "PTS",
            "PT1.S",
            "PT.5S",
            "PT1S2M",
            "PT1M1M",
            "P1H",
            "PT1D",
            "P1DT",
            "PT-5S",
            "PT1.5M30S",
            "PT0.1234567891S",
            "P1X",
        ] {
            rejected(text);
        }
    }

    #[test]
    fn rejects_years_and_months_with_a_reason() {
        assert!(rejected("P1Y").contains("years have no fixed length"));
        assert!(rejected("P1M").contains("months have no fixed length"));
    }

    #[test]
    fn rejects_durations_that_overflow() {
        assert!(rejected("PT99999999999999999999999999999999999999999S").contains("too long"));
        assert!(rejected("P999999999999999999999D").contains("too long"));
    }
}
