//! `provision plan|apply|destroy|outputs`: parses flags and the config file, builds the AWS clients
//! from the standard AWS config, runs the library, maps the result to an exit code.

mod cli;

use std::process::ExitCode;

use anyhow::Context as _;
use aws_config::{BehaviorVersion, Region};
use clap::Parser;
use cli::{Cli, Command, PartnerCommand};
use provision::context::Action;
use provision::context::Ctx;
use provision::failover::{self, Az};
use provision::{apply, config, destroy, outputs, plan, Clients, Mode, RawConfig, Report, Spec};

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    cli::edit_partners(&cli)?;
    let file = match &cli.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    let flags = match &cli.command {
        Command::Plan(inputs) | Command::Apply(inputs) => inputs.to_raw(),
        Command::Destroy { .. }
        | Command::Outputs
        | Command::Partner(_)
        | Command::Failover { .. }
        | Command::Failback { .. } => RawConfig::default(),
    };
    let flags = RawConfig {
        stack: cli.stack,
        ..flags
    };
    let spec = Spec::from_raw(file.merge(flags), config::default_zip())?;

    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(profile) = &cli.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = cli.region {
        loader = loader.region(Region::new(region));
    }
    let clients = Clients::new(&loader.load().await)?;
    // Know where you are before anything changes: the account, region and endpoint.
    let (spec, who) = provision::context::resolve(&clients, spec).await?;
    if !matches!(
        cli.command,
        Command::Outputs | Command::Partner(PartnerCommand::List)
    ) {
        println!("Using {}", clients.whereabouts(&who));
    }
    let report = Report::printing();
    let ctx = |mode| Ctx {
        clients: &clients,
        spec: &spec,
        mode,
        report: &report,
    };
    let stack = format!("stack {:?} in {}", spec.stack, clients.region);

    match cli.command {
        Command::Plan(_) => {
            println!("Plan for {stack} (nothing is changed):");
            let planned = apply::run(ctx(Mode::Plan)).await.context("plan")?;
            if !planned.partners.is_empty() {
                println!("{}", cli::partner_table(&planned.partners, &spec));
            }
            let estimate = plan::estimate(&clients.region);
            let alerting = plan::alerting_estimate(&spec);
            println!("{}\n\n{estimate}\n{alerting}", report.summary(Mode::Plan));
        }
        Command::Apply(_)
        | Command::Partner(PartnerCommand::Add(_) | PartnerCommand::Remove { .. }) => {
            println!("Applying {stack}:");
            let applied = apply::run(ctx(Mode::Apply)).await.context("apply")?;
            if !applied.partners.is_empty() {
                println!("{}", cli::partner_table(&applied.partners, &spec));
            }
            let allowlist = applied.network.allowlist();
            println!(
                "{}\nPartner allowlist (Elastic IPs): {allowlist}",
                report.summary(Mode::Apply)
            );
        }
        Command::Destroy { release_eips } => {
            println!("Destroying {stack}:");
            destroy::run(ctx(Mode::Apply), release_eips)
                .await
                .context("destroy")?;
            println!("{}", report.summary(Mode::Apply));
        }
        Command::Failover { az } => {
            let az = Az::from(az);
            println!("Failing over private subnet {} of {stack}:", az.word());
            failover::failover(ctx(Mode::Apply), az)
                .await
                .context("failover")?;
            println!("{}", routed(&report, "Failover"));
        }
        Command::Failback { az } => {
            let azs = az.map_or(Az::BOTH.to_vec(), |a| vec![a.into()]);
            println!("Failing back {stack}:");
            failover::failback(ctx(Mode::Apply), &azs)
                .await
                .context("failback")?;
            println!("{}", routed(&report, "Failback"));
        }
        Command::Partner(PartnerCommand::List) => {
            let listed = provision::partners::listed(&clients, &spec).await?;
            println!("{}", cli::partner_table(&listed, &spec));
        }
        Command::Outputs => {
            let out = outputs::collect(&clients, &spec).await.context("outputs")?;
            println!(
                "{}",
                serde_json::to_string_pretty(&out).context("outputs as JSON")?
            );
        }
    }
    Ok(())
}

/// `Failover complete: 1 route(s) replaced, 0 already in place. Verify: ...`
fn routed(report: &Report, what: &str) -> String {
    format!(
        "{what} complete: {} route(s) replaced, {} already in place.\nVerify: deploy/provision \
         outputs (private_routes), and the function's self-check {{\"check\": true}} from each \
         subnet (its egress_ip); see docs/OPERATIONS.md",
        report.count(Action::Update),
        report.count(Action::Unchanged)
    )
}
