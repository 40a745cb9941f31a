//! A stack's partners, as its function knows them: the forwarding function's environment
//! (`GetFunctionConfiguration`) read with the function's own [`Settings::from_env`], so the CLI's
//! `--partner NAME` and `--all` use the secret and route the function uses.

use std::collections::HashMap;

use anyhow::Context;
use sftp_forward_core::routing::PartnerRoute;
use sftp_forward_core::Settings;

use crate::args::StackArgs;
use crate::exit::{self, Exit, Failed};

/// The function of a stack, as the provisioner names it (crates/provision's
/// `Config::function_name`; the CLI does not link the provisioner).
fn function_name(stack: &str) -> String {
    format!("{stack}-forward")
}

/// The settings of the stack's function: its partners and its other settings (timeouts, expected
/// egress IPs), as the function reads them.
pub async fn settings(
    args: &StackArgs,
    config: &aws_config::SdkConfig,
) -> anyhow::Result<Settings> {
    let function = match (&args.stack, &args.function) {
        (_, Some(f)) => f.clone(),
        (Some(stack), None) => function_name(stack),
        // clap: --partner and --all require one of the two.
        (None, None) => unreachable!("--stack or --function is required"),
    };
    let lambda = aws_sdk_lambda::Client::new(config);
    let out = lambda
        .get_function_configuration()
        .function_name(&function)
        .send()
        .await
        .map_err(|e| {
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception())
            {
                anyhow::anyhow!(
                    "there is no function {function:?} in this account and region: check --stack \
                     (the function is <STACK>-forward) or --function, and AWS_REGION"
                )
                .context(Failed(Exit::Config))
            } else {
                exit::aws(
                    e,
                    format!("reading the configuration of function {function}"),
                )
            }
        })?;
    let vars: HashMap<String, String> = out
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    Settings::from_env(|k| vars.get(k).cloned())
        .with_context(|| format!("the environment of function {function}"))
        .context(Failed(Exit::Config))
}

/// The partner called `name`, or an error listing the stack's partners.
pub fn partner<'a>(settings: &'a Settings, name: &str) -> anyhow::Result<&'a PartnerRoute> {
    settings.routing.by_name(name).ok_or_else(|| {
        anyhow::anyhow!(
            "the stack has no partner called {name:?}; its partners are: {}",
            settings.routing.names()
        )
        .context(Failed(Exit::Config))
    })
}
