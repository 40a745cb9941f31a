//! The S3 gateway endpoint on the private route tables (S3 reads skip the NAT's per-GB charge).

use aws_sdk_ec2::types::{ResourceType, VpcEndpoint, VpcEndpointType};

use super::ec2::{client_token, named, one, send_visible, tag_spec};
use crate::config::{HALVES, S3_ENDPOINT_NAME};
use crate::context::Action;
use crate::context::{Clients, Ctx, State};
use crate::error::Error;
use crate::error::{aws, Result};

/// The stack's S3 gateway endpoint, unless deleted.
pub async fn find_endpoint(c: &Clients, stack: &str) -> Result<Option<VpcEndpoint>> {
    let what = format!("VPC endpoint {S3_ENDPOINT_NAME}");
    let out = c
        .ec2
        .describe_vpc_endpoints()
        .set_filters(Some(named(stack, S3_ENDPOINT_NAME)))
        .send()
        .await;
    let live: Vec<VpcEndpoint> = out
        .map_err(aws("DescribeVpcEndpoints", &what))?
        .vpc_endpoints()
        .iter()
        .filter(|e| !matches!(e.state().map(|s| s.as_str()), Some("deleted" | "deleting")))
        .cloned()
        .collect();
    one(&live, stack, S3_ENDPOINT_NAME, what)
}

pub(crate) async fn ensure_endpoint(
    ctx: Ctx<'_>,
    vpc: &str,
    private_tables: &[String],
) -> Result<String> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let found = find_endpoint(c, stack).await?;
    let what = format!(
        "S3 gateway endpoint on {}, {}",
        HALVES[0].private_rt, HALVES[1].private_rt
    );
    let id = ctx
        .ensure(
            &what,
            found
                .as_ref()
                .and_then(|e| e.vpc_endpoint_id().map(Into::into)),
            || async {
                let out = send_visible!(
                    "CreateVpcEndpoint",
                    c.ec2
                        .create_vpc_endpoint()
                        .vpc_id(vpc)
                        .vpc_endpoint_type(VpcEndpointType::Gateway)
                        .service_name(format!("com.amazonaws.{}.s3", c.region))
                        .set_route_table_ids(Some(private_tables.to_vec()))
                        .client_token(client_token(stack, S3_ENDPOINT_NAME))
                        .tag_specifications(tag_spec(
                            ResourceType::VpcEndpoint,
                            stack,
                            S3_ENDPOINT_NAME,
                        ))
                )
                .map_err(aws("CreateVpcEndpoint", &what))?;
                Ok(out
                    .vpc_endpoint()
                    .and_then(|e| e.vpc_endpoint_id())
                    .unwrap_or_default()
                    .to_owned())
            },
        )
        .await?;
    if let Some(e) = found {
        let missing: Vec<String> = private_tables
            .iter()
            .filter(|t| !e.route_table_ids().contains(t))
            .cloned()
            .collect();
        let routes = "S3 gateway endpoint route tables";
        ctx.converge(routes, State::of(true, missing.is_empty()), || async {
            send_visible!(
                "ModifyVpcEndpoint",
                c.ec2
                    .modify_vpc_endpoint()
                    .vpc_endpoint_id(&id)
                    .set_add_route_table_ids(Some(missing))
            )
            .map(|_| ())
            .map_err(aws("ModifyVpcEndpoint", routes))
        })
        .await?;
    }
    Ok(id)
}

/// Deletes the S3 gateway endpoint (destroy).
pub(crate) async fn delete(ctx: Ctx<'_>) -> Result<()> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let Some(id) = find_endpoint(c, stack)
        .await?
        .and_then(|e| e.vpc_endpoint_id().map(str::to_owned))
    else {
        return Ok(());
    };
    let what = format!("VPC endpoint {S3_ENDPOINT_NAME}");
    let out = c
        .ec2
        .delete_vpc_endpoints()
        .vpc_endpoint_ids(&id)
        .send()
        .await
        .map_err(aws("DeleteVpcEndpoints", &what))?;
    // The call succeeds as a whole and reports per endpoint what it could not delete.
    if let Some(item) = out.unsuccessful().first() {
        let err = item.error();
        return Err(Error::Conflict {
            resource: format!("{what} ({id})"),
            problem: format!(
                "AWS did not delete it: {} ({})",
                err.and_then(|e| e.message()).unwrap_or("no message"),
                err.and_then(|e| e.code()).unwrap_or("no code")
            ),
            next: "fix the cause, then run destroy again".into(),
        });
    }
    ctx.record(Action::Delete, what, &id);
    Ok(())
}
