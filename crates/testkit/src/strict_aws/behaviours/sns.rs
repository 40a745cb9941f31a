//! SNS's behaviour: an email subscription is pending until someone clicks the link in AWS's
//! confirmation mail, and until then SNS lists it with `PendingConfirmation` where its ARN would
//! be (SNS API Reference, `Subscription.SubscriptionArn`; `Subscribe`). Nobody clicks here: moto
//! confirms at once, the proxy shows what AWS shows.

use super::super::http::Response;
use super::super::xml::{child, children, find, splice};
use super::super::{Behaviour, Call};
use super::State;

impl State {
    /// `ListSubscriptionsByTopic`/`ListSubscriptions`: each email subscription's ARN becomes
    /// `PendingConfirmation` (recorded with the address as subject).
    pub(super) fn sns_after(&mut self, c: &Call, resp: &mut Response) {
        if !matches!(
            c.action.as_str(),
            "ListSubscriptionsByTopic" | "ListSubscriptions"
        ) {
            return;
        }
        let xml = resp.text();
        let Some(list) = find(&xml, "Subscriptions") else {
            return;
        };
        let text = |e: &super::super::xml::Elem| xml[e.inner.clone()].to_owned();
        let mut edits = Vec::new();
        for member in children(&xml, &list) {
            let email = child(&xml, &member, "Protocol").is_some_and(|p| text(&p) == "email");
            let arn = child(&xml, &member, "SubscriptionArn");
            if let (true, Some(arn)) = (email, arn) {
                let endpoint =
                    child(&xml, &member, "Endpoint").map_or_else(String::new, |e| text(&e));
                self.inject(Behaviour::SubscriptionPending, &c.action, &endpoint);
                edits.push((arn.inner.clone(), "PendingConfirmation".to_owned()));
            }
        }
        if !edits.is_empty() {
            resp.body = splice(&xml, edits).into_bytes();
        }
    }
}
