//! The EC2 instance metadata service for the cloud credentials tests: AWS's own
//! `ec2-metadata-mock` (from `scripts/tools.sh`) on a free loopback port, IMDSv2 only
//! (a request without a session token is refused), handing out the instance role's
//! credentials the test chooses.

use crate::process::{free_port, ToolProcess};

/// A running metadata service; killed on drop.
pub struct Imds {
    process: ToolProcess,
    port: u16,
}

impl Imds {
    /// Serves `role`'s credentials: `access_key_id` with a secret and session token,
    /// expiring at `expiration` (RFC 3339).
    pub async fn start(role: &str, access_key_id: &str, expiration: &str) -> anyhow::Result<Self> {
        let port = free_port()?;
        let values = serde_json::json!({
            "metadata": {
                "paths": {
                    "iam-security-credentials": format!("/latest/meta-data/iam/security-credentials/{role}"),
                },
                "values": {
                    "iam-security-credentials-role": role,
                    "iam-security-credentials": {
                        "Code": "Success",
                        "LastUpdated": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        "Type": "AWS-HMAC",
                        "AccessKeyId": access_key_id,
                        "SecretAccessKey": "imds-secret-access-key",
                        "Token": "imds-session-token",
                        "Expiration": expiration,
                    }
                }
            }
        });
        let http = reqwest::Client::new();
        let token_url = format!("http://127.0.0.1:{port}/latest/api/token");
        let process = ToolProcess::start(
            "ec2-metadata-mock",
            |dir| {
                let config = dir.join("aemm.json");
                std::fs::write(&config, serde_json::to_vec_pretty(&values)?)?;
                Ok(vec![
                    "--hostname".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    port.to_string().into(),
                    "--imdsv2".into(),
                    "--config-file".into(),
                    config.into(),
                ])
            },
            || async {
                http.put(&token_url)
                    .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await?;
        Ok(Self { process, port })
    }

    /// `http://127.0.0.1:PORT`: `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}
