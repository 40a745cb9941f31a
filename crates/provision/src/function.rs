//! The Lambda function, from the packaged `bootstrap` zip, in both private subnets with the
//! security group, and the SQS event source mapping that feeds it with partial batch responses
//! and a bounded concurrency (the number of connections to the partner).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionCode, FunctionConfiguration, LastUpdateStatus, Runtime,
    State as State_, VpcConfig,
};
use sha2::{Digest, Sha256};

use crate::config::{Arch, EXPECTED_EGRESS_ENV, SECRET_ENV};
use crate::context::Action;
use crate::context::{waiter_error, Clients, Ctx, State};
use crate::error::{aws, Error, Result};
use crate::iam::ROLE_PROPAGATION;
use crate::network::Network;
use crate::retry;
use crate::STACK_TAG;
use sftp_forward_core::env::PARTNERS as PARTNERS_ENV;

/// How long to wait for the function to become active or finish an update.
const FUNCTION_WAIT: Duration = Duration::from_secs(300);

/// The packaged function: the zip's bytes and Lambda's `CodeSha256` of them.
#[derive(Clone)]
pub struct Package {
    /// The zip.
    pub bytes: Vec<u8>,
    /// Base64 of its SHA-256, as Lambda reports `CodeSha256`.
    pub sha256: String,
}

impl std::fmt::Debug for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Package({} bytes, sha256 {})",
            self.bytes.len(),
            self.sha256
        )
    }
}

/// Reads the zip written by `deploy/package`.
pub fn read_package(path: &std::path::Path) -> Result<Package> {
    let bytes = std::fs::read(path).map_err(|source| Error::File {
        what: "function zip",
        path: path.to_owned(),
        source,
    })?;
    if !bytes.starts_with(b"PK\x03\x04") {
        return Err(Error::invalid(
            "zip",
            format!(
                "{} is not a zip file; build it with deploy/package",
                path.display()
            ),
        ));
    }
    let sha256 = aws_smithy_types::base64::encode(Sha256::digest(&bytes));
    Ok(Package { bytes, sha256 })
}

pub mod mapping;

pub use mapping::find_mappings;

/// The function and its triggers, as found or built.
#[derive(Debug, Clone)]
pub struct Function {
    /// Its ARN.
    pub arn: String,
    /// The event source mappings' UUIDs, one per partner queue (in the inbox's order).
    pub mappings: Vec<String>,
}

/// The function's configuration, if it exists.
pub async fn find_function(c: &Clients, name: &str) -> Result<Option<FunctionConfiguration>> {
    match c.lambda.get_function().function_name(name).send().await {
        Ok(out) => Ok(out.configuration().cloned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("GetFunction", format!("function {name}"))(e)),
    }
}

/// What the function's configuration should be.
struct Wanted {
    role: String,
    env: HashMap<String, String>,
    subnets: Vec<String>,
    security_groups: Vec<String>,
    timeout: i32,
    memory: i32,
    /// Set with the code (UpdateFunctionCode), not with the configuration.
    architecture: Architecture,
}

impl Wanted {
    fn matches(&self, f: &FunctionConfiguration) -> bool {
        let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
        let vpc = f.vpc_config();
        f.role() == Some(self.role.as_str())
            && f.runtime() == Some(&Runtime::Providedal2023)
            && f.handler() == Some("bootstrap")
            && f.timeout() == Some(self.timeout)
            && f.memory_size() == Some(self.memory)
            && f.environment().and_then(|e| e.variables()) == Some(&self.env)
            && vpc.map(|v| set(v.subnet_ids())) == Some(set(&self.subnets))
            && vpc.map(|v| set(v.security_group_ids())) == Some(set(&self.security_groups))
    }

    fn vpc(&self) -> VpcConfig {
        VpcConfig::builder()
            .set_subnet_ids(Some(self.subnets.clone()))
            .set_security_group_ids(Some(self.security_groups.clone()))
            .build()
    }

    fn environment(&self) -> Environment {
        Environment::builder()
            .set_variables(Some(self.env.clone()))
            .build()
    }
}

/// Finds, creates or updates the function and its event source mapping.
pub async fn ensure(
    ctx: Ctx<'_>,
    package: Option<&Package>,
    network: &Network,
    role: (&str, bool),
    inbox: &crate::inbox::Inbox,
) -> Result<Function> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let name = spec.function_name();
    let what = format!(
        "function {name} (provided.al2023, {}, in private-one and private-two)",
        spec.architecture.as_str()
    );
    // The egress self-check compares what the echo service sees with the stack's two EIPs;
    // the operator's `environment` may still set them (or the echo URL) explicitly.
    let mut env: HashMap<String, String> = HashMap::from([(
        EXPECTED_EGRESS_ENV.to_owned(),
        network
            .elastic_ips
            .iter()
            .map(|e| e.public_ip.as_str())
            .collect::<Vec<_>>()
            .join(","),
    )]);
    env.insert(
        crate::schedule::CHECK_PATHS_ENV.to_owned(),
        crate::schedule::check_paths(network),
    );
    env.extend(spec.environment.clone());
    crate::delivery_events::function_env(spec, &mut env);
    match spec.partners.as_slice() {
        [] => {
            let single = inbox.partners.first().map(|r| r.secret_arn.clone());
            env.insert(SECRET_ENV.into(), single.unwrap_or_default());
        }
        partners => {
            let routing = crate::config::partners::routing(partners)?;
            env.insert(PARTNERS_ENV.into(), routing.to_json());
        }
    }
    crate::config::partners::check_env_size(&env)?;
    let wanted = Wanted {
        role: role.0.to_owned(),
        env,
        subnets: network.private_subnets.to_vec(),
        security_groups: vec![network.security_group.clone()],
        timeout: spec.timeout_seconds as i32,
        memory: spec.memory_mb as i32,
        architecture: lambda_architecture(spec.architecture),
    };
    let found = find_function(c, &name).await?;
    let arn = ctx
        .ensure(
            &what,
            found
                .as_ref()
                .and_then(|f| f.function_arn().map(Into::into)),
            || async {
                let package = package.expect("apply reads the zip before creating anything");
                let create = || {
                    c.lambda
                        .create_function()
                        .function_name(&name)
                        .runtime(Runtime::Providedal2023)
                        .handler("bootstrap")
                        .architectures(wanted.architecture.clone())
                        .role(&wanted.role)
                        .code(
                            FunctionCode::builder()
                                .zip_file(Blob::new(package.bytes.clone()))
                                .build(),
                        )
                        .environment(wanted.environment())
                        .vpc_config(wanted.vpc())
                        .timeout(wanted.timeout)
                        .memory_size(wanted.memory)
                        .description(format!(
                            "sftp-forward: S3 inbox {} → partner SFTP",
                            spec.bucket
                        ))
                        .tags(STACK_TAG, &spec.stack)
                        .send()
                };
                // A role created moments ago (by this run or another, by its CreateDate) may
                // not be assumable by Lambda yet: it says so with InvalidParameterValueException.
                // Retry for a bounded time in that case only.
                let limit = if role.1 {
                    ROLE_PROPAGATION
                } else {
                    Duration::ZERO
                };
                let out = retry::when_codes(
                    "Lambda to be able to assume the new role",
                    &["InvalidParameterValueException"],
                    limit,
                    create,
                )
                .await
                .map_err(aws("CreateFunction", &what))?;
                let wait = c
                    .lambda
                    .wait_until_function_active_v2()
                    .function_name(&name)
                    .wait(FUNCTION_WAIT)
                    .await;
                wait.map_err(waiter_error(
                    "GetFunction",
                    what.clone(),
                    "active",
                    FUNCTION_WAIT,
                ))?;
                Ok(out.function_arn().unwrap_or_default().to_owned())
            },
        )
        .await?;

    if let Some(f) = &found {
        // A function found Failed (e.g. Lambda could not create its network interfaces) is
        // repaired by writing its configuration again, not reported as unchanged.
        let failed = f.state() == Some(&State_::Failed)
            || f.last_update_status() == Some(&LastUpdateStatus::Failed);
        if failed {
            let code = f
                .state_reason_code()
                .map(|c| c.as_str())
                .or(f.last_update_status_reason_code().map(|c| c.as_str()))
                .unwrap_or("no reason code");
            ctx.report.note(format!(
                "function {name} is {} ({code}: {}): its configuration is written again to \
                 repair it",
                f.state().map_or("unknown", |s| s.as_str()),
                f.state_reason()
                    .or(f.last_update_status_reason())
                    .unwrap_or("no reason given")
            ));
        }
        // Lambda changes the architecture only with the code (UpdateFunctionCode's Architectures).
        let found_arch = f.architectures().first().map_or("none", |a| a.as_str());
        let same_arch = f.architectures() == [wanted.architecture.clone()];
        let code = if same_arch {
            format!("code of function {name}")
        } else {
            format!(
                "code and architecture of function {name} ({found_arch} → {})",
                spec.architecture.as_str()
            )
        };
        let same_code =
            same_arch && package.is_none_or(|p| f.code_sha256() == Some(p.sha256.as_str()));
        ctx.converge(&code, State::of(true, same_code), || async {
            let package = package.expect("apply reads the zip before changing anything");
            let req = c
                .lambda
                .update_function_code()
                .function_name(&name)
                .architectures(wanted.architecture.clone())
                .zip_file(Blob::new(package.bytes.clone()));
            update(c, (&name, role.1), "UpdateFunctionCode", &code, || {
                req.clone().send()
            })
            .await?;
            Ok(())
        })
        .await?;
        let config =
            format!("configuration of function {name} (role, environment, VPC, timeout, memory)");
        let state = State::of(true, wanted.matches(f) && !failed);
        ctx.converge(&config, state, || async {
            let req = c
                .lambda
                .update_function_configuration()
                .function_name(&name)
                .runtime(Runtime::Providedal2023)
                .handler("bootstrap")
                .role(&wanted.role)
                .environment(wanted.environment())
                .vpc_config(wanted.vpc())
                .timeout(wanted.timeout)
                .memory_size(wanted.memory);
            update(
                c,
                (&name, role.1),
                "UpdateFunctionConfiguration",
                &config,
                || req.clone().send(),
            )
            .await?;
            Ok(())
        })
        .await?;
    }

    let mut mappings = Vec::with_capacity(inbox.partners.len());
    for route in &inbox.partners {
        mappings.push(mapping::ensure(ctx, &name, route, role.1).await?);
    }
    Ok(Function { arn, mappings })
}

/// The SDK's name for the configured architecture.
fn lambda_architecture(arch: Arch) -> Architecture {
    match arch {
        Arch::X86_64 => Architecture::X8664,
        Arch::Arm64 => Architecture::Arm64,
    }
}

/// Sends an update of the function once it can take one: Lambda refuses any update (409
/// `ResourceConflictException`) while the function is `Pending` or an earlier update is
/// `InProgress`, so wait for that first, and retry a refusal (someone else's update) bounded.
async fn update<T, E, F, Fut>(
    c: &Clients,
    (name, fresh_role): (&str, bool),
    operation: &'static str,
    what: &str,
    send: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
{
    wait_ready(c, name, what).await?;
    // A configuration moving to a role created moments ago meets the same IAM lag as a create.
    let codes: &[&str] = if fresh_role {
        &[
            "ResourceConflictException",
            "InvalidParameterValueException",
        ]
    } else {
        &["ResourceConflictException"]
    };
    let out = retry::when_codes(
        &format!("function {name} to finish its current update"),
        codes,
        FUNCTION_WAIT,
        send,
    )
    .await
    .map_err(aws(operation, what))?;
    wait_ready(c, name, what).await?;
    // An update that ends Failed is not a success (nor a repair).
    let f = c
        .lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .map_err(aws("GetFunctionConfiguration", what))?;
    if f.last_update_status() == Some(&LastUpdateStatus::Failed) {
        return Err(Error::Conflict {
            resource: what.to_owned(),
            problem: format!(
                "the update failed: {} ({})",
                f.last_update_status_reason().unwrap_or("no reason given"),
                f.last_update_status_reason_code()
                    .map_or("no reason code", |c| c.as_str())
            ),
            next: "fix the cause (subnets, security group, role), then run apply again".into(),
        });
    }
    Ok(out)
}

/// Waits until the function can take an update: not `Pending`, and its last update not
/// `InProgress`. Polls `GetFunctionConfiguration` (the SDK waiters wait for one of the two only).
pub(crate) async fn wait_ready(c: &Clients, name: &str, what: &str) -> Result<()> {
    let waiting = format!("function {name} to be ready for changes");
    let ready = retry::until(&waiting, FUNCTION_WAIT, || async {
        let out = c
            .lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await;
        let f = match out {
            Ok(f) => f,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(Ok(()))
            }
            Err(e) => return Err(aws("GetFunctionConfiguration", what)(e)),
        };
        let busy = f.state() == Some(&State_::Pending)
            || f.last_update_status() == Some(&LastUpdateStatus::InProgress);
        Ok(if busy {
            Err(format!(
                "State {}, LastUpdateStatus {}",
                f.state().map_or("-", |s| s.as_str()),
                f.last_update_status().map_or("-", |s| s.as_str())
            ))
        } else {
            Ok(())
        })
    })
    .await?;
    ready.ok_or_else(|| Error::Timeout {
        resource: what.to_owned(),
        state: "ready (Active, no update in progress)",
        waited: FUNCTION_WAIT,
        next: "check the function in the Lambda console, then run the command again".into(),
    })
}

/// Deletes the event source mappings of every stack queue and the function (destroy); Lambda
/// then releases the function's network interfaces.
pub(crate) async fn delete(ctx: Ctx<'_>) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let name = spec.function_name();
    for queue in crate::partners::stack_queues(ctx).await? {
        mapping::delete(ctx, &name, &queue).await?;
    }
    if let Some(f) = find_function(c, &name).await? {
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
