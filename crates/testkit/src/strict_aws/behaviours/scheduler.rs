//! EventBridge Scheduler's behaviour: a schedule's role is checked when it is given.

use super::super::http::{lambda_error, Response};
use super::super::{Behaviour, Call};
use super::{State, Trigger};

/// What EventBridge Scheduler answers when it cannot assume a schedule's role (yet).
const NOT_ASSUMABLE: &str =
    "The execution role you provide must allow AWS EventBridge Scheduler to assume the role.";

impl State {
    /// `CreateSchedule`/`UpdateSchedule` (REST: `POST`/`PUT /schedules/NAME`) naming a role created
    /// moments ago: 400 `ValidationException`, as Scheduler checks the role when it is given.
    pub(super) fn scheduler_before(&mut self, c: &Call) -> Option<Response> {
        let method = c.req.method.as_str();
        let path = c.req.path();
        let name = path.strip_prefix("/schedules/")?;
        let action = match method {
            "POST" => "CreateSchedule",
            "PUT" => "UpdateSchedule",
            _ => return None,
        };
        let role_arn = c.json.as_ref()?.get("Target")?.get("RoleArn")?.as_str()?;
        let role = role_arn.rsplit('/').next().unwrap_or(role_arn).to_owned();
        if self.roles.get_mut(&role).is_some_and(Trigger::bites) {
            self.inject(
                Behaviour::SchedulerRoleNotAssumable,
                action,
                &format!("{role} ({name})"),
            );
            return Some(lambda_error(400, "ValidationException", NOT_ASSUMABLE));
        }
        None
    }
}
