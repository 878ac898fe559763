//! The EC2 instance metadata service for the cloud credentials tests: AWS's own
//! `ec2-metadata-mock` (from `scripts/tools.sh`) on a free loopback port, IMDSv2 only
//! (a request without a session token is refused), handing out the instance role's
//! credentials the test chooses.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running metadata service; killed on drop.
pub struct Imds {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Imds {
    /// Serves `role`'s credentials: `access_key_id` with a secret and session token,
    /// expiring at `expiration` (RFC 3339).
    pub async fn start(role: &str, access_key_id: &str, expiration: &str) -> anyhow::Result<Self> {
        let bin = crate::tools::find("ec2-metadata-mock")?;
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.path().join("aemm.json");
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
        std::fs::write(&config, serde_json::to_vec_pretty(&values)?)?;
        let log = std::fs::File::create(dir.path().join("aemm.log"))?;
        let child = Command::new(&bin)
            .args([
                "--hostname",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--imdsv2",
            ])
            .arg("--config-file")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut imds = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            let ready = http
                .put(imds.url() + "/latest/api/token")
                .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(imds);
            }
            if let Some(status) = imds.child.try_wait()? {
                bail!(
                    "ec2-metadata-mock exited with {status}; log:\n{}",
                    imds.log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "ec2-metadata-mock was not ready within 30 s; log:\n{}",
                    imds.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`: `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("aemm.log")).unwrap_or_default()
    }
}

impl Drop for Imds {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
