//! Durations as the config file spells them: a bare integer is seconds (as in
//! PgBouncer's config), a string carries a unit (`"250ms"`, `"5s"`, `"10m"`, `"1h"`).
//! Every timeout setting goes through here so they all accept the same forms.

use std::time::Duration;

use thiserror::Error;

/// Why a duration could not be read. Shown after the key name, so it does not repeat it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("must not be negative")]
    Negative,
    #[error("is too large")]
    TooLarge,
    #[error("must be a whole number followed by a unit (ms, s, m or h), like \"5s\"")]
    Malformed,
    #[error(
        "needs a unit (ms, s, m or h), like \"{0}s\"; a bare integer without quotes means seconds"
    )]
    MissingUnit(u64),
}

/// Reads a duration string: digits followed by `ms`, `s`, `m` or `h`, or just `"0"`.
///
/// A unitless number other than zero is refused rather than guessed at, because
/// quoting it suggests the writer meant something other than plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(DurationError::Malformed);
    }
    let amount: u64 = digits.parse().map_err(|_| DurationError::TooLarge)?;
    let millis_per_unit: u64 = match unit {
        "" if amount == 0 => 0,
        "" => return Err(DurationError::MissingUnit(amount)),
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(DurationError::Malformed),
    };
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or(DurationError::TooLarge)
}

/// Reads a bare TOML integer, which means whole seconds.
pub fn duration_from_seconds(seconds: i64) -> Result<Duration, DurationError> {
    u64::try_from(seconds)
        .map(Duration::from_secs)
        .map_err(|_| DurationError::Negative)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn integers_are_seconds() {
        assert_eq!(duration_from_seconds(15), Ok(Duration::from_secs(15)));
        assert_eq!(duration_from_seconds(0), Ok(Duration::ZERO));
        assert_eq!(duration_from_seconds(-1), Err(DurationError::Negative));
    }

    #[test]
    fn refuses_bad_strings() {
        assert_eq!(parse_duration("-5s"), Err(DurationError::Negative));
        assert_eq!(parse_duration("15"), Err(DurationError::MissingUnit(15)));
        for bad in ["", "s", "5 s", "5sec", "1.5s", "5d", " 5s", "5S"] {
            assert_eq!(
                parse_duration(bad),
                Err(DurationError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::TooLarge)
        );
        assert_eq!(
            parse_duration("18446744073709551615h"),
            Err(DurationError::TooLarge)
        );
    }
}
