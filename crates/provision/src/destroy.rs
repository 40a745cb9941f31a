//! `destroy`: removes the stack in reverse dependency order (trigger → function → role → bucket →
//! queues → secret → security group → endpoint → NAT gateways → route tables → subnets → internet
//! gateway → VPC) and keeps the Elastic IPs — the partner's allowlist — unless told to release them.
//!
//! Only resources tagged for this stack are deleted. A non-empty bucket is kept (and reported).
//! The secret is scheduled for deletion with a 7-day recovery window; `apply` restores it.

use std::future::Future;
use std::time::Duration;

use aws_sdk_ec2::client::Waiters;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::{HALVES, IGW_NAME, S3_ENDPOINT_NAME, VPC_NAME};
use crate::context::{waiter_error, with_progress, Action, Ctx};
use crate::error::{aws, Error, Result};
use crate::{function, iam, inbox, network, STACK_TAG};

/// How long to retry deletes refused because something still uses the resource: Lambda's
/// network interfaces stay in the subnets and security group for up to ~20 minutes after the
/// function is gone.
const IN_USE_WAIT: Duration = Duration::from_secs(45 * 60);
/// The secret's recovery window.
const SECRET_RECOVERY_DAYS: i64 = 7;

/// Deletes the stack; `release_eips` also releases the Elastic IPs.
pub async fn run(ctx: Ctx<'_>, release_eips: bool) -> Result<()> {
    let mut kept = Vec::new();
    delete_function(ctx).await?;
    delete_inbox(ctx, &mut kept).await?;
    delete_network(ctx, release_eips).await?;
    if kept.is_empty() {
        Ok(())
    } else {
        Err(Error::Incomplete {
            kept,
            next: "handle what is listed, then run destroy again".into(),
        })
    }
}

/// Runs `delete` until it succeeds, retrying every 10 s while AWS answers with one of the
/// `in_use` codes (at most [`IN_USE_WAIT`]); a not-found answer (`gone` codes) counts as success.
async fn delete_retrying<F, Fut, T, E>(
    operation: &'static str,
    what: &str,
    in_use: &[&str],
    gone: &[&str],
    mut delete: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let start = tokio::time::Instant::now();
    let mut refusals = 0u32;
    loop {
        match delete().await {
            Ok(_) => return Ok(()),
            Err(e) if e.code().is_some_and(|c| gone.contains(&c)) => return Ok(()),
            Err(e)
                if e.code().is_some_and(|c| in_use.contains(&c))
                    && start.elapsed() < IN_USE_WAIT =>
            {
                if refusals % 6 == 0 {
                    println!(
                        "  … {what} is still in use ({}), retrying for up to {} min ({}s so far)",
                        e.code().unwrap_or_default(),
                        IN_USE_WAIT.as_secs() / 60,
                        start.elapsed().as_secs()
                    );
                }
                refusals += 1;
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Err(e) => return Err(aws(operation, what)(e)),
        }
    }
}

async fn delete_function(ctx: Ctx<'_>) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let name = spec.function_name();
    if let Some(queue_url) = inbox::find_queue_url(c, &spec.queue_name()).await? {
        let attrs = inbox::queue_attributes(c, &queue_url).await?;
        let arn = attrs
            .get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .cloned()
            .unwrap_or_default();
        for m in function::find_mappings(c, &name, &arn).await? {
            let uuid = m.uuid().unwrap_or_default();
            let what = format!("event source mapping {} → {name}", spec.queue_name());
            function::wait_mapping_settled(c, uuid, &what).await?;
            let out = c
                .lambda
                .delete_event_source_mapping()
                .uuid(uuid)
                .send()
                .await;
            out.map_err(aws("DeleteEventSourceMapping", &what))?;
            ctx.record(Action::Delete, what, uuid);
        }
    }
    if let Some(f) = function::find_function(c, &name).await? {
        let what = format!("function {name}");
        c.lambda
            .delete_function()
            .function_name(&name)
            .send()
            .await
            .map_err(aws("DeleteFunction", &what))?;
        ctx.record(Action::Delete, what, f.function_arn().unwrap_or_default());
    }
    let role = spec.role_name();
    if let Some(arn) = iam::find_role(c, &role).await? {
        let what = format!("IAM role {role}");
        let out = c
            .iam
            .delete_role_policy()
            .role_name(&role)
            .policy_name(iam::POLICY_NAME)
            .send()
            .await;
        match out {
            Err(e)
                if !e
                    .as_service_error()
                    .is_some_and(|e| e.is_no_such_entity_exception()) =>
            {
                return Err(aws("DeleteRolePolicy", &what)(e))
            }
            _ => {}
        }
        c.iam
            .delete_role()
            .role_name(&role)
            .send()
            .await
            .map_err(aws("DeleteRole", &what))?;
        ctx.record(Action::Delete, what, &arn);
    }
    Ok(())
}

async fn delete_inbox(ctx: Ctx<'_>, kept: &mut Vec<String>) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let bucket = spec.bucket.as_str();
    let what = format!("bucket {bucket}");
    if inbox::bucket_exists(c, bucket).await? {
        let owner = inbox::bucket_stack_tag(c, bucket).await?;
        let list =
            c.s3.list_objects_v2()
                .bucket(bucket)
                .max_keys(1)
                .send()
                .await;
        let empty = list
            .map_err(aws("ListObjectsV2", &what))?
            .contents()
            .is_empty();
        if owner.as_deref() != Some(spec.stack.as_str()) {
            ctx.record(
                Action::Keep,
                format!("{what} (not tagged {STACK_TAG}={})", spec.stack),
                bucket,
            );
        } else if !empty {
            ctx.record(Action::Keep, format!("{what} (not empty)"), bucket);
            kept.push(format!(
                "{what} is not empty (empty it, e.g. `aws s3 rm s3://{bucket} --recursive`)"
            ));
        } else {
            c.s3.delete_bucket()
                .bucket(bucket)
                .send()
                .await
                .map_err(aws("DeleteBucket", &what))?;
            ctx.record(Action::Delete, what, bucket);
        }
    }
    for name in [spec.queue_name(), spec.dlq_name()] {
        let Some(url) = inbox::find_queue_url(c, &name).await? else {
            continue;
        };
        let what = format!("queue {name}");
        let tags = c
            .sqs
            .list_queue_tags()
            .queue_url(&url)
            .send()
            .await
            .map_err(aws("ListQueueTags", &what))?;
        if tags.tags().and_then(|t| t.get(STACK_TAG)) != Some(&spec.stack) {
            ctx.record(
                Action::Keep,
                format!("{what} (not tagged {STACK_TAG}={})", spec.stack),
                &url,
            );
            continue;
        }
        c.sqs
            .delete_queue()
            .queue_url(&url)
            .send()
            .await
            .map_err(aws("DeleteQueue", &what))?;
        ctx.record(Action::Delete, what, &url);
    }
    if let Some(secret) = inbox::find_secret(c, &spec.secret).await? {
        let arn = secret.arn().unwrap_or_default();
        let ours = secret
            .tags()
            .iter()
            .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some(&spec.stack));
        if !ours {
            inbox::keep_foreign_secret(ctx, arn);
        } else if secret.deleted_date().is_none() {
            let what = format!(
                "secret {} (recoverable for {SECRET_RECOVERY_DAYS} days; apply restores it)",
                spec.secret
            );
            let req = c
                .secrets
                .delete_secret()
                .secret_id(arn)
                .recovery_window_in_days(SECRET_RECOVERY_DAYS);
            req.send().await.map_err(aws("DeleteSecret", &what))?;
            ctx.record(Action::Delete, what, arn);
        }
    }
    Ok(())
}

async fn delete_network(ctx: Ctx<'_>, release_eips: bool) -> Result<()> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    const IN_USE: &[&str] = &["DependencyViolation", "InvalidIPAddress.InUse"];

    let sg_name = ctx.spec.security_group_name();
    if let Some(id) = network::find_security_group(c, stack, &sg_name)
        .await?
        .and_then(|g| g.group_id().map(str::to_owned))
    {
        let what = format!("security group {sg_name}");
        delete_retrying(
            "DeleteSecurityGroup",
            &what,
            IN_USE,
            &["InvalidGroup.NotFound"],
            || c.ec2.delete_security_group().group_id(&id).send(),
        )
        .await?;
        ctx.record(Action::Delete, what, &id);
    }
    if let Some(id) = network::find_endpoint(c, stack)
        .await?
        .and_then(|e| e.vpc_endpoint_id().map(str::to_owned))
    {
        let what = format!("VPC endpoint {S3_ENDPOINT_NAME}");
        let out = c
            .ec2
            .delete_vpc_endpoints()
            .vpc_endpoint_ids(&id)
            .send()
            .await;
        out.map_err(aws("DeleteVpcEndpoints", &what))?;
        ctx.record(Action::Delete, what, &id);
    }

    let mut nats = Vec::new();
    for half in &HALVES {
        if let Some(id) = network::find_nat(c, stack, half.nat)
            .await?
            .and_then(|n| n.nat_gateway_id().map(str::to_owned))
        {
            let what = format!("NAT gateway {}", half.nat);
            c.ec2
                .delete_nat_gateway()
                .nat_gateway_id(&id)
                .send()
                .await
                .map_err(aws("DeleteNatGateway", &what))?;
            ctx.record(Action::Delete, what, &id);
            nats.push(id);
        }
    }
    if !nats.is_empty() {
        let limit = ctx.spec.nat_wait;
        let wait = c
            .ec2
            .wait_until_nat_gateway_deleted()
            .set_nat_gateway_ids(Some(nats))
            .wait(limit);
        with_progress("the NAT gateways to be deleted", limit, wait)
            .await
            .map_err(waiter_error(
                "DescribeNatGateways",
                "NAT gateways".into(),
                "deleted",
                limit,
            ))?;
    }
    for half in &HALVES {
        let Some(eip) = network::find_eip(c, stack, half.eip).await? else {
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
            delete_retrying(
                "DisassociateAddress",
                &free,
                IN_USE,
                &["InvalidAssociationID.NotFound"],
                || c.ec2.disassociate_address().association_id(assoc).send(),
            )
            .await?;
        }
        if release_eips {
            delete_retrying(
                "ReleaseAddress",
                &what,
                IN_USE,
                &["InvalidAllocationID.NotFound"],
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

    for half in &HALVES {
        for name in [half.public_rt, half.private_rt] {
            let Some(table) = network::find_route_table(c, stack, name).await? else {
                continue;
            };
            let what = format!("route table {name}");
            for a in table
                .associations()
                .iter()
                .filter(|a| a.main() != Some(true))
            {
                let assoc = a.route_table_association_id().unwrap_or_default();
                let out = c
                    .ec2
                    .disassociate_route_table()
                    .association_id(assoc)
                    .send()
                    .await;
                out.map_err(aws("DisassociateRouteTable", &what))?;
            }
            let id = table.route_table_id().unwrap_or_default();
            c.ec2
                .delete_route_table()
                .route_table_id(id)
                .send()
                .await
                .map_err(aws("DeleteRouteTable", &what))?;
            ctx.record(Action::Delete, what, id);
        }
    }
    for half in &HALVES {
        for name in [half.public, half.private] {
            let Some(id) = network::find_subnet(c, stack, name)
                .await?
                .and_then(|s| s.subnet_id().map(str::to_owned))
            else {
                continue;
            };
            let what = format!("subnet {name}");
            delete_retrying(
                "DeleteSubnet",
                &what,
                IN_USE,
                &["InvalidSubnetID.NotFound"],
                || c.ec2.delete_subnet().subnet_id(&id).send(),
            )
            .await?;
            ctx.record(Action::Delete, what, &id);
        }
    }
    if let Some(igw) = network::find_igw(c, stack).await? {
        let id = igw.internet_gateway_id().unwrap_or_default();
        let what = format!("internet gateway {IGW_NAME:?}");
        for a in igw.attachments() {
            let vpc = a.vpc_id().unwrap_or_default();
            let out = c
                .ec2
                .detach_internet_gateway()
                .internet_gateway_id(id)
                .vpc_id(vpc)
                .send()
                .await;
            out.map_err(aws("DetachInternetGateway", &what))?;
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
    if let Some(id) = network::find_vpc(c, stack)
        .await?
        .and_then(|v| v.vpc_id().map(str::to_owned))
    {
        let what = format!("VPC {VPC_NAME:?}");
        delete_retrying(
            "DeleteVpc",
            &what,
            IN_USE,
            &["InvalidVpcID.NotFound"],
            || c.ec2.delete_vpc().vpc_id(&id).send(),
        )
        .await?;
        ctx.record(Action::Delete, what, &id);
    }
    Ok(())
}
