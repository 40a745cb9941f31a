//! The four subnets: public and private, one pair per AZ.

use aws_sdk_ec2::types::{ResourceType, Subnet};

use super::ec2::{find_named, send_visible, tag_spec};
use crate::config::HALVES;
use crate::context::Action;
use crate::context::{Clients, Ctx};
use crate::error::{aws, Error, Result};
use crate::retry::{delete_when_in_use, IN_USE, IN_USE_WAIT};

/// The stack's subnet `name`.
pub async fn find_subnet(c: &Clients, stack: &str, name: &str) -> Result<Option<Subnet>> {
    find_named(
        stack,
        name,
        &[],
        ("DescribeSubnets", format!("subnet {name}")),
        |f| c.ec2.describe_subnets().set_filters(Some(f)).send(),
        |out| out.subnets(),
    )
    .await
}

pub(crate) async fn ensure_subnet(
    ctx: Ctx<'_>,
    vpc: &str,
    name: &str,
    cidr: &str,
    az: &str,
) -> Result<String> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let found = find_subnet(c, stack, name).await?;
    if let Some(s) = &found {
        if s.cidr_block() != Some(cidr) || s.availability_zone() != Some(az) {
            return Err(Error::Conflict {
                resource: format!("subnet {name} ({})", s.subnet_id().unwrap_or_default()),
                problem: format!(
                    "it is {:?} in {:?}; this run wants {cidr} in {az}",
                    s.cidr_block(),
                    s.availability_zone()
                ),
                next: "keep the AZs the stack was built with (drop availability_zones), or destroy it first".into(),
            });
        }
    }
    let what = format!("subnet {name} {cidr} in {az}");
    ctx.ensure(
        &what,
        found.and_then(|s| s.subnet_id().map(Into::into)),
        || async {
            let out = send_visible!(
                "CreateSubnet",
                c.ec2
                    .create_subnet()
                    .vpc_id(vpc)
                    .cidr_block(cidr)
                    .availability_zone(az)
                    .tag_specifications(tag_spec(ResourceType::Subnet, stack, name))
            )
            .map_err(aws("CreateSubnet", &what))?;
            Ok(out
                .subnet()
                .and_then(|s| s.subnet_id())
                .unwrap_or_default()
                .to_owned())
        },
    )
    .await
}

/// Deletes the four subnets (destroy), retrying while something still uses them.
pub(crate) async fn delete_all(ctx: Ctx<'_>) -> Result<()> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    for half in &HALVES {
        for name in [half.public, half.private] {
            let Some(id) = super::find_subnet(c, stack, name)
                .await?
                .and_then(|s| s.subnet_id().map(str::to_owned))
            else {
                continue;
            };
            let what = format!("subnet {name}");
            delete_when_in_use(
                "DeleteSubnet",
                &what,
                IN_USE,
                &["InvalidSubnetID.NotFound"],
                IN_USE_WAIT,
                || c.ec2.delete_subnet().subnet_id(&id).send(),
            )
            .await?;
            ctx.record(Action::Delete, what, &id);
        }
    }
    Ok(())
}
