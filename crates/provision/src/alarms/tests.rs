//! The alerting config's defaults and checks, and the alarms it asks for.

use super::*;

fn azs() -> [String; 2] {
    ["us-east-1a".into(), "us-east-1b".into()]
}

fn alerting(raw: RawAlarms, schedule: Option<&str>) -> Result<Alerting> {
    Alerting::from_raw("acme", None, Some(raw), schedule.map(str::to_owned))
}

#[test]
fn defaults_name_every_alarm_after_the_stack_with_threshold_one() {
    let a = alerting(RawAlarms::default(), None).unwrap();
    assert_eq!(a.schedule.as_deref(), Some("rate(15 minutes)"));
    let w = wanted(&a, "acme-forward", "acme-inbox-dlq", &azs());
    let names: Vec<&str> = w.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "acme-dlq-not-empty",
            "acme-function-errors",
            "acme-function-throttles",
            "acme-delivery-failures",
            "acme-host-key-untrusted",
            "acme-check-failing-one",
            "acme-check-failing-two",
            "acme-check-failing-unknown-az",
            "acme-check-not-running",
        ]
    );
    assert!(w.iter().all(|w| w.threshold == 1.0));
    let dlq = &w[0];
    assert_eq!(
        (dlq.namespace, dlq.metric, dlq.statistic),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum")
    );
    assert_eq!(dlq.dimensions, [("QueueName", "acme-inbox-dlq".to_owned())]);
    let two = &w[6];
    assert_eq!(
        two.dimensions,
        [
            ("FunctionName", "acme-forward".to_owned()),
            ("AvailabilityZone", "us-east-1b".to_owned())
        ]
    );
    assert_eq!((two.period, two.missing), (3600, Missing::NotBreaching));
    let not_running = &w[8];
    assert!(not_running.below);
    assert_eq!(
        (not_running.statistic, not_running.missing),
        ("SampleCount", Missing::Breaching)
    );
}

#[test]
fn names_and_thresholds_come_from_the_config() {
    let raw = RawAlarms {
        dlq_not_empty: Some(RawAlarm {
            name: Some("pager: dlq".into()),
            threshold: Some(5.0),
        }),
        check_failing: Some(RawAlarm {
            name: Some("egress".into()),
            threshold: None,
        }),
        ..RawAlarms::default()
    };
    let a = alerting(raw, Some("rate(1 hour)")).unwrap();
    let w = wanted(&a, "f", "q", &azs());
    assert_eq!((w[0].name.as_str(), w[0].threshold), ("pager: dlq", 5.0));
    assert!(w.iter().any(|w| w.name == "egress-one"));
    // Two hours of checks at one per hour.
    assert!(w
        .iter()
        .filter(|w| w.kind.needs_schedule())
        .all(|w| w.period == 7200));
}

#[test]
fn without_a_schedule_there_are_no_check_alarms() {
    let a = alerting(RawAlarms::default(), Some("off")).unwrap();
    assert_eq!(a.schedule, None);
    let w = wanted(&a, "f", "q", &azs());
    assert_eq!(w.len(), 5);
    assert!(!w.iter().any(|w| w.kind.needs_schedule()));
}

#[test]
fn the_unrouted_alarm_exists_with_partners_only_and_takes_its_configured_name() {
    let raw = RawAlarms {
        unrouted: Some(RawAlarm {
            name: Some("acme-stray-keys".into()),
            threshold: Some(5.0),
        }),
        ..RawAlarms::default()
    };
    let a = alerting(raw, Some("off")).unwrap();
    let dlqs = [(Some("bank".to_owned()), "acme-partner-bank-dlq".to_owned())];
    let with = wanted_for(&a, "f", &dlqs, Some("acme-unrouted"), &azs());
    let unrouted: Vec<&Wanted> = with.iter().filter(|w| w.kind == Kind::Unrouted).collect();
    let [u] = unrouted[..] else {
        panic!("one unrouted alarm: {unrouted:?}")
    };
    assert_eq!(u.name, "acme-stray-keys");
    assert_eq!(u.threshold, 5.0);
    assert_eq!(
        (u.namespace, u.metric, u.statistic),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum")
    );
    assert_eq!(u.dimensions, [("QueueName", "acme-unrouted".to_owned())]);
    let without = wanted_for(&a, "f", &dlqs, None, &azs());
    assert!(!without.iter().any(|w| w.kind == Kind::Unrouted));
}

#[test]
fn bad_values_are_named_by_field() {
    let bad_threshold = RawAlarms {
        function_errors: Some(RawAlarm {
            name: None,
            threshold: Some(-1.0),
        }),
        ..RawAlarms::default()
    };
    let err = alerting(bad_threshold, None).unwrap_err().to_string();
    assert!(err.contains("alarms.function_errors.threshold"), "{err}");
    let never = RawAlarms {
        check_not_running: Some(RawAlarm {
            name: None,
            threshold: Some(0.0),
        }),
        ..RawAlarms::default()
    };
    let err = alerting(never, None).unwrap_err().to_string();
    assert!(err.contains("alarms.check_not_running.threshold"), "{err}");
    for bad in [
        "rate(0 minutes)",
        "rate(5 fortnights)",
        "every 5 minutes",
        "at(2027-01-01T00:00:00)",
    ] {
        let err = alerting(RawAlarms::default(), Some(bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("self_check_schedule"), "{bad}: {err}");
    }
    assert!(alerting(RawAlarms::default(), Some("cron(0/10 * * * ? *)")).is_ok());
    let err = Alerting::from_raw("acme", Some("not-an-address".into()), None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("alarm_email"), "{err}");
}

#[test]
fn rates_are_read_in_seconds() {
    assert_eq!(rate_seconds("rate(15 minutes)"), Some(900));
    assert_eq!(rate_seconds("rate(1 day)"), Some(86_400));
    assert_eq!(rate_seconds("cron(0 * * * ? *)"), None);
}
