//! A real trace backend for the telemetry tests: Jaeger (v2, built on the OpenTelemetry
//! Collector) from `scripts/tools.sh`, on free loopback ports, with an OTLP/HTTP
//! receiver and in-memory storage, and its query API to read the traces back.

use crate::process::{free_port, ToolProcess};

/// A running Jaeger; killed on drop.
pub struct Jaeger {
    process: ToolProcess,
    otlp: u16,
    query: u16,
}

impl Jaeger {
    pub async fn start() -> anyhow::Result<Self> {
        let (otlp, query, grpc) = (free_port()?, free_port()?, free_port()?);
        let services = format!("http://127.0.0.1:{query}/api/services");
        let process = ToolProcess::start(
            "jaeger",
            |dir| {
                let config = dir.join("jaeger.yaml");
                std::fs::write(&config, config_yaml(otlp, query, grpc))?;
                Ok(vec!["--config".into(), config.into()])
            },
            || async {
                reqwest::get(&services)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await?;
        Ok(Self {
            process,
            otlp,
            query,
        })
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
        self.process.log()
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
