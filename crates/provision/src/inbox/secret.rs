//! The partner secret: created from the operator's file (never printed), restored if destroy
//! scheduled it for deletion, its value updated when the file differs; its `Host`/`Port` tell the
//! security group where the function goes.

use std::fmt;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::Value;

use crate::context::{Action, Clients, Ctx, State};
use crate::error::{aws, Error, Result};
use crate::STACK_TAG;

/// The partner secret's value, read from the operator's file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Reads and checks the secret file: it must exist and hold a JSON object. Errors never quote it.
pub fn read_secret_file(path: &std::path::Path) -> Result<SecretValue> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::File {
        what: "secret file",
        path: path.to_owned(),
        source,
    })?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(_)) => Ok(SecretValue(text)),
        Ok(_) => Err(Error::invalid(
            "secret_file",
            format!("{}: not a JSON object", path.display()),
        )),
        Err(e) => Err(Error::invalid(
            "secret_file",
            format!(
                "{}: not JSON (line {}, column {})",
                path.display(),
                e.line(),
                e.column()
            ),
        )),
    }
}

/// A partner's secret as the config names it.
#[derive(Debug, Clone, Copy)]
pub struct SecretRef<'a> {
    /// Its name or ARN.
    pub id: &'a str,
    /// The file to create or update it from.
    pub file: Option<&'a std::path::Path>,
    /// The config field that names it (`secret`, `partners["bank"].secret`), for errors.
    pub field: &'a str,
    /// Whose it is, for the report: `partner` or `partner bank`.
    pub whose: &'a str,
}

impl<'a> SecretRef<'a> {
    /// The single partner's secret of a stack without `partners`.
    pub fn single(spec: &'a crate::Spec) -> Self {
        SecretRef {
            id: &spec.secret,
            file: spec.secret_file.as_deref(),
            field: "secret",
            whose: "partner",
        }
    }
}

/// The secret as Secrets Manager describes it, if it exists.
pub async fn find_secret(
    c: &Clients,
    id: &str,
) -> Result<Option<aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput>> {
    match c.secrets.describe_secret().secret_id(id).send().await {
        Ok(out) => Ok(Some(out)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("DescribeSecret", format!("secret {id}"))(e)),
    }
}

/// Before anything is created: the secret must exist, or a file to create it from must be given.
pub async fn check(ctx: Ctx<'_>, s: &SecretRef<'_>) -> Result<Option<SecretValue>> {
    let value = s.file.map(read_secret_file).transpose()?;
    if value.is_none() && find_secret(ctx.clients, s.id).await?.is_none() {
        return Err(Error::invalid(
            format!("{}_file", s.field),
            format!(
                "secret {:?} does not exist in {}; pass --secret-file FILE with the partner JSON \
                 (see docs/PARTNER.md) to create it",
                s.id, ctx.clients.region
            ),
        ));
    }
    if value.is_some()
        && s.id.starts_with("arn:")
        && find_secret(ctx.clients, s.id).await?.is_none()
    {
        return Err(Error::invalid(
            s.field,
            format!("{:?} does not exist; give a name to create it", s.id),
        ));
    }
    Ok(value)
}

/// The partner's `Host` and `Port` as the secret states them: from the secret file, else from the
/// existing secret's value. `None` (with a note) when there is neither, or the existing secret
/// cannot be read with these credentials. The value itself is never printed.
pub async fn partner_endpoint(
    ctx: Ctx<'_>,
    s: &SecretRef<'_>,
    value: Option<&SecretValue>,
) -> Result<Option<(String, u16)>> {
    let text = match value {
        Some(v) => v.0.clone(),
        None => {
            // A secret destroy scheduled for deletion cannot be read until restored.
            if let Some(d) = find_secret(ctx.clients, s.id).await? {
                if d.deleted_date().is_some() {
                    let what = format!(
                        "restore of secret {} (scheduled for deletion by destroy)",
                        s.id
                    );
                    if !ctx.applying() {
                        ctx.report.note(format!(
                            "secret {} is scheduled for deletion: apply restores it, then reads \
                             its Host and Port",
                            s.id
                        ));
                        return Ok(None);
                    }
                    ctx.converge(&what, State::Differs, || async {
                        let arn = d.arn().unwrap_or_default();
                        ctx.clients
                            .secrets
                            .restore_secret()
                            .secret_id(arn)
                            .send()
                            .await
                            .map_err(aws("RestoreSecret", &what))?;
                        Ok(())
                    })
                    .await?;
                }
            }
            let out = ctx
                .clients
                .secrets
                .get_secret_value()
                .secret_id(s.id)
                .send()
                .await;
            match out {
                Ok(out) => out.secret_string().unwrap_or_default().to_owned(),
                Err(e) => {
                    ctx.report.note(format!(
                        "cannot read secret {} ({}): the security group uses partner_address \
                         and port 22",
                        s.id,
                        e.code().unwrap_or("no error code")
                    ));
                    return Ok(None);
                }
            }
        }
    };
    forward::config::endpoint_from_json(&text)
        .map(Some)
        .map_err(|e| {
            Error::invalid(
                format!("{}_file", s.field),
                format!("the partner JSON: {e}"),
            )
        })
}

pub(crate) async fn ensure_secret(
    ctx: Ctx<'_>,
    s: &SecretRef<'_>,
    value: Option<&SecretValue>,
) -> Result<String> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let what = format!("secret {}", s.id);
    let found = find_secret(c, s.id).await?;
    let scheduled_for_deletion = found.as_ref().is_some_and(|d| d.deleted_date().is_some());
    let arn = ctx
        .ensure(
            &what,
            found.as_ref().and_then(|d| d.arn().map(Into::into)),
            || async {
                let value = value.expect("checked: a file is given when the secret does not exist");
                let out = c
                    .secrets
                    .create_secret()
                    .name(s.id)
                    .description(format!(
                        "sftp-forward {} connection for stack {}",
                        s.whose, spec.stack
                    ))
                    .secret_string(&value.0)
                    .tags(
                        aws_sdk_secretsmanager::types::Tag::builder()
                            .key(STACK_TAG)
                            .value(&spec.stack)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(aws("CreateSecret", &what))?;
                Ok(out.arn().unwrap_or_default().to_owned())
            },
        )
        .await?;
    if found.is_none() {
        return Ok(arn);
    }
    let restore = format!("restore of {what} (scheduled for deletion by destroy)");
    ctx.converge(
        &restore,
        State::of(true, !scheduled_for_deletion),
        || async {
            c.secrets
                .restore_secret()
                .secret_id(&arn)
                .send()
                .await
                .map_err(aws("RestoreSecret", &restore))?;
            Ok(())
        },
    )
    .await?;
    if let Some(value) = value {
        let current = if scheduled_for_deletion && !ctx.applying() {
            None // cannot be read until restored
        } else {
            let out = c.secrets.get_secret_value().secret_id(&arn).send().await;
            out.map_err(aws("GetSecretValue", &what))?
                .secret_string()
                .map(str::to_owned)
        };
        let update = format!("value of {what} from the secret file");
        ctx.converge(
            &update,
            State::of(true, current.as_deref() == Some(value.0.as_str())),
            || async {
                let put = c
                    .secrets
                    .put_secret_value()
                    .secret_id(&arn)
                    .secret_string(&value.0)
                    .send()
                    .await;
                put.map_err(aws("PutSecretValue", &update))?;
                Ok(())
            },
        )
        .await?;
    }
    Ok(arn)
}

/// Records the secret `id` as kept (destroy): it was not created by this stack.
pub(crate) fn keep_foreign_secret(ctx: Ctx<'_>, id: &str, arn: &str) {
    ctx.record(
        Action::Keep,
        format!("secret {id} (not created by this stack)"),
        arn,
    );
}

/// The secret's recovery window after destroy.
const SECRET_RECOVERY_DAYS: i64 = 7;

/// Schedules the stack's own secret `id` for deletion (destroy, or a partner's removal); a secret
/// the stack did not create is kept and reported.
pub(crate) async fn delete(ctx: Ctx<'_>, id: &str) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    if let Some(secret) = find_secret(c, id).await? {
        let arn = secret.arn().unwrap_or_default();
        let ours = secret
            .tags()
            .iter()
            .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some(&spec.stack));
        if !ours {
            keep_foreign_secret(ctx, id, arn);
        } else if secret.deleted_date().is_none() {
            let what = format!(
                "secret {id} (recoverable for {SECRET_RECOVERY_DAYS} days; apply restores it)"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_redacted_in_debug() {
        assert_eq!(
            format!("{:?}", SecretValue("{\"password\":\"x\"}".into())),
            "SecretValue(<redacted>)"
        );
    }
}
