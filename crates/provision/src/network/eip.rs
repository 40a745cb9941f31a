//! The two Elastic IPs: the partner's allowlist, kept across destroy unless released.

use aws_sdk_ec2::types::{Address, DomainType, ResourceType};

use super::ec2::{find_named, send_visible, tag_spec, tags};
use crate::config::{Half, HALVES};
use crate::context::Action;
use crate::context::{Clients, Ctx, State};
use crate::error::{aws, Error, Result};
use crate::retry::{delete_when_in_use, IN_USE};

/// An Elastic IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eip {
    /// `eipalloc-…`.
    pub allocation_id: String,
    /// The public address (unknown in a plan for a new one).
    pub public_ip: String,
}

/// The stack's Elastic IP `name` (kept across destroy unless released).
pub async fn find_eip(c: &Clients, stack: &str, name: &str) -> Result<Option<Address>> {
    find_named(
        stack,
        name,
        &[],
        ("DescribeAddresses", format!("Elastic IP {name}")),
        |f| c.ec2.describe_addresses().set_filters(Some(f)).send(),
        |out| out.addresses(),
    )
    .await
}

/// The half's Elastic IP: the one tagged for it (kept by an earlier destroy), else the operator's,
/// else a new one.
pub(crate) async fn ensure_eip(ctx: Ctx<'_>, half: &Half) -> Result<Eip> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let index = HALVES.iter().position(|h| h == half).expect("a half");
    let given = ctx
        .spec
        .eip_allocation_ids
        .as_ref()
        .map(|ids| ids[index].as_str());
    let found = find_eip(c, stack, half.eip).await?;
    let eip = |a: &Address| Eip {
        allocation_id: a.allocation_id().unwrap_or_default().into(),
        public_ip: a.public_ip().unwrap_or_default().into(),
    };
    match (found, given) {
        (Some(a), Some(id)) if a.allocation_id() != Some(id) => Err(Error::Conflict {
            resource: format!("Elastic IP {} ({})", half.eip, a.public_ip().unwrap_or("?")),
            problem: format!("the stack already has {:?}, eip_allocation_ids asks for {id}", a.allocation_id()),
            next: "drop eip_allocation_ids to keep the stack's EIPs, or destroy with --release-eips first".into(),
        }),
        (Some(a), _) => {
            let e = eip(&a);
            ctx.record(crate::context::Action::Unchanged, format!("Elastic IP {} {}", half.eip, e.public_ip), &e.allocation_id);
            Ok(e)
        }
        (None, Some(id)) => {
            let what = format!("adoption of Elastic IP {id} as {}", half.eip);
            ctx.converge(&what, State::Differs, || async {
                send_visible!("CreateTags", c.ec2
                    .create_tags()
                    .resources(id)
                    .set_tags(Some(tags(stack, half.eip).into())))
                    .map_err(aws("CreateTags", &what))?;
                Ok(())
            })
            .await?;
            let out = c.ec2.describe_addresses().allocation_ids(id).send().await;
            let out = out.map_err(aws("DescribeAddresses", format!("Elastic IP {id}")))?;
            Ok(out.addresses().first().map(eip).unwrap_or(Eip { allocation_id: id.into(), public_ip: String::new() }))
        }
        (None, None) => {
            let what = format!("Elastic IP {}", half.eip);
            let mut public_ip = String::new();
            let id = ctx
                .ensure(&what, None, || async {
                    let out = c
                        .ec2
                        .allocate_address()
                        .domain(DomainType::Vpc)
                        .tag_specifications(tag_spec(ResourceType::ElasticIp, stack, half.eip))
                        .send()
                        .await
                        .map_err(aws("AllocateAddress", &what))?;
                    public_ip = out.public_ip().unwrap_or_default().to_owned();
                    Ok(out.allocation_id().unwrap_or_default().to_owned())
                })
                .await?;
            Ok(Eip { allocation_id: id, public_ip })
        }
    }
}

/// Frees the Elastic IPs from their NAT gateways (destroy) and keeps them — the partner's
/// allowlist — unless `release` says to release them.
pub(crate) async fn free(ctx: Ctx<'_>, release: bool) -> Result<()> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    for half in &HALVES {
        let Some(eip) = super::find_eip(c, stack, half.eip).await? else {
            continue;
        };
        let id = eip.allocation_id().unwrap_or_default();
        let what = format!(
            "Elastic IP {} {}",
            half.eip,
            eip.public_ip().unwrap_or_default()
        );
        // AWS frees a NAT gateway's EIP when the gateway is deleted; make sure of it (moto, for
        // one, leaves the association behind), so that the next apply can use the EIP again.
        if let Some(assoc) = eip.association_id() {
            let free = format!("association of {what}");
            delete_when_in_use(
                "DisassociateAddress",
                &free,
                IN_USE,
                &["InvalidAssociationID.NotFound"],
                ctx.spec.nat_wait,
                || c.ec2.disassociate_address().association_id(assoc).send(),
            )
            .await?;
        }
        if release {
            delete_when_in_use(
                "ReleaseAddress",
                &what,
                IN_USE,
                &["InvalidAllocationID.NotFound"],
                ctx.spec.nat_wait,
                || c.ec2.release_address().allocation_id(id).send(),
            )
            .await?;
            ctx.record(Action::Delete, what, id);
        } else {
            ctx.record(
                Action::Keep,
                format!("{what} (the partner's allowlist; --release-eips releases it)"),
                id,
            );
        }
    }

    Ok(())
}
