//! `plan`'s cost estimate for what runs all month whether files arrive or not: the two NAT
//! gateways and the two public IPv4 addresses.

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
}
