//! `bench`: the benchmark harness of issues 6 and 15 (run by `tests/bench/run`, documented in
//! docs/BENCHMARKS.md). Starts testkit's loopback sshd (and moto behind testkit's S3 bed for cases
//! 2, 6, 7 and 8), runs our publisher, the Lambda path, OpenSSH `sftp` and rclone side by side,
//! alternating, and prints Markdown tables.
//!
//! ```text
//! bench [--quick] [--runs N] [--cases 1,2,3,4,5,6,7,8,9] [--bootstrap PATH] [--wan-big]
//! bench child MODE ARGS...     (our side of a case, run by the harness; see child.rs)
//! ```
//!
//! `--quick`: 64 MiB files, 100 small files, 1 run (to debug the harness). Exit 0 when every
//! requested case ran, 1 otherwise (the error on stderr).
//!
//! # Layout
//! - [`measure`]: one run of a child process: wall time and `wait4` rusage; medians
//! - [`bed`]: the sshd, the scratch directory, input files, the `sftp`/rclone command lines
//! - [`child`]: our side, as child modes of this binary
//! - [`s3side`]: the S3 bed, its bucket and objects, the Lambda path and rclone reading from it
//! - [`cgroup`]: a CPU quota for our child (case 7, Lambda's CPU share)
//! - [`cases`]: cases 1, 3–6 → tables; [`lambda_cases`]: cases 2, 7 (CPU share, $/GB) and 8
//!   (SQS batches); [`coldstart`]: case 5's listener; [`pgp_case`]: case 9 (`Pgp` encryption)
//! - [`report`]: Markdown, machine and versions

// This harness calls libc (wait4, sysconf, the cgroup set-up), which the workspace's
// `unsafe_code = "deny"` refuses in the shipped crates; each call carries its SAFETY note.
#![allow(unsafe_code)]

mod bed;
mod cases;
mod cgroup;
mod child;
mod coldstart;
mod lambda_cases;
mod measure;
mod pgp_case;
mod report;
mod s3side;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use cases::Plan;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Runtime::new().context("start tokio")?;
    if args.first().map(String::as_str) == Some("child") {
        return rt.block_on(child::run(&args[1..]));
    }

    let mut quick = false;
    let mut runs = None;
    let mut cases: Vec<u32> = (1..=8).collect();
    let mut bootstrap = None;
    let mut wan_big = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--quick" => quick = true,
            "--wan-big" => wan_big = true,
            "--runs" => runs = Some(value()?.parse().context("--runs")?),
            "--cases" => {
                cases = value()?
                    .split(',')
                    .map(|c| c.trim().parse().context("--cases"))
                    .collect::<anyhow::Result<_>>()?
            }
            "--bootstrap" => bootstrap = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other:?} (see the doc at the top of main.rs)"),
        }
    }
    let plan = if quick {
        Plan {
            runs: runs.unwrap_or(1),
            big: 64 * MIB,
            medium: 64 * MIB,
            small_files: 100,
            rss_sizes: vec![64 * MIB, 256 * MIB],
            wan_big,
        }
    } else {
        Plan {
            runs: runs.unwrap_or(3),
            big: GIB,
            medium: 256 * MIB,
            small_files: 1000,
            rss_sizes: vec![GIB, 8 * GIB],
            wan_big,
        }
    };

    println!("## Benchmark run\n\n{}", report::machine());
    let bed = bed::Bed::new()?;
    let s3side = std::cell::OnceCell::new();
    let s3 = || -> anyhow::Result<&s3side::S3Side> {
        if s3side.get().is_none() {
            let _ = s3side.set(s3side::S3Side::new(&rt)?);
        }
        Ok(s3side.get().expect("just set"))
    };
    for case in cases {
        eprintln!("case {case}");
        let tables = match case {
            1 => vec![cases::loopback(&bed, &plan)?],
            2 => vec![lambda_cases::s3_object(&bed, &plan, s3()?)?],
            3 => vec![cases::small_files(&bed, &plan)?],
            4 => vec![cases::memory(&bed, &plan)?],
            5 => {
                let path = bootstrap.clone().context("case 5 needs --bootstrap PATH")?;
                vec![cases::cold_start(&path, 10)?]
            }
            6 => cases::wan(&bed, &plan, s3()?)?,
            7 => vec![lambda_cases::lambda_share(&bed, &plan, s3()?)?],
            8 => vec![lambda_cases::batches(&bed, &plan, s3()?)?],
            9 => vec![pgp_case::encryption(&bed, &plan)?],
            other => bail!("there is no case {other}"),
        };
        for table in tables {
            println!("{table}");
        }
        std::io::stdout().flush()?;
    }
    Ok(())
}
