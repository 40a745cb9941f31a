//! The CloudWatch alarms: found by name (the wanted ones) and by the topic they notify (ours,
//! also those no longer wanted); each put when missing or different (`PutMetricAlarm` replaces an
//! alarm whole), the unwanted ones deleted.

use std::collections::BTreeSet;

use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricAlarm, Statistic, Tag};

use super::Wanted;
use crate::context::{is_placeholder, Action, Clients, Ctx, State};
use crate::error::{aws, Result};
use crate::STACK_TAG;

/// `DescribeAlarms` takes at most 100 names per call.
const NAMES_PER_CALL: usize = 100;

/// The alarms of these names that exist.
pub async fn find_by_name(c: &Clients, names: &[String]) -> Result<Vec<MetricAlarm>> {
    let mut out = Vec::new();
    for chunk in names.chunks(NAMES_PER_CALL) {
        let mut pages = c
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws(
                "DescribeAlarms",
                format!("alarms {}", chunk.join(", ")),
            ))?;
            out.extend(page.metric_alarms().iter().cloned());
        }
    }
    Ok(out)
}

/// The alarms whose actions notify `topic` (this stack's, whatever their names).
pub async fn find_by_topic(c: &Clients, topic: &str) -> Result<Vec<MetricAlarm>> {
    let mut out = Vec::new();
    let mut pages = c
        .cloudwatch
        .describe_alarms()
        .action_prefix(topic)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("DescribeAlarms", format!("alarms notifying {topic}")))?;
        // A prefix: `<stack>-alarms` is also the start of another topic's ARN.
        let ours = |a: &&MetricAlarm| {
            a.alarm_actions()
                .iter()
                .chain(a.ok_actions())
                .any(|x| x == topic)
        };
        out.extend(page.metric_alarms().iter().filter(ours).cloned());
    }
    Ok(out)
}

/// Whether `found` is `wanted` with `topic` as its alarm and OK action.
fn same(found: &MetricAlarm, wanted: &Wanted, topic: &str) -> bool {
    let dims: BTreeSet<(String, String)> = found
        .dimensions()
        .iter()
        .map(|d| {
            (
                d.name().unwrap_or_default().to_owned(),
                d.value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let wanted_dims: BTreeSet<(String, String)> = wanted
        .dimensions
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect();
    found.namespace() == Some(wanted.namespace)
        && found.metric_name() == Some(wanted.metric)
        && dims == wanted_dims
        && found.statistic().map(|s| s.as_str()) == Some(wanted.statistic)
        && found.period() == Some(wanted.period)
        && found.evaluation_periods() == Some(1)
        && found.threshold() == Some(wanted.threshold)
        && found.comparison_operator() == Some(&comparison(wanted))
        && found.treat_missing_data() == Some(wanted.missing.as_str())
        && found.alarm_description() == Some(wanted.description.as_str())
        && found.alarm_actions() == [topic]
        && found.ok_actions() == [topic]
}

fn comparison(w: &Wanted) -> ComparisonOperator {
    if w.below {
        ComparisonOperator::LessThanThreshold
    } else {
        ComparisonOperator::GreaterThanOrEqualToThreshold
    }
}

/// Brings the alarms to `wanted`, all notifying `topic` (alarm and back to OK), and deletes the
/// alarms that notify `topic` but are not wanted.
pub async fn ensure(ctx: Ctx<'_>, topic: &str, wanted: &[Wanted]) -> Result<()> {
    let c = ctx.clients;
    let names: Vec<String> = wanted.iter().map(|w| w.name.clone()).collect();
    let mut found = find_by_name(c, &names).await?;
    if !is_placeholder(topic) {
        for a in find_by_topic(c, topic).await? {
            if !found.iter().any(|f| f.alarm_name() == a.alarm_name()) {
                found.push(a);
            }
        }
    }
    for w in wanted {
        let current = found
            .iter()
            .find(|a| a.alarm_name() == Some(w.name.as_str()));
        let what = format!("alarm {} ({})", w.name, w.summary());
        let state = State::of(
            current.is_some(),
            current.is_some_and(|a| same(a, w, topic)),
        );
        ctx.converge(&what, state, || put(ctx, w, topic, &what))
            .await?;
    }
    let unwanted: Vec<String> = found
        .iter()
        .filter_map(|a| a.alarm_name())
        .filter(|n| !names.iter().any(|w| w == n))
        .map(str::to_owned)
        .collect();
    delete(ctx, &unwanted, "no longer wanted").await
}

async fn put(ctx: Ctx<'_>, w: &Wanted, topic: &str, what: &str) -> Result<()> {
    let dimensions = w
        .dimensions
        .iter()
        .map(|(n, v)| Dimension::builder().name(*n).value(v).build())
        .collect();
    ctx.clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(&w.name)
        .alarm_description(&w.description)
        .namespace(w.namespace)
        .metric_name(w.metric)
        .set_dimensions(Some(dimensions))
        .statistic(Statistic::from(w.statistic))
        .period(w.period)
        .evaluation_periods(1)
        .datapoints_to_alarm(1)
        .threshold(w.threshold)
        .comparison_operator(comparison(w))
        .treat_missing_data(w.missing.as_str())
        .actions_enabled(true)
        .alarm_actions(topic)
        .ok_actions(topic)
        .tags(Tag::builder().key(STACK_TAG).value(&ctx.spec.stack).build())
        .send()
        .await
        .map_err(aws("PutMetricAlarm", what))?;
    Ok(())
}

/// Deletes the alarms `names` (apply: those no longer wanted; destroy: all of the stack's),
/// recording each; a plan only records.
pub(crate) async fn delete(ctx: Ctx<'_>, names: &[String], why: &str) -> Result<()> {
    for chunk in names.chunks(NAMES_PER_CALL) {
        if ctx.applying() {
            ctx.clients
                .cloudwatch
                .delete_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(aws("DeleteAlarms", format!("alarms {}", chunk.join(", "))))?;
        }
        for name in chunk {
            ctx.report.record(
                ctx.mode,
                Action::Delete,
                format!("alarm {name} ({why})"),
                None,
            );
        }
    }
    Ok(())
}

/// Destroy: every alarm that notifies the stack's topic.
pub(crate) async fn delete_all(ctx: Ctx<'_>, topic: &str) -> Result<()> {
    let names: Vec<String> = find_by_topic(ctx.clients, topic)
        .await?
        .iter()
        .filter_map(|a| a.alarm_name().map(str::to_owned))
        .collect();
    delete(ctx, &names, "the stack's").await
}
