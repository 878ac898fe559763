//! Break-glass decisions travel apart from the batched reports, and are never dropped.
//!
//! A break-glass admission lets an image through a policy that would have denied it, on
//! the promise that it is audited. So before the admission is answered its decision is
//! written to the state dir (file and directory fsynced); a sender task then reports
//! each one on its own until the control plane acknowledges it, and only then deletes
//! it. A restarted verifier sends what it finds there. The batched reporter
//! ([`crate::report`]) may drop decisions under load; it never sees these. Sending one
//! twice is harmless: the control plane records a decision once per (cluster, uid,
//! policy).
//!
//! Without a state dir the decisions wait in memory only (and a warning says so at
//! start): they are still never dropped while the process lives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use signet_core::AdmissionDecision;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::control::ControlPlane;

/// Retries start at this and double up to [`RETRY_MAX`] while the control plane fails.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);
const SUFFIX: &str = "json";

/// Why a break-glass decision could not be kept.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the break-glass decision to {path}")]
pub struct JournalError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// The break-glass decisions not yet acknowledged. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Journal {
    dir: Option<Arc<PathBuf>>,
    /// Keyed by a time-ordered id (the file name), so they are sent oldest first.
    pending: Arc<Mutex<BTreeMap<String, AdmissionDecision>>>,
    wake: Arc<Notify>,
}

impl Journal {
    /// Opens the journal in `<state_dir>/break-glass`, picking up what a previous run
    /// left unsent. A file that cannot be read is logged and left where it is.
    pub fn open(state_dir: Option<&Path>) -> Result<Self, JournalError> {
        let mut pending = BTreeMap::new();
        let dir = match state_dir {
            None => None,
            Some(d) => {
                let dir = d.join("break-glass");
                let io = |source| JournalError {
                    path: dir.display().to_string(),
                    source,
                };
                create_private_dir(&dir).map_err(io)?;
                for entry in std::fs::read_dir(&dir).map_err(io)? {
                    let path = entry.map_err(io)?.path();
                    if path.extension().and_then(|e| e.to_str()) != Some(SUFFIX) {
                        continue;
                    }
                    let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
                        continue;
                    };
                    match std::fs::read(&path)
                        .map_err(|e| e.to_string())
                        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                    {
                        Ok(d) => {
                            pending.insert(id.to_owned(), d);
                        }
                        Err(e) => {
                            tracing::error!(file = %path.display(), error = %e, "a kept break-glass decision cannot be read; left in place for an operator")
                        }
                    }
                }
                if !pending.is_empty() {
                    tracing::warn!(
                        unsent = pending.len(),
                        "break-glass decisions from a previous run are not yet reported; sending them"
                    );
                }
                Some(Arc::new(dir))
            }
        };
        Ok(Self {
            dir,
            pending: Arc::new(Mutex::new(pending)),
            wake: Arc::new(Notify::new()),
        })
    }

    /// Keeps `decision` (on disk, synced, when there is a state dir) and wakes the
    /// sender. Returns only once the decision would survive a crash.
    pub async fn keep(&self, decision: AdmissionDecision) -> Result<(), JournalError> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        if let Some(dir) = &self.dir {
            let dir = dir.clone();
            let (d, name) = (decision.clone(), id.clone());
            let path = dir.join(format!("{name}.{SUFFIX}"));
            let shown = path.display().to_string();
            // Blocking file I/O and fsync, off the admission workers.
            tokio::task::spawn_blocking(move || write_synced(&dir, &path, &d))
                .await
                .map_err(|e| JournalError {
                    path: shown.clone(),
                    source: std::io::Error::other(e),
                })?
                .map_err(|source| JournalError {
                    path: shown,
                    source,
                })?;
        }
        self.lock().insert(id, decision);
        self.wake.notify_one();
        Ok(())
    }

    /// How many decisions wait for the control plane.
    pub fn unsent(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub(crate) fn pending(&self) -> Vec<AdmissionDecision> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AdmissionDecision>> {
        // Nothing panics while holding it; a poisoned map is still the right map.
        match self.pending.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn oldest(&self) -> Option<(String, AdmissionDecision)> {
        self.lock()
            .iter()
            .next()
            .map(|(k, v)| (k.clone(), v.clone()))
    }

    fn acknowledged(&self, id: &str) {
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("{id}.{SUFFIX}"));
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    // Sent again after a restart; the control plane ignores the repeat.
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a reported break-glass decision");
                }
            }
        }
        self.lock().remove(id);
    }
}

/// Sends kept decisions one at a time until each is acknowledged; retries with backoff
/// while the control plane fails. Ends at `shutdown` (what is unsent stays on disk).
pub async fn send(journal: Journal, control: ControlPlane, shutdown: CancellationToken) {
    let mut retry = RETRY_MIN;
    loop {
        while let Some((id, decision)) = journal.oldest() {
            let sent = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = control.report(std::slice::from_ref(&decision)) => r,
            };
            match sent {
                Ok(_) => {
                    journal.acknowledged(&id);
                    retry = RETRY_MIN;
                    tracing::info!(uid = %decision.uid, policy = %decision.policy, "break-glass decision reported");
                }
                Err(e) => {
                    tracing::warn!(error = %e, unsent = journal.unsent(), retry_in = ?retry, "cannot report a break-glass decision; keeping it and trying again");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                        // A new decision is a good moment to try again.
                        _ = journal.wake.notified() => {}
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = journal.wake.notified() => {}
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Writes a sibling, syncs it, renames it into place and syncs the directory, so the
/// file is either whole or absent after a crash.
fn write_synced(dir: &Path, path: &Path, decision: &AdmissionDecision) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = serde_json::to_vec(decision).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use signet_core::{AdmissionOutcome, PolicyMode};

    fn decision(uid: &str) -> AdmissionDecision {
        AdmissionDecision {
            at: Utc::now(),
            cluster: "c1".into(),
            uid: uid.into(),
            namespace: "ops".into(),
            kind: "Pod".into(),
            name: "p".into(),
            operation: "CREATE".into(),
            policy: "glass".into(),
            mode: PolicyMode::Enforce,
            outcome: AdmissionOutcome::BreakGlass,
            images: Vec::new(),
            message: String::new(),
            break_glass: Some("incident".into()),
            dry_run: false,
            user: None,
            groups: Vec::new(),
        }
    }

    #[tokio::test]
    async fn kept_decisions_are_found_again_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(Some(dir.path())).expect("open");
        j.keep(decision("a")).await.expect("keep");
        j.keep(decision("b")).await.expect("keep");
        // A crash: a new process opens the same dir.
        let again = Journal::open(Some(dir.path())).expect("reopen");
        assert_eq!(again.unsent(), 2);
        let (id, first) = again.oldest().expect("one");
        assert_eq!(first.uid, "a");
        again.acknowledged(&id);
        assert_eq!(Journal::open(Some(dir.path())).expect("reopen").unsent(), 1);
    }

    #[tokio::test]
    async fn an_unwritable_dir_is_an_error_not_a_silent_loss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(Some(dir.path())).expect("open");
        std::fs::remove_dir_all(dir.path().join("break-glass")).expect("remove");
        assert!(j.keep(decision("a")).await.is_err());
    }
}
