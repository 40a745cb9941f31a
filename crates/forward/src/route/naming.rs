//! The partner's naming rules from the partner JSON: `RemotePathTemplate` (overrides the
//! function's template), `TimeZone` (of `{now}` and `{modified}`, UTC unless set) and
//! `MaxNameLength` (of the rendered file name, in characters).

use std::fmt;

use jiff::tz::{TimeZone, TimeZoneDatabase};
use serde_json::{Map, Value};

use super::{Route, RouteError, MAX_SEGMENT_BYTES};
use crate::config::ConfigError;

/// A time zone from the bundled IANA database, with the name it was asked for by.
#[derive(Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    /// UTC, the zone of a route unless the partner sets `TimeZone`.
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }

    /// The zone of an IANA name (`America/Denver`, `UTC`, case-insensitive), looked up in the
    /// database built into the binary, never in the system's `/usr/share/zoneinfo`.
    pub fn named(name: &str) -> Option<Zone> {
        let tz = TimeZoneDatabase::bundled().get(name).ok()?;
        Some(Zone {
            name: tz.iana_name().unwrap_or(name).to_owned(),
            tz,
        })
    }

    /// The IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn tz(&self) -> &TimeZone {
        &self.tz
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

/// The partner's naming rules, validated; all optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Naming {
    /// `RemotePathTemplate`: replaces the function's template (its strip prefix still applies).
    template: Option<Route>,
    /// `TimeZone`.
    zone: Option<Zone>,
    /// `MaxNameLength`.
    max_name_length: Option<usize>,
}

impl Naming {
    /// The three fields of a partner JSON object, each error naming its field.
    pub fn from_json(obj: &Map<String, Value>) -> Result<Naming, ConfigError> {
        let field = |field: &'static str, problem: String| ConfigError::Field { field, problem };
        let text = |name: &'static str| match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim())),
            Some(_) => Err(field(name, "must be a string".into())),
        };
        let template = text("RemotePathTemplate")?
            .map(|t| Route::new(t, None))
            .transpose()
            .map_err(|e| match e {
                RouteError::Template { problem, .. } => {
                    field("RemotePathTemplate", problem.to_string())
                }
                other => field("RemotePathTemplate", other.to_string()),
            })?;
        let zone = text("TimeZone")?
            .map(|name| {
                Zone::named(name).ok_or_else(|| {
                    field(
                        "TimeZone",
                        format!(
                            "{name:?} is not a time zone of the IANA database (e.g. \"America/Denver\", \"Europe/London\", \"UTC\")"
                        ),
                    )
                })
            })
            .transpose()?;
        let max_name_length = match obj.get("MaxNameLength") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n))
                if n.as_u64().is_some_and(|k| (1..=MAX_SEGMENT_BYTES as u64).contains(&k)) =>
            {
                n.as_u64().map(|k| k as usize)
            }
            Some(_) => {
                return Err(field(
                    "MaxNameLength",
                    format!("must be a whole number from 1 to {MAX_SEGMENT_BYTES} (characters in the file name)"),
                ))
            }
        };
        Ok(Naming {
            template,
            zone,
            max_name_length,
        })
    }

    /// Whether any rule is set.
    pub fn is_empty(&self) -> bool {
        *self == Naming::default()
    }

    /// The partner's template, if it sets one.
    pub fn template(&self) -> Option<&str> {
        self.template.as_ref().map(Route::template)
    }
}

impl Route {
    /// This route under the partner's naming rules: the partner's template (if set) in place of
    /// this one, keeping this route's strip prefix; the partner's time zone and name length limit.
    pub fn with_naming(&self, naming: &Naming) -> Route {
        let mut route = self.clone();
        if let Some(partner) = &naming.template {
            route.template.clone_from(&partner.template);
            route.parts.clone_from(&partner.parts);
        }
        if let Some(zone) = &naming.zone {
            route.zone = zone.clone();
        }
        if naming.max_name_length.is_some() {
            route.max_name_length = naming.max_name_length;
        }
        route
    }

    /// This route with only the partner's time zone applied (a name that is not an object's,
    /// such as a batch's control file, keeps its own template and has no length rule).
    pub fn in_zone_of(&self, naming: &Naming) -> Route {
        let mut route = self.clone();
        if let Some(zone) = &naming.zone {
            route.zone = zone.clone();
        }
        route
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    use crate::route::RouteInputs;

    fn naming(json: &str) -> Result<Naming, ConfigError> {
        let Value::Object(obj) = serde_json::from_str(json).unwrap() else {
            panic!("object")
        };
        Naming::from_json(&obj)
    }

    fn field_problem(json: &str) -> (&'static str, String) {
        match naming(json) {
            Err(ConfigError::Field { field, problem }) => (field, problem),
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn absent_fields_leave_the_route_as_it_is() {
        let n = naming("{}").unwrap();
        assert!(n.is_empty());
        let route = Route::new("in/{key}", Some("x/")).unwrap();
        assert_eq!(route.with_naming(&n), route);
        assert!(naming(r#"{"TimeZone": " ", "RemotePathTemplate": null}"#)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn partner_template_replaces_the_function_template_keeping_the_strip_prefix() {
        let n = naming(r#"{"RemotePathTemplate": "out/{basename|upper}"}"#).unwrap();
        assert_eq!(n.template(), Some("out/{basename|upper}"));
        let route = Route::new("{key}", Some("exports/"))
            .unwrap()
            .with_naming(&n);
        assert_eq!(route.template(), "out/{basename|upper}");
        assert_eq!(route.strip_prefix(), Some("exports/"));
        assert_eq!(route.map("exports/a/b.csv").unwrap().as_str(), "out/B.CSV");
    }

    #[test]
    fn time_zone_applies_to_time_fields() {
        let n = naming(r#"{"TimeZone": "america/denver"}"#).unwrap();
        let route = Route::new("{now:%Y-%m-%dT%H%z}_{basename}", None)
            .unwrap()
            .with_naming(&n);
        assert_eq!(route.zone().name(), "America/Denver");
        // 2024-01-01T03:00Z is still New Year's Eve in Denver (UTC-7 in winter).
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_078_000);
        let inputs = RouteInputs {
            now: Some(at),
            ..RouteInputs::default()
        };
        assert_eq!(
            route.render("a.csv", &inputs).unwrap().as_str(),
            "2023-12-31T20-0700_a.csv"
        );
    }

    #[test]
    fn unknown_time_zone_names_the_field() {
        let (field, problem) = field_problem(r#"{"TimeZone": "Mars/Olympus_Mons"}"#);
        assert_eq!(field, "TimeZone");
        assert!(
            problem.contains("\"Mars/Olympus_Mons\" is not a time zone"),
            "{problem}"
        );
        assert_eq!(field_problem(r#"{"TimeZone": 7}"#).0, "TimeZone");
    }

    #[test]
    fn bad_partner_template_names_the_field_and_the_placeholder() {
        let (field, problem) = field_problem(r#"{"RemotePathTemplate": "out/{now:%Y%!}"}"#);
        assert_eq!(field, "RemotePathTemplate");
        assert!(problem.contains("{now} format \"%Y%!\""), "{problem}");
        let (field, problem) = field_problem(r#"{"RemotePathTemplate": "{basenam}"}"#);
        assert_eq!(field, "RemotePathTemplate");
        assert!(
            problem.contains("unknown placeholder {basenam}"),
            "{problem}"
        );
    }

    #[test]
    fn max_name_length_is_a_whole_number_in_range() {
        let n = naming(r#"{"MaxNameLength": 12}"#).unwrap();
        let route = Route::default().with_naming(&n);
        assert_eq!(route.max_name_length(), Some(12));
        for bad in ["0", "256", "-1", "2.5", "\"12\""] {
            let (field, problem) = field_problem(&format!(r#"{{"MaxNameLength": {bad}}}"#));
            assert_eq!(field, "MaxNameLength", "{bad}");
            assert!(problem.contains("from 1 to 255"), "{problem}");
        }
    }
}
