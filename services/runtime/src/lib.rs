//! What every signet service shares at run time.
//!
//! Layout:
//! - [`admin`]: the admin port (`/metrics`, `/healthz`, `/readyz`, `PUT /log-level`).
//! - [`config`]: load a service's `Config` from a TOML file and `SIGNET_*` environment
//!   variables, and report every invalid setting at once.
//! - [`metrics`]: the Prometheus series every service records.
//! - [`secret`]: secrets read from files or environment, never printed.
//! - [`serve`]: the HTTP serving loop of every listener, with timeouts and a connection
//!   cap.
//! - [`logging`]: structured JSON logs in a cluster, readable text on a terminal, with a
//!   level that can be changed while running.
//! - [`settings`]: every setting of every service, one file for a whole deployment.
//! - [`shutdown`]: one root cancellation token fired by SIGTERM or SIGINT.
//! - [`tls`]: HTTPS listeners' certificates, reloaded when their files change.
//! - [`telemetry`]: OpenTelemetry export and W3C trace context in headers and events.

pub mod admin;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod secret;
pub mod serve;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

pub use config::{load, ConfigError, Validate};
pub use logging::{LogFormat, LogHandle};
pub use secret::SecretString;
pub use settings::Settings;
pub use shutdown::shutdown_on_signals;
