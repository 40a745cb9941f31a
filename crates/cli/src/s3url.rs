//! Argument values: `s3://bucket/key`, a send source (S3 or local file), and `--since` times.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;

/// `s3://bucket/key-or-prefix`; the key part may be empty (a whole bucket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// As typed (S3 keys are not URL-encoded here): `s3://b/a b.csv` is the key `a b.csv`.
    pub key: String,
}

impl FromStr for S3Url {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{s:?} is not an s3://bucket/key URL"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{s:?} has no bucket name"));
        }
        Ok(S3Url {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// What `send` reads: an S3 object or a local file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    S3(S3Url),
    Local(PathBuf),
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("s3://") {
            let url: S3Url = s.parse()?;
            if url.key.is_empty() || url.key.ends_with('/') {
                return Err(format!("{s:?} names no object: give s3://bucket/key"));
            }
            Ok(Source::S3(url))
        } else if s.contains("://") {
            Err(format!(
                "{s:?}: only s3:// URLs and local paths are supported"
            ))
        } else {
            Ok(Source::Local(PathBuf::from(s)))
        }
    }
}

/// `--since`: a moment, to the nanosecond (an RFC 3339 time keeps its fraction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Since(pub time::OffsetDateTime);

impl Since {
    /// Nanoseconds since the Unix epoch, as S3 times compare.
    pub fn unix_nanos(&self) -> i128 {
        self.0.unix_timestamp_nanos()
    }
}

impl FromStr for Since {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
            return Ok(Since(t));
        }
        if let Some(date) = parse_date(s) {
            return Ok(Since(date.midnight().assume_utc()));
        }
        if let Some(age) = parse_age(s) {
            let now = time::OffsetDateTime::now_utc();
            return now
                .checked_sub(
                    age.try_into()
                        .map_err(|_| format!("{s:?} is too long ago"))?,
                )
                .map(Since)
                .ok_or_else(|| format!("{s:?} is too long ago"));
        }
        Err(format!(
            "{s:?} is not a time: use RFC 3339 (2026-11-25T08:00:00Z), a date (2026-11-25, UTC midnight) or an age (45s, 90m, 6h, 2d)"
        ))
    }
}

impl std::fmt::Display for Since {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let utc = self.0.to_offset(time::UtcOffset::UTC);
        match utc.format(&Rfc3339) {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "{} s after the Unix epoch", utc.unix_timestamp()),
        }
    }
}

fn parse_date(s: &str) -> Option<time::Date> {
    let mut parts = s.splitn(3, '-');
    let year = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day = parts.next()?.parse().ok()?;
    time::Date::from_calendar_date(year, month.try_into().ok()?, day).ok()
}

fn parse_age(s: &str) -> Option<Duration> {
    let unit = s.chars().last()?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(secs)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_and_local_paths() {
        let u: S3Url = "s3://b/in/a b.csv".parse().unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("b", "in/a b.csv"));
        assert_eq!("s3://b".parse::<S3Url>().unwrap().key, "");
        assert!("s3:///k".parse::<S3Url>().is_err());
        assert!("https://b/k".parse::<Source>().is_err());
        assert!("s3://b/dir/".parse::<Source>().is_err());
        assert_eq!(
            "./x.csv".parse::<Source>().unwrap(),
            Source::Local("./x.csv".into())
        );
    }

    #[test]
    fn since_takes_rfc3339_dates_and_ages() {
        assert_eq!(
            "2026-11-25T00:00:00Z".parse::<Since>().unwrap(),
            "2026-11-25".parse::<Since>().unwrap()
        );
        // An offset and a fraction are kept, and shown in UTC.
        let t: Since = "2026-11-25T08:00:00.25+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-25T07:00:00.25Z");
        assert_eq!(t.unix_nanos() % 1_000_000_000, 250_000_000);
        let two_hours = "2h".parse::<Since>().unwrap().0;
        let expected = time::OffsetDateTime::now_utc() - Duration::from_secs(7200);
        assert!((expected - two_hours).abs() <= time::Duration::seconds(2));
        assert!("45s".parse::<Since>().is_ok());
        assert!("yesterday".parse::<Since>().is_err());
        assert!("2026-13-01".parse::<Since>().is_err());
        assert!("99999999999d".parse::<Since>().is_err());
    }
}
