//! `apply` (and `plan`, the same steps without changes): first every check that can fail on the
//! operator's input, so that a bad input creates nothing; then network → inbox → role → function.

use crate::context::{Ctx, Mode};
use crate::error::Result;
use crate::function::{self, Function};
use crate::inbox::{self, Inbox};
use crate::network::{self, Network};
use crate::{config::Partner, iam};

/// What `apply` found or built (placeholders stand for what a plan would create).
#[derive(Debug, Clone)]
pub struct Applied {
    /// VPC, subnets, NAT gateways, Elastic IPs, security group.
    pub network: Network,
    /// Secret, queues, bucket.
    pub inbox: Inbox,
    /// The function and its event source mapping.
    pub function: Function,
}

/// Runs every step in `ctx.mode`.
pub async fn run(ctx: Ctx<'_>) -> Result<Applied> {
    let spec = ctx.spec;
    // Inputs first: nothing is created when one of them is wrong.
    let package = match function::read_package(&spec.zip) {
        Ok(p) => Some(p),
        Err(e) if ctx.mode == Mode::Plan => {
            ctx.report
                .note(format!("{e} (apply needs it; the plan goes on)"));
            None
        }
        Err(e) => return Err(e),
    };
    let checked = network::check(ctx).await?;
    let secret = inbox::check(ctx).await?;
    match &spec.partner {
        None => ctx.report.note(
            "no partner_address: the function may reach tcp/22 anywhere; set it to restrict egress",
        ),
        Some(Partner::Host(h)) => ctx.report.note(format!(
            "partner {h} resolves to {}; re-run apply if its DNS changes",
            checked.partner_cidrs.join(", ")
        )),
        Some(Partner::Ip(_)) => {}
    }

    let network = network::ensure(ctx, &checked).await?;
    let inbox = inbox::ensure(ctx, secret.as_ref()).await?;
    let (role, new_role) = iam::ensure_role(ctx, &inbox.secret_arn, &inbox.queue.arn).await?;
    let function = function::ensure(
        ctx,
        package.as_ref(),
        &network,
        (&role, new_role),
        &inbox.secret_arn,
        &inbox.queue.arn,
    )
    .await?;
    Ok(Applied {
        network,
        inbox,
        function,
    })
}
