//! The function's settings, from its environment ([`crate::env`] names every variable). The
//! partners are required: `SFTP_FORWARD_PARTNERS` (several, or one with a key prefix) or
//! `SFTP_FORWARD_SECRET_ID` (the single partner of a stack, every key its). Tools that run the core
//! without a function environment (the CLI) build them with [`Settings::new`].

use std::net::IpAddr;
use std::time::Duration;

use forward::Tuning;

use crate::check::{EchoUrl, EgressProbe};
use crate::env;
use crate::routing::Routing;

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Key prefix → partner (its secret, route and overwrite policy): `SFTP_FORWARD_PARTNERS`, or
    /// the single partner of `SFTP_FORWARD_SECRET_ID`, `SFTP_FORWARD_REMOTE_PATH_TEMPLATE`,
    /// `SFTP_FORWARD_STRIP_PREFIX` and `SFTP_FORWARD_OVERWRITE`.
    pub routing: Routing,
    /// How long a fetched secret is trusted before it is read again (`SFTP_FORWARD_SECRET_TTL_SECS`, 300).
    pub secret_ttl: Duration,
    /// Records are not started with less than this much invocation time left
    /// (`SFTP_FORWARD_MIN_TIME_LEFT_SECS`, 20); they fail as transient and are retried.
    pub min_time_left: Duration,
    /// Every record is stopped this long before the invocation's deadline
    /// (`SFTP_FORWARD_DEADLINE_MARGIN_SECS`, 3, from 1 to 60): its first half closes the interrupted
    /// transfer (removing a temporary file that cannot be resumed), progress of a resumable one is
    /// recorded on the object by a sixth of the margin before the deadline, the rest sends the
    /// response.
    pub deadline_margin: Duration,
    /// Network bounds for the partner connection.
    pub tuning: Tuning,
    /// The public IPs the partner allowlists (`SFTP_FORWARD_EXPECTED_EGRESS_IPS`, comma-separated),
    /// used by the egress self-check.
    pub expected_egress_ips: Vec<IpAddr>,
    /// The IP-echo service the self-check asks for this path's public IP
    /// (`SFTP_FORWARD_EGRESS_ECHO_URL`, `https://checkip.amazonaws.com/`).
    pub egress_echo_url: EchoUrl,
    /// Where each record's outcome is published as an EventBridge event (`SFTP_FORWARD_EVENTS`:
    /// `default`, the default, another bus's name or ARN, or `off`); see [`crate::events`].
    pub events: Events,
    /// The SQS queue's `maxReceiveCount` (`SFTP_FORWARD_MAX_RECEIVE_COUNT`, set by the
    /// provisioner): a transient failure of a message received this many times goes to the
    /// dead-letter queue, and its event says the delivery gave up. Unset: no gave-up events.
    pub max_receive_count: Option<u32>,
}

/// `SFTP_FORWARD_EVENTS`: where delivery events go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Events {
    /// No events.
    Off,
    /// PutEvents to this bus (`default`, a name or an ARN).
    Bus(String),
}

/// A setting that cannot be used; names the variable.
#[derive(Debug, thiserror::Error)]
#[error("setting {var}: {problem}")]
pub struct SettingsError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong and what to do.
    pub problem: String,
}

impl Settings {
    /// Read settings through `get` (the process environment in `main`, a map in tests).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let routing = routing(&get)?;
        Settings::with_routing(routing, &get)
    }

    /// The settings of a function environment with nothing set but its partners: what the CLI
    /// runs with.
    pub fn new(routing: Routing) -> Settings {
        Settings::with_routing(routing, &|_| None).expect("the defaults are valid")
    }

    /// Every setting but the partners, through `get` (values trimmed, empty ones left out).
    fn with_routing(
        routing: Routing,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let err = |var, problem: String| SettingsError { var, problem };
        let secs = |var: &'static str, default: u64| -> Result<Duration, SettingsError> {
            match get(var) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .parse()
                    .map(Duration::from_secs)
                    .map_err(|_| err(var, format!("{v:?} is not a whole number of seconds"))),
            }
        };
        let expected_egress_ips = match get(env::EXPECTED_EGRESS_IPS) {
            None => Vec::new(),
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse().map_err(|_| {
                        err(
                            env::EXPECTED_EGRESS_IPS,
                            format!("{s:?} is not an IP address"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let egress_echo_url = match get(env::EGRESS_ECHO_URL) {
            None => EchoUrl::default(),
            Some(v) => v.parse().map_err(|e: crate::check::EchoUrlError| {
                err(
                    env::EGRESS_ECHO_URL,
                    format!("{e}; give the URL of a service that answers a GET with the caller's IP as text"),
                )
            })?,
        };
        let stripes = match get(env::PARALLELISM) {
            None => Tuning::default().stripes,
            Some(v) => v.parse().ok().filter(|k| (1..=16).contains(k)).ok_or_else(|| {
                err(
                    env::PARALLELISM,
                    format!("{v:?} is not a whole number from 1 to 16 (SFTP channels per large file)"),
                )
            })?,
        };
        let deadline_margin = match get(env::DEADLINE_MARGIN_SECS) {
            None => Duration::from_secs(3),
            Some(v) => v
                .parse()
                .ok()
                .filter(|s| (1..=60).contains(s))
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    err(
                        env::DEADLINE_MARGIN_SECS,
                        format!("{v:?} is not a whole number of seconds from 1 to 60 (time kept before the invocation's deadline to stop a record, clean up and answer)"),
                    )
                })?,
        };
        let events = match get(env::EVENTS).as_deref() {
            None => Events::Bus("default".into()),
            Some("off") => Events::Off,
            Some(bus) if valid_bus(bus) => Events::Bus(bus.to_owned()),
            Some(bus) => {
                return Err(err(
                    env::EVENTS,
                    format!("{bus:?} is not `off`, `default`, an event bus name ([A-Za-z0-9._-/], at most 256) or an event bus ARN"),
                ))
            }
        };
        let max_receive_count = match get(env::MAX_RECEIVE_COUNT) {
            None => None,
            Some(v) => Some(v.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                err(
                    env::MAX_RECEIVE_COUNT,
                    format!("{v:?} is not a whole number from 1 to 1000 (the queue's maxReceiveCount)"),
                )
            })?),
        };
        let tuning = Tuning {
            connect_timeout: secs(env::CONNECT_TIMEOUT_SECS, 10)?,
            request_timeout: secs(env::REQUEST_TIMEOUT_SECS, 30)?,
            stripes,
            ..Tuning::default()
        };
        Ok(Settings {
            routing,
            secret_ttl: secs(env::SECRET_TTL_SECS, 300)?,
            min_time_left: secs(env::MIN_TIME_LEFT_SECS, 20)?,
            deadline_margin,
            tuning,
            expected_egress_ips,
            egress_echo_url,
            events,
            max_receive_count,
        })
    }

    /// What the egress self-check compares with: the echo service, the expected IPs, and the
    /// connect timeout as the bound on the whole GET.
    pub fn egress_probe(&self) -> EgressProbe {
        EgressProbe {
            echo_url: self.egress_echo_url.clone(),
            expected: self.expected_egress_ips.clone(),
            timeout: self.tuning.connect_timeout,
        }
    }
}

/// The partners: `SFTP_FORWARD_PARTNERS`, or the single partner of `SFTP_FORWARD_SECRET_ID` and
/// its route settings; never both.
fn routing(get: &dyn Fn(&str) -> Option<String>) -> Result<Routing, SettingsError> {
    let single = [
        env::SECRET_ID,
        env::REMOTE_PATH_TEMPLATE,
        env::STRIP_PREFIX,
        env::OVERWRITE,
    ];
    if let Some(json) = get(env::PARTNERS) {
        if let Some(var) = single.into_iter().find(|v| get(v).is_some()) {
            return Err(SettingsError {
                var,
                problem: format!(
                    "cannot be set beside {}: give the partner's secret and route in its {} entry instead",
                    env::PARTNERS,
                    env::PARTNERS
                ),
            });
        }
        return Routing::from_json(&json).map_err(|e| SettingsError {
            var: env::PARTNERS,
            problem: e.to_string(),
        });
    }
    let secret_id = get(env::SECRET_ID).ok_or_else(|| SettingsError {
        var: env::SECRET_ID,
        problem: format!(
            "is required: the name or ARN of the Secrets Manager secret holding the partner connection (or set {} for several partners)",
            env::PARTNERS
        ),
    })?;
    let template = get(env::REMOTE_PATH_TEMPLATE);
    let strip = get(env::STRIP_PREFIX);
    let overwrite = get(env::OVERWRITE);
    Routing::single(
        &secret_id,
        template.as_deref(),
        strip.as_deref(),
        overwrite.as_deref(),
    )
    .map_err(|e| SettingsError {
        var: match e.field {
            Some("overwrite") => env::OVERWRITE,
            _ => env::REMOTE_PATH_TEMPLATE,
        },
        problem: e.problem,
    })
}

/// An event bus name as EventBridge accepts it, or an event bus ARN.
fn valid_bus(bus: &str) -> bool {
    if let Some(rest) = bus.strip_prefix("arn:") {
        return rest.contains(":event-bus/") && !bus.contains(char::is_whitespace);
    }
    (1..=256).contains(&bus.len())
        && bus
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_env(|k| map.get(k).cloned())
    }

    #[test]
    fn only_the_secret_id_is_required() {
        let err = from(&[]).unwrap_err().to_string();
        assert!(
            err.contains("SFTP_FORWARD_SECRET_ID") && err.contains("required"),
            "{err}"
        );
        let s = from(&[("SFTP_FORWARD_SECRET_ID", "partner/acme")]).unwrap();
        let only = &s.routing.partners()[0];
        assert_eq!(s.routing.partners().len(), 1);
        assert_eq!(only.secret_id(), "partner/acme");
        assert_eq!(only.overwrite, forward::Overwrite::Overwrite);
        assert_eq!(only.route.map("a/b.csv").unwrap().as_str(), "a/b.csv");
        assert_eq!(s.secret_ttl, Duration::from_secs(300));
        assert_eq!(s.deadline_margin, Duration::from_secs(3));
        assert_eq!(s.events, Events::Bus("default".into()));
        assert_eq!(s.max_receive_count, None);
    }

    #[test]
    fn several_partners_come_from_one_json_variable_and_exclude_the_single_partner_ones() {
        let json = r#"[{"name":"acme","prefix":"acme/","secret_id":"sftp-forward/s/acme"},
                       {"name":"bank","prefix":"bank/","secret_id":"arn:aws:secretsmanager:eu-west-1:1:secret:b","overwrite":"fail-if-exists"}]"#;
        let s = from(&[("SFTP_FORWARD_PARTNERS", json)]).unwrap();
        assert_eq!(s.routing.names(), "acme, bank");
        assert_eq!(s.routing.partner_for("bank/x.csv"), Some(1));
        let err = from(&[
            ("SFTP_FORWARD_PARTNERS", json),
            ("SFTP_FORWARD_SECRET_ID", "x"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "SFTP_FORWARD_SECRET_ID", "{err}");
        let overlap = r#"[{"name":"a","prefix":"in/","secret_id":"s"},{"name":"b","prefix":"in/b/","secret_id":"t"}]"#;
        let err = from(&[("SFTP_FORWARD_PARTNERS", overlap)]).unwrap_err();
        assert_eq!(err.var, "SFTP_FORWARD_PARTNERS");
        assert!(err.to_string().contains("overlap"), "{err}");
        // Tools without a function environment get the same defaults.
        let new = Settings::new(s.routing.clone());
        assert_eq!(new.secret_ttl, Duration::from_secs(300));
        assert_eq!(new.events, Events::Bus("default".into()));
    }

    #[test]
    fn events_go_to_a_named_bus_or_nowhere() {
        let with = |v: &str| from(&[("SFTP_FORWARD_SECRET_ID", "x"), ("SFTP_FORWARD_EVENTS", v)]);
        assert_eq!(with("off").unwrap().events, Events::Off);
        let arn = "arn:aws:events:eu-west-1:123456789012:event-bus/audit";
        assert_eq!(with(arn).unwrap().events, Events::Bus(arn.into()));
        assert_eq!(with("audit").unwrap().events, Events::Bus("audit".into()));
        let s = from(&[
            ("SFTP_FORWARD_SECRET_ID", "x"),
            ("SFTP_FORWARD_MAX_RECEIVE_COUNT", "5"),
        ])
        .unwrap();
        assert_eq!(s.max_receive_count, Some(5));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("SFTP_FORWARD_OVERWRITE", "clobber"),
            ("SFTP_FORWARD_REMOTE_PATH_TEMPLATE", "{nope}"),
            ("SFTP_FORWARD_SECRET_TTL_SECS", "soon"),
            ("SFTP_FORWARD_PARALLELISM", "0"),
            ("SFTP_FORWARD_PARALLELISM", "many"),
            ("SFTP_FORWARD_DEADLINE_MARGIN_SECS", "0"),
            ("SFTP_FORWARD_DEADLINE_MARGIN_SECS", "61"),
            ("SFTP_FORWARD_DEADLINE_MARGIN_SECS", "2.5"),
            ("SFTP_FORWARD_EXPECTED_EGRESS_IPS", "203.0.113.7, nat-two"),
            ("SFTP_FORWARD_EGRESS_ECHO_URL", "checkip.amazonaws.com"),
            ("SFTP_FORWARD_EGRESS_ECHO_URL", "ftp://example.com/ip"),
            ("SFTP_FORWARD_EVENTS", "my bus"),
            ("SFTP_FORWARD_MAX_RECEIVE_COUNT", "0"),
        ] {
            let err = from(&[("SFTP_FORWARD_SECRET_ID", "x"), (var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
        let s = from(&[
            ("SFTP_FORWARD_SECRET_ID", "x"),
            (
                "SFTP_FORWARD_EXPECTED_EGRESS_IPS",
                "203.0.113.7, 203.0.113.8",
            ),
        ])
        .unwrap();
        assert_eq!(s.expected_egress_ips.len(), 2);
        assert_eq!(
            s.egress_echo_url.to_string(),
            crate::check::DEFAULT_ECHO_URL
        );
        let s = from(&[
            ("SFTP_FORWARD_SECRET_ID", "x"),
            ("SFTP_FORWARD_EGRESS_ECHO_URL", "http://10.0.0.5:8080/ip"),
        ])
        .unwrap();
        assert_eq!(s.egress_echo_url.to_string(), "http://10.0.0.5:8080/ip");
    }
}
