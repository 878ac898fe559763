//! `signet sign IMAGE --witness W [--attest TYPE=FILE]... [--wait]` and
//! `signet attest IMAGE --witness W --type TYPE --predicate FILE [--wait]`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use signet_core::{AttestationRequest, SignRequest};

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
    /// Also have the witness attest TYPE (cosign's `--type` name, like slsaprovenance1,
    /// spdxjson or cyclonedx, or a URI) with the predicate in FILE (JSON), in the same
    /// job (repeatable).
    #[arg(long = "attest", value_name = "TYPE=FILE")]
    attest: Vec<String>,
    /// How the signature is attached, instead of the witness's own format: cosign (the
    /// `.sig` tag), bundle (a Sigstore bundle referrer, as cosign 3 writes) or both.
    #[arg(long, value_parser = ["cosign", "bundle", "both"])]
    format: Option<String>,
    /// Wait until the signature is published (or the job fails).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "120s", value_parser = humantime_secs)]
    timeout: Duration,
}

#[derive(Debug, Args)]
pub struct AttestArgs {
    /// Image reference; a tag is resolved to its digest by the signer.
    image: String,
    #[arg(long)]
    witness: String,
    /// The predicate type: cosign's `--type` name (slsaprovenance1, slsaprovenance,
    /// spdxjson, cyclonedx, vuln, openvex, link, custom) or a URI.
    #[arg(long = "type", default_value = "custom")]
    predicate_type: String,
    /// The predicate, a JSON file (`-` reads standard input).
    #[arg(long)]
    predicate: std::path::PathBuf,
    /// Wait until the attestation is published (or the job fails).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "120s", value_parser = humantime_secs)]
    timeout: Duration,
}

/// The predicate in `path` (JSON; `-` for standard input).
fn read_predicate(path: &std::path::Path) -> anyhow::Result<Value> {
    let text = if path == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the predicate {}: {e}", path.display()))?
    };
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "the predicate {} is not JSON (line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

fn parse_attest(spec: &str) -> anyhow::Result<AttestationRequest> {
    let (ty, file) = spec
        .split_once('=')
        .filter(|(t, f)| !t.is_empty() && !f.is_empty())
        .ok_or_else(|| anyhow::anyhow!("--attest {spec:?} must be TYPE=FILE"))?;
    Ok(AttestationRequest {
        predicate_type: ty.to_owned(),
        predicate: read_predicate(std::path::Path::new(file))?,
    })
}

pub async fn run_attest(ctx: &Context, a: AttestArgs) -> anyhow::Result<ExitCode> {
    let mut request = SignRequest::new(a.image, a.witness);
    request.sign = false;
    request.attestations = vec![AttestationRequest {
        predicate_type: a.predicate_type,
        predicate: read_predicate(&a.predicate)?,
    }];
    submit(ctx, request, a.wait, a.timeout).await
}

/// How long `--wait` waits, if at all.
struct Waiting {
    wait: bool,
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
        attestations: a
            .attest
            .iter()
            .map(|spec| parse_attest(spec))
            .collect::<anyhow::Result<_>>()?,
        sign: true,
        format: a
            .format
            .as_deref()
            .and_then(signet_core::SignatureFormat::parse),
    };
    submit(ctx, request, a.wait, a.timeout).await
}

async fn submit(
    ctx: &Context,
    request: SignRequest,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let a = Waiting { wait, timeout };
    let attested = request.attestations.len();
    let signs = request.sign;
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
                let verb = if signs { "signed" } else { "attested" };
                println!("{verb} {}", s(&job["request"]["image"]));
                field("digest:", s(&job["digest"]));
                field("witness:", s(&job["request"]["witness"]));
                if signs {
                    field("signature:", s(&job["signature"]["artifact"]));
                    field("key:", s(&job["signature"]["key_fingerprint"]));
                }
                if attested > 0 {
                    field("attestations:", attested.to_string());
                }
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
