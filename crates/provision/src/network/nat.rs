//! The two NAT gateways, one per AZ, each on its Elastic IP; `pending` for minutes after
//! creation and `deleting` for minutes after deletion.

use aws_sdk_ec2::types::{ConnectivityType, NatGateway, ResourceType};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::ec2::{client_token, filter, find_named, named, one, send_visible, tag_spec};
use super::*;
use crate::config::Half;
use crate::context::Action;
use crate::context::{Clients, Ctx};
use crate::error::{aws, Error, Result};

/// The stack's NAT gateway `name`, if pending or available (deleted ones linger for an hour).
pub async fn find_nat(c: &Clients, stack: &str, name: &str) -> Result<Option<NatGateway>> {
    find_named(
        stack,
        name,
        &[filter("state", &["pending", "available"])],
        ("DescribeNatGateways", format!("NAT gateway {name}")),
        |f| c.ec2.describe_nat_gateways().set_filter(Some(f)).send(),
        |out| out.nat_gateways(),
    )
    .await
}

/// The stack's NAT gateway `name` with its state, if pending, available or deleting (`destroy`
/// must see one that is still deleting: it is still billed and still holds its subnet). The state
/// is checked here rather than in the describe filter, as the state the answer shows is the one
/// that counts (an emulator's filter and its answer can disagree).
pub async fn find_nat_any(
    c: &Clients,
    stack: &str,
    name: &str,
) -> Result<Option<(String, String)>> {
    let what = format!("NAT gateway {name}");
    let out = c
        .ec2
        .describe_nat_gateways()
        .set_filter(Some(named(stack, name)))
        .send()
        .await
        .map_err(aws("DescribeNatGateways", &what))?;
    let live: Vec<NatGateway> = out
        .nat_gateways()
        .iter()
        .filter(|n| {
            matches!(
                n.state().map(|s| s.as_str()),
                Some("pending" | "available" | "deleting")
            )
        })
        .cloned()
        .collect();
    Ok(one(&live, stack, name, what)?.map(|n| {
        (
            n.nat_gateway_id().unwrap_or_default().to_owned(),
            n.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        )
    }))
}

/// Waits until every NAT gateway of `ids` is in `state` (`available`, or `deleted` by destroy),
/// polling `DescribeNatGateways` (a new gateway is `pending` for minutes, a deleted one `deleting`).
/// A gateway that ends `failed` is an error naming AWS's reason.
pub(crate) async fn wait_nats(
    c: &Clients,
    ids: &[String],
    state: &'static str,
    limit: std::time::Duration,
) -> Result<()> {
    let what = format!("NAT gateways {} to be {state}", ids.join(", "));
    let done = crate::retry::until(&what, limit, || async {
        let out = c
            .ec2
            .describe_nat_gateways()
            .set_nat_gateway_ids(Some(ids.to_vec()))
            .send()
            .await;
        let out = match out {
            Err(e) if e.code() == Some("NatGatewayNotFound") => {
                // Gone (destroy), or not visible yet right after its creation (EC2 is
                // eventually consistent): keep polling, bounded.
                return Ok(if state == "deleted" {
                    Ok(())
                } else {
                    Err("not visible yet".to_owned())
                });
            }
            other => other.map_err(aws("DescribeNatGateways", &what))?,
        };
        let mut waiting = Vec::new();
        for n in out.nat_gateways() {
            let id = n.nat_gateway_id().unwrap_or_default();
            let now = n.state().map(|s| s.as_str()).unwrap_or("unknown");
            if now == "failed" && state != "deleted" {
                return Err(Error::Conflict {
                    resource: format!("NAT gateway {id}"),
                    problem: format!(
                        "it failed: {} ({})",
                        n.failure_message().unwrap_or("no message"),
                        n.failure_code().unwrap_or("no code")
                    ),
                    next: "fix the cause, then run apply again (it replaces a failed gateway)"
                        .into(),
                });
            }
            if now != state && !(state == "deleted" && now == "failed") {
                waiting.push(format!("{id} {now}"));
            }
        }
        Ok(if waiting.is_empty() {
            Ok(())
        } else {
            Err(waiting.join(", "))
        })
    })
    .await?;
    done.ok_or_else(|| Error::Timeout {
        resource: format!("NAT gateways {}", ids.join(", ")),
        state,
        waited: limit,
        next: "check them in the VPC console, then run the command again (it resumes)".into(),
    })
}

/// The NAT gateway's id, and whether it is already available (nothing to wait for).
pub(crate) async fn ensure_nat(
    ctx: Ctx<'_>,
    half: &Half,
    subnet: &str,
    eip: &Eip,
) -> Result<(String, bool)> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let found = find_nat(c, stack, half.nat).await?;
    if let Some(n) = &found {
        let eips: Vec<&str> = n
            .nat_gateway_addresses()
            .iter()
            .filter_map(|a| a.allocation_id())
            .collect();
        if n.subnet_id() != Some(subnet) || !eips.contains(&eip.allocation_id.as_str()) {
            return Err(Error::Conflict {
                resource: format!(
                    "NAT gateway {} ({})",
                    half.nat,
                    n.nat_gateway_id().unwrap_or_default()
                ),
                problem: format!(
                    "it uses subnet {:?} and EIPs {eips:?}, not {subnet} and {}",
                    n.subnet_id(),
                    eip.allocation_id
                ),
                next: "delete that NAT gateway (destroy keeps the EIPs), then apply again".into(),
            });
        }
    }
    let available = found
        .as_ref()
        .is_some_and(|n| n.state().is_some_and(|s| s.as_str() == "available"));
    let what = format!(
        "NAT gateway {} in {} with {}",
        half.nat, half.public, half.eip
    );
    let id = ctx
        .ensure(
            &what,
            found.and_then(|n| n.nat_gateway_id().map(Into::into)),
            || async {
                let out = send_visible!(
                    "CreateNatGateway",
                    c.ec2
                        .create_nat_gateway()
                        .subnet_id(subnet)
                        .allocation_id(&eip.allocation_id)
                        .connectivity_type(ConnectivityType::Public)
                        .client_token(client_token(stack, half.nat))
                        .tag_specifications(tag_spec(ResourceType::Natgateway, stack, half.nat))
                )
                .map_err(aws("CreateNatGateway", &what))?;
                Ok(out
                    .nat_gateway()
                    .and_then(|n| n.nat_gateway_id())
                    .unwrap_or_default()
                    .to_owned())
            },
        )
        .await?;
    Ok((id, available))
}

/// Starts deleting the NAT gateways (they are billed by the hour) and returns their ids; the wait
/// for them to be gone comes later, when the subnets and the internet gateway need it.
pub(crate) async fn start_deletion(ctx: Ctx<'_>) -> Result<Vec<String>> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let mut nats = Vec::new();
    for half in &HALVES {
        let Some((id, state)) = find_nat_any(c, stack, half.nat).await? else {
            continue;
        };
        if state != "deleting" {
            let what = format!("NAT gateway {}", half.nat);
            c.ec2
                .delete_nat_gateway()
                .nat_gateway_id(&id)
                .send()
                .await
                .map_err(aws("DeleteNatGateway", &what))?;
            ctx.record(Action::Delete, what, &id);
        }
        nats.push(id);
    }
    Ok(nats)
}
