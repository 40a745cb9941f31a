//! `destroy`: removes the stack in the order AWS needs, stopping what costs money first, and keeps
//! the Elastic IPs — the partner's allowlist — unless told to release them:
//!
//! 1. the NAT gateways (billed by the hour) and the S3 endpoint: deletion starts at once, nothing
//!    else depends on them being gone until the subnets and the internet gateway;
//! 2. the alarms, the self-check's schedule and its role, the alarm topic; the trigger, the
//!    function and its log group: Lambda then starts releasing the function's
//!    network interfaces, **with the function's role** (so the role stays until they are gone);
//! 3. the bucket (if empty), the queues and the secret (7-day recovery window; apply restores it),
//!    the unrouted keys' rule and queue;
//! 4. the function's network interfaces: wait until Lambda has released them, delete those left
//!    `available`, then the role;
//! 5. the security group, the NAT gateways' end, the Elastic IPs' associations, route tables,
//!    subnets, the internet gateway (detached once its NAT gateways' addresses are unmapped), the VPC.
//!
//! Only resources tagged for this stack are deleted. A destroy that stops says what is still billed.

use crate::config::HALVES;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::{function, iam, inbox, logs, network};

/// Deletes the stack; `release_eips` also releases the Elastic IPs.
pub async fn run(ctx: Ctx<'_>, release_eips: bool) -> Result<()> {
    let mut kept = Vec::new();
    if let Err(cause) = steps(ctx, release_eips, &mut kept).await {
        return Err(Error::GaveUp {
            cause: Box::new(cause),
            billed: still_billed(ctx).await,
        });
    }
    if kept.is_empty() {
        Ok(())
    } else {
        Err(Error::Incomplete {
            kept,
            next: "handle what is listed, then run destroy again".into(),
        })
    }
}

/// The order, in one place (see the module doc for why it is not simply apply reversed).
async fn steps(ctx: Ctx<'_>, release_eips: bool, kept: &mut Vec<String>) -> Result<()> {
    // 1. What is billed by the hour and holds nothing else up: start deleting it now.
    let nats = network::nat::start_deletion(ctx).await?;
    network::endpoint::delete(ctx).await?;
    // 2. The alarms, the schedule (no check fires at a function being deleted) and its role, the
    //    alarm topic; then the trigger and the function: Lambda starts releasing its network
    //    interfaces.
    crate::alarms::delete(ctx).await?;
    function::delete(ctx).await?;
    logs::delete(ctx).await?;
    // 3. The inbox.
    let before = kept.len();
    inbox::bucket::delete(ctx, kept).await?;
    inbox::queue::delete(ctx, kept.len() > before).await?;
    inbox::secret::delete(ctx, &ctx.spec.secret).await?;
    crate::partners::delete_all(ctx).await?;
    crate::unrouted::delete(ctx, false).await?;
    // 4. Lambda releases the interfaces with the function's role: the role goes after them.
    network::eni::release(ctx).await?;
    iam::delete_role(ctx).await?;
    // 5. The rest of the network, each after what depends on it.
    network::security_group::delete(ctx).await?;
    if !nats.is_empty() {
        network::wait_nats(ctx.clients, &nats, "deleted", ctx.spec.nat_wait).await?;
    }
    network::eip::free(ctx, release_eips).await?;
    network::route_table::delete_all(ctx).await?;
    network::subnet::delete_all(ctx).await?;
    network::igw::delete(ctx).await?;
    network::vpc::delete(ctx).await
}

/// What still costs money when a destroy stops: NAT gateways not yet deleted, the Elastic IPs
/// (billed while allocated), a bucket with objects. Best effort: a failing lookup is said too.
async fn still_billed(ctx: Ctx<'_>) -> Vec<String> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let mut billed = Vec::new();
    for half in &HALVES {
        match network::find_nat_any(c, stack, half.nat).await {
            Ok(Some((id, state))) => billed.push(format!(
                "NAT gateway {} {id} ({state}; about $0.045/hour until deleted)",
                half.nat
            )),
            Ok(None) => {}
            Err(e) => billed.push(format!("NAT gateway {} (could not check: {e})", half.nat)),
        }
        if let Ok(Some(eip)) = network::find_eip(c, stack, half.eip).await {
            billed.push(format!(
                "Elastic IP {} {} (about $0.005/hour while allocated; kept on purpose unless --release-eips)",
                half.eip,
                eip.public_ip().unwrap_or_default()
            ));
        }
    }
    if let Ok(true) = inbox::bucket_exists(c, &ctx.spec.bucket).await {
        billed.push(format!(
            "bucket {} (storage of its objects)",
            ctx.spec.bucket
        ));
    }
    billed
}
