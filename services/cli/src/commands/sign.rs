//! `signet sign IMAGE --witness W [--wait]`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use signet_core::SignRequest;

use super::Context;
use crate::client::ClientError;
use crate::output::{self, field, s, Format};

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Image reference; a tag is resolved to its digest by the signer.
    image: String,
    #[arg(long)]
    witness: String,
    /// cosign annotation KEY=VALUE written into the signed payload (repeatable).
    #[arg(long = "annotation", short = 'a', value_parser = parse_annotation)]
    annotations: Vec<(String, String)>,
    /// Wait until the signature is published (or the job fails).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "120s", value_parser = humantime_secs)]
    timeout: Duration,
}

fn parse_annotation(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("annotation {s:?} must be KEY=VALUE"))
}

fn humantime_secs(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s or 5m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?} is not a duration like 90s or 5m")),
    }
}

pub async fn run(ctx: &Context, a: SignArgs) -> anyhow::Result<ExitCode> {
    let request = SignRequest {
        image: a.image,
        witness: a.witness,
        annotations: a.annotations.into_iter().collect::<BTreeMap<_, _>>(),
    };
    let path = if a.wait {
        format!("/v1/sign?wait={}", a.timeout.as_secs().max(1))
    } else {
        "/v1/sign".to_owned()
    };
    let result = ctx
        .client
        .call::<_, Value>(
            Method::POST,
            &path,
            Some(&request),
            a.timeout + Duration::from_secs(10),
        )
        .await;
    let (status, job) = match result {
        Ok(ok) => ok,
        Err(ClientError::Api {
            status,
            body,
            detail,
            ..
        }) if status == StatusCode::UNPROCESSABLE_ENTITY => {
            match ctx.format {
                Format::Json => output::json(&body),
                Format::Text => {
                    eprintln!("signing failed: {detail}");
                    field("job:", s(&body["job"]["id"]));
                }
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    match ctx.format {
        Format::Json => output::json(&job),
        Format::Text => {
            let state = s(&job["state"]);
            if status == StatusCode::OK {
                println!("signed {}", s(&job["request"]["image"]));
                field("digest:", s(&job["digest"]));
                field("witness:", s(&job["request"]["witness"]));
                field("signature:", s(&job["signature"]["artifact"]));
                field("key:", s(&job["signature"]["key_fingerprint"]));
                field("job:", s(&job["id"]));
            } else {
                println!("sign job {} is {state}", s(&job["id"]));
                if a.wait {
                    eprintln!(
                        "still not done after {}s; check with `signet jobs show {}`",
                        a.timeout.as_secs(),
                        s(&job["id"])
                    );
                }
            }
        }
    }
    if a.wait && status != StatusCode::OK {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
