//! Lambda's side of the bed: functions `Pending` after create, `InProgress` after an update (409
//! on another update meanwhile), `Failed` on demand, roles not yet assumable, and the network
//! interfaces a function in a VPC holds.

use serde_json::Value;

use super::super::http::{lambda_error, Response};
use super::*;

impl State {
    pub(super) fn lambda_before(&mut self, c: &Call) -> Option<Response> {
        let action = c.action.as_str();
        if matches!(action, "UpdateFunctionCode" | "UpdateFunctionConfiguration") {
            let name = c.function.as_deref().unwrap_or("");
            if let Some(f) = self.functions.get_mut(name) {
                let msg = if f.pending.bites() {
                    Some(PENDING_CONFLICT.to_owned())
                } else if f.updating.as_mut().is_some_and(Trigger::bites) {
                    Some(format!(
                        "The operation cannot be performed at this time. An update is in progress for resource: {}",
                        f.arn
                    ))
                } else {
                    None
                };
                if let Some(msg) = msg {
                    self.inject(Behaviour::FunctionConflict, action, name);
                    return Some(lambda_error(409, "ResourceConflictException", &msg));
                }
            }
        }
        if matches!(action, "CreateFunction" | "UpdateFunctionConfiguration") {
            let role = c.json_str("Role").map(role_name).unwrap_or_default();
            if self.roles.get_mut(&role).is_some_and(Trigger::bites) {
                self.inject(Behaviour::RoleNotAssumable, action, &role);
                let msg = "The role defined for the function cannot be assumed by Lambda.";
                return Some(lambda_error(400, "InvalidParameterValueException", msg));
            }
        }
        None
    }

    pub(super) fn lambda_after(&mut self, c: &Call, resp: &mut Response) -> Option<EniJob> {
        let action = c.action.as_str();
        let name = c.function.clone().unwrap_or_default();
        match action {
            "CreateFunction" => {
                let mut json: Value = serde_json::from_slice(&resp.body).ok()?;
                let name = json["FunctionName"].as_str()?.to_owned();
                let (subnets, groups) = vpc_config(c.json.as_ref()?).unwrap_or_default();
                self.functions.insert(
                    name.clone(),
                    Func {
                        arn: json["FunctionArn"].as_str().unwrap_or("").to_owned(),
                        role: role_name(json["Role"].as_str().unwrap_or("")),
                        pending: Trigger::new(self.t.function_pending),
                        updating: None,
                        subnets: subnets.clone(),
                        groups: groups.clone(),
                    },
                );
                // Real AWS answers the create with the function still pending (not recorded,
                // like the NAT gateway's).
                set_pending(&mut json);
                resp.body = json.to_string().into_bytes();
                self.eni_job(&name, subnets, groups, c)
            }
            "UpdateFunctionCode" | "UpdateFunctionConfiguration" => {
                let mut json: Value = serde_json::from_slice(&resp.body).ok()?;
                let t = self.t.function_updating;
                let f = self.functions.entry(name.clone()).or_insert_with(|| Func {
                    arn: json["FunctionArn"].as_str().unwrap_or("").to_owned(),
                    role: role_name(json["Role"].as_str().unwrap_or("")),
                    pending: Trigger::over(),
                    updating: None,
                    subnets: Vec::new(),
                    groups: Vec::new(),
                });
                f.updating = Some(Trigger::new(t));
                if action == "UpdateFunctionConfiguration" {
                    self.failed.remove(&name);
                }
                let f = self.functions.get_mut(&name)?;
                if let Some(role) = c.json_str("Role") {
                    f.role = role_name(role);
                }
                // The update's own answer says so too (not recorded).
                json["LastUpdateStatus"] = "InProgress".into();
                resp.body = json.to_string().into_bytes();
                let (subnets, groups) = c.json.as_ref().and_then(vpc_config)?;
                let f = self.functions.get_mut(&name)?;
                if sorted(&subnets) == sorted(&f.subnets) && sorted(&groups) == sorted(&f.groups) {
                    return None;
                }
                f.subnets = subnets.clone();
                f.groups = groups.clone();
                self.release_enis_of(&name);
                self.eni_job(&name, subnets, groups, c)
            }
            "GetFunction" | "GetFunctionConfiguration" => {
                let f = self.functions.get_mut(&name)?;
                let mut json: Value = serde_json::from_slice(&resp.body).ok()?;
                let conf = if action == "GetFunction" {
                    &mut json["Configuration"]
                } else {
                    &mut json
                };
                let b = if self.failed.contains(&name) {
                    conf["State"] = "Failed".into();
                    conf["StateReasonCode"] = "EniLimitExceeded".into();
                    conf["StateReason"] =
                        "Lambda was not able to create an ENI in the VPC of the Lambda function because the limit for Network Interfaces has been reached.".into();
                    Some(Behaviour::FunctionFailed)
                } else if f.pending.bites() {
                    set_pending(conf);
                    Some(Behaviour::FunctionPending)
                } else {
                    conf["State"] = "Active".into();
                    let updating = f.updating.as_mut().is_some_and(Trigger::bites);
                    conf["LastUpdateStatus"] =
                        if updating { "InProgress" } else { "Successful" }.into();
                    updating.then_some(Behaviour::FunctionUpdateInProgress)
                };
                resp.body = json.to_string().into_bytes();
                if let Some(b) = b {
                    self.inject(b, action, &name);
                }
                None
            }
            "DeleteFunction" => {
                self.release_enis_of(&name);
                self.functions.remove(&name);
                None
            }
            _ => None,
        }
    }
}

fn set_pending(conf: &mut Value) {
    conf["State"] = "Pending".into();
    conf["StateReason"] = "The function is being created.".into();
    conf["StateReasonCode"] = "Creating".into();
}

/// `VpcConfig`'s subnets and security groups, if the request has one.
fn vpc_config(json: &Value) -> Option<(Vec<String>, Vec<String>)> {
    let vpc = json.get("VpcConfig")?;
    let list = |key: &str| -> Vec<String> {
        vpc[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    Some((list("SubnetIds"), list("SecurityGroupIds")))
}

fn sorted(v: &[String]) -> Vec<&String> {
    let mut v: Vec<&String> = v.iter().collect();
    v.sort();
    v
}

/// The role name of a role ARN (`arn:aws:iam::ACCOUNT:role/path/NAME` → `NAME`).
fn role_name(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or("").to_owned()
}

const PENDING_CONFLICT: &str = "The operation cannot be performed at this time. The function is currently in the following state: Pending";
