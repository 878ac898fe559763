//! What runs: the containers a verifier sees running in its cluster, each with its
//! standing under the cluster's policies, as it reports them to the control plane.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A running container's standing under the policies of its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Signed by the witnesses a policy of its namespace requires: a Trusted Image.
    Trusted,
    /// Matches an exemption of the policy.
    Exempt,
    /// Not signed as required: admitted in warn or dry-run mode, before a policy was
    /// enforced, or with no policy at all.
    Untrusted,
    /// Admitted by a break-glass annotation, and not signed as required.
    BreakGlass,
    /// Its signature, key or witness has been revoked since it started.
    Revoked,
}

impl Standing {
    pub const ALL: [Standing; 5] = [
        Self::Trusted,
        Self::Exempt,
        Self::Untrusted,
        Self::BreakGlass,
        Self::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trusted => "trusted",
            Self::Exempt => "exempt",
            Self::Untrusted => "untrusted",
            Self::BreakGlass => "break_glass",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the policies vouch for the container: trusted or exempt.
    pub fn is_good(self) -> bool {
        matches!(self, Self::Trusted | Self::Exempt)
    }

    /// Whether going from `before` to `self` is a change for the worse that someone must
    /// hear about: a container the policies vouched for no longer is, or an untrusted
    /// one turned out to be revoked.
    pub fn worse_than(self, before: Standing) -> bool {
        (before.is_good() && !self.is_good()) || (self == Self::Revoked && before != Self::Revoked)
    }
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One container of one Pod, as it runs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunningContainer {
    pub namespace: String,
    /// The labels of the namespace when the container was judged (policies may select
    /// namespaces by label); absent when the verifier could not read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_labels: Option<std::collections::BTreeMap<String, String>>,
    pub pod: String,
    /// The Pod's uid: a Pod recreated under the same name is another Pod.
    pub pod_uid: String,
    /// The container's name (init and ephemeral containers included).
    pub container: String,
    /// The image as the Pod's spec names it.
    pub image: String,
    /// The digest it runs: the kubelet's `imageID`, else the spec's digest, else the tag
    /// resolved; absent when none of those could be had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<crate::Digest>,
    pub standing: Standing,
    /// The policy the standing was judged under; absent when none applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The witnesses whose valid signatures it has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<String>,
    /// Why it is not trusted, in the words of an admission denial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the verifier judged it so.
    pub evaluated_at: DateTime<Utc>,
}

/// A page of a full inventory: the first page of a sync starts it, the last one ends
/// it, and then every container of the cluster that the sync did not mention is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InventorySync {
    /// Chosen by the verifier, unique per sync (a UUID).
    pub id: String,
    /// 0 for the first page.
    pub page: u32,
    pub last: bool,
}

/// What a verifier sends: a page of a full inventory (when it starts, and now and then),
/// or the changes since its last report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryReport {
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<InventorySync>,
    /// Containers added, or whose standing or digest changed.
    #[serde(default)]
    pub containers: Vec<RunningContainer>,
    /// Uids of Pods that are gone.
    #[serde(default)]
    pub removed_pods: Vec<String>,
}

/// The data of a `workload.untrusted` event: a container's standing got worse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StandingChange {
    pub cluster: String,
    pub previous: Standing,
    pub container: RunningContainer,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standings_round_trip_and_worsen() {
        for s in Standing::ALL {
            assert_eq!(Standing::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).expect("json"),
                serde_json::Value::from(s.as_str())
            );
        }
        use Standing::*;
        assert!(Revoked.worse_than(Trusted));
        assert!(Untrusted.worse_than(Exempt));
        assert!(
            Revoked.worse_than(Untrusted),
            "revoked is news even when untrusted"
        );
        assert!(!Untrusted.worse_than(Untrusted));
        assert!(!Trusted.worse_than(Untrusted));
        assert!(!BreakGlass.worse_than(Untrusted));
        assert!(BreakGlass.worse_than(Trusted));
    }
}
