//! Instructions, not seconds (issue 15): valgrind's callgrind counts what signet's own
//! processes execute per signed image and per admission review. Unlike wall-clock
//! figures on two shared cores, the count repeats: the same binary, inputs and
//! environment give (nearly) the same number whatever else the machine does, so it can
//! show an optimisation's effect where the timings cannot.
//!
//! How: the gateway, the signer and the verifier run under `valgrind --tool=callgrind`
//! on a NATS and PostgreSQL stack. Around each measured window the load generator zeroes
//! their counters and dumps them (`callgrind_control -z` / `-d`), then measures an idle
//! window of the same length and subtracts it, so timers and background loops are not
//! charged to the work. The load generator waits for signatures by reading PostgreSQL,
//! not signet's API, so its polling is not counted either.
//!
//! - **Per signed image**: gateway plus signer, from the registry's push notification to
//!   the recorded signature and its event (warm: a few images are signed first).
//!   Baseline: a whole `sign-one` process per image (a pipeline step), also counted by
//!   callgrind, start to exit.
//! - **Per admission review** (a Deployment of three signed images): the warm verifier
//!   (cached verdicts), TLS and HTTP/2 included. Baseline: a verifier without a cache
//!   (every review fetches and verifies three signatures).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use signet_core::Digest;
use signet_store::Store;
use tokio::time::Instant;

use crate::admission;
use crate::oci::{ImageSet, Registry};
use crate::report::{Figure, Report, Unit};
use crate::run::Profile;
use crate::stack::{BusKind, Stack, StackOptions, Verifier};

/// Counts instructions of processes started under [`Callgrind::prefix`].
pub struct Callgrind {
    dir: tempfile::TempDir,
}

impl Callgrind {
    /// Fails, saying what is missing, when valgrind is not installed.
    pub fn new() -> anyhow::Result<Self> {
        for tool in ["valgrind", "callgrind_control"] {
            let found = std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                bail!("{tool} is missing (Debian's valgrind package)");
            }
        }
        // `SIGNET_LOAD_CALLGRIND_DIR` keeps the dumps, for `callgrind_annotate`.
        let keep = std::env::var_os("SIGNET_LOAD_CALLGRIND_DIR");
        let mut dir = tempfile::Builder::new();
        dir.prefix("signet-callgrind-")
            .disable_cleanup(keep.is_some());
        let dir = match keep {
            Some(under) => {
                std::fs::create_dir_all(&under)?;
                dir.tempdir_in(under)?
            }
            None => dir.tempdir()?,
        };
        println!("  callgrind dumps in {}", dir.path().display());
        Ok(Self { dir })
    }

    /// The command a counted process runs under.
    pub fn prefix(&self) -> Vec<String> {
        vec![
            "valgrind".to_owned(),
            "--tool=callgrind".to_owned(),
            format!(
                "--callgrind-out-file={}",
                self.dir.path().join("cg.%p").display()
            ),
            // Counts per function are enough; no per-instruction or jump detail.
            "--dump-instr=no".to_owned(),
            "--collect-jumps=no".to_owned(),
        ]
    }

    fn control(flag: &str, pid: u32) -> anyhow::Result<()> {
        let out = std::process::Command::new("callgrind_control")
            .args([flag, &pid.to_string()])
            .output()
            .context("running callgrind_control")?;
        if !out.status.success() {
            bail!(
                "callgrind_control {flag} {pid}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Zeroes the counters of `pids`.
    pub fn zero(&self, pids: &[u32]) -> anyhow::Result<()> {
        pids.iter().try_for_each(|p| Self::control("-z", *p))
    }

    /// Dumps the counters of `pids`: the instructions each executed since its last zero
    /// or dump.
    pub fn dump(&self, pids: &[u32]) -> anyhow::Result<Vec<u64>> {
        pids.iter()
            .map(|p| {
                Self::control("-d", *p)?;
                latest_total(self.dir.path(), *p)
            })
            .collect()
    }

    /// `work`'s instructions in `pids`, less what they execute idle over as long.
    pub async fn net<T>(
        &self,
        pids: &[u32],
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<(T, Vec<u64>)> {
        self.zero(pids)?;
        let started = Instant::now();
        let out = work.await?;
        let took = started.elapsed();
        let busy = self.dump(pids)?;
        tokio::time::sleep(took).await;
        let idle = self.dump(pids)?;
        let net = busy
            .iter()
            .zip(&idle)
            .map(|(b, i)| b.saturating_sub(*i))
            .collect();
        Ok((out, net))
    }
}

/// The `totals:` (or `summary:`) line of the newest dump of `pid` in `dir`.
fn latest_total(dir: &Path, pid: u32) -> anyhow::Result<u64> {
    let prefix = format!("cg.{pid}");
    let newest = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = match name.strip_prefix(&prefix)? {
                "" => 0,
                rest => rest.strip_prefix('.')?.parse::<u64>().ok()?,
            };
            Some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p)
        .with_context(|| format!("no callgrind dump of {pid} in {}", dir.display()))?;
    total_of(&std::fs::read_to_string(&newest)?)
        .with_context(|| format!("no totals in {}", newest.display()))
}

fn total_of(dump: &str) -> Option<u64> {
    let line = dump
        .lines()
        .find(|l| l.starts_with("totals:"))
        .or_else(|| dump.lines().find(|l| l.starts_with("summary:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How much each count is taken over.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Images signed in the measured window (after 5 to warm up).
    pub images: u64,
    /// Warm reviews counted.
    pub reviews: usize,
    /// Reviews counted on the uncached verifier (three images each).
    pub uncached: usize,
}

pub async fn run(profile: &Profile, report: &mut Report) -> anyhow::Result<()> {
    let cg = Callgrind::new()?;
    let Config {
        images,
        reviews,
        uncached,
    } = profile.instructions;
    println!("== instructions (callgrind): the gateway and signer under valgrind");
    let stack = Stack::start(StackOptions {
        wrap: cg.prefix(),
        ..StackOptions::on(BusKind::Nats)
    })
    .await?;
    let outcome = on_stack(&cg, &stack, images, reviews, uncached, report).await;
    stack.shutdown().await;
    outcome
}

async fn on_stack(
    cg: &Callgrind,
    stack: &Stack,
    images: u64,
    reviews: usize,
    uncached: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    crate::run::setup(stack, false).await?;
    let store = Store::connect(&stack.store_url().context("a broker stack has a store")?).await?;
    let registry = Registry::new(&stack.registry.host())?;
    let pids: Vec<u32> = [
        stack.services.first().and_then(|s| s.pid()),
        stack.signer().and_then(|s| s.pid()),
    ]
    .into_iter()
    .flatten()
    .collect();
    anyhow::ensure!(
        pids.len() == 2,
        "the gateway and the signer are not both running"
    );

    // Warm: connections, keys and caches, as in a running service.
    let set = ImageSet::new();
    let warm = push_and_wait(&store, &registry, &set, "paced", 0..5).await?;
    println!("  warm-up: {} images signed", warm.len());
    let (signed, counts) = cg
        .net(
            &pids,
            push_and_wait(&store, &registry, &set, "burst", 5..5 + images),
        )
        .await?;
    let per_image: Vec<f64> = counts
        .iter()
        .map(|c| *c as f64 / signed.len() as f64)
        .collect();
    println!(
        "  per signed image: gateway {:.0}, signer {:.0} instructions",
        per_image[0], per_image[1]
    );

    // The baseline: a whole sign-one process per image, under callgrind too.
    let baseline = sign_one_counted(cg, &registry, 3).await?;
    println!("  sign-one process per image: {baseline:.0} instructions");
    let total = per_image[0] + per_image[1];
    report.push(
        Figure::new(
            "instructions (callgrind)",
            "per signed image, gateway + signer",
            total,
            Unit::Instructions,
        )
        .baseline("sign-one process per image", baseline)
        .note(format!(
            "{} images; gateway {:.2} M, signer {:.2} M; push notification to recorded signature and event, idle subtracted",
            signed.len(),
            per_image[0] / 1e6,
            per_image[1] / 1e6
        )),
    );

    // Admission: the warm verifier, then one without a cache.
    let prefix = cg.prefix();
    let verifier = stack
        .start_verifier_under(&prefix, "verifier-counted", &[])
        .await?;
    let all: Vec<String> = warm.iter().chain(&signed).cloned().collect();
    let allowed = admission::warm_up(&verifier, &all).await;
    anyhow::ensure!(
        allowed == all.len(),
        "the counted verifier admitted {allowed} of {} signed images",
        all.len()
    );
    let warm_reviews: Vec<String> = (0..reviews)
        .map(|i| {
            let at = |k: usize| all[(3 * i + k) % all.len()].as_str();
            admission::review(&format!("counted-{i}"), [at(0), at(1), at(2)])
        })
        .collect();
    let per_review = reviews_counted(cg, &verifier, warm_reviews).await?;
    drop(verifier);
    let cold = stack
        .start_verifier_under(
            &prefix,
            "verifier-counted-uncached",
            &[
                ("SIGNET_VERIFIER__TRUST_TTL", "1ms".to_owned()),
                ("SIGNET_VERIFIER__NEGATIVE_TTL", "1ms".to_owned()),
                ("SIGNET_VERIFIER__TAG_TTL", "1ms".to_owned()),
            ],
        )
        .await?;
    // One review first, so the baseline's connections are open too.
    admission::warm_up(&cold, &all[..3]).await;
    let cold_reviews = admission::cold_reviews(&all[..(3 * uncached).min(all.len() / 3 * 3)], "uc");
    let per_cold = reviews_counted(cg, &cold, cold_reviews).await?;
    drop(cold);
    println!("  per admission review: warm {per_review:.0}, uncached {per_cold:.0} instructions");
    report.push(
        Figure::new(
            "instructions (callgrind)",
            "per admission review, warm",
            per_review,
            Unit::Instructions,
        )
        .baseline("uncached verifier", per_cold)
        .note(format!(
            "{reviews} reviews of a Deployment with 3 signed images, one at a time over HTTPS; the verifier process, idle subtracted"
        )),
    );
    Ok(())
}

/// Pushes images `range` of `set` to `prefix/app0` and waits (reading PostgreSQL) until
/// each is signed; their `repository@digest`.
async fn push_and_wait(
    store: &Store,
    registry: &Registry,
    set: &ImageSet,
    prefix: &str,
    range: std::ops::Range<u64>,
) -> anyhow::Result<Vec<String>> {
    let repo = format!("{prefix}/app0");
    set.prepare(registry, &repo).await?;
    let mut pushed: Vec<Digest> = Vec::new();
    for i in range {
        let (body, digest) = set.manifest(i);
        registry.put_manifest(&repo, &format!("v{i}"), body).await?;
        pushed.push(digest);
    }
    let repository = format!("{}/{repo}", registry.host);
    let deadline =
        Instant::now() + Duration::from_secs(60) + Duration::from_secs(2) * pushed.len() as u32;
    for digest in &pushed {
        loop {
            if store
                .find_signature(&repository, digest, prefix)
                .await?
                .is_some()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("{repository}@{digest} was not signed in time");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(pushed.iter().map(|d| format!("{repository}@{d}")).collect())
}

/// Instructions per review of `verifier` over `reviews`, one at a time.
async fn reviews_counted(
    cg: &Callgrind,
    verifier: &Verifier,
    reviews: Vec<String>,
) -> anyhow::Result<f64> {
    let pid = verifier
        .service
        .as_ref()
        .and_then(|s| s.pid())
        .context("the counted verifier is not running")?;
    let n = reviews.len();
    let (done, counts) = cg
        .net(&[pid], async {
            Ok(admission::sequential(verifier, reviews).await)
        })
        .await?;
    anyhow::ensure!(
        done.count == n,
        "{} of {n} reviews were allowed",
        done.count
    );
    Ok(counts[0] as f64 / n as f64)
}

/// The median instructions of `n` whole `sign-one` processes, each signing one image.
async fn sign_one_counted(cg: &Callgrind, registry: &Registry, n: u64) -> anyhow::Result<f64> {
    let exe = std::env::current_exe().context("cannot find the load generator's own path")?;
    let data = crate::per_image::pipeline(registry, n).await?;
    let mut counts = Vec::new();
    for i in 0..n {
        let image = format!(
            "{}/{}:build-{i}",
            registry.host,
            crate::per_image::PIPELINE_REPO
        );
        let prefix = cg.prefix();
        let out = tokio::process::Command::new(&prefix[0])
            .args(&prefix[1..])
            .arg(&exe)
            .args([
                "sign-one",
                "--key",
                crate::per_image::PIPELINE_KEY,
                "--image",
            ])
            .arg(&image)
            .arg("--data-dir")
            .arg(data.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = out.id().context("sign-one has no pid")?;
        let out = tokio::time::timeout(Duration::from_secs(300), out.wait_with_output())
            .await
            .context("sign-one under callgrind did not finish within 300 s")??;
        if !out.status.success() {
            bail!(
                "sign-one {image} under callgrind failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        counts.push(latest_total(cg.dir.path(), pid)?);
    }
    counts.sort_unstable();
    Ok(counts[counts.len() / 2] as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_total_of_a_callgrind_dump() {
        let dump = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 42\ncmd: signet-verifier\npart: 1\n\nevents: Ir\n\nsummary: 123456\n\nfl=(1) a.rs\nfn=(1) main\n0 5\n\ntotals: 123456\n";
        assert_eq!(total_of(dump), Some(123_456));
        assert_eq!(total_of("events: Ir\nsummary: 7\n"), Some(7));
        assert_eq!(total_of("events: Ir\n"), None);
    }

    #[test]
    fn the_newest_dump_of_a_process_is_read() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("cg.42"), "totals: 1\n")?;
        std::fs::write(dir.path().join("cg.42.1"), "totals: 2\n")?;
        std::fs::write(dir.path().join("cg.42.10"), "totals: 10\n")?;
        std::fs::write(dir.path().join("cg.420.11"), "totals: 99\n")?;
        assert_eq!(latest_total(dir.path(), 42)?, 10);
        assert!(latest_total(dir.path(), 7).is_err());
        Ok(())
    }
}
