//! `apply` (and `plan`, the same steps without changes): first every check that can fail on the
//! operator's input, so that a bad input creates nothing; then network → inbox → role → function
//! → alarm topic → self-check schedule → alarms.

use crate::config::{self, Partner};
use crate::context::{Ctx, Mode};
use crate::error::Result;
use crate::function::{self, Function};
use crate::iam;
use crate::inbox::{self, Inbox};
use crate::network::{self, Network};

/// What `apply` found or built (placeholders stand for what a plan would create).
#[derive(Debug, Clone)]
pub struct Applied {
    /// VPC, subnets, NAT gateways, Elastic IPs, security group.
    pub network: Network,
    /// Secret, queues, bucket.
    pub inbox: Inbox,
    /// The function and its event source mapping.
    pub function: Function,
    /// The alarms' SNS topic.
    pub alarm_topic: String,
}

/// Runs every step in `ctx.mode`.
pub async fn run(ctx: Ctx<'_>) -> Result<Applied> {
    let spec = ctx.spec;
    // Inputs first: nothing is created when one of them is wrong.
    let package = match function::read_package(&spec.zip) {
        Ok(p) => Some(p),
        Err(e) if ctx.mode == Mode::Plan => {
            ctx.report
                .note(format!("{e} (apply needs it; the plan goes on)"));
            None
        }
        Err(e) => return Err(e),
    };
    let secret = inbox::check(ctx).await?;
    let endpoint = inbox::partner_endpoint(ctx, secret.as_ref()).await?;
    let (partner, port) = partner(ctx, endpoint)?;
    // Bucket names are global: a name another account owns must stop us before anything is
    // billed, not after the NAT gateways are up.
    inbox::check_bucket(ctx).await?;
    iam::check_role(ctx).await?;
    let checked = network::check(ctx, partner.as_ref(), port).await?;
    match &partner {
        None => ctx.report.note(format!(
            "no partner address (partner_address or the secret's Host): the function may reach \
             tcp/{port} anywhere; set one to restrict egress"
        )),
        Some(Partner::Host(h)) => ctx.report.note(format!(
            "partner {h} resolves to {}; re-run apply if its DNS changes",
            checked.partner_cidrs.join(", ")
        )),
        Some(Partner::Ip(_)) => {}
    }

    let network = network::ensure(ctx, &checked).await?;
    let inbox = inbox::ensure(ctx, secret.as_ref()).await?;
    let kms_keys = inbox::kms_keys(ctx, &inbox.secret_arn).await?;
    let (role, new_role) =
        iam::ensure_role(ctx, &inbox.secret_arn, &inbox.queue.arn, &kms_keys).await?;
    crate::logs::ensure(ctx).await?;
    let function = function::ensure(
        ctx,
        package.as_ref(),
        &network,
        (&role, new_role),
        &inbox.secret_arn,
        &inbox.queue.arn,
    )
    .await?;
    let alarm_topic = crate::alarms::ensure(ctx, &network.azs, &function.arn).await?;
    Ok(Applied {
        network,
        inbox,
        function,
        alarm_topic,
    })
}

/// Where the security group lets the function go: the operator's `partner_address`, else the
/// secret's `Host`; the port is always the secret's `Port` (22 when it has none). A
/// `partner_address` that disagrees with the secret is reported: the function connects to the
/// secret's Host, so the rule may not match it.
fn partner(ctx: Ctx<'_>, endpoint: Option<(String, u16)>) -> Result<(Option<Partner>, u16)> {
    let port = endpoint.as_ref().map_or(22, |(_, p)| *p);
    let from_secret = match &endpoint {
        Some((host, _)) => Some(config::parse_partner(host).map_err(|_| {
            crate::Error::invalid(
                "secret_file",
                format!(
                    "the partner JSON's Host {host:?} is neither an IPv4 address nor a hostname"
                ),
            )
        })?),
        None => None,
    };
    match (&ctx.spec.partner, from_secret) {
        (Some(given), Some(secret)) if *given != secret => {
            ctx.report.note(format!(
                "partner_address {} differs from the secret's Host {}: the security group \
                 follows partner_address, the function connects to the secret's Host",
                show(given),
                show(&secret)
            ));
            Ok((Some(given.clone()), port))
        }
        (Some(given), _) => Ok((Some(given.clone()), port)),
        (None, secret) => Ok((secret, port)),
    }
}

fn show(p: &Partner) -> String {
    match p {
        Partner::Ip(ip) => ip.to_string(),
        Partner::Host(h) => h.clone(),
    }
}
