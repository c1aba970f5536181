//! What Port's own clients keep on the server besides runs: an organization's name and
//! settings (`GET`/`PATCH /v1/organization`), and Ocean's integrations
//! (`/v1/integration/{identifier}`), whose documents portd stores as the client sent
//! them and hands back at start-up and before every run.
//!
//! Every stored document is bounded ([`MAX_INTEGRATION_BYTES`],
//! [`MAX_SETTINGS_BYTES`]) and so is their number ([`MAX_INTEGRATIONS_PER_ORG`]): they
//! are read whole on every Ocean start-up and run.

use serde_json::{Map, Value, json};

use crate::error::PortError;
use crate::id::{IntegrationIdentifier, OrgId};
use crate::ports::Organization;
use crate::time::Timestamp;

/// Largest integration document, in bytes of JSON: room for a port-app-config with
/// many resources (Ocean's mappings run to tens of KiB).
pub const MAX_INTEGRATION_BYTES: usize = 256 * 1024;
/// Most integrations one organization keeps.
pub const MAX_INTEGRATIONS_PER_ORG: u64 = 100;
/// Largest settings object of an organization, in bytes of JSON.
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;
/// Longest organization name.
pub const MAX_ORGANIZATION_NAME_CHARS: usize = 200;

/// What Ocean reads when its integration does not say: portd runs on the customer's
/// premises, so its integrations are `OnPrem` (a `Saas` value would make Ocean refuse
/// to start with its default runtime).
pub const DEFAULT_INSTALLATION_TYPE: &str = "OnPrem";

/// Keys portd sets itself: what a client sends under them is ignored, so a document
/// read with GET can be sent back whole.
const MANAGED_KEYS: [&str; 5] = [
    "installationId",
    "createdAt",
    "createdBy",
    "updatedAt",
    "updatedBy",
];

/// One of Ocean's integrations: its identifier (Ocean's `installationId`, also the
/// `installationId` of the INTEGRATION_ACTION runs it claims) and everything else its
/// client stored (`config`, `installationAppType`, `version`, `changelogDestination`,
/// `actionsProcessingEnabled`, …), verbatim and in the order received.
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    pub org_id: OrgId,
    pub identifier: IntegrationIdentifier,
    pub document: Map<String, Value>,
    pub created_at: Timestamp,
    pub created_by: String,
    pub updated_at: Timestamp,
    pub updated_by: String,
}

impl Integration {
    /// The wire shape: `installationId`, `installationType` (stored, else `OnPrem`), the
    /// stored keys, then who created and changed it when.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("installationId".into(), json!(self.identifier));
        if !self.document.contains_key("installationType") {
            out.insert("installationType".into(), json!(DEFAULT_INSTALLATION_TYPE));
        }
        for (key, value) in &self.document {
            out.insert(key.clone(), value.clone());
        }
        out.insert("createdAt".into(), json!(self.created_at));
        out.insert("createdBy".into(), json!(self.created_by));
        out.insert("updatedAt".into(), json!(self.updated_at));
        out.insert("updatedBy".into(), json!(self.updated_by));
        Value::Object(out)
    }

    /// Applies a partial update: present keys replace the stored ones (`config` as a
    /// whole), absent keys stay. Checks the result like a new document.
    pub fn merge(&mut self, patch: Map<String, Value>) -> Result<(), PortError> {
        let mut document = self.document.clone();
        for (key, value) in client_fields(patch)? {
            document.insert(key, value);
        }
        check_size(&document)?;
        self.document = document;
        Ok(())
    }
}

/// The JSON type a key Ocean reads must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Boolean,
    Object,
}

/// The keys Ocean reads back, with their types; any other key is kept as sent.
const KNOWN_KEYS: [(&str, Kind); 10] = [
    ("installationAppType", Kind::String),
    ("installationType", Kind::String),
    ("version", Kind::String),
    ("config", Kind::Object),
    ("changelogDestination", Kind::Object),
    ("actionsProcessingEnabled", Kind::Boolean),
    ("incrementalSyncEnabled", Kind::Boolean),
    ("arePortResourcesInitialized", Kind::Boolean),
    ("processingMode", Kind::String),
    ("createPortResourcesOrigin", Kind::String),
];

/// The keys a client may set, from a request body: every key but portd's own, and the
/// keys Ocean reads back of the type it reads (a `config` that is not an object would
/// stop it before every run).
pub fn client_fields(body: Map<String, Value>) -> Result<Map<String, Value>, PortError> {
    let mut fields = Map::new();
    for (key, value) in body {
        if MANAGED_KEYS.contains(&key.as_str()) {
            continue;
        }
        if let Some((_, kind)) = KNOWN_KEYS.iter().find(|(known, _)| *known == key) {
            let (fits, expected) = match kind {
                Kind::String => (value.is_string(), "a string"),
                Kind::Boolean => (value.is_boolean(), "a boolean"),
                Kind::Object => (value.is_object(), "an object"),
            };
            if !fits {
                return Err(PortError::invalid(format!(
                    "body.{key}: must be {expected}"
                )));
            }
        }
        fields.insert(key, value);
    }
    Ok(fields)
}

/// Refuses an integration document beyond [`MAX_INTEGRATION_BYTES`].
pub fn check_size(document: &Map<String, Value>) -> Result<(), PortError> {
    let size = json_size(document);
    if size > MAX_INTEGRATION_BYTES {
        return Err(PortError::invalid(format!(
            "body: an integration may hold at most {MAX_INTEGRATION_BYTES} bytes of JSON; this one has {size}"
        )));
    }
    Ok(())
}

fn json_size(document: &Map<String, Value>) -> usize {
    serde_json::to_vec(document).map_or(usize::MAX, |json| json.len())
}

/// A partial update of an organization (`PATCH /v1/organization`): Port's agent sends
/// `{"settings": {"portAgentStreamerName": …}}` without the `name` Port's schema
/// requires, so both are optional.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrganizationPatch {
    pub name: Option<String>,
    /// Merged key by key into the stored settings.
    pub settings: Option<Map<String, Value>>,
}

impl OrganizationPatch {
    /// The settings after this patch: present keys replace the stored ones; refused
    /// beyond [`MAX_SETTINGS_BYTES`], and a name beyond [`MAX_ORGANIZATION_NAME_CHARS`].
    pub fn apply(
        &self,
        stored: &Map<String, Value>,
    ) -> Result<Option<Map<String, Value>>, PortError> {
        if let Some(name) = &self.name {
            let chars = name.chars().count();
            if chars == 0 || chars > MAX_ORGANIZATION_NAME_CHARS {
                return Err(PortError::invalid(format!(
                    "body.name: must be 1 to {MAX_ORGANIZATION_NAME_CHARS} characters"
                )));
            }
        }
        let Some(patch) = &self.settings else {
            return Ok(None);
        };
        let mut settings = stored.clone();
        for (key, value) in patch {
            settings.insert(key.clone(), value.clone());
        }
        let size = json_size(&settings);
        if size > MAX_SETTINGS_BYTES {
            return Err(PortError::invalid(format!(
                "body.settings: an organization's settings may hold at most {MAX_SETTINGS_BYTES} bytes of JSON; these would have {size}"
            )));
        }
        Ok(Some(settings))
    }
}

/// `GET /v1/organization`'s `organization`: what Ocean reads (`id`, `featureFlags`,
/// none of which portd turns on) and the name and settings.
pub fn organization_json(org: &Organization, settings: &Map<String, Value>) -> Value {
    json!({
        "id": org.id,
        "name": org.name,
        "settings": settings,
        "featureFlags": [],
        "createdAt": org.created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integration(document: Value) -> Integration {
        let Value::Object(document) = document else {
            panic!("an object")
        };
        Integration {
            org_id: OrgId::parse("org_0000000000000000").unwrap(),
            identifier: IntegrationIdentifier::parse("my-github-integration").unwrap(),
            document,
            created_at: Timestamp::from_unix_millis(0),
            created_by: "ci".into(),
            updated_at: Timestamp::from_unix_millis(0),
            updated_by: "ci".into(),
        }
    }

    #[test]
    fn managed_keys_are_portds_and_config_is_an_object() {
        let Value::Object(body) = json!({
            "installationId": "ignored", "createdAt": "x", "version": "1.0", "config": {}
        }) else {
            unreachable!()
        };
        let fields = client_fields(body).unwrap();
        assert_eq!(
            Value::Object(fields),
            json!({ "version": "1.0", "config": {} })
        );
        let Value::Object(bad) = json!({ "config": "yes" }) else {
            unreachable!()
        };
        assert!(client_fields(bad).unwrap_err().message.contains("config"));
    }

    #[test]
    fn merging_replaces_present_keys_only_and_stays_bounded() {
        let mut stored = integration(json!({ "version": "1", "config": { "a": 1 } }));
        let Value::Object(patch) = json!({ "config": { "b": 2 }, "processingMode": "dsp" }) else {
            unreachable!()
        };
        stored.merge(patch).unwrap();
        assert_eq!(
            Value::Object(stored.document.clone()),
            json!({ "version": "1", "config": { "b": 2 }, "processingMode": "dsp" })
        );
        let big = json!({ "config": { "x": "y".repeat(MAX_INTEGRATION_BYTES) } });
        let Value::Object(big) = big else {
            unreachable!()
        };
        assert!(stored.merge(big).is_err());
        assert_eq!(stored.document["config"], json!({ "b": 2 }), "unchanged");
    }

    #[test]
    fn the_wire_shape_defaults_to_on_prem() {
        let shown = integration(json!({ "config": {} })).to_json();
        assert_eq!(shown["installationId"], "my-github-integration");
        assert_eq!(shown["installationType"], "OnPrem");
        let saas = integration(json!({ "installationType": "Saas" })).to_json();
        assert_eq!(saas["installationType"], "Saas");
    }

    #[test]
    fn settings_merge_key_by_key_within_bounds() {
        let stored = json!({ "hiddenBlueprints": ["a"] });
        let Value::Object(stored) = stored else {
            unreachable!()
        };
        let Value::Object(settings) = json!({ "portAgentStreamerName": "POLLING" }) else {
            unreachable!()
        };
        let patch = OrganizationPatch {
            name: None,
            settings: Some(settings),
        };
        assert_eq!(
            patch.apply(&stored).unwrap().map(Value::Object),
            Some(json!({ "hiddenBlueprints": ["a"], "portAgentStreamerName": "POLLING" }))
        );
        let Value::Object(huge) = json!({ "x": "y".repeat(MAX_SETTINGS_BYTES) }) else {
            unreachable!()
        };
        let too_big = OrganizationPatch {
            name: None,
            settings: Some(huge),
        };
        assert!(too_big.apply(&stored).is_err());
        let unnamed = OrganizationPatch {
            name: Some(String::new()),
            settings: None,
        };
        assert!(unnamed.apply(&stored).is_err());
    }
}
