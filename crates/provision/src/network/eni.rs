//! The network interfaces Lambda creates for the function in the private subnets (its
//! "Hyperplane" ENIs): released by Lambda some minutes after the function is deleted, with the
//! function's role — which is why destroy deletes the role only after this.

use crate::context::{Action, Ctx};
use crate::error::{aws, Error, Result};
use crate::retry::{delete_when_in_use, IN_USE_WAIT};

/// The description prefix of the network interfaces Lambda creates for a function in a VPC.
const LAMBDA_ENI_PREFIX: &str = "AWS Lambda VPC ENI";

/// Waits until Lambda has released the function's network interfaces in the stack's security
/// group (it does so with the function's role, which is why the role is deleted after this), then
/// deletes the ones left `available`.
pub(crate) async fn release(ctx: Ctx<'_>) -> Result<()> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let Some(sg) = super::find_security_group(c, stack, &ctx.spec.security_group_name())
        .await?
        .and_then(|g| g.group_id().map(str::to_owned))
    else {
        return Ok(());
    };
    let what = format!("the function's network interfaces in {sg}");
    let lambda_enis = || async {
        let out = c
            .ec2
            .describe_network_interfaces()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("group-id")
                    .values(&sg)
                    .build(),
            )
            .send()
            .await;
        let out = out.map_err(aws("DescribeNetworkInterfaces", &what))?;
        Ok::<_, Error>(
            out.network_interfaces()
                .iter()
                .filter(|n| {
                    n.description()
                        .is_some_and(|d| d.starts_with(LAMBDA_ENI_PREFIX))
                })
                .map(|n| {
                    (
                        n.network_interface_id().unwrap_or_default().to_owned(),
                        n.status()
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    let waiting = format!("Lambda to release {what}");
    let released = crate::retry::until(&waiting, IN_USE_WAIT, || async {
        let busy: Vec<String> = lambda_enis()
            .await?
            .into_iter()
            .filter(|(_, status)| status == "in-use")
            .map(|(id, _)| id)
            .collect();
        Ok(if busy.is_empty() {
            Ok(())
        } else {
            Err(format!("{} in use", busy.join(", ")))
        })
    })
    .await?;
    if released.is_none() {
        return Err(Error::Timeout {
            resource: what,
            state: "released by Lambda",
            waited: IN_USE_WAIT,
            next: "run destroy again later (Lambda can take up to ~40 minutes)".into(),
        });
    }
    for (id, _) in lambda_enis().await? {
        let one = format!("network interface {id} left by the function");
        delete_when_in_use(
            "DeleteNetworkInterface",
            &one,
            &["InvalidNetworkInterface.InUse"],
            &["InvalidNetworkInterfaceID.NotFound"],
            IN_USE_WAIT,
            || {
                c.ec2
                    .delete_network_interface()
                    .network_interface_id(&id)
                    .send()
            },
        )
        .await?;
        ctx.record(Action::Delete, one, &id);
    }
    Ok(())
}
