//! One module per command group; [`Context`] carries what they share.

pub mod apply;
pub mod audit;
pub mod control_plane;
pub mod images;
pub mod jobs;
pub mod policy;
pub mod rule;
pub mod sign;
pub mod signature;
pub mod token;
pub mod up;
pub mod verify;
pub mod witness;
pub mod workloads;

use std::path::PathBuf;

use anyhow::Context as _;
use signet_runtime::Settings;

use crate::client::Client;
use crate::output::Format;
use crate::Cli;

/// The file in the data dir where `signet up` records its gateway URL.
pub const SERVER_FILE: &str = "server";
const DEFAULT_SERVER: &str = "http://127.0.0.1:7700";

/// What every command needs: settings, the API client, the output format.
pub struct Context {
    pub settings: Settings,
    pub client: Client,
    pub format: Format,
}

impl Context {
    /// `GET PATH?limit=N` plus each filter that is set, percent-encoded: the listing
    /// endpoints all take their filters this way. `path` may hold a query already.
    pub async fn list(
        &self,
        path: &str,
        limit: u32,
        filters: &[(&str, &Option<String>)],
    ) -> anyhow::Result<serde_json::Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut path = format!("{path}{sep}limit={limit}");
        for (k, v) in filters {
            if let Some(v) = v {
                path.push_str(&format!("&{k}={}", urlencode(v)));
            }
        }
        let (_, v) = self
            .client
            .call::<(), _>(
                reqwest::Method::GET,
                &path,
                None,
                std::time::Duration::from_secs(30),
            )
            .await?;
        Ok(v)
    }

    pub fn new(cli: &Cli) -> anyhow::Result<Self> {
        let mut settings: Settings = signet_runtime::load(cli.config.as_deref())?;
        if let Some(dir) = &cli.data_dir {
            settings.data_dir = dir.clone();
        }
        let server = match &cli.server {
            Some(s) => s.clone(),
            None => std::fs::read_to_string(settings.data_dir.join(SERVER_FILE))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| DEFAULT_SERVER.to_owned()),
        };
        let token_path = settings.admin_token_path();
        let token = match &cli.token {
            Some(t) => Some(t.clone()),
            None => read_token(&token_path)?,
        };
        let client = Client::new(
            server,
            token,
            token_path.display().to_string(),
            cli.ca_cert.as_deref(),
        )?;
        Ok(Self {
            settings,
            client,
            format: cli.output,
        })
    }
}

fn read_token(path: &PathBuf) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(e).with_context(|| format!("cannot read the admin token at {}", path.display()))
        }
    }
}

/// Percent-encodes a query or path value.
pub fn urlencode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}
