//! `failover` and `failback`: when an Availability Zone's NAT gateway fails, the function's
//! invocations placed in that AZ's private subnet cannot reach the partner. `failover --az one`
//! points private subnet one's default route (0.0.0.0/0 in its route table) at NAT gateway two,
//! with one `ReplaceRoute` call (no gap: the route is replaced in place); its traffic then leaves
//! from Elastic IP two, which the partner already allowlists. `failback` points each private
//! subnet at its own AZ's NAT gateway again, as `apply` built them.
//!
//! Both find everything by the stack's tags, are idempotent (a route already where it should be is
//! left alone) and refuse, changing nothing, when the stack or the NAT gateway they would route to
//! does not exist or is not `available`. `apply` keeps a failed-over route and says so
//! ([`keep_failover`]) rather than silently reverting it; `outputs` shows each private subnet's
//! route ([`private_routes`]). Nothing fails over by itself: an operator runs the command.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::RouteTable;
use serde::Serialize;

use crate::config::{Half, HALVES};
use crate::context::{is_placeholder, Clients, Ctx};
use crate::error::{Error, Result};
use crate::network::route_table::{converge_default_route, default_route, Target};
use crate::network::{find_nat_any, find_route_table};

/// One of the stack's two Availability Zones, as `--az one|two` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Az {
    /// AZ A: `public-one`, `private-one`, `nat-one`, `eip-one`.
    One,
    /// AZ B: `public-two`, `private-two`, `nat-two`, `eip-two`.
    Two,
}

impl Az {
    /// Both, in order.
    pub const BOTH: [Az; 2] = [Az::One, Az::Two];

    /// Its index in [`HALVES`].
    pub fn index(self) -> usize {
        match self {
            Az::One => 0,
            Az::Two => 1,
        }
    }

    /// `one` or `two`.
    pub fn word(self) -> &'static str {
        ["one", "two"][self.index()]
    }

    /// The other AZ.
    pub fn other(self) -> Az {
        Az::BOTH[1 - self.index()]
    }

    /// Its subnets, NAT gateway and route tables.
    pub fn half(self) -> &'static Half {
        &HALVES[self.index()]
    }
}

/// Where a private subnet's default route (0.0.0.0/0) goes now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrivateRoute {
    /// The subnet's route table id.
    pub route_table: String,
    /// `nat-one` or `nat-two`; the target's id when it is neither of the stack's NAT gateways (a
    /// hand-made route, or a gateway deleted since); `null` when there is no default route.
    pub via: Option<String>,
    /// Whether it goes through the other AZ's NAT gateway (`failover` was run).
    pub failed_over: bool,
}

/// The note `apply`, `plan` and `failover` print for a failed-over private subnet.
pub fn failed_over_note(az: Az) -> String {
    format!(
        "private subnet {a} routes through NAT {b} (failed over); run `deploy/provision failback` \
         when NAT {a} is healthy",
        a = az.word(),
        b = az.other().word()
    )
}

/// Each private subnet's default route, by subnet Name (`private-one`, `private-two`); `None`
/// when its route table does not exist.
pub async fn private_routes(
    c: &Clients,
    stack: &str,
) -> Result<BTreeMap<&'static str, Option<PrivateRoute>>> {
    let mut nats = Vec::new();
    for az in Az::BOTH {
        nats.push(
            find_nat_any(c, stack, az.half().nat)
                .await?
                .map(|(id, _)| id),
        );
    }
    let mut routes = BTreeMap::new();
    for az in Az::BOTH {
        let table = find_route_table(c, stack, az.half().private_rt).await?;
        let route = table.map(|t| {
            let target = default_route(&t).map(str::to_owned);
            let name = Az::BOTH
                .into_iter()
                .find(|n| target.is_some() && nats[n.index()] == target)
                .map(|n| n.half().nat.to_owned());
            PrivateRoute {
                route_table: t.route_table_id().unwrap_or_default().to_owned(),
                failed_over: name.as_deref() == Some(az.other().half().nat),
                via: name.or(target),
            }
        });
        routes.insert(az.half().private, route);
    }
    Ok(routes)
}

/// For `apply`: the NAT gateway (id, Name) that private subnet `az` should route through — its
/// own (`nats[az]`), unless it is failed over to the other one, which is kept (with a note).
pub(crate) async fn keep_failover<'a>(
    ctx: Ctx<'_>,
    az: Az,
    nats: &'a [String],
) -> Result<(&'a str, &'static str)> {
    let (own, other) = (az.index(), az.other().index());
    let table = find_route_table(ctx.clients, &ctx.spec.stack, az.half().private_rt).await?;
    let failed_over = !is_placeholder(&nats[other])
        && table.is_some_and(|t| default_route(&t) == Some(nats[other].as_str()));
    if failed_over {
        ctx.report.note(failed_over_note(az));
        Ok((&nats[other], HALVES[other].nat))
    } else {
        Ok((&nats[own], HALVES[own].nat))
    }
}

/// Points private subnet `az`'s default route at the other AZ's NAT gateway. Refuses, changing
/// nothing, when the stack has no such route table or the other NAT gateway is missing or not
/// `available`.
pub async fn failover(ctx: Ctx<'_>, az: Az) -> Result<()> {
    let command = format!("failover --az {}", az.word());
    let (table, table_id) = private_table(ctx, az, &command).await?;
    let to = az.other();
    let nat = available_nat(ctx, to, &command).await?;
    let target = Target::Nat(&nat, to.half().nat);
    converge_default_route(ctx, &table_id, az.half().private_rt, Some(&table), target).await?;
    ctx.report.note(failed_over_note(az));
    Ok(())
}

/// Points each private subnet of `azs` at its own AZ's NAT gateway again (what `apply` builds).
/// Refuses, changing nothing, when a route table or one of those NAT gateways is missing or not
/// `available`.
pub async fn failback(ctx: Ctx<'_>, azs: &[Az]) -> Result<()> {
    let mut steps = Vec::new();
    for &az in azs {
        let command = format!("failback --az {}", az.word());
        let table = private_table(ctx, az, &command).await?;
        steps.push((az, table, available_nat(ctx, az, &command).await?));
    }
    for (az, (table, table_id), nat) in steps {
        let target = Target::Nat(&nat, az.half().nat);
        converge_default_route(ctx, &table_id, az.half().private_rt, Some(&table), target).await?;
    }
    Ok(())
}

/// Private subnet `az`'s route table and its id, or why `command` cannot run.
async fn private_table(ctx: Ctx<'_>, az: Az, command: &str) -> Result<(RouteTable, String)> {
    let stack = ctx.spec.stack.as_str();
    let name = az.half().private_rt;
    let table = find_route_table(ctx.clients, stack, name).await?;
    let table = table.ok_or_else(|| Error::Conflict {
        resource: format!("stack {stack:?} in {}", ctx.clients.region),
        problem: format!(
            "{command}: it has no route table {name} (none tagged {}={stack})",
            crate::STACK_TAG
        ),
        next: "check --stack and --region (deploy/provision outputs shows what exists), or run \
               deploy/provision apply first"
            .into(),
    })?;
    let id = table.route_table_id().unwrap_or_default().to_owned();
    Ok((table, id))
}

/// The id of AZ `az`'s NAT gateway if it is `available`, or why `command` refuses to route
/// through it.
async fn available_nat(ctx: Ctx<'_>, az: Az, command: &str) -> Result<String> {
    let name = az.half().nat;
    let refuse = |problem: String, next: &str| Error::Conflict {
        resource: format!("NAT gateway {name}"),
        problem: format!("{command} would route through it, but {problem}"),
        next: next.into(),
    };
    match find_nat_any(ctx.clients, &ctx.spec.stack, name).await? {
        None => Err(refuse(
            "it does not exist; nothing was changed".into(),
            "run deploy/provision apply to rebuild it (it keeps any failed-over route), wait \
             until it is available, then run the command again",
        )),
        Some((_, state)) if state != "available" => Err(refuse(
            format!("it is {state}, not available; nothing was changed"),
            "wait until it is available (deploy/provision outputs; the VPC console shows its \
             state), or run deploy/provision apply if it is gone, then run the command again",
        )),
        Some((id, _)) => Ok(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_az_fails_over_to_the_other_and_the_note_names_both() {
        assert_eq!(Az::One.other().half().nat, "nat-two");
        assert_eq!(Az::Two.other().half().private_rt, "private-one-subnet");
        assert_eq!(
            failed_over_note(Az::Two),
            "private subnet two routes through NAT one (failed over); run `deploy/provision \
             failback` when NAT two is healthy"
        );
    }
}
