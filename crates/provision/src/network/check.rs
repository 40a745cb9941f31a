//! The checks that run before anything is created: AZs (by zone ID, where Lambda can run), the
//! operator's Elastic IPs, the partner's address.

use std::collections::BTreeSet;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::*;
use crate::config::{Partner, HALVES};
use crate::context::Ctx;
use crate::error::{aws, Error, Result};
use crate::STACK_TAG;

/// Inputs checked against AWS before anything is created.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The two AZs to use.
    pub azs: [String; 2],
    /// Where each partner's SFTP port may be reached.
    pub egress: Vec<Egress>,
}

/// One partner's egress rule: its port to its address(es).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// The partner's SFTP port (its secret's `Port`, default 22).
    pub port: u16,
    /// Its address(es) as /32 CIDRs, or `0.0.0.0/0` when unknown.
    pub cidrs: Vec<String>,
}

/// Zone IDs where Lambda cannot place a function's network interfaces (AWS Lambda Developer Guide,
/// "Giving Lambda functions access to resources in an Amazon VPC": a function whose subnet is in
/// one of these fails to create). Zone *names* map to different zones in each account; zone IDs
/// are the same everywhere, so the choice is made by ID.
pub const LAMBDA_UNSUPPORTED_AZ_IDS: &[&str] =
    &["use1-az3", "usw1-az2", "apne1-az3", "apne2-az4", "cac1-az3"];

/// An AZ of the region: its name and its zone ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Zone {
    name: String,
    id: String,
}

/// Checks the AZ choice, the operator's Elastic IPs and the partners' addresses against AWS and
/// DNS. `partners` are where the function must reach: each partner's address and port (from its
/// secret, or the operator's address with the secret's port).
pub async fn check(ctx: Ctx<'_>, partners: &[(Option<Partner>, u16)]) -> Result<Checked> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let out = c.ec2.describe_availability_zones().send().await;
    let mut zones: Vec<Zone> = out
        .map_err(aws(
            "DescribeAvailabilityZones",
            format!("region {}", c.region),
        ))?
        .availability_zones()
        .iter()
        .filter(|z| z.state().is_none_or(|s| s.as_str() == "available"))
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| {
            Some(Zone {
                name: z.zone_name()?.to_owned(),
                id: z.zone_id().unwrap_or_default().to_owned(),
            })
        })
        .collect();
    zones.sort_by(|a, b| a.name.cmp(&b.name));
    let supported = |z: &&Zone| !LAMBDA_UNSUPPORTED_AZ_IDS.contains(&z.id.as_str());
    let usable: Vec<String> = zones
        .iter()
        .filter(supported)
        .map(|z| format!("{} ({})", z.name, z.id))
        .collect();
    let azs = match &spec.azs {
        Some(azs) => {
            let mut chosen = Vec::new();
            for az in azs {
                let Some(zone) = zones.iter().find(|z| z.name == *az || z.id == *az) else {
                    return Err(Error::invalid(
                        "availability_zones",
                        format!(
                            "{az:?} is not an available AZ of {}; choose two of {usable:?}",
                            c.region
                        ),
                    ));
                };
                if !supported(&zone) {
                    return Err(Error::invalid(
                        "availability_zones",
                        format!(
                            "{az:?} is zone {}, where Lambda cannot run a function in a VPC; \
                             choose two of {usable:?}",
                            zone.id
                        ),
                    ));
                }
                chosen.push(zone.name.clone());
            }
            if chosen[0] == chosen[1] {
                return Err(Error::invalid(
                    "availability_zones",
                    format!("{azs:?} name the same zone twice: the two NAT gateways need two"),
                ));
            }
            [chosen[0].clone(), chosen[1].clone()]
        }
        None => match existing_azs(ctx).await? {
            Some(azs) => azs,
            None => {
                let names: Vec<&Zone> = zones.iter().filter(supported).collect();
                match names.as_slice() {
                    [a, b, ..] => [a.name.clone(), b.name.clone()],
                    _ => {
                        return Err(Error::invalid(
                            "availability_zones",
                            format!(
                                "{} has fewer than two AZs where Lambda can run in a VPC",
                                c.region
                            ),
                        ))
                    }
                }
            }
        },
    };
    if let Some(ids) = &spec.eip_allocation_ids {
        check_given_eips(ctx, ids).await?;
    }
    let mut egress = Vec::with_capacity(partners.len());
    for (partner, port) in partners {
        egress.push(Egress {
            port: *port,
            cidrs: partner_cidrs(partner.as_ref(), *port).await?,
        });
    }
    // Distinct port → address rules, plus tcp/443 for AWS's APIs.
    let mut rules: Vec<(u16, &String)> = egress
        .iter()
        .flat_map(|e| e.cidrs.iter().map(move |c| (e.port, c)))
        .collect();
    rules.sort();
    rules.dedup();
    if rules.len() + 1 > SG_RULES_DEFAULT_QUOTA {
        ctx.report.note(format!(
            "the partners need {} egress rules in the function's security group; AWS's default \
             quota is {SG_RULES_DEFAULT_QUOTA} per group: raise \"Inbound or outbound rules per \
             security group\" in Service Quotas before apply, or it fails at the security group",
            rules.len() + 1
        ));
    }
    Ok(Checked { azs, egress })
}

/// AWS's default quota of outbound rules per security group (adjustable in Service Quotas).
const SG_RULES_DEFAULT_QUOTA: usize = 60;

/// The AZs of the existing public subnets, so that a re-apply without an AZ choice keeps them.
pub(crate) async fn existing_azs(ctx: Ctx<'_>) -> Result<Option<[String; 2]>> {
    let mut azs = Vec::new();
    for half in &HALVES {
        let subnet = find_subnet(ctx.clients, &ctx.spec.stack, half.public).await?;
        azs.extend(subnet.and_then(|s| s.availability_zone().map(str::to_owned)));
    }
    Ok(azs.try_into().ok())
}

pub(crate) async fn check_given_eips(ctx: Ctx<'_>, ids: &[String; 2]) -> Result<()> {
    let out = ctx
        .clients
        .ec2
        .describe_addresses()
        .set_allocation_ids(Some(ids.to_vec()))
        .send()
        .await;
    let out = out.map_err(|e| match e.code() {
        Some("InvalidAllocationID.NotFound" | "InvalidAllocationID.Malformed") => Error::invalid(
            "eip_allocation_ids",
            format!(
                "{ids:?}: not Elastic IPs of this account in {}",
                ctx.clients.region
            ),
        ),
        _ => aws("DescribeAddresses", format!("Elastic IPs {ids:?}"))(e),
    })?;
    for a in out.addresses() {
        let owner = a
            .tags()
            .iter()
            .find(|t| t.key() == Some(STACK_TAG))
            .and_then(|t| t.value());
        let id = a.allocation_id().unwrap_or_default();
        if owner.is_some_and(|o| o != ctx.spec.stack)
            || (owner.is_none() && a.association_id().is_some())
        {
            return Err(Error::Conflict {
                resource: format!("Elastic IP {id} ({})", a.public_ip().unwrap_or("?")),
                problem: "it is in use by something outside this stack".into(),
                next: "pass two unassociated Elastic IPs, or none to allocate new ones".into(),
            });
        }
    }
    Ok(())
}

/// Where the security group lets the partner's port go: the partner's address(es), or anywhere if
/// not known.
pub(crate) async fn partner_cidrs(partner: Option<&Partner>, port: u16) -> Result<Vec<String>> {
    let ips: BTreeSet<std::net::Ipv4Addr> = match partner {
        None => return Ok(vec!["0.0.0.0/0".into()]),
        Some(Partner::Ip(ip)) => [*ip].into(),
        Some(Partner::Host(host)) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| {
                Error::invalid(
                    "partner_address",
                    format!("cannot resolve {host:?}: {e}; give its IPv4 address"),
                )
            })?
            .filter_map(|a| match a.ip() {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            })
            .collect(),
    };
    if ips.is_empty() {
        return Err(Error::invalid(
            "partner_address",
            "resolves to no IPv4 address; give its IPv4 address",
        ));
    }
    Ok(ips.iter().map(|ip| format!("{ip}/32")).collect())
}
