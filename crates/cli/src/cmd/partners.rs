//! `test-connection --all` and `check --all`: every partner of a stack (from its function's
//! environment), checked concurrently — at most [`AT_ONCE`] at a time — as one table row each.
//! The exit code is that of the first partner, in the stack's order, that failed.

use std::net::IpAddr;

use forward::{Partner, Tuning};
use serde_json::{json, Value};
use sftp_forward_core::check::{
    self, Connection, EchoUrl, EgressMatch, EgressProbe, Problem, Report,
};
use sftp_forward_core::routing::PartnerRoute;
use sftp_forward_core::secret::SecretSource;
use tokio::task::JoinSet;

use crate::args::StackArgs;
use crate::cmd::check::{expected_list, probe};
use crate::cmd::test_connection::yes_no;
use crate::exit::Exit;
use crate::setup::{self, Secrets};
use crate::stack;

/// Partners checked at once: each check holds one SSH connection (and, for `check`, one GET).
const AT_ONCE: usize = 8;

/// `check --all`'s egress flags.
pub struct Egress<'a> {
    pub echo_url: &'a EchoUrl,
    /// `--expect-ip`; none: the function's SFTP_FORWARD_EXPECTED_EGRESS_IPS.
    pub expected: &'a [IpAddr],
}

/// What was found for one partner.
enum Found {
    /// `test-connection`: host key, login, write probe.
    Connection(Box<Connection>),
    /// `check`: the same and the egress IP.
    Check(Box<Report>),
    /// Nothing could be checked: the secret is unreadable or invalid, or the server unreachable.
    NotRun {
        /// The verdict's words: `secret unreadable`, `secret invalid`, `unreachable`.
        what: &'static str,
        message: String,
        exit: Exit,
    },
}

/// One partner's row.
struct Row {
    name: String,
    /// `host:port`, once the secret was read.
    addr: Option<String>,
    found: Found,
}

impl Row {
    fn exit(&self) -> Exit {
        match &self.found {
            Found::Connection(c) => c.problem.as_ref().map_or(Exit::Ok, Exit::of_problem),
            Found::Check(r) => r.problems.first().map_or(Exit::Ok, Exit::of_problem),
            Found::NotRun { exit, .. } => *exit,
        }
    }

    fn connection(&self) -> Option<&Connection> {
        match &self.found {
            Found::Connection(c) => Some(c),
            Found::Check(r) => Some(&r.connection),
            Found::NotRun { .. } => None,
        }
    }

    /// What is wrong, for stderr: one message per problem.
    fn messages(&self) -> Vec<String> {
        match &self.found {
            Found::Connection(c) => c.problem.iter().map(|p| p.message.clone()).collect(),
            Found::Check(r) => r.problems.iter().map(|p| p.message.clone()).collect(),
            Found::NotRun { message, .. } => vec![message.clone()],
        }
    }

    /// `ok`, or `FAILED: ` and the first problem's kind.
    fn verdict(&self) -> String {
        let first: Option<&Problem> = match &self.found {
            Found::Connection(c) => c.problem.as_ref(),
            Found::Check(r) => r.problems.first(),
            Found::NotRun { what, .. } => return format!("FAILED: {what}"),
        };
        match first {
            None => "ok".into(),
            Some(p) => {
                let kind = serde_json::to_value(p.kind).unwrap_or_default();
                let kind = kind.as_str().unwrap_or("problem").replace('_', " ");
                format!("FAILED: {kind}")
            }
        }
    }

    fn json(&self) -> Value {
        let mut doc = match &self.found {
            Found::Connection(c) => {
                let mut doc = serde_json::to_value(c).unwrap_or_default();
                doc["ok"] = json!(c.problem.is_none());
                doc["problem"] = json!(c.problem.as_ref().map(|p| &p.message));
                doc
            }
            Found::Check(r) => serde_json::to_value(r).unwrap_or_default(),
            Found::NotRun { message, .. } => json!({ "ok": false, "error": message }),
        };
        doc["name"] = json!(self.name);
        doc["exit_code"] = json!(self.exit().code());
        doc
    }
}

/// Check every partner of the stack; `egress` makes it `check --all`, else `test-connection --all`.
pub async fn run(
    stack: &StackArgs,
    egress: Option<Egress<'_>>,
    as_json: bool,
) -> anyhow::Result<Exit> {
    let config = setup::aws_config().await;
    let settings = stack::settings(stack, &config).await?;
    let probe = egress.map(|e| probe(e.echo_url, e.expected, &settings));
    let secrets = Secrets::manager(&config);
    let partners = settings.routing.partners();

    // At most AT_ONCE at a time; rows kept in the stack's order.
    let mut rows: Vec<Option<Row>> = partners.iter().map(|_| None).collect();
    let mut running = JoinSet::new();
    for (i, partner) in partners.iter().enumerate() {
        if running.len() == AT_ONCE {
            let (j, row) = running.join_next().await.expect("one is running")?;
            rows[j] = Some(row);
        }
        let (partner, secrets) = (partner.clone(), secrets.clone());
        let (tuning, probe) = (settings.tuning.clone(), probe.clone());
        running.spawn(async move { (i, one(&partner, &secrets, &tuning, probe.as_ref()).await) });
    }
    while let Some(done) = running.join_next().await {
        let (j, row) = done?;
        rows[j] = Some(row);
    }
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|r| r.expect("every partner ran"))
        .collect();
    let exit = rows
        .iter()
        .map(Row::exit)
        .find(|e| *e != Exit::Ok)
        .unwrap_or(Exit::Ok);

    if as_json {
        let doc = json!({
            "partners": rows.iter().map(Row::json).collect::<Vec<_>>(),
            "ok": exit == Exit::Ok,
            "exit_code": exit.code(),
        });
        println!("{doc:#}");
    } else {
        print_table(&rows, probe.is_some());
        for row in &rows {
            for message in row.messages() {
                eprintln!("error: partner {}: {message}", row.name);
            }
        }
    }
    Ok(exit)
}

/// Read the partner's secret, then check its connection (and egress, when given).
async fn one(
    partner: &PartnerRoute,
    secrets: &Secrets,
    tuning: &Tuning,
    egress: Option<&EgressProbe>,
) -> Row {
    let name = partner.name().to_owned();
    let not_run = |addr: Option<String>, what, message: String, exit| Row {
        name: name.clone(),
        addr,
        found: Found::NotRun {
            what,
            message,
            exit,
        },
    };
    let id = partner.secret_id();
    let text = match secrets.fetch(id).await {
        Ok(text) => text,
        Err(e) => {
            let exit = if e.is_transient() {
                Exit::Transient
            } else {
                Exit::Config
            };
            let message = format!("reading the partner connection: {e}");
            return not_run(None, "secret unreadable", message, exit);
        }
    };
    let partner = match Partner::from_json(&text) {
        Ok(p) => p,
        Err(e) => {
            let message = format!("the partner secret {id}: {e}");
            return not_run(None, "secret invalid", message, Exit::Config);
        }
    };
    let addr = Some(partner.addr());
    let found = match egress {
        Some(egress) => Found::Check(Box::new(check::run(&partner, tuning, egress).await)),
        None => match check::connection(&partner, tuning).await {
            Ok(c) => Found::Connection(Box::new(c)),
            Err(e) => {
                let message = format!("reading the host key of {}: {e}", partner.addr());
                return not_run(addr, "unreachable", message, Exit::of_forward(&e));
            }
        },
    };
    Row { name, addr, found }
}

/// One line per partner: PARTNER, ADDRESS, HOST KEY, LOGIN, WRITE, [EGRESS,] VERDICT.
fn print_table(rows: &[Row], egress: bool) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let c = row.connection();
            let host_key = match c {
                Some(c) if c.host_key.is_some() => format!("trusted {}", yes_no(c.trusted)),
                _ => "unknown".into(),
            };
            let mut line = vec![
                row.name.clone(),
                row.addr.clone().unwrap_or_else(|| "-".into()),
                host_key,
                c.map_or_else(|| "-".into(), |c| c.login.to_string()),
                match c.and_then(|c| c.writable) {
                    Some(w) => yes_no(w).to_owned(),
                    None => "not checked".into(),
                },
            ];
            if egress {
                line.push(match &row.found {
                    Found::Check(r) => egress_cell(r),
                    _ => "-".into(),
                });
            }
            line.push(row.verdict());
            line
        })
        .collect();
    let mut header = vec!["PARTNER", "ADDRESS", "HOST KEY", "LOGIN", "WRITE"];
    if egress {
        header.push("EGRESS IP (SEEN / EXPECTED)");
    }
    header.push("VERDICT");
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            let widest = cells
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0);
            widest.max(header[i].len())
        })
        .collect();
    let line = |cols: Vec<&str>| {
        let padded: Vec<String> = cols
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.clone());
    for l in &cells {
        line(l.iter().map(String::as_str).collect());
    }
    let failed = rows.iter().filter(|r| r.exit() != Exit::Ok).count();
    println!(
        "{} partners: {} ok, {failed} failed",
        rows.len(),
        rows.len() - failed
    );
}

/// `203.0.113.7 / 203.0.113.7, 203.0.113.8 (matches)`.
fn egress_cell(r: &Report) -> String {
    let seen = r
        .egress_ip
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let expected = expected_list(r);
    match r.egress_match {
        EgressMatch::Matches => format!("{seen} / {expected} (matches)"),
        EgressMatch::Mismatch => format!("{seen} / {expected} (NO MATCH)"),
        EgressMatch::Unknown => format!("{seen} / {expected}"),
        EgressMatch::NotCompared => format!("{seen} / none (not compared)"),
    }
}
