//! `check`: the egress self-check the function runs for `{"check": true}`, from this machine:
//! the partner connection (as `test-connection`) and the public IP an echo service sees,
//! compared with the IPs the partner allowlists.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use forward::{Partner, Tuning};
use serde_json::json;
use sftp_forward_core::check::{self, EchoUrl, EgressMatch, EgressProbe, Report};

use crate::args::SecretArgs;
use crate::cmd::test_connection::print_connection;
use crate::exit::Exit;
use crate::setup;

pub async fn run(
    secret: &SecretArgs,
    echo_url: &EchoUrl,
    expected: &[IpAddr],
    as_json: bool,
) -> anyhow::Result<Exit> {
    let text = setup::partner_text(secret).await?;
    let partner = Partner::from_json(&text).context("the partner secret")?;
    let tuning = Tuning::default();
    let egress = EgressProbe {
        echo_url: echo_url.clone(),
        expected: expected.to_vec(),
        // The function's default SFTP_FORWARD_CONNECT_TIMEOUT_SECS.
        timeout: Duration::from_secs(10),
    };
    let report = check::run(&partner, &tuning, &egress).await;
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

fn print_report(r: &Report) {
    print_connection(&r.connection);
    match (&r.egress_ip, &r.egress_error) {
        (Some(ip), _) => println!("egress ip    {ip} (seen by {})", r.echo_url),
        (None, Some(e)) => println!("egress ip    unknown: {e}"),
        (None, None) => println!("egress ip    unknown"),
    }
    let expected = r
        .expected_egress_ips
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
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
