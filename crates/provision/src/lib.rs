//! The provisioner: builds, shows, and removes the AWS side of sftp-forward for one stack.
//!
//! It reads like `terraform plan/apply`: every step finds its resource (by the tag
//! `sftp-forward:stack` = the stack name plus a `Name` tag, or by a name derived from the stack)
//! before creating it, so `apply` is idempotent and an interrupted `apply` resumes; `plan` runs the
//! same steps without changing anything.
//!
//! # Layout
//!
//! One module per resource type, each holding its finder, its `ensure` (apply) and its delete
//! (destroy), in the order `apply` walks them:
//!
//! - [`config`]: the JSON config file and flags → a validated [`config::Spec`]; the fixed topology
//!   (names, CIDRs) is [`config::HALVES`];
//! - [`context`]: the AWS clients, the [`context::Mode`] (plan or apply) and the report of changes;
//! - [`network`]: VPC, subnets, internet gateway, Elastic IPs, NAT gateways, route tables, the S3
//!   gateway endpoint and the function's security group;
//! - [`inbox`]: each partner's secret, queue and dead-letter queue, the inbox bucket and its
//!   notifications to the queues (one per partner, filtered on its key prefix);
//! - [`partners`]: the partners the stack has (its partner queues), and the removal of those the
//!   config no longer declares;
//! - [`unrouted`]: with partners, the EventBridge rule and queue that catch keys under no
//!   partner's prefix;
//! - [`iam`]: the function's role and its least-privilege inline policy ([`delivery_events`]: the
//!   bus its events go to);
//! - [`logs`]: the function's log group, with a retention;
//! - [`function`]: the Lambda function (from the packaged `bootstrap` zip) and its SQS event source
//!   mapping;
//! - [`apply`]: the order of the steps above, with the input checks that run before anything is
//!   created; [`plan`] adds the monthly cost estimate;
//! - [`alarms`]: the SNS topic (optional email subscription) and the CloudWatch alarms on it;
//! - [`schedule`]: the scheduled self-check (EventBridge Scheduler) and the role it invokes with;
//! - [`outputs`]: what exists, as JSON, with each private subnet's current route;
//! - [`failover`]: an AZ's private subnet routed through the other AZ's NAT gateway, and back;
//! - [`destroy`]: the order of the deletes, in one list: everything but the Elastic IPs (unless
//!   asked), in the order AWS needs — what is billed by the hour first, the role only after Lambda
//!   released the function's network interfaces — which is not simply apply reversed;
//! - `retry`: the one bounded retry for AWS's eventual consistency, used by all of the above;
//! - `role`: an IAM role of the stack with its inline policy (the function's, the schedule's).

pub mod alarms;
pub mod apply;
pub mod config;
pub mod context;
pub mod delivery_events;
pub mod destroy;
pub mod error;
pub mod failover;
pub mod function;
pub mod iam;
pub mod inbox;
pub mod logs;
pub mod network;
pub mod outputs;
pub mod partners;
pub mod plan;
mod retry;
mod role;
pub mod schedule;
pub mod unrouted;

pub use config::{RawConfig, RawPartner, Spec};
pub use context::{Clients, Mode, Report};
pub use error::{Error, Result};

/// The tag every resource carries; its value is the stack name.
pub const STACK_TAG: &str = "sftp-forward:stack";
