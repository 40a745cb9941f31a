//! `plan`'s cost estimate for what runs all month whether files arrive or not: the two NAT
//! gateways and the two public IPv4 addresses; then the alarms and the self-check's schedule
//! (list prices cited in docs/PROVISION.md).

/// NAT gateway, per hour each (us-east-1 list price).
pub const NAT_HOURLY_USD: f64 = 0.045;
/// NAT gateway data processing, per GB (us-east-1 list price); not in the estimate.
pub const NAT_PER_GB_USD: f64 = 0.045;
/// Public IPv4 address (an Elastic IP, attached or not), per hour each.
pub const IPV4_HOURLY_USD: f64 = 0.005;
/// Hours in the average month.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// The estimate in dollars per month: (NAT gateways, Elastic IPs).
pub fn monthly_usd() -> (f64, f64) {
    (
        2.0 * NAT_HOURLY_USD * HOURS_PER_MONTH,
        2.0 * IPV4_HOURLY_USD * HOURS_PER_MONTH,
    )
}

/// The estimate as the plan prints it.
pub fn estimate(region: &str) -> String {
    let (nat, ipv4) = monthly_usd();
    let other = if region == "us-east-1" {
        ""
    } else {
        " (us-east-1 prices; other regions cost somewhat more)"
    };
    format!(
        "Estimated fixed monthly cost{other}:\n\
         \x20 2 NAT gateways × ${NAT_HOURLY_USD}/h × {HOURS_PER_MONTH} h = ${nat:.2}\n\
         \x20 2 Elastic IPs (public IPv4) × ${IPV4_HOURLY_USD}/h × {HOURS_PER_MONTH} h = ${ipv4:.2}\n\
         \x20 total ≈ ${:.2} per month, an estimate EXCLUDING NAT data processing (${NAT_PER_GB_USD}/GB that\n\
         \x20 leaves through the NAT gateways; S3 reads use the free gateway endpoint) and Lambda, S3, SQS use.\n\
         \x20 Kept Elastic IPs still cost ${:.2}/month after destroy.",
        nat + ipv4,
        ipv4
    )
}

/// CloudWatch standard-resolution metric alarm, per alarm-month (us-east-1 list price).
pub const ALARM_MONTHLY_USD: f64 = 0.10;
/// CloudWatch custom metric (the function's EMF metrics), per metric-month, first 10,000.
pub const CUSTOM_METRIC_MONTHLY_USD: f64 = 0.30;
/// EventBridge Scheduler, per million invocations after the first 14 million each month.
pub const SCHEDULER_PER_MILLION_USD: f64 = 1.00;
/// SNS email notifications, per 100,000 after the first 1,000 each month.
pub const SNS_EMAIL_PER_100K_USD: f64 = 2.00;

/// The alarms, the schedule and the topic: (alarms, their monthly cost, checks per month).
pub fn alerting_monthly(spec: &crate::Spec) -> (usize, f64, Option<f64>) {
    let azs = ["a".to_owned(), "b".to_owned()];
    let dlqs: Vec<(Option<String>, String)> = match spec.partners.as_slice() {
        [] => vec![(None, "q".to_owned())],
        partners => partners
            .iter()
            .map(|p| (Some(p.name().to_owned()), "q".to_owned()))
            .collect(),
    };
    let unrouted = crate::unrouted::prefixes(spec).map(|_| "u");
    let n = crate::alarms::wanted_for(&spec.alerting, "f", &dlqs, unrouted, &azs).len();
    let checks = spec.alerting.schedule.as_deref().map(|s| {
        crate::alarms::rate_seconds(s)
            .map_or(f64::NAN, |secs| HOURS_PER_MONTH * 3600.0 / f64::from(secs))
    });
    (n, n as f64 * ALARM_MONTHLY_USD, checks)
}

/// The alerting part of the estimate, as the plan prints it.
pub fn alerting_estimate(spec: &crate::Spec) -> String {
    let (n, alarms, checks) = alerting_monthly(spec);
    let schedule = match (&spec.alerting.schedule, checks) {
        (None, _) => "  self-check schedule: off".to_owned(),
        (Some(expr), Some(c)) if c.is_finite() => format!(
            "  self-check schedule {expr}: {c:.0} invocations/month, within Scheduler's 14 million free              (then ${SCHEDULER_PER_MILLION_USD}/million) ≈ $0.00; each is also a short Lambda invocation"
        ),
        (Some(expr), _) => format!(
            "  self-check schedule {expr}: Scheduler's first 14 million invocations/month are free              (then ${SCHEDULER_PER_MILLION_USD}/million)"
        ),
    };
    format!(
        "Alarms and self-check:\n\
         \x20 {n} CloudWatch alarms × ${ALARM_MONTHLY_USD}/alarm-month = ${alarms:.2} (the account's first 10 are free)\n\
         {schedule}\n\
         \x20 SNS topic: free; email notifications: first 1,000/month free, then ${SNS_EMAIL_PER_100K_USD}/100,000\n\
         \x20 EMF metrics the alarms read: ${CUSTOM_METRIC_MONTHLY_USD}/metric-month each (custom metrics, per\n\
         \x20 name and dimension value; the function already emits its delivery metrics)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_cost_is_about_73_dollars() {
        let (nat, ipv4) = monthly_usd();
        assert!((nat - 65.70).abs() < 1e-9 && (ipv4 - 7.30).abs() < 1e-9);
        assert!(
            estimate("us-east-1").contains("$73.00") && estimate("us-east-1").contains("EXCLUDING")
        );
    }

    #[test]
    fn nine_alarms_cost_90_cents_and_the_schedule_nothing() {
        let spec = crate::Spec::from_raw(crate::RawConfig::default(), "z.zip".into()).unwrap();
        let (n, usd, checks) = alerting_monthly(&spec);
        assert_eq!(n, 9);
        assert!((usd - 0.90).abs() < 1e-9);
        assert_eq!(checks, Some(2920.0));
        let text = alerting_estimate(&spec);
        assert!(
            text.contains("9 CloudWatch alarms") && text.contains("$0.90"),
            "{text}"
        );
        assert!(text.contains("2920 invocations/month"), "{text}");
    }
}
