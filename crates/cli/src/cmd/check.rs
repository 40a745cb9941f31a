//! `check`: the egress self-check the function runs for `{"check": true}`, from this machine:
//! the partner connection (as `test-connection`) and the public IP an echo service sees,
//! compared with the IPs the partner allowlists.

use std::net::IpAddr;

use anyhow::Context;
use forward::Partner;
use serde_json::json;
use sftp_forward_core::check::{self, EchoUrl, EgressMatch, EgressProbe, Report};
use sftp_forward_core::Settings;

use crate::args::{SecretArgs, StackArgs};
use crate::cmd::test_connection::print_connection;
use crate::exit::Exit;
use crate::setup;

pub async fn run(
    secret: &SecretArgs,
    stack: &StackArgs,
    echo_url: &EchoUrl,
    expected: &[IpAddr],
    as_json: bool,
) -> anyhow::Result<Exit> {
    let config = setup::aws_config().await;
    let target = setup::target(secret, stack, None, &config).await?;
    let text = target.partner_text().await?;
    let partner = Partner::from_json(&text).context("the partner secret")?;
    let settings = &target.settings;
    let egress = probe(echo_url, expected, settings);
    let report = check::run(&partner, &settings.tuning, &egress).await;
    let exit = report.problems.first().map_or(Exit::Ok, Exit::of_problem);

    if as_json {
        let mut doc = serde_json::to_value(&report)?;
        doc["exit_code"] = json!(exit.code());
        println!("{doc:#}");
    } else {
        print_report(&report);
        for problem in &report.problems {
            eprintln!("error: {}", problem.message);
        }
    }
    Ok(exit)
}

/// The egress probe: the echo URL given, the IPs given or else the stack function's (none
/// without a stack), bounded by the connect timeout (the function's, or its default).
pub fn probe(echo_url: &EchoUrl, expected: &[IpAddr], settings: &Settings) -> EgressProbe {
    let expected = if expected.is_empty() {
        settings.expected_egress_ips.clone()
    } else {
        expected.to_vec()
    };
    EgressProbe {
        echo_url: echo_url.clone(),
        expected,
        timeout: settings.tuning.connect_timeout,
    }
}

/// The expected egress IPs, comma-separated (shared with the `--all` table).
pub fn expected_list(r: &Report) -> String {
    r.expected_egress_ips
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_report(r: &Report) {
    print_connection(&r.connection);
    match (&r.egress_ip, &r.egress_error) {
        (Some(ip), _) => println!("egress ip    {ip} (seen by {})", r.echo_url),
        (None, Some(e)) => println!("egress ip    unknown: {e}"),
        (None, None) => println!("egress ip    unknown"),
    }
    let expected = expected_list(r);
    match r.egress_match {
        EgressMatch::Matches => println!("expected     {expected} (matches)"),
        EgressMatch::Mismatch => println!("expected     {expected} (NO MATCH)"),
        EgressMatch::Unknown => {
            println!("expected     {expected} (not compared: egress ip unknown)")
        }
        EgressMatch::NotCompared => {
            println!("expected     none given (--expect-ip / SFTP_FORWARD_EXPECTED_EGRESS_IPS): not compared")
        }
    }
}
