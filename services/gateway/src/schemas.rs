//! The documents in the repository's `schemas/`, generated from the Rust types that write
//! and read the JSON they describe, so that they cannot drift from it: the events signet
//! emits (CloudEvents 1.0 envelopes around the `data` of each type), the sign request, the
//! trust bundle, the registry webhook payloads the receivers read, and the gateway's
//! OpenAPI 3.1 document ([`crate::routes::ApiDoc`]).
//!
//! The JSON Schemas (draft 2020-12) are utoipa's schemas of the types, with the types they
//! refer to under `$defs`, so that each file stands alone. `tests/schemas.rs` regenerates
//! every file in memory and fails when the committed one differs; `just schemas` writes
//! them.

use serde_json::{json, Map, Value};
use signet_bus::event::EVENT_SOURCE;
use signet_core::digest::DIGEST_PATTERN;
use signet_core::{
    AdmissionDecision, EventKind, Job, PolicyUpdate, SignRequest, SignatureRecord, TrustBundle,
    Witness, NAME_PATTERN,
};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{OpenApi, ToSchema};

use crate::webhooks::{acr, distribution, harbor};

/// The JSON Schema dialect of every schema file.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";
/// Where the files are published; each file's `$id` is this and its path.
pub const BASE_ID: &str = "https://signet.dev/schemas/";
/// The file that validates an event of any type.
pub const ANY_EVENT: &str = "events/event.schema.json";
/// The gateway's OpenAPI document.
pub const OPENAPI: &str = "openapi.json";

/// The W3C trace context header value (version 00).
const TRACEPARENT_PATTERN: &str = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$";
/// The CloudEvents attributes every signet event carries.
const ENVELOPE_REQUIRED: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "data",
];

/// Why a document could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the schema of {what} cannot be rendered as JSON: {source}")]
    Render {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One generated document: where it goes under `schemas/`, and its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaFile {
    pub path: String,
    pub json: Value,
}

impl SchemaFile {
    /// The file's text: pretty JSON with sorted keys and a final newline.
    pub fn contents(&self) -> Result<String, SchemaError> {
        let mut text =
            serde_json::to_string_pretty(&self.json).map_err(|source| SchemaError::Render {
                what: self.path.clone(),
                source,
            })?;
        text.push('\n');
        Ok(text)
    }
}

/// Every generated document, in a stable order.
pub fn files() -> Result<Vec<SchemaFile>, SchemaError> {
    let mut files = vec![
        type_file::<SignRequest>(
            "sign-request.schema.json",
            "signet sign request",
            "What `POST /v1/sign` and `POST /v1/webhooks/generic` take, and what a message on \
             the `signet.jobs.sign` queue carries (RabbitMQ queue or NATS subject): one image \
             to sign with one witness.",
        )?,
        type_file::<TrustBundle>(
            "trust-bundle.schema.json",
            "signet trust bundle",
            "`GET /v1/trust-bundle?cluster=NAME`: what a cluster's verifier needs to decide \
             admissions without the control plane. Events whose `signetrevision` is higher \
             than `revision` are newer than the bundle.",
        )?,
        manifest_file(
            "manifest.schema.json",
            "signet policy as code: one document",
            "A document `signet apply -f` and `signet diff -f` read (YAML or JSON; in YAML, \
             `---` between documents): a `Witness`, a `SecurityPolicy` or a `SigningRule`, \
             with `apiVersion: signet.dev/v1`. Point your editor's YAML language server at \
             this file to validate them.",
        )?,
        type_file::<distribution::Envelope>(
            "webhooks/distribution.schema.json",
            "CNCF distribution notification, as signet reads it",
            "What `POST /v1/webhooks/distribution` accepts: a docker-registry (CNCF \
             distribution) notification envelope. Derived from the receiver's parser, so it \
             names only what signet reads; the registry's other fields are allowed.",
        )?,
        type_file::<harbor::Default>(
            "webhooks/harbor-default.schema.json",
            "Harbor webhook, Default format, as signet reads it",
            "What `POST /v1/webhooks/harbor` accepts in Harbor's Default format (a body \
             without `specversion`); `PUSH_ARTIFACT` is what gets signed. Derived from the \
             receiver's parser, so it names only what signet reads.",
        )?,
        type_file::<harbor::CloudEvent>(
            "webhooks/harbor-cloudevents.schema.json",
            "Harbor webhook, CloudEvents format, as signet reads it",
            "What `POST /v1/webhooks/harbor` accepts in Harbor's CloudEvents format (a body \
             with `specversion`); `harbor.artifact.pushed` is what gets signed. Derived from \
             the receiver's parser, so it names only what signet reads.",
        )?,
        type_file::<acr::Notification>(
            "webhooks/acr.schema.json",
            "Alibaba Cloud Container Registry trigger, as signet reads it",
            "What `POST /v1/webhooks/acr` accepts: an ACR trigger notification (`push_data` \
             and `repository`). Derived from the receiver's parser, so it names only what \
             signet reads.",
        )?,
    ];
    for kind in EventKind::ALL {
        files.push(event_file(kind)?);
    }
    files.push(any_event_file()?);
    files.push(SchemaFile {
        path: OPENAPI.into(),
        json: render("the OpenAPI document", &crate::routes::ApiDoc::openapi())?,
    });
    for f in &mut files {
        f.json = sorted(std::mem::take(&mut f.json));
    }
    Ok(files)
}

/// The path of the schema of events of `kind`.
pub fn event_path(kind: EventKind) -> String {
    format!("events/{}.schema.json", kind.cloudevent_type())
}

/// A type's schema and the schemas it refers to, by name.
struct Named {
    name: String,
    schema: Value,
    defs: Map<String, Value>,
}

fn named<T: ToSchema>() -> Result<Named, SchemaError> {
    let name = T::name().into_owned();
    let mut nested: Vec<(String, RefOr<Schema>)> = Vec::new();
    T::schemas(&mut nested);
    let mut defs = Map::new();
    for (n, s) in nested {
        defs.insert(n.clone(), render(&n, &s)?);
    }
    Ok(Named {
        schema: render(&name, &T::schema())?,
        name,
        defs,
    })
}

fn render(what: &str, value: &impl serde::Serialize) -> Result<Value, SchemaError> {
    serde_json::to_value(value).map_err(|source| SchemaError::Render {
        what: what.to_owned(),
        source,
    })
}

/// A schema file whose root is `T`.
fn type_file<T: ToSchema>(
    path: &str,
    title: &str,
    description: &str,
) -> Result<SchemaFile, SchemaError> {
    let t = named::<T>()?;
    Ok(document(path, title, description, t.schema, t.defs))
}

/// The policy-as-code document: a `kind`-tagged union of structs that refuse unknown
/// fields. utoipa writes each variant as `allOf: [struct, {kind}]`, which no document
/// could satisfy (the struct's `additionalProperties: false` refuses `kind`); each
/// variant is written as its struct with `kind` added instead, and `apiVersion` pinned.
fn manifest_file(path: &str, title: &str, description: &str) -> Result<SchemaFile, SchemaError> {
    let mut t = named::<signet_core::manifest::Document>()?;
    let variants = t.schema["oneOf"].as_array().cloned().unwrap_or_default();
    let mut merged = Vec::new();
    for v in variants {
        let (Some(reference), Some(kind)) = (
            v["allOf"][0]["$ref"].as_str(),
            v["allOf"][1]["properties"]["kind"].as_object(),
        ) else {
            merged.push(v);
            continue;
        };
        let name = reference.rsplit('/').next().unwrap_or_default().to_owned();
        let Some(mut def) = t.defs.remove(&name) else {
            merged.push(v);
            continue;
        };
        def["properties"]["kind"] = Value::Object(kind.clone());
        def["properties"]["apiVersion"]["const"] = json!(signet_core::manifest::API_VERSION);
        if let Some(required) = def["required"].as_array_mut() {
            required.insert(0, json!("kind"));
        }
        merged.push(def);
    }
    t.schema["oneOf"] = Value::Array(merged);
    Ok(document(path, title, description, t.schema, t.defs))
}

/// Adds the dialect, id, title, description and `$defs` to the schema `root`, and points
/// utoipa's component references (`#/components/schemas/X`) at `$defs`.
fn document(
    path: &str,
    title: &str,
    description: &str,
    root: Value,
    defs: Map<String, Value>,
) -> SchemaFile {
    let mut root = match root {
        Value::Object(m) => m,
        other => Map::from_iter([("allOf".to_owned(), json!([other]))]),
    };
    root.insert("$schema".into(), DIALECT.into());
    root.insert("$id".into(), format!("{BASE_ID}{path}").into());
    root.insert("title".into(), title.into());
    root.insert("description".into(), description.into());
    if !defs.is_empty() {
        root.insert("$defs".into(), Value::Object(defs));
    }
    let mut json = Value::Object(root);
    to_defs(&mut json);
    SchemaFile {
        path: path.to_owned(),
        json,
    }
}

fn to_defs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    *r = format!("#/$defs/{name}");
                }
            }
            m.values_mut().for_each(to_defs);
        }
        Value::Array(a) => a.iter_mut().for_each(to_defs),
        _ => {}
    }
}

/// The same JSON with every object's keys in order, whatever serde_json's map keeps.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// What an event of one kind is about and carries.
struct EventShape {
    description: &'static str,
    subject: Value,
    data: Named,
}

/// Every kind's `subject` and `data`. A new [`EventKind`] does not compile until it is
/// described here.
fn event_shape(kind: EventKind) -> Result<EventShape, SchemaError> {
    let digest = json!({
        "type": "string",
        "pattern": DIGEST_PATTERN,
        "description": "The signed image digest.",
    });
    let name = |what: &str| {
        json!({
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": format!("The {what}'s name."),
        })
    };
    Ok(match kind {
        EventKind::SignaturePublished => EventShape {
            description: "A signature was published to the registry and recorded.",
            subject: digest,
            data: named::<SignatureRecord>()?,
        },
        EventKind::AttestationPublished => EventShape {
            description: "An attestation (an in-toto Statement in a DSSE envelope) was \
                          published to the registry and recorded.",
            subject: digest.clone(),
            data: named::<signet_core::AttestationRecord>()?,
        },
        EventKind::SignatureRevoked => EventShape {
            description: "A recorded signature was revoked: verifiers forget it.",
            subject: digest,
            data: named::<SignatureRecord>()?,
        },
        EventKind::SignatureFailed => EventShape {
            description: "A sign job failed for good (a dead letter); `data` is the job.",
            subject: json!({
                "type": "string",
                "minLength": 1,
                "description": "The image reference the job was asked to sign.",
            }),
            data: named::<Job>()?,
        },
        EventKind::WitnessCreated => EventShape {
            description: "A witness was created; `data` is the witness.",
            subject: name("witness"),
            data: named::<Witness>()?,
        },
        EventKind::WitnessRotated => EventShape {
            description: "A witness got a new primary key version (or another change that \
                          revokes nothing); `data` is the witness after it.",
            subject: name("witness"),
            data: named::<Witness>()?,
        },
        EventKind::WitnessKeyRevoked => EventShape {
            description: "One key version of a witness was revoked; `data` is the witness \
                          after it.",
            subject: name("witness"),
            data: named::<Witness>()?,
        },
        EventKind::WitnessRevoked => EventShape {
            description: "A witness was revoked as a whole; `data` is the witness after it.",
            subject: name("witness"),
            data: named::<Witness>()?,
        },
        EventKind::PolicyUpdated => EventShape {
            description: "A security policy was created, changed, enabled, disabled or \
                          deleted; `data` says which, with the policy.",
            subject: name("policy"),
            data: named::<PolicyUpdate>()?,
        },
        EventKind::AdmissionBreakGlass => EventShape {
            description: "A break-glass annotation let a workload through an enforce policy; \
                          `data` is the verifier's decision.",
            subject: json!({
                "type": "string",
                "pattern": "^[^/]+/[^/]+/[^/]+/[^/]+$",
                "description": "`cluster/namespace/kind/name` of the workload.",
            }),
            data: named::<AdmissionDecision>()?,
        },
        EventKind::WorkloadUntrusted => EventShape {
            description: "A running container's standing got worse (its signature, key or \
                          witness was revoked, or a policy now covers it unsigned); `data` \
                          has the container as the verifier reported it and its previous \
                          standing. Nothing is stopped: this is for whoever acts on it.",
            subject: json!({
                "type": "string",
                "pattern": "^[^/]+/[^/]+/[^/]+/[^/]+$",
                "description": "`cluster/namespace/pod/container`.",
            }),
            data: named::<signet_core::StandingChange>()?,
        },
    })
}

/// The CloudEvents attributes of a signet event, with `type`, `subject` and `data` as given.
fn envelope_properties(ty: Value, subject: Value, data: Value) -> Value {
    json!({
        "specversion": {"const": "1.0"},
        "id": {
            "type": "string",
            "minLength": 1,
            "description": "Unique per published event.",
        },
        "source": {"const": EVENT_SOURCE},
        "type": ty,
        "subject": subject,
        "time": {
            "type": "string",
            "format": "date-time",
            "description": "When the event was published.",
        },
        "datacontenttype": {"const": "application/json"},
        "signetrevision": {
            "type": "integer",
            "minimum": 1,
            "description": "The store's outbox id the event was published from. Revisions \
                            only grow: a gap means missed events, and a verifier re-syncs \
                            from the trust bundle.",
        },
        "traceparent": {
            "type": "string",
            "pattern": TRACEPARENT_PATTERN,
            "description": "W3C trace context of the work that wrote the event.",
        },
        "data": data,
    })
}

fn transport(kind: EventKind) -> String {
    format!(
        "Published as CloudEvents 1.0 structured JSON (`application/cloudevents+json`) on \
         NATS subject `{}` and on the AMQP topic exchange `signet.events` with routing key \
         `{}`.",
        kind.nats_subject(),
        kind.name()
    )
}

fn event_file(kind: EventKind) -> Result<SchemaFile, SchemaError> {
    let shape = event_shape(kind)?;
    let mut defs = shape.data.defs;
    let data_ref = json!({"$ref": format!("#/$defs/{}", shape.data.name)});
    defs.insert(shape.data.name, shape.data.schema);
    let root = json!({
        "type": "object",
        "required": ENVELOPE_REQUIRED,
        "properties": envelope_properties(
            json!({"const": kind.cloudevent_type()}),
            shape.subject,
            data_ref,
        ),
    });
    Ok(document(
        &event_path(kind),
        &kind.cloudevent_type(),
        &format!("{} {}", shape.description, transport(kind)),
        root,
        defs,
    ))
}

/// One schema for an event of any type: the envelope, and per `type` its subject and data.
fn any_event_file() -> Result<SchemaFile, SchemaError> {
    let mut defs = Map::new();
    let mut cases = Vec::new();
    for kind in EventKind::ALL {
        let shape = event_shape(kind)?;
        cases.push(json!({
            "if": {
                "properties": {"type": {"const": kind.cloudevent_type()}},
                "required": ["type"],
            },
            "then": {
                "properties": {
                    "subject": shape.subject,
                    "data": {"$ref": format!("#/$defs/{}", shape.data.name)},
                },
            },
        }));
        defs.extend(shape.data.defs);
        defs.insert(shape.data.name, shape.data.schema);
    }
    let types: Vec<String> = EventKind::ALL.iter().map(|k| k.cloudevent_type()).collect();
    let root = json!({
        "type": "object",
        "required": ENVELOPE_REQUIRED,
        "properties": envelope_properties(
            json!({"enum": types}),
            json!({"type": "string"}),
            json!({"type": "object"}),
        ),
        "allOf": cases,
    });
    Ok(document(
        ANY_EVENT,
        "signet event",
        "Any event signet emits: CloudEvents 1.0 structured JSON on NATS subjects \
         `signet.events.<noun>.<verb>` and the AMQP topic exchange `signet.events` (routing \
         key `<noun>.<verb>`). `events/<type>.schema.json` describes each type alone.",
        root,
        defs,
    ))
}
