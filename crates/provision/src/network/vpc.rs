//! The VPC (10.0.0.0/25), found by its tags.

use aws_sdk_ec2::types::{ResourceType, Vpc};

use super::ec2::{find_named, tag_spec};
use crate::config::{VPC_CIDR, VPC_NAME};
use crate::context::Action;
use crate::context::{Clients, Ctx};
use crate::error::{aws, Error, Result};
use crate::retry::{delete_when_in_use, IN_USE, IN_USE_WAIT};

/// The stack's VPC.
pub async fn find_vpc(c: &Clients, stack: &str) -> Result<Option<Vpc>> {
    find_named(
        stack,
        VPC_NAME,
        &[],
        ("DescribeVpcs", format!("VPC {VPC_NAME:?}")),
        |f| c.ec2.describe_vpcs().set_filters(Some(f)).send(),
        |out| out.vpcs(),
    )
    .await
}

pub(crate) async fn ensure_vpc(ctx: Ctx<'_>) -> Result<String> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let found = find_vpc(c, stack).await?;
    if let Some(v) = &found {
        if v.cidr_block() != Some(VPC_CIDR) {
            return Err(Error::Conflict {
                resource: format!("VPC {VPC_NAME:?} ({})", v.vpc_id().unwrap_or_default()),
                problem: format!(
                    "its CIDR is {:?}, this stack wants {VPC_CIDR}",
                    v.cidr_block()
                ),
                next: "run destroy for this stack, or use another --stack".into(),
            });
        }
    }
    let what = format!("VPC {VPC_NAME:?} {VPC_CIDR}");
    ctx.ensure(
        &what,
        found.and_then(|v| v.vpc_id().map(Into::into)),
        || async {
            let out = c
                .ec2
                .create_vpc()
                .cidr_block(VPC_CIDR)
                .tag_specifications(tag_spec(ResourceType::Vpc, stack, VPC_NAME))
                .send()
                .await
                .map_err(aws("CreateVpc", &what))?;
            Ok(out
                .vpc()
                .and_then(|v| v.vpc_id())
                .unwrap_or_default()
                .to_owned())
        },
    )
    .await
}

/// Deletes the VPC (destroy).
pub(crate) async fn delete(ctx: Ctx<'_>) -> Result<()> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    if let Some(id) = super::find_vpc(c, stack)
        .await?
        .and_then(|v| v.vpc_id().map(str::to_owned))
    {
        let what = format!("VPC {VPC_NAME:?}");
        delete_when_in_use(
            "DeleteVpc",
            &what,
            IN_USE,
            &["InvalidVpcID.NotFound"],
            IN_USE_WAIT,
            || c.ec2.delete_vpc().vpc_id(&id).send(),
        )
        .await?;
        ctx.record(Action::Delete, what, &id);
    }
    Ok(())
}
