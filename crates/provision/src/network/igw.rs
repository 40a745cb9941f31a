//! The internet gateway, attached to the VPC.

use aws_sdk_ec2::types::{InternetGateway, ResourceType};

use super::ec2::{find_named, send_visible, tag_spec};
use crate::config::{IGW_NAME, VPC_NAME};
use crate::context::Action;
use crate::context::{Clients, Ctx, State};
use crate::error::{aws, Result};
use crate::retry::delete_when_in_use;

/// The stack's internet gateway.
pub async fn find_igw(c: &Clients, stack: &str) -> Result<Option<InternetGateway>> {
    find_named(
        stack,
        IGW_NAME,
        &[],
        (
            "DescribeInternetGateways",
            format!("internet gateway {IGW_NAME:?}"),
        ),
        |f| {
            c.ec2
                .describe_internet_gateways()
                .set_filters(Some(f))
                .send()
        },
        |out| out.internet_gateways(),
    )
    .await
}

pub(crate) async fn ensure_igw(ctx: Ctx<'_>, vpc: &str) -> Result<String> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let found = find_igw(c, stack).await?;
    let attached = found
        .as_ref()
        .is_some_and(|g| g.attachments().iter().any(|a| a.vpc_id() == Some(vpc)));
    let what = format!("internet gateway {IGW_NAME:?}");
    let id = ctx
        .ensure(
            &what,
            found.and_then(|g| g.internet_gateway_id().map(Into::into)),
            || async {
                let out = c
                    .ec2
                    .create_internet_gateway()
                    .tag_specifications(tag_spec(ResourceType::InternetGateway, stack, IGW_NAME))
                    .send()
                    .await
                    .map_err(aws("CreateInternetGateway", &what))?;
                Ok(out
                    .internet_gateway()
                    .and_then(|g| g.internet_gateway_id())
                    .unwrap_or_default()
                    .to_owned())
            },
        )
        .await?;
    let attach = format!("attachment of {IGW_NAME:?} to {VPC_NAME:?}");
    ctx.converge(&attach, State::of(attached, true), || async {
        send_visible!(
            "AttachInternetGateway",
            c.ec2
                .attach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(vpc)
        )
        .map_err(aws("AttachInternetGateway", &attach))?;
        Ok(())
    })
    .await?;
    Ok(id)
}

/// Detaches and deletes the internet gateway (destroy).
pub(crate) async fn delete(ctx: Ctx<'_>) -> Result<()> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    if let Some(igw) = super::find_igw(c, stack).await? {
        let id = igw.internet_gateway_id().unwrap_or_default();
        let what = format!("internet gateway {IGW_NAME:?}");
        for a in igw.attachments() {
            let vpc = a.vpc_id().unwrap_or_default();
            // Refused (DependencyViolation: "mapped public addresses") until the NAT gateways'
            // addresses are released, which can trail their deletion.
            delete_when_in_use(
                "DetachInternetGateway",
                &format!("detachment of {what}"),
                &["DependencyViolation"],
                &["Gateway.NotAttached"],
                ctx.spec.nat_wait,
                || {
                    c.ec2
                        .detach_internet_gateway()
                        .internet_gateway_id(id)
                        .vpc_id(vpc)
                        .send()
                },
            )
            .await?;
        }
        let out = c
            .ec2
            .delete_internet_gateway()
            .internet_gateway_id(id)
            .send()
            .await;
        out.map_err(aws("DeleteInternetGateway", &what))?;
        ctx.record(Action::Delete, what, id);
    }
    Ok(())
}
