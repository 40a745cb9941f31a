//! `test-connection`: the partner's host key (always shown, never trusted by this command), then,
//! only when the key is pinned, the login and a write probe in `RemoteDirectory`. The steps are
//! the library's ([`sftp_forward_core::check::connection`]), shared with `check`.

use anyhow::Context;
use forward::hostkey::public_key_line;
use forward::{Fingerprint, Partner, Tuning};
use serde_json::json;
use sftp_forward_core::check::{self, Connection};

use crate::args::{SecretArgs, StackArgs};
use crate::exit::Exit;
use crate::setup;

pub async fn run(
    secret: &SecretArgs,
    stack: &StackArgs,
    print_host_key: bool,
    as_json: bool,
) -> anyhow::Result<Exit> {
    let config = setup::aws_config().await;
    let target = setup::target(secret, stack, None, &config).await?;
    let text = target.partner_text().await?;
    let tuning = target.settings.tuning.clone();
    if print_host_key {
        return print_key(&text, &tuning, as_json).await;
    }
    let partner = Partner::from_json(&text).context("the partner secret")?;
    let connection = check::connection(&partner, &tuning)
        .await
        .with_context(|| format!("reading the host key of {}", partner.addr()))?;
    let exit = connection
        .problem
        .as_ref()
        .map_or(Exit::Ok, Exit::of_problem);

    if as_json {
        let mut doc = serde_json::to_value(&connection)?;
        doc["problem"] = json!(connection.problem.as_ref().map(|p| &p.message));
        doc["exit_code"] = json!(exit.code());
        println!("{doc:#}");
    } else {
        print_connection(&connection);
        if let Some(problem) = &connection.problem {
            eprintln!("error: {}", problem.message);
        }
    }
    Ok(exit)
}

/// The aligned lines of a connection check (stdout), shared with `check`.
pub fn print_connection(c: &Connection) {
    let unknown = "unknown (the server could not be reached)";
    println!("partner      {} as {:?}", c.partner, c.username);
    println!(
        "host key     {}",
        c.known_hosts.as_deref().unwrap_or(unknown)
    );
    println!(
        "fingerprint  {}",
        c.fingerprint_line().as_deref().unwrap_or(unknown)
    );
    println!("trusted      {}", yes_no(c.trusted));
    println!("login        {}", c.login);
    if let Some(n) = &c.negotiated {
        println!("algorithms   {n}");
    }
    match c.writable {
        Some(w) => println!("writable     {} ({})", yes_no(w), c.remote_directory),
        None => println!("writable     not checked"),
    }
}

pub fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

/// `--print-host-key`: only Host and Port are needed, so a secret without TrustedHostKeys works.
async fn print_key(text: &str, tuning: &Tuning, as_json: bool) -> anyhow::Result<Exit> {
    let (host, port) = forward::config::endpoint_from_json(text).context("the partner secret")?;
    let algorithms = forward::config::algorithms_from_json(text).context("the partner secret")?;
    let key = forward::scan_host_key(&host, port, &algorithms, None, tuning)
        .await
        .with_context(|| format!("reading the host key of {host}:{port}"))?;
    let line = public_key_line(&key);
    let fingerprint = Fingerprint::of(&key);
    // Trusted only if the secret is complete and pins this key; never added automatically.
    let trusted = Partner::from_json(text).is_ok_and(|p| p.trusted_host_keys.trusts(&key));
    if as_json {
        println!(
            "{:#}",
            json!({
                "host_key": line,
                "algorithm": fingerprint.algorithm,
                "fingerprint": fingerprint.sha256,
                "trusted": trusted,
                "exit_code": if trusted { 0 } else { Exit::UntrustedHostKey.code() },
            })
        );
    } else {
        println!("{line}");
        if trusted {
            eprintln!("{fingerprint}: already in TrustedHostKeys");
        } else {
            eprintln!(
                "{fingerprint}: NOT trusted; confirm this fingerprint with the partner \
                 (out of band) before adding the line above to TrustedHostKeys"
            );
        }
    }
    Ok(if trusted {
        Exit::Ok
    } else {
        Exit::UntrustedHostKey
    })
}
