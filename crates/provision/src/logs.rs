//! The function's log group, `/aws/lambda/<function>`, created by `apply` with a retention (so that
//! logs do not pile up forever, which is what a group Lambda creates itself does) and removed by
//! `destroy`.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::context::{Action, Clients, Ctx, State};
use crate::error::{aws, Result};
use crate::STACK_TAG;

/// The log group's retention in days, if the group exists.
pub async fn find(c: &Clients, name: &str) -> Result<Option<Option<i32>>> {
    let out = c
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await;
    let out = out.map_err(aws("DescribeLogGroups", format!("log group {name}")))?;
    Ok(out
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name))
        .map(|g| g.retention_in_days()))
}

/// Creates the log group (tagged) if missing and brings its retention to the spec's.
pub async fn ensure(ctx: Ctx<'_>) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let name = spec.log_group();
    let days = spec.log_retention_days as i32;
    let found = find(c, &name).await?;
    let what = format!("log group {name}");
    ctx.ensure(&what, found.map(|_| name.clone()), || async {
        let out = c
            .logs
            .create_log_group()
            .log_group_name(&name)
            .tags(STACK_TAG, &spec.stack)
            .send()
            .await;
        match out {
            Ok(_) => Ok(name.clone()),
            // Lambda creates it on the first log line when the role may; take it over.
            Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(name.clone()),
            Err(e) => Err(aws("CreateLogGroup", &what)(e)),
        }
    })
    .await?;
    let retention = format!("retention of {what}: {days} days");
    let current = found.flatten();
    let state = State::of(current.is_some(), current == Some(days));
    ctx.converge(&retention, state, || async {
        c.logs
            .put_retention_policy()
            .log_group_name(&name)
            .retention_in_days(days)
            .send()
            .await
            .map_err(aws("PutRetentionPolicy", &retention))?;
        Ok(())
    })
    .await
}

/// Deletes the log group (destroy).
pub async fn delete(ctx: Ctx<'_>) -> Result<()> {
    let c = ctx.clients;
    let name = ctx.spec.log_group();
    if find(c, &name).await?.is_none() {
        return Ok(());
    }
    let what = format!("log group {name}");
    let out = c.logs.delete_log_group().log_group_name(&name).send().await;
    match out {
        Ok(_) => {}
        Err(e) if e.code() == Some("ResourceNotFoundException") => {}
        Err(e) => return Err(aws("DeleteLogGroup", &what)(e)),
    }
    ctx.record(Action::Delete, what, &name);
    Ok(())
}
