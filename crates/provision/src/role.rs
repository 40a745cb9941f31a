//! An IAM role of the stack with one inline policy, as the function's role ([`crate::iam`]) and
//! the self-check schedule's role ([`crate::schedule`]) both are: found by name, refused when not
//! tagged for this stack (IAM names are account-wide), created tagged, its inline policy brought
//! to what is wanted, and deleted (policy first) only when it is this stack's.

use aws_sdk_iam::types::{Role, Tag};
use serde_json::Value;

use crate::context::{Action, Clients, Ctx, State};
use crate::error::{aws, Error, Result};
use crate::iam::{decode_policy, find_role, is_fresh, role_stack};
use crate::STACK_TAG;

/// A role as `apply` wants it.
pub(crate) struct Wanted<'a> {
    /// Its name.
    pub name: &'a str,
    /// How the report names it (`IAM role <name> (...)`).
    pub what: &'a str,
    /// Who may assume it.
    pub trust: Value,
    /// Its description.
    pub description: String,
}

/// Refuses a role of this name that another stack (or someone else) owns.
pub(crate) fn check_ours(ctx: Ctx<'_>, role: &Role, name: &str) -> Result<()> {
    if role_stack(role) == Some(ctx.spec.stack.as_str()) {
        return Ok(());
    }
    Err(Error::Conflict {
        resource: format!("IAM role {name}"),
        problem: match role_stack(role) {
            Some(other) => format!("it belongs to stack {other:?}"),
            None => format!("it exists but is not tagged {STACK_TAG}={}", ctx.spec.stack),
        },
        next: "use another --stack, or remove that role if it is a leftover".into(),
    })
}

/// Finds (refusing a foreign one) or creates the role. Returns its ARN (a placeholder in a plan
/// that would create it), whether it is fresh (created by this run, or recently by its
/// `CreateDate`: AWS services may not be able to assume it yet), and whether this run created it.
pub(crate) async fn ensure(ctx: Ctx<'_>, w: &Wanted<'_>) -> Result<(String, bool, bool)> {
    let c = ctx.clients;
    let found = find_role(c, w.name).await?;
    if let Some(role) = &found {
        check_ours(ctx, role, w.name)?;
    }
    let fresh = found.as_ref().is_none_or(is_fresh);
    let created = found.is_none();
    let arn = ctx
        .ensure(w.what, found.map(|r| r.arn().to_owned()), || async {
            let out = c
                .iam
                .create_role()
                .role_name(w.name)
                .assume_role_policy_document(w.trust.to_string())
                .description(&w.description)
                .tags(
                    Tag::builder()
                        .key(STACK_TAG)
                        .value(&ctx.spec.stack)
                        .build()
                        .expect("tag"),
                )
                .send()
                .await
                .map_err(aws("CreateRole", w.what))?;
            Ok(out.role().map(|r| r.arn().to_owned()).unwrap_or_default())
        })
        .await?;
    Ok((arn, fresh, created))
}

/// The role's inline policy `policy`, if it has one.
pub(crate) async fn inline_policy(c: &Clients, role: &str, policy: &str) -> Result<Option<Value>> {
    let out = c
        .iam
        .get_role_policy()
        .role_name(role)
        .policy_name(policy)
        .send()
        .await;
    match out {
        Ok(o) => Ok(Some(decode_policy(o.policy_document()))),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws(
            "GetRolePolicy",
            format!("inline policy {policy} of IAM role {role}"),
        )(e)),
    }
}

/// Brings the inline policy `policy` of `role` to `want` (reported as `what`); `created`: the role
/// is new, so it has none yet.
pub(crate) async fn converge_policy(
    ctx: Ctx<'_>,
    (role, policy, what): (&str, &str, &str),
    want: &Value,
    created: bool,
) -> Result<()> {
    let c = ctx.clients;
    let current = if created {
        None
    } else {
        inline_policy(c, role, policy).await?
    };
    let state = State::of(current.is_some(), current.as_ref() == Some(want));
    ctx.converge(what, state, || async {
        c.iam
            .put_role_policy()
            .role_name(role)
            .policy_name(policy)
            .policy_document(want.to_string())
            .send()
            .await
            .map_err(aws("PutRolePolicy", what))?;
        Ok(())
    })
    .await
}

/// Deletes the role `name` and its inline policy `policy` if it is this stack's; a role of that
/// name that is not is left alone (and reported as kept when `report_foreign`). A plan only
/// records.
pub(crate) async fn delete(
    ctx: Ctx<'_>,
    name: &str,
    policy: &str,
    report_foreign: bool,
) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let Some(found) = find_role(c, name).await? else {
        return Ok(());
    };
    let what = format!("IAM role {name}");
    if role_stack(&found) != Some(spec.stack.as_str()) {
        if report_foreign {
            ctx.record(
                Action::Keep,
                format!("{what} (not tagged {STACK_TAG}={})", spec.stack),
                found.arn(),
            );
        }
        return Ok(());
    }
    if ctx.applying() {
        let out = c
            .iam
            .delete_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await;
        if let Err(e) = out {
            if !e
                .as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception())
            {
                return Err(aws("DeleteRolePolicy", &what)(e));
            }
        }
        c.iam
            .delete_role()
            .role_name(name)
            .send()
            .await
            .map_err(aws("DeleteRole", &what))?;
    }
    ctx.report
        .record(ctx.mode, Action::Delete, what, Some(found.arn()));
    Ok(())
}
