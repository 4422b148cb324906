//! The `expires` time format of Go Notary (spec §2.3): RFC 3339 with up to nanosecond
//! precision, trailing zeros of the fraction trimmed, `Z` for a zero offset.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Why an `expires` string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 time {input:?}: {reason}")]
pub struct TimeError {
    input: String,
    reason: &'static str,
}

/// An expiry instant that keeps the signer's UTC offset, so that re-serialising a
/// parsed file reproduces Go's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Expires(OffsetDateTime);

impl Expires {
    /// Wraps a date-time; Go can only marshal years 0000-9999.
    pub fn new(at: OffsetDateTime) -> Result<Self, TimeError> {
        if !(0..=9999).contains(&at.year()) {
            return Err(TimeError {
                input: at.to_string(),
                reason: "year outside 0000-9999",
            });
        }
        Ok(Expires(at))
    }

    /// `now + ttl`, in `now`'s offset (Go uses the machine's local zone).
    pub fn after(now: OffsetDateTime, ttl: Duration) -> Result<Self, TimeError> {
        Self::new(now + ttl)
    }

    /// The instant with its original offset.
    pub fn datetime(&self) -> OffsetDateTime {
        self.0
    }

    /// Go's expiry test: expired iff `expires < now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.0 < now
    }

    /// Parses what Go 1.19's RFC 3339 parser accepts (fraction digits beyond nine are
    /// truncated as Go does).
    pub fn parse(input: &str) -> Result<Self, TimeError> {
        let err = |reason| TimeError {
            input: input.to_owned(),
            reason,
        };
        let b = input.as_bytes();
        if b.len() < 20 {
            return Err(err("too short"));
        }
        let num = |r: std::ops::Range<usize>| -> Result<u32, TimeError> {
            let s = &b[r];
            if !s.iter().all(u8::is_ascii_digit) {
                return Err(err("expected digits"));
            }
            Ok(s.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
        };
        if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return Err(err("expected YYYY-MM-DDTHH:MM:SS"));
        }
        let year = num(0..4)?;
        let month = num(5..7)?;
        let day = num(8..10)?;
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let mut i = 19;
        let mut nanos = 0u32;
        if b[i] == b'.' {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            if end == start {
                return Err(err("empty fraction"));
            }
            let digits = &b[start..end.min(start + 9)];
            nanos = digits
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
            nanos *= 10u32.pow(9 - u32::try_from(digits.len()).unwrap_or(9));
            i = end;
        }
        let offset = match &b[i..] {
            b"Z" => UtcOffset::UTC,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let h = num(i + 1..i + 3)?;
                let m = num(i + 4..i + 6)?;
                if h > 23 || m > 59 {
                    return Err(err("offset out of range"));
                }
                let (h, m) = (h as i8, m as i8);
                let (h, m) = if *sign == b'-' { (-h, -m) } else { (h, m) };
                UtcOffset::from_hms(h, m, 0).map_err(|_| err("offset out of range"))?
            }
            _ => return Err(err("expected 'Z' or a ±HH:MM offset")),
        };
        let month = u8::try_from(month)
            .ok()
            .and_then(|m| Month::try_from(m).ok())
            .ok_or_else(|| err("month out of range"))?;
        let date = Date::from_calendar_date(year as i32, month, day as u8)
            .map_err(|_| err("day out of range"))?;
        if hour > 23 || minute > 59 || second > 59 {
            return Err(err("time of day out of range"));
        }
        let tod = Time::from_hms_nano(hour as u8, minute as u8, second as u8, nanos)
            .map_err(|_| err("time of day out of range"))?;
        Ok(Expires(
            PrimitiveDateTime::new(date, tod).assume_offset(offset),
        ))
    }
}

impl fmt::Display for Expires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )?;
        let nanos = t.nanosecond();
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        let off = t.offset();
        if off.is_utc() {
            f.write_str("Z")
        } else {
            let total = off.whole_minutes();
            let sign = if total < 0 { '-' } else { '+' };
            let abs = total.unsigned_abs();
            write!(f, "{sign}{:02}:{:02}", abs / 60, abs % 60)
        }
    }
}

impl fmt::Debug for Expires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expires({self})")
    }
}

impl Serialize for Expires {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Expires {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Expires::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_go_forms() {
        for s in [
            "2036-11-19T10:04:11.789810398Z",
            "2029-11-21T10:04:42.48397463Z",
            "2029-11-21T15:37:13.063965328+05:30",
            "2026-12-06T10:04:26Z",
            "2026-12-06T10:04:26.5-07:00",
        ] {
            assert_eq!(Expires::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn normalises_like_go() {
        assert_eq!(
            Expires::parse("2026-01-01T00:00:00.000Z")
                .unwrap()
                .to_string(),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            Expires::parse("2026-01-01T00:00:00+00:00")
                .unwrap()
                .to_string(),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            Expires::parse("2026-01-01T00:00:00.1234567891Z")
                .unwrap()
                .to_string(),
            "2026-01-01T00:00:00.123456789Z"
        );
    }

    #[test]
    fn rejects() {
        for s in [
            "2026-01-01t00:00:00Z",
            "2026-01-01T00:00:00z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0530",
            "2026-01-01 00:00:00Z",
            "x",
            "",
        ] {
            assert!(Expires::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn expiry_is_strict() {
        let e = Expires::parse("2026-01-01T00:00:00Z").unwrap();
        assert!(!e.is_expired(e.datetime()));
        assert!(e.is_expired(e.datetime() + Duration::nanoseconds(1)));
    }
}
