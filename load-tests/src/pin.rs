//! `--pin`: each process on the core production would give it, with `taskset`. On this
//! 2-core machine: the registry (the storm's bottleneck) and the load generator on core
//! 0, signet's services, PostgreSQL and the broker on core 1. The load generator sits
//! with the registry because during admission the registry is idle and the verifier
//! then has a core to itself; during a storm the generator only pushes.
//!
//! Processes started later (a verifier, a PostgreSQL backend forked by the postmaster)
//! inherit their parent's affinity or are pinned when started.

use std::process::Command;
use std::sync::OnceLock;

/// Cores, when `--pin` was given.
#[derive(Debug, Clone, Copy)]
pub struct Pinning {
    pub registry: usize,
    pub signet: usize,
    pub load: usize,
}

static PINNING: OnceLock<Pinning> = OnceLock::new();

/// Turns pinning on for the whole run, and pins this process (the load generator).
pub fn enable() -> anyhow::Result<Pinning> {
    let p = Pinning {
        registry: 0,
        signet: 1,
        load: 0,
    };
    let _ = PINNING.set(p);
    pid(std::process::id(), p.load)?;
    Ok(p)
}

pub fn get() -> Option<Pinning> {
    PINNING.get().copied()
}

/// What the report says of the pinning.
pub fn describe() -> String {
    match get() {
        Some(p) => format!(
            "pinned with taskset: registry on core {}, load generator on core {}, signet, PostgreSQL and the broker on core {}",
            p.registry, p.load, p.signet
        ),
        None => "not pinned: every process on both cores".to_owned(),
    }
}

/// Pins every thread of `pid` to `core`.
pub fn pid(pid: u32, core: usize) -> anyhow::Result<()> {
    let out = Command::new("taskset")
        .args(["-a", "-cp", &core.to_string(), &pid.to_string()])
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "taskset -a -cp {core} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Pins every running process named exactly `name` (`pgrep -x`).
pub fn named(name: &str, core: usize) {
    let Ok(out) = Command::new("pgrep").args(["-x", name]).output() else {
        return;
    };
    for p in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
    {
        if let Err(e) = pid(p, core) {
            eprintln!("  cannot pin {name} ({p}): {e}");
        }
    }
}

/// Pins the registry, signet's processes, and the store and brokers, when pinning is on.
pub fn stack(registry: Option<u32>, signet: impl IntoIterator<Item = Option<u32>>) {
    let Some(p) = get() else { return };
    if let Some(r) = registry {
        if let Err(e) = pid(r, p.registry) {
            eprintln!("  cannot pin the registry: {e}");
        }
    }
    for s in signet.into_iter().flatten() {
        if let Err(e) = pid(s, p.signet) {
            eprintln!("  cannot pin a signet process: {e}");
        }
    }
    for name in ["postgres", "nats-server", "beam.smp", "epmd"] {
        named(name, p.signet);
    }
}
