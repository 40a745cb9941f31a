//! The result of a batch (`replay`, `redrive`): a summary table on stdout, or one JSON document.

use serde_json::{json, Value};
use sftp_forward_core::Outcome;

use crate::cmd::send::outcome_json;
use crate::exit::Exit;

/// One object (or message) and how it ended.
pub struct Row {
    /// `s3://bucket/key`, or a message id.
    pub item: String,
    pub outcome: Outcome,
}

/// Counts and the exit code of a batch.
pub struct Totals {
    pub sent: usize,
    pub skipped: usize,
    pub failed: usize,
    pub exit: Exit,
}

pub fn totals(rows: &[Row]) -> Totals {
    let mut t = Totals {
        sent: 0,
        skipped: 0,
        failed: 0,
        exit: Exit::Ok,
    };
    for row in rows {
        match &row.outcome {
            Outcome::Delivered { .. } => t.sent += 1,
            Outcome::Skipped { .. } => t.skipped += 1,
            Outcome::Failed { class, .. } => {
                t.failed += 1;
                // Permanent wins over transient: an operator must act either way.
                let exit = Exit::of_class(*class);
                if t.exit == Exit::Ok || exit == Exit::Permanent {
                    t.exit = exit;
                }
            }
        }
    }
    t
}

/// The table, one line per row, then a totals line. `planned` words it as a dry run.
pub fn print_table(rows: &[Row], planned: bool) {
    let word = |o: &Outcome| match (o, planned) {
        (Outcome::Delivered { .. }, false) => "sent",
        (Outcome::Delivered { .. }, true) => "would send",
        (Outcome::Skipped { .. }, false) => "skipped",
        (Outcome::Skipped { .. }, true) => "would skip",
        (Outcome::Failed { .. }, _) => "failed",
    };
    let width = rows.iter().map(|r| r.item.len()).max().unwrap_or(4).max(4);
    println!("{:<10}  {:<width$}  DETAIL", "OUTCOME", "ITEM");
    for row in rows {
        let detail = match &row.outcome {
            Outcome::Delivered { remote_path, bytes } if planned => {
                format!("→ {remote_path} under RemoteDirectory ({bytes} bytes)")
            }
            Outcome::Delivered { remote_path, bytes } => format!("{remote_path} ({bytes} bytes)"),
            Outcome::Skipped { reason } => reason.clone(),
            Outcome::Failed { class, reason } => format!("{class}: {reason}"),
        };
        println!("{:<10}  {:<width$}  {detail}", word(&row.outcome), row.item);
    }
    let t = totals(rows);
    let verb = if planned { "would be " } else { "" };
    println!(
        "{} total: {} {verb}sent, {} {verb}skipped, {} failed",
        rows.len(),
        t.sent,
        t.skipped,
        t.failed
    );
}

/// The batch as one JSON document: `fields` (what was processed) plus the counts, one object per
/// row and the exit code.
pub fn print_json(rows: &[Row], mut fields: Value) {
    let t = totals(rows);
    let objects: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = outcome_json(&r.outcome);
            v["item"] = json!(r.item);
            v
        })
        .collect();
    fields["sent"] = json!(t.sent);
    fields["skipped"] = json!(t.skipped);
    fields["failed"] = json!(t.failed);
    fields["objects"] = json!(objects);
    fields["exit_code"] = json!(t.exit.code());
    println!("{fields:#}");
}
