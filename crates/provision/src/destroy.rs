//! `destroy`: removes the stack in the order AWS needs, stopping what costs money first, and keeps
//! the Elastic IPs — the partner's allowlist — unless told to release them:
//!
//! 1. the NAT gateways (billed by the hour) and the S3 endpoint: deletion starts at once, nothing
//!    else depends on them being gone until the subnets and the internet gateway;
//! 2. the trigger, the function and its log group: Lambda then starts releasing the function's
//!    network interfaces, **with the function's role** (so the role stays until they are gone);
//! 3. the bucket (if empty), the queues and the secret (7-day recovery window; apply restores it);
//! 4. the function's network interfaces: wait until Lambda has released them, delete those left
//!    `available`, then the role;
//! 5. the security group, the NAT gateways' end, the Elastic IPs' associations, route tables,
//!    subnets, the internet gateway (detached once its NAT gateways' addresses are unmapped), the VPC.
//!
//! Only resources tagged for this stack are deleted. A destroy that stops says what is still billed.

use std::future::Future;
use std::time::Duration;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::{HALVES, IGW_NAME, S3_ENDPOINT_NAME, VPC_NAME};
use crate::context::{Action, Ctx};
use crate::error::{aws, Error, Result};
use crate::{function, iam, inbox, network, retry, STACK_TAG};

/// How long to retry deletes refused because something still uses the resource, and to wait for
/// Lambda to release its network interfaces: up to ~40 minutes after the function is gone.
const IN_USE_WAIT: Duration = Duration::from_secs(45 * 60);
/// The secret's recovery window.
const SECRET_RECOVERY_DAYS: i64 = 7;
/// The description prefix of the network interfaces Lambda creates for a function in a VPC.
const LAMBDA_ENI_PREFIX: &str = "AWS Lambda VPC ENI";

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

async fn steps(ctx: Ctx<'_>, release_eips: bool, kept: &mut Vec<String>) -> Result<()> {
    let nats = start_nat_deletion(ctx).await?;
    delete_endpoint(ctx).await?;
    delete_function(ctx).await?;
    crate::logs::delete(ctx).await?;
    delete_inbox(ctx, kept).await?;
    release_network_interfaces(ctx).await?;
    delete_role(ctx).await?;
    delete_network(ctx, &nats, release_eips).await
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

/// Runs `delete` until it succeeds, retrying while AWS answers with one of the `in_use` codes (at
/// most `limit`); a not-found answer (`gone` codes) counts as success.
async fn delete_retrying<F, Fut, T, E>(
    operation: &'static str,
    what: &str,
    in_use: &[&str],
    gone: &[&str],
    limit: Duration,
    delete: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let waiting = format!("{what} to be free to delete");
    match retry::when_codes(&waiting, in_use, limit, delete).await {
        Ok(_) => Ok(()),
        Err(e) if e.code().is_some_and(|c| gone.contains(&c)) => Ok(()),
        Err(e) => Err(aws(operation, what)(e)),
    }
}

/// Starts deleting the NAT gateways (they are billed by the hour) and returns their ids; the wait
/// for them to be gone comes later, when the subnets and the internet gateway need it.
async fn start_nat_deletion(ctx: Ctx<'_>) -> Result<Vec<String>> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let mut nats = Vec::new();
    for half in &HALVES {
        let Some((id, state)) = network::find_nat_any(c, stack, half.nat).await? else {
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

async fn delete_endpoint(ctx: Ctx<'_>) -> Result<()> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let Some(id) = network::find_endpoint(c, stack)
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

/// Waits until Lambda has released the function's network interfaces in the stack's security
/// group (it does so with the function's role, which is why the role is deleted after this), then
/// deletes the ones left `available`.
async fn release_network_interfaces(ctx: Ctx<'_>) -> Result<()> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let Some(sg) = network::find_security_group(c, stack, &ctx.spec.security_group_name())
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
    let released = retry::until(&waiting, IN_USE_WAIT, || async {
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
        delete_retrying(
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
    Ok(())
}

/// Deletes the function's role, if it is this stack's (IAM names are global: a role of the same
/// name tagged for another stack, or not at all, is left alone and reported).
async fn delete_role(ctx: Ctx<'_>) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let role = spec.role_name(&c.region);
    let Some(found) = iam::find_role(c, &role).await? else {
        return Ok(());
    };
    let what = format!("IAM role {role}");
    if iam::role_stack(&found) != Some(spec.stack.as_str()) {
        ctx.record(
            Action::Keep,
            format!("{what} (not tagged {STACK_TAG}={})", spec.stack),
            found.arn(),
        );
        return Ok(());
    }
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
    ctx.record(Action::Delete, what, found.arn());
    Ok(())
}

async fn delete_inbox(ctx: Ctx<'_>, kept: &mut Vec<String>) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let bucket = spec.bucket.as_str();
    let what = format!("bucket {bucket}");
    let exists = match inbox::bucket_exists(c, bucket).await {
        Ok(exists) => exists,
        // Another account's bucket (403): certainly not ours to delete; go on with the rest.
        Err(Error::Conflict { .. }) => {
            ctx.record(Action::Keep, format!("{what} (not this account's)"), bucket);
            false
        }
        Err(e) => return Err(e),
    };
    if exists {
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

async fn delete_network(ctx: Ctx<'_>, nats: &[String], release_eips: bool) -> Result<()> {
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
            IN_USE_WAIT,
            || c.ec2.delete_security_group().group_id(&id).send(),
        )
        .await?;
        ctx.record(Action::Delete, what, &id);
    }
    if !nats.is_empty() {
        network::wait_nats(c, nats, "deleted", ctx.spec.nat_wait).await?;
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
                ctx.spec.nat_wait,
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
                IN_USE_WAIT,
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
            // Refused (DependencyViolation: "mapped public addresses") until the NAT gateways'
            // addresses are released, which can trail their deletion.
            delete_retrying(
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
            IN_USE_WAIT,
            || c.ec2.delete_vpc().vpc_id(&id).send(),
        )
        .await?;
        ctx.record(Action::Delete, what, &id);
    }
    Ok(())
}
