//! Port's legacy v1 shape of an action (`/v1/blueprints/{blueprint}/actions`): the
//! trigger is the operation string, `userInputs` is top level, the blueprint comes from
//! the route; parsed into the v2 model and rendered back from it.

use serde_json::{Map, Value};

use super::error::describe_str;
use super::fields::{Fields, extend, insert_opt_str};
use super::trigger::parse_user_inputs;
use super::{
    Action, ActionDefinition, ActionError, COMMON_KEYS, Operation, SERVER_MANAGED,
    SelfServiceTrigger, Trigger, parse_identifier,
};
use crate::id::BlueprintIdentifier;

impl ActionDefinition {
    /// Legacy shape: `trigger` is the operation string, `userInputs` is top level, the
    /// blueprint comes from the route. A `blueprint` key in the body, if present, must
    /// equal the route's. Server-managed keys in the body (`id`, `createdAt`,
    /// `createdBy`, `updatedAt`, `updatedBy`, `blueprint`) are ignored, not kept in
    /// `extra`.
    pub fn from_v1(value: &Value, blueprint: &BlueprintIdentifier) -> Result<Self, ActionError> {
        let fields = Fields::new(value, "")?;
        if let Some(body) = fields.string("blueprint")?
            && body != blueprint.as_str()
        {
            return Err(ActionError::BlueprintMismatch {
                body: body.to_owned(),
                route: blueprint.as_str().to_owned(),
            });
        }
        let identifier = parse_identifier(&fields)?;
        let op = fields.required_str("trigger")?;
        let operation = Operation::parse(op).ok_or_else(|| ActionError::NotOneOf {
            path: "trigger".into(),
            allowed: Operation::ALLOWED,
            got: describe_str(op),
        })?;
        let user_inputs = parse_user_inputs(fields.required("userInputs")?, "userInputs")?;
        let trigger = Trigger::SelfService(SelfServiceTrigger {
            operation,
            blueprint_identifier: Some(blueprint.clone()),
            user_inputs,
            condition: None,
            extra: Map::new(),
        });
        let mut handled = vec!["trigger", "userInputs", "blueprint"];
        handled.extend(COMMON_KEYS);
        handled.extend(SERVER_MANAGED);
        Self::parse_common(&fields, identifier, trigger, &handled)
    }

    /// None for automations or actions without a blueprint (no v1 view exists for them).
    pub fn to_v1(&self) -> Option<Map<String, Value>> {
        let Trigger::SelfService(trigger) = &self.trigger else {
            return None;
        };
        trigger.blueprint_identifier.as_ref()?;
        let mut out = Map::new();
        out.insert("identifier".into(), self.identifier.as_str().into());
        insert_opt_str(&mut out, "title", self.title.as_deref());
        insert_opt_str(&mut out, "icon", self.icon.as_deref());
        out.insert(
            "userInputs".into(),
            Value::Object(trigger.user_inputs.clone()),
        );
        out.insert("invocationMethod".into(), self.invocation_method.to_v1());
        out.insert("trigger".into(), trigger.operation.as_str().into());
        self.write_tail(&mut out, false);
        Some(out)
    }
}

impl Action {
    /// Exactly the shape of the seed's `payload.action`: `id` first, then the v1 view,
    /// then `blueprint` and the timestamps. None where no v1 view exists.
    pub fn to_v1_json(&self) -> Option<Value> {
        let blueprint = self.definition.blueprint()?;
        let body = self.definition.to_v1()?;
        let mut out = Map::new();
        out.insert("id".into(), self.meta.id.as_str().into());
        extend(&mut out, &body);
        out.insert("blueprint".into(), blueprint.as_str().into());
        self.meta.write(&mut out);
        Some(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::action::tests::{microservice, seed_meta};
    use crate::action::{Action, ActionDefinition, Operation};
    use crate::testing::seed::{CREATE_MICROSERVICE, CREATE_PAYLOAD_ACTION, DEPLOY_MICROSERVICE};

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn v1_err(value: Value) -> String {
        ActionDefinition::from_v1(&value, &microservice())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn seed_actions_round_trip_through_v1() {
        for (text, op) in [
            (CREATE_MICROSERVICE, Operation::Create),
            (DEPLOY_MICROSERVICE, Operation::Day2),
        ] {
            let v1 = parse(text);
            let def = ActionDefinition::from_v1(&v1, &microservice()).unwrap();
            assert_eq!(def.operation(), Some(op));
            assert_eq!(def.blueprint(), Some(&microservice()));
            assert!(def.is_self_service());
            let back = Value::Object(def.to_v1().unwrap());
            assert_eq!(back, v1);
            // Key order too, including `type` last in the invocation method.
            assert_eq!(back.to_string(), v1.to_string());

            let v2 = Value::Object(def.to_v2());
            assert_eq!(v2["trigger"]["type"], "self-service");
            assert_eq!(v2["trigger"]["operation"], op.as_str());
            assert_eq!(v2["trigger"]["blueprintIdentifier"], "microservice");
            assert_eq!(v2["trigger"]["userInputs"], v1["userInputs"]);
            assert_eq!(ActionDefinition::from_v2(&v2).unwrap(), def);
        }
    }

    #[test]
    fn seed_create_action_renders_as_the_payload_action() {
        let def = ActionDefinition::from_v1(&parse(CREATE_MICROSERVICE), &microservice()).unwrap();
        let action = Action {
            meta: seed_meta(),
            definition: def,
        };
        let expected = parse(CREATE_PAYLOAD_ACTION);
        let got = action.to_v1_json().unwrap();
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }

    #[test]
    fn v1_server_managed_keys_are_ignored_and_restored_by_the_meta() {
        let input = parse(CREATE_PAYLOAD_ACTION);
        let def = ActionDefinition::from_v1(&input, &microservice()).unwrap();
        assert!(def.extra.is_empty());
        let action = Action {
            meta: seed_meta(),
            definition: def,
        };
        assert_eq!(action.to_v1_json().unwrap().to_string(), input.to_string());
    }

    #[test]
    fn automations_have_no_v1_view() {
        let v2 = json!({
            "identifier": "on_create",
            "trigger": {
                "type": "automation",
                "event": { "type": "ENTITY_CREATED", "blueprintIdentifier": "service" },
                "condition": { "type": "JQ", "expressions": [], "combinator": "and" }
            },
            "invocationMethod": { "type": "KAFKA" },
            "publish": true
        });
        let def = ActionDefinition::from_v2(&v2).unwrap();
        assert!(!def.is_self_service());
        assert_eq!(def.operation(), None);
        assert_eq!(def.user_inputs(), None);
        assert_eq!(def.to_v1(), None);
        assert_eq!(Value::Object(def.to_v2()).to_string(), v2.to_string());
    }

    #[test]
    fn v1_error_messages_name_the_field() {
        let mut v = parse(CREATE_MICROSERVICE);
        v["trigger"] = json!("UPDATE");
        assert_eq!(
            v1_err(v),
            r#"trigger: must be one of CREATE, DAY-2, DELETE, got "UPDATE""#
        );

        let mut v = parse(CREATE_MICROSERVICE);
        v["blueprint"] = json!("service");
        assert_eq!(
            v1_err(v),
            r#"blueprint: the body names blueprint "service" but the route names "microservice""#
        );

        let mut v = parse(CREATE_MICROSERVICE);
        v.as_object_mut().unwrap().remove("userInputs");
        assert_eq!(v1_err(v), "userInputs: is required");

        let mut v = parse(CREATE_MICROSERVICE);
        v.as_object_mut().unwrap().remove("identifier");
        assert_eq!(v1_err(v), "identifier: is required");
    }
}
