//! `test-connection`: the partner's host key (always shown, never trusted by this command), then,
//! only when the key is pinned, the login and a write probe in `RemoteDirectory`.

use anyhow::Context;
use forward::hostkey::public_key_line;
use forward::{Fingerprint, Partner, Session, Tuning};
use serde_json::json;

use crate::args::SecretArgs;
use crate::exit::Exit;
use crate::setup;

pub async fn run(secret: &SecretArgs, print_host_key: bool, as_json: bool) -> anyhow::Result<Exit> {
    let text = setup::partner_text(secret).await?;
    let tuning = Tuning::default();
    if print_host_key {
        return print_key(&text, &tuning, as_json).await;
    }
    let partner = Partner::from_json(&text).context("the partner secret")?;
    let key = forward::scan_host_key(&partner.host, partner.port, &tuning)
        .await
        .with_context(|| format!("reading the host key of {}", partner.addr()))?;
    let fingerprint = Fingerprint::of(&key);
    let trusted = partner.trusted_host_keys.trusts(&key);
    let known_hosts = known_hosts_line(&partner.host, partner.port, &public_key_line(&key));

    // Log in only to a pinned key: the publisher's own check runs again inside `Session::open`.
    let (login, writable, problem) = if !trusted {
        (
            "skipped",
            None,
            Some((
                Exit::UntrustedHostKey,
                format!(
                    "the host key is not in TrustedHostKeys; confirm {fingerprint} with the partner, \
                     then add the key line (`test-connection --print-host-key`) to the secret"
                ),
            )),
        )
    } else {
        match Session::open(&partner, &tuning).await {
            Err(e) => ("failed", None, Some((Exit::of_forward(&e), e.to_string()))),
            Ok(mut session) => {
                let probe = session.check_writable().await;
                session.close().await;
                match probe {
                    Ok(()) => ("ok", Some(true), None),
                    Err(e) => {
                        let exit = if e.is_transient() {
                            Exit::Transient
                        } else {
                            Exit::NotWritable
                        };
                        ("ok", Some(false), Some((exit, e.to_string())))
                    }
                }
            }
        }
    };
    let exit = problem.as_ref().map_or(Exit::Ok, |(exit, _)| *exit);

    if as_json {
        println!(
            "{:#}",
            json!({
                "partner": partner.addr(),
                "username": partner.username,
                "remote_directory": partner.remote_directory,
                "host_key": public_key_line(&key),
                "known_hosts": known_hosts,
                "algorithm": fingerprint.algorithm,
                "fingerprint": fingerprint.sha256,
                "trusted": trusted,
                "login": login,
                "writable": writable,
                "problem": problem.as_ref().map(|(_, p)| p),
                "exit_code": exit.code(),
            })
        );
    } else {
        let yes_no = |b: bool| if b { "yes" } else { "NO" };
        println!("partner      {} as {:?}", partner.addr(), partner.username);
        println!("host key     {known_hosts}");
        println!("fingerprint  {fingerprint}");
        println!("trusted      {}", yes_no(trusted));
        println!("login        {login}");
        match writable {
            Some(w) => println!("writable     {} ({})", yes_no(w), partner.remote_directory),
            None => println!("writable     not checked"),
        }
        if let Some((_, problem)) = &problem {
            eprintln!("error: {problem}");
        }
    }
    Ok(exit)
}

/// `--print-host-key`: only Host and Port are needed, so a secret without TrustedHostKeys works.
async fn print_key(text: &str, tuning: &Tuning, as_json: bool) -> anyhow::Result<Exit> {
    let (host, port) = forward::config::endpoint_from_json(text).context("the partner secret")?;
    let key = forward::scan_host_key(&host, port, tuning)
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

/// `host ssh-ed25519 AAAA...`, with `[host]:port` for a port other than 22, as in `known_hosts`.
fn known_hosts_line(host: &str, port: u16, key_line: &str) -> String {
    if port == 22 {
        format!("{host} {key_line}")
    } else {
        format!("[{host}]:{port} {key_line}")
    }
}
