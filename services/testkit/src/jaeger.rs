//! A real trace backend for the telemetry tests: Jaeger (v2, built on the OpenTelemetry
//! Collector) from `scripts/tools.sh`, on free loopback ports, with an OTLP/HTTP
//! receiver and in-memory storage, and its query API to read the traces back.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running Jaeger; killed on drop.
pub struct Jaeger {
    child: Child,
    otlp: u16,
    query: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Jaeger {
    pub async fn start() -> anyhow::Result<Self> {
        let bin = crate::tools::find("jaeger")?;
        let dir = tempfile::tempdir()?;
        let (otlp, query, grpc) = (free_port()?, free_port()?, free_port()?);
        let config = dir.path().join("jaeger.yaml");
        std::fs::write(&config, config_yaml(otlp, query, grpc))?;
        let log = std::fs::File::create(dir.path().join("jaeger.log"))?;
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut jaeger = Self {
            child,
            otlp,
            query,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest::get(format!("http://127.0.0.1:{query}/api/services"))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(jaeger);
            }
            if let Some(status) = jaeger.child.try_wait()? {
                bail!("jaeger exited with {status}; log:\n{}", jaeger.log());
            }
            if Instant::now() > deadline {
                bail!("jaeger was not ready within 30 s; log:\n{}", jaeger.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where signet exports (`telemetry.otlp_endpoint`).
    pub fn otlp_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.otlp)
    }

    /// `GET /api/traces?service=SERVICE`: the traces Jaeger holds for it, in Jaeger's
    /// JSON (`data[].spans[]` with `spanID`, `operationName`, `references`).
    pub async fn traces(&self, service: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!(
            "http://127.0.0.1:{}/api/traces?service={service}&limit=1000&lookback=1h",
            self.query
        );
        Ok(reqwest::get(&url).await?.error_for_status()?.json().await?)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("jaeger.log")).unwrap_or_default()
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Jaeger v2's all-in-one pipeline, on the given ports, with the collector's own
/// telemetry off (its default metrics port is fixed and may be taken).
fn config_yaml(otlp: u16, query: u16, grpc: u16) -> String {
    format!(
        r#"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"#
    )
}
