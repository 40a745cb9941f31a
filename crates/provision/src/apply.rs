//! `apply` (and `plan`, the same steps without changes): first every check that can fail on the
//! operator's input, so that a bad input creates nothing; then network → inbox → role → function
//! → alarm topic → self-check schedule → alarms.

use crate::config::{self, Partner};
use crate::context::{Ctx, Mode};
use crate::error::Result;
use crate::function::{self, Function};
use crate::iam;
use crate::inbox::{self, Inbox, SecretRef};
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
    /// The declared partners as built (or planned): name, prefix, secret, queues, port,
    /// concurrency; empty for a single-partner stack.
    pub partners: Vec<crate::partners::Listed>,
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
    // Each partner's secret (or the single partner's): it exists or a file creates it, and its
    // Host/Port (or the operator's address) is where the security group lets the function go.
    let mut values = Vec::new();
    let mut egress = Vec::new();
    for (secret, address) in secrets(spec) {
        let value = inbox::check(ctx, &secret).await?;
        let endpoint = inbox::partner_endpoint(ctx, &secret, value.as_ref()).await?;
        let (partner, port) = partner(ctx, (secret.field, address), endpoint)?;
        values.push((value, port));
        egress.push((partner, port));
    }
    crate::partners::check_removals(ctx).await?;
    // Bucket names are global: a name another account owns must stop us before anything is
    // billed, not after the NAT gateways are up.
    inbox::check_bucket(ctx).await?;
    iam::check_role(ctx).await?;
    let checked = network::check(ctx, &egress).await?;
    for ((partner, port), e) in egress.iter().zip(&checked.egress) {
        match partner {
            None => ctx.report.note(format!(
                "no partner address (partner_address or the secret's Host): the function may \
                 reach tcp/{port} anywhere; set one to restrict egress"
            )),
            Some(Partner::Host(h)) => ctx.report.note(format!(
                "partner {h} resolves to {}; re-run apply if its DNS changes",
                e.cidrs.join(", ")
            )),
            Some(Partner::Ip(_)) => {}
        }
    }

    let network = network::ensure(ctx, &checked).await?;
    // With partners, the rule for keys under none of their prefixes exists before the bucket
    // sends its events to EventBridge; back to one partner, it goes.
    match crate::unrouted::prefixes(spec) {
        Some(prefixes) => crate::unrouted::ensure(ctx, &prefixes).await?,
        None => crate::unrouted::delete(ctx, true).await?,
    }
    let inbox = inbox::ensure(ctx, &values).await?;
    // The bucket no longer notifies a removed partner's queue: retire it (and the single-partner
    // queue of a stack that now has partners, once drained).
    let mut secret_arns: Vec<String> = inbox
        .partners
        .iter()
        .map(|r| r.secret_arn.clone())
        .collect();
    // Two partners may share a secret (one server, two prefixes).
    secret_arns.sort();
    secret_arns.dedup();
    let kept_queue = crate::partners::retire(ctx, &secret_arns).await?;
    let mut queue_arns: Vec<String> = inbox.partners.iter().map(|r| r.queue.arn.clone()).collect();
    queue_arns.extend(kept_queue);
    let kms_keys = inbox::kms_keys(ctx, &secret_arns).await?;
    let (role, new_role) = iam::ensure_role(ctx, &secret_arns, &queue_arns, &kms_keys).await?;
    crate::logs::ensure(ctx).await?;
    let function =
        function::ensure(ctx, package.as_ref(), &network, (&role, new_role), &inbox).await?;
    let dlqs: Vec<(Option<String>, String)> = inbox
        .partners
        .iter()
        .map(|r| (r.name.clone(), r.dlq_name.clone()))
        .collect();
    let alarm_topic = crate::alarms::ensure(ctx, &network.azs, &function.arn, &dlqs).await?;
    let partners = spec
        .partners
        .iter()
        .zip(&inbox.partners)
        .zip(&egress)
        .map(|((p, route), (_, port))| crate::partners::Listed {
            name: p.name().to_owned(),
            prefix: p.spec.prefix.clone(),
            secret: Some(p.secret().to_owned()),
            queue: route.queue_name.clone(),
            dlq: route.dlq_name.clone(),
            port: Some(*port),
            max_concurrency: Some(p.max_concurrency as i32),
        })
        .collect();
    Ok(Applied {
        network,
        inbox,
        function,
        alarm_topic,
        partners,
    })
}

/// Each partner's secret and the operator's address for it (one for the single partner).
fn secrets(spec: &crate::Spec) -> Vec<(SecretRef<'_>, Option<&Partner>)> {
    if spec.partners.is_empty() {
        return vec![(SecretRef::single(spec), spec.partner.as_ref())];
    }
    spec.partners
        .iter()
        .map(|p| {
            let secret = SecretRef {
                id: p.secret(),
                file: p.secret_file.as_deref(),
                field: &p.fields.secret,
                whose: &p.fields.whose,
            };
            (secret, p.address.as_ref())
        })
        .collect()
}

/// Where the security group lets the function go: the operator's address (`partner_address`, or a
/// partner's `address`), else the secret's `Host`; the port is always the secret's `Port` (22
/// when it has none). An address that disagrees with the secret is reported: the function
/// connects to the secret's Host, so the rule may not match it.
fn partner(
    ctx: Ctx<'_>,
    (field, given): (&str, Option<&Partner>),
    endpoint: Option<(String, u16)>,
) -> Result<(Option<Partner>, u16)> {
    let port = endpoint.as_ref().map_or(22, |(_, p)| *p);
    let from_secret = match &endpoint {
        Some((host, _)) => Some(config::parse_partner(host).map_err(|_| {
            crate::Error::invalid(
                format!("{field}_file"),
                format!(
                    "the partner JSON's Host {host:?} is neither an IPv4 address nor a hostname"
                ),
            )
        })?),
        None => None,
    };
    let address = if ctx.spec.partners.is_empty() {
        "partner_address".to_owned()
    } else {
        field.replace(".secret", ".address")
    };
    match (given, from_secret) {
        (Some(given), Some(secret)) if *given != secret => {
            ctx.report.note(format!(
                "{address} {} differs from the secret's Host {}: the security group \
                 follows {address}, the function connects to the secret's Host",
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
