//! Case 9 (issue 18): what `Pgp` encryption costs next to the plain path. The same random file to
//! the loopback sshd: plain in one stream (K = 1) and striped (the default K), then encrypted to a
//! key `gpg` generated for the run, uncompressed and zip. Encrypted files always go as one stream
//! (ciphertext cannot be cut into byte ranges before it exists), so "plain K=1" is the fair
//! comparison for the cipher's cost and "plain, default K" shows what giving up striping costs.

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::bed::{random_file, Bed};
use crate::cases::{size_label, Plan};
use crate::measure::{self, median, Job};
use crate::report::{num, Table};

const HEADER: &[&str] = &[
    "contender",
    "median MB/s (object bytes)",
    "client CPU s/GiB",
    "peak RSS MiB",
    "bytes landed / object",
];

/// Case 9: the medium file, plain and encrypted, alternating.
pub fn encryption(bed: &Bed, plan: &Plan) -> anyhow::Result<Table> {
    let len = plan.medium;
    let file = bed.work.join(format!("random-{len}.bin"));
    random_file(&file, len)?;
    let (_gpg, public) = testkit::gpg::partner_key("Bench partner <bench@partner.example>");
    let plain = bed.partner_file(bed.sshd.port)?;
    let with_pgp = |compression: &str| -> anyhow::Result<std::path::PathBuf> {
        let mut partner: Value = serde_json::from_str(&std::fs::read_to_string(&plain)?)?;
        partner["Pgp"] = json!({ "PublicKeys": [public], "Compression": compression });
        let path = plain.with_file_name(format!("partner-pgp-{compression}.json"));
        crate::bed::write_private(&path, &partner.to_string())?;
        Ok(path)
    };
    let (none, zip) = (with_pgp("none")?, with_pgp("zip")?);
    let default_k = forward::Tuning::default().stripes.to_string();
    let publish = |partner: &std::path::Path, k: &str| -> Job {
        let mut cmd = bed.ours("publish");
        cmd.arg(partner).arg(k).arg(&file).arg("ours.bin");
        cmd.into()
    };
    let encrypted = |partner: &std::path::Path| -> Job {
        let mut cmd = bed.ours("publish-pgp");
        cmd.arg(partner).arg(&file).arg("ours.bin");
        cmd.into()
    };
    let contenders: [(String, Box<dyn Fn() -> Job + '_>); 4] = [
        (
            "plain, K=1 (one stream)".into(),
            Box::new(|| publish(&plain, "1")),
        ),
        (
            format!("plain, K={default_k} (default)"),
            Box::new(|| publish(&plain, &default_k)),
        ),
        (
            "Pgp, no compression (one stream)".into(),
            Box::new(|| encrypted(&none)),
        ),
        ("Pgp, zip (one stream)".into(), Box::new(|| encrypted(&zip))),
    ];
    let mut samples = vec![Vec::new(); contenders.len()];
    for round in 1..=plan.runs {
        for ((label, job), out) in contenders.iter().zip(&mut samples) {
            bed.clean()?;
            let busy = measure::others_busy();
            let sample = measure::run(job()).with_context(|| label.clone())?;
            let landed = bed.landed_bytes()?;
            if landed < len {
                bail!("{label}: {landed} bytes landed, fewer than the file's {len}");
            }
            eprintln!(
                "  run {round}/{} {label}: {:.2} s, {landed} bytes landed",
                plan.runs,
                sample.wall.as_secs_f64()
            );
            out.push((sample, landed, busy || measure::others_busy()));
        }
    }
    bed.clean()?;
    let mut table = Table::new(
        format!(
            "9. {} random file → loopback sshd, plain and `Pgp` ({} runs each, alternating)",
            size_label(len),
            plan.runs
        ),
        HEADER,
    );
    let gib = len as f64 / (1u64 << 30) as f64;
    for ((label, _), s) in contenders.iter().zip(&samples) {
        let rates: Vec<f64> = s
            .iter()
            .map(|(x, ..)| len as f64 / x.wall.as_secs_f64() / 1e6)
            .collect();
        let cpu: Vec<f64> = s.iter().map(|(x, ..)| x.cpu.as_secs_f64() / gib).collect();
        let rss: Vec<f64> = s
            .iter()
            .map(|(x, ..)| x.max_rss_kib as f64 / 1024.0)
            .collect();
        let landed = s.last().map_or(0, |(_, l, _)| *l);
        table.row(vec![
            label.clone(),
            num(median(&rates), 0),
            num(median(&cpu), 2),
            num(median(&rss), 0),
            num(landed as f64 / len as f64, 4),
        ]);
    }
    let busy = samples.iter().flatten().filter(|(.., b)| *b).count();
    table.note(format!(
        "Random bytes do not compress: zip costs its CPU for nothing here (compressible CSV would \
         shrink 3–10× and send less). Runs with another build or test running at their start or \
         end: {busy} of {}.",
        samples.iter().map(Vec::len).sum::<usize>()
    ));
    Ok(table)
}
