//! The cosign "simple signing" payload: what a signature actually covers.
//!
//! Building follows cosign's field order byte for byte. Parsing is strict in the way
//! containers/image (`signature/internal/sigstore_payload.go`) is: exact key sets,
//! case-sensitive keys, no duplicate keys, no trailing data, `optional.timestamp` an
//! integer and `optional.creator` a string. serde_json alone keeps the last duplicate
//! key silently, so objects are read through [`StrictObject`], which refuses them.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::digest::{Digest, DigestError};

pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// A payload that signet will sign or has verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleSigning {
    /// `registry/repository`, without tag or digest.
    pub docker_reference: String,
    pub manifest_digest: Digest,
    /// cosign annotations (`optional`); `None` serialises as `"optional":null`.
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not valid JSON: {0}")]
    Json(String),
    #[error("payload field {field} must be a JSON object")]
    NotObject { field: &'static str },
    #[error("payload field {field} has duplicate key {key:?}")]
    DuplicateKey { field: &'static str, key: String },
    #[error("payload field {field} has unexpected key {key:?}")]
    UnexpectedKey { field: &'static str, key: String },
    #[error("payload field {field} is missing key {key:?}")]
    MissingKey {
        field: &'static str,
        key: &'static str,
    },
    #[error("payload field {field} must be a string")]
    NotString { field: &'static str },
    #[error("payload has unrecognised signature type {0:?}")]
    WrongType(String),
    #[error("payload field optional.timestamp must be an integer")]
    TimestampNotInteger,
    #[error("payload manifest digest is invalid: {0}")]
    Digest(#[source] DigestError),
}

/// Whether a payload's `docker-reference` must name the repository the image is checked
/// in. One rule for admission and `signet verify`: by default it need not, because
/// signatures are trusted by digest and key, and `cosign copy` (or a registry mirror)
/// moves a signature to another repository without re-signing it; a caller that wants
/// the repository bound too asks for [`ReferenceRule::SameRepository`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReferenceRule {
    /// Any repository: the manifest digest alone binds the signature to the image.
    #[default]
    AnyRepository,
    /// The payload must name exactly the repository (`registry/repository`).
    SameRepository,
}

/// Why a parsed payload does not cover the image it was checked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoverageError {
    #[error("payload is for {payload}, not {wanted}")]
    OtherDigest { payload: Digest, wanted: Digest },
    #[error("payload names repository {payload}, not {wanted}")]
    OtherRepository { payload: String, wanted: String },
}

impl SimpleSigning {
    /// Whether this payload covers `digest` in `repository` (`registry/repository`) under
    /// `rule`: the manifest digest must always match; the `docker-reference` only under
    /// [`ReferenceRule::SameRepository`].
    pub fn covers(
        &self,
        repository: &str,
        digest: &Digest,
        rule: ReferenceRule,
    ) -> Result<(), CoverageError> {
        if &self.manifest_digest != digest {
            return Err(CoverageError::OtherDigest {
                payload: self.manifest_digest.clone(),
                wanted: digest.clone(),
            });
        }
        if rule == ReferenceRule::SameRepository && self.docker_reference != repository {
            return Err(CoverageError::OtherRepository {
                payload: self.docker_reference.clone(),
                wanted: repository.to_owned(),
            });
        }
        Ok(())
    }

    pub fn new(docker_reference: impl Into<String>, manifest_digest: Digest) -> Self {
        Self {
            docker_reference: docker_reference.into(),
            manifest_digest,
            optional: None,
        }
    }

    /// Serialises exactly as cosign does: `critical` (`identity`, `image`, `type`) then
    /// `optional`, compact, map keys sorted as Go's encoder sorts them.
    pub fn to_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Out<'a> {
            critical: Critical<'a>,
            optional: &'a Option<BTreeMap<String, serde_json::Value>>,
        }
        #[derive(Serialize)]
        struct Critical<'a> {
            identity: Identity<'a>,
            image: Image<'a>,
            #[serde(rename = "type")]
            kind: &'a str,
        }
        #[derive(Serialize)]
        struct Identity<'a> {
            #[serde(rename = "docker-reference")]
            docker_reference: &'a str,
        }
        #[derive(Serialize)]
        struct Image<'a> {
            #[serde(rename = "docker-manifest-digest")]
            digest: &'a str,
        }
        let out = Out {
            critical: Critical {
                identity: Identity {
                    docker_reference: &self.docker_reference,
                },
                image: Image {
                    digest: self.manifest_digest.as_str(),
                },
                kind: SIGNATURE_TYPE,
            },
            optional: &self.optional,
        };
        // Serialising plain structs and strings into a Vec cannot fail.
        serde_json::to_vec(&out).unwrap_or_default()
    }

    /// Parses a payload with every rule containers/image enforces.
    pub fn parse_strict(bytes: &[u8]) -> Result<Self, PayloadError> {
        let top = StrictObject::parse(bytes, "payload")?;
        top.expect_exactly("payload", &["critical", "optional"])?;
        let critical = top.get("critical").ok_or(PayloadError::MissingKey {
            field: "payload",
            key: "critical",
        })?;
        let optional_raw = top.get("optional").ok_or(PayloadError::MissingKey {
            field: "payload",
            key: "optional",
        })?;

        let optional = if optional_raw.get().trim() == "null" {
            None
        } else {
            let obj = StrictObject::parse(optional_raw.get().as_bytes(), "optional")?;
            if let Some(ts) = obj.get("timestamp") {
                let v: serde_json::Value = serde_json::from_str(ts.get())
                    .map_err(|e| PayloadError::Json(e.to_string()))?;
                let is_int = match &v {
                    serde_json::Value::Number(n) => {
                        n.is_i64()
                            || n.is_u64()
                            || n.as_f64()
                                .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
                    }
                    _ => false,
                };
                if !is_int {
                    return Err(PayloadError::TimestampNotInteger);
                }
            }
            if let Some(c) = obj.get("creator") {
                if !c.get().trim_start().starts_with('"') {
                    return Err(PayloadError::NotString {
                        field: "optional.creator",
                    });
                }
            }
            let mut map = BTreeMap::new();
            for (k, v) in obj.entries {
                let v: serde_json::Value =
                    serde_json::from_str(v.get()).map_err(|e| PayloadError::Json(e.to_string()))?;
                map.insert(k, v);
            }
            Some(map)
        };

        let critical = StrictObject::parse(critical.get().as_bytes(), "critical")?;
        critical.expect_exactly("critical", &["type", "image", "identity"])?;
        let kind = critical.string("critical", "type")?;
        if kind != SIGNATURE_TYPE {
            return Err(PayloadError::WrongType(kind));
        }
        let image = critical.object("critical", "image", "critical.image")?;
        image.expect_exactly("critical.image", &["docker-manifest-digest"])?;
        let digest = Digest::parse(&image.string("critical.image", "docker-manifest-digest")?)
            .map_err(PayloadError::Digest)?;
        let identity = critical.object("critical", "identity", "critical.identity")?;
        identity.expect_exactly("critical.identity", &["docker-reference"])?;
        let docker_reference = identity.string("critical.identity", "docker-reference")?;

        Ok(Self {
            docker_reference,
            manifest_digest: digest,
            optional,
        })
    }
}

/// A JSON object read key by key, refusing duplicates and trailing data.
struct StrictObject {
    entries: Vec<(String, Box<RawValue>)>,
}

impl StrictObject {
    fn parse(bytes: &[u8], field: &'static str) -> Result<Self, PayloadError> {
        let trimmed = std::str::from_utf8(bytes)
            .map_err(|e| PayloadError::Json(e.to_string()))?
            .trim_start();
        if !trimmed.starts_with('{') {
            return Err(PayloadError::NotObject { field });
        }
        let mut de = serde_json::Deserializer::from_str(trimmed);
        let obj = de.deserialize_map(ObjectVisitor { field }).map_err(|e| {
            let msg = e.to_string();
            match msg.strip_prefix(DUPLICATE_MARK) {
                Some(key) => PayloadError::DuplicateKey {
                    field,
                    key: key.split(" at line").next().unwrap_or(key).to_owned(),
                },
                None => PayloadError::Json(msg),
            }
        })?;
        de.end()
            .map_err(|e| PayloadError::Json(format!("trailing data after object: {e}")))?;
        Ok(obj)
    }

    fn get(&self, key: &str) -> Option<&RawValue> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    fn expect_exactly(
        &self,
        field: &'static str,
        keys: &[&'static str],
    ) -> Result<(), PayloadError> {
        if let Some((k, _)) = self
            .entries
            .iter()
            .find(|(k, _)| !keys.contains(&k.as_str()))
        {
            return Err(PayloadError::UnexpectedKey {
                field,
                key: k.clone(),
            });
        }
        if let Some(missing) = keys.iter().find(|k| self.get(k).is_none()) {
            return Err(PayloadError::MissingKey {
                field,
                key: missing,
            });
        }
        Ok(())
    }

    fn string(&self, field: &'static str, key: &'static str) -> Result<String, PayloadError> {
        let raw = self
            .get(key)
            .ok_or(PayloadError::MissingKey { field, key })?;
        serde_json::from_str::<String>(raw.get()).map_err(|_| PayloadError::NotString {
            field: leak_path(field, key),
        })
    }

    fn object(
        &self,
        field: &'static str,
        key: &'static str,
        path: &'static str,
    ) -> Result<StrictObject, PayloadError> {
        let raw = self
            .get(key)
            .ok_or(PayloadError::MissingKey { field, key })?;
        StrictObject::parse(raw.get().as_bytes(), path)
    }
}

/// Field paths are a small fixed set; map them to static names for error messages.
fn leak_path(field: &'static str, key: &'static str) -> &'static str {
    match (field, key) {
        ("critical", "type") => "critical.type",
        ("critical.image", _) => "critical.image.docker-manifest-digest",
        ("critical.identity", _) => "critical.identity.docker-reference",
        _ => field,
    }
}

const DUPLICATE_MARK: &str = "signet-duplicate-key:";

struct ObjectVisitor {
    field: &'static str,
}

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = StrictObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON object for {}", self.field)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Vec<(String, Box<RawValue>)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(serde::de::Error::custom(format!("{DUPLICATE_MARK}{key}")));
            }
            let value: Box<RawValue> = map.next_value()?;
            entries.push((key, value));
        }
        Ok(StrictObject { entries })
    }
}

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor { field: "object" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reference_rule_for_admission_and_the_cli() {
        let d = Digest::of(b"image");
        let p = SimpleSigning::new("reg.example/team/app", d.clone());
        // A signature copied to another repository still covers the digest by default.
        assert_eq!(
            p.covers("mirror.example/app", &d, ReferenceRule::default()),
            Ok(())
        );
        assert_eq!(
            p.covers("mirror.example/app", &d, ReferenceRule::SameRepository),
            Err(CoverageError::OtherRepository {
                payload: "reg.example/team/app".into(),
                wanted: "mirror.example/app".into()
            })
        );
        assert_eq!(
            p.covers("reg.example/team/app", &d, ReferenceRule::SameRepository),
            Ok(())
        );
        let other = Digest::of(b"other");
        assert!(matches!(
            p.covers("reg.example/team/app", &other, ReferenceRule::AnyRepository),
            Err(CoverageError::OtherDigest { .. })
        ));
    }

    const D: &str = "sha256:4c0d0b7f23d7c9d6c1f5d0e5ab9d14a0f7c3e5e2b7b8d2d1f1b4f5c6a7b8c9d0";

    fn digest() -> Digest {
        Digest::parse(D).expect("digest")
    }

    #[test]
    fn builds_cosign_byte_layout() {
        let p = SimpleSigning::new("127.0.0.1:5000/demo/app", digest());
        let want = format!(
            "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"127.0.0.1:5000/demo/app\"}},\"image\":{{\"docker-manifest-digest\":\"{D}\"}},\"type\":\"cosign container image signature\"}},\"optional\":null}}"
        );
        assert_eq!(String::from_utf8(p.to_bytes()).expect("utf8"), want);
    }

    #[test]
    fn annotations_are_sorted_like_go() {
        let mut p = SimpleSigning::new("r/x", digest());
        let mut o = BTreeMap::new();
        o.insert("z".to_owned(), serde_json::json!("1"));
        o.insert("a".to_owned(), serde_json::json!("2"));
        p.optional = Some(o);
        let s = String::from_utf8(p.to_bytes()).expect("utf8");
        assert!(
            s.ends_with("\"optional\":{\"a\":\"2\",\"z\":\"1\"}}"),
            "{s}"
        );
        assert_eq!(SimpleSigning::parse_strict(s.as_bytes()).expect("parse"), p);
    }

    #[test]
    fn round_trips() {
        let p = SimpleSigning::new("ghcr.io/org/app", digest());
        assert_eq!(
            SimpleSigning::parse_strict(&p.to_bytes()).expect("parse"),
            p
        );
    }

    /// Found by the `cosign_payload` fuzz target. Whoever writes a payload (a registry
    /// owner, another signer) puts a number serde_json's fast float parser rounds
    /// imprecisely into `optional`: signet read a value that is not the one signed,
    /// printed it (`signet verify` shows annotations) as a third, and a payload rebuilt
    /// from what it read did not parse back to the same value.
    #[test]
    fn optional_numbers_read_as_written() {
        let big = "176111111111111111111111111111111111111111111111111495000064950001";
        let p =
            SimpleSigning::parse_strict(body(&crit(""), &format!("{{\"n\":{big}}}")).as_bytes())
                .expect("parse");
        let n = p
            .optional
            .as_ref()
            .and_then(|o| o.get("n"))
            .and_then(|v| v.as_f64());
        assert_eq!(
            n,
            Some(big.parse::<f64>().expect("f64")),
            "nearest f64 to {big}"
        );
        assert_eq!(
            SimpleSigning::parse_strict(&p.to_bytes()).expect("parse again"),
            p
        );
    }

    fn body(critical: &str, optional: &str) -> String {
        format!("{{\"critical\":{critical},\"optional\":{optional}}}")
    }
    fn crit(extra: &str) -> String {
        format!("{{\"identity\":{{\"docker-reference\":\"r/x\"}},\"image\":{{\"docker-manifest-digest\":\"{D}\"}},\"type\":\"cosign container image signature\"{extra}}}")
    }

    #[test]
    fn strict_rules() {
        let ok = body(&crit(""), "null");
        assert!(SimpleSigning::parse_strict(ok.as_bytes()).is_ok());

        // optional is required
        let e = SimpleSigning::parse_strict(format!("{{\"critical\":{}}}", crit("")).as_bytes());
        assert!(
            matches!(
                e,
                Err(PayloadError::MissingKey {
                    key: "optional",
                    ..
                })
            ),
            "{e:?}"
        );
        // unknown top-level key
        let e = SimpleSigning::parse_strict(
            format!("{{\"critical\":{},\"optional\":null,\"x\":1}}", crit("")).as_bytes(),
        );
        assert!(
            matches!(e, Err(PayloadError::UnexpectedKey { .. })),
            "{e:?}"
        );
        // keys are case-sensitive
        let e = SimpleSigning::parse_strict(
            format!("{{\"Critical\":{},\"optional\":null}}", crit("")).as_bytes(),
        );
        assert!(
            matches!(e, Err(PayloadError::UnexpectedKey { .. })),
            "{e:?}"
        );
        // duplicate keys
        let e = SimpleSigning::parse_strict(
            format!(
                "{{\"critical\":{},\"optional\":null,\"optional\":null}}",
                crit("")
            )
            .as_bytes(),
        );
        assert!(matches!(e, Err(PayloadError::DuplicateKey { .. })), "{e:?}");
        let e = SimpleSigning::parse_strict(
            body(
                &crit(",\"type\":\"cosign container image signature\""),
                "null",
            )
            .as_bytes(),
        );
        assert!(
            matches!(
                e,
                Err(PayloadError::DuplicateKey {
                    field: "critical",
                    ..
                })
            ),
            "{e:?}"
        );
        // extra key in critical
        let e = SimpleSigning::parse_strict(body(&crit(",\"extra\":1"), "null").as_bytes());
        assert!(
            matches!(
                e,
                Err(PayloadError::UnexpectedKey {
                    field: "critical",
                    ..
                })
            ),
            "{e:?}"
        );
        // wrong type
        let bad = crit("").replace(
            "cosign container image signature",
            "atomic container signature",
        );
        let e = SimpleSigning::parse_strict(body(&bad, "null").as_bytes());
        assert!(matches!(e, Err(PayloadError::WrongType(_))), "{e:?}");
        // bad digest
        let bad = crit("").replace(D, "sha256:abc");
        let e = SimpleSigning::parse_strict(body(&bad, "null").as_bytes());
        assert!(matches!(e, Err(PayloadError::Digest(_))), "{e:?}");
        // timestamp must be an integer, creator a string
        let e = SimpleSigning::parse_strict(body(&crit(""), "{\"timestamp\":1.5}").as_bytes());
        assert_eq!(e, Err(PayloadError::TimestampNotInteger));
        let e = SimpleSigning::parse_strict(body(&crit(""), "{\"timestamp\":\"1\"}").as_bytes());
        assert_eq!(e, Err(PayloadError::TimestampNotInteger));
        assert!(SimpleSigning::parse_strict(
            body(&crit(""), "{\"timestamp\":1700000000}").as_bytes()
        )
        .is_ok());
        let e = SimpleSigning::parse_strict(body(&crit(""), "{\"creator\":5}").as_bytes());
        assert!(
            matches!(
                e,
                Err(PayloadError::NotString {
                    field: "optional.creator"
                })
            ),
            "{e:?}"
        );
        // digest must be a string
        let bad = crit("").replace(&format!("\"{D}\""), "5");
        let e = SimpleSigning::parse_strict(body(&bad, "null").as_bytes());
        assert!(matches!(e, Err(PayloadError::NotString { .. })), "{e:?}");
        // trailing data
        let e = SimpleSigning::parse_strict(format!("{ok}{{}}").as_bytes());
        assert!(matches!(e, Err(PayloadError::Json(_))), "{e:?}");
        // not an object
        let e = SimpleSigning::parse_strict(b"[1]");
        assert!(matches!(e, Err(PayloadError::NotObject { .. })), "{e:?}");
        // optional must be an object or null
        let e = SimpleSigning::parse_strict(body(&crit(""), "[]").as_bytes());
        assert!(
            matches!(e, Err(PayloadError::NotObject { field: "optional" })),
            "{e:?}"
        );
    }
}
