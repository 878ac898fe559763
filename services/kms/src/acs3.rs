//! Alibaba Cloud API request signing, version 3 (`ACS3-HMAC-SHA256`), as pure functions.
//!
//! Written here because Alibaba publishes no Rust SDK. The steps follow Alibaba's
//! "Request syntax and signature method V3" and are checked against its published
//! example (`tests` below): canonical request → its SHA-256 in the string to sign →
//! HMAC-SHA256 with the AccessKey secret → `Authorization` header.

use std::collections::BTreeMap;

use aws_lc_rs::{digest, hmac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// RFC 3986 unreserved characters stay; everything else is percent-encoded (space as
/// `%20`, never `+`), as the V3 canonical query requires.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// Lowercase hex SHA-256, used for the payload hash and the canonical request hash.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// `k=v&...` sorted by encoded name (then value), both percent-encoded. The same string
/// is sent as the URL's query, so what is signed is exactly what is sent.
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether a header takes part in the signature: `host`, `content-type` and every
/// `x-acs-*` header.
pub fn is_signed_header(lowercase_name: &str) -> bool {
    lowercase_name == "host"
        || lowercase_name == "content-type"
        || lowercase_name.starts_with("x-acs-")
}

/// The canonical request and the `SignedHeaders` list for it. `headers` may hold any
/// headers; names are lowercased and only signed ones are used.
pub fn canonical_request(
    method: &str,
    path: &str,
    canonical_query: &str,
    headers: &[(String, String)],
    payload_hash: &str,
) -> (String, String) {
    let signed: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(k, _)| is_signed_header(k))
        .collect();
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = signed.keys().cloned().collect::<Vec<_>>().join(";");
    let request = format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
    );
    (request, signed_headers)
}

/// `ACS3-HMAC-SHA256\n<hex sha256 of the canonical request>`.
pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// Lowercase hex HMAC-SHA256 of the string to sign under the AccessKey secret.
pub fn signature(access_key_secret: &str, string_to_sign: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, access_key_secret.as_bytes());
    hex::encode(hmac::sign(&key, string_to_sign.as_bytes()))
}

pub fn authorization(access_key_id: &str, signed_headers: &str, signature: &str) -> String {
    format!("{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}")
}

/// Everything one RPC-style request needs signed.
#[derive(Debug, Clone)]
pub struct RpcRequest<'a> {
    pub method: &'a str,
    /// `host[:port]` as the HTTP client sends it.
    pub host: &'a str,
    pub action: &'a str,
    pub version: &'a str,
    pub params: &'a [(String, String)],
    /// `YYYY-MM-DDTHH:MM:SSZ`, UTC.
    pub date: &'a str,
    pub nonce: &'a str,
    pub body: &'a [u8],
    pub security_token: Option<&'a str>,
}

/// The query string to send and the headers (signature included) for `request`.
pub fn sign_rpc(
    request: &RpcRequest<'_>,
    access_key_id: &str,
    access_key_secret: &str,
) -> (String, Vec<(String, String)>) {
    let query = canonical_query(request.params);
    let payload_hash = sha256_hex(request.body);
    let mut headers = vec![
        ("host".to_owned(), request.host.to_owned()),
        ("x-acs-action".to_owned(), request.action.to_owned()),
        ("x-acs-version".to_owned(), request.version.to_owned()),
        ("x-acs-date".to_owned(), request.date.to_owned()),
        ("x-acs-signature-nonce".to_owned(), request.nonce.to_owned()),
        ("x-acs-content-sha256".to_owned(), payload_hash.clone()),
    ];
    if let Some(token) = request.security_token {
        headers.push(("x-acs-security-token".to_owned(), token.to_owned()));
    }
    let (canonical, signed_headers) =
        canonical_request(request.method, "/", &query, &headers, &payload_hash);
    let sig = signature(access_key_secret, &string_to_sign(&canonical));
    headers.push((
        "authorization".to_owned(),
        authorization(access_key_id, &signed_headers, &sig),
    ));
    (query, headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector() -> RpcRequest<'static> {
        static PARAMS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
        let params = PARAMS.get_or_init(|| {
            vec![
                ("RegionId".to_owned(), "cn-shanghai".to_owned()),
                (
                    "ImageId".to_owned(),
                    "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd".to_owned(),
                ),
            ]
        });
        RpcRequest {
            method: "POST",
            host: "ecs.cn-shanghai.aliyuncs.com",
            action: "RunInstances",
            version: "2014-05-26",
            params,
            date: "2023-10-26T10:22:32Z",
            nonce: "3156853299f313e23d1673dc12e1703d",
            body: b"",
            security_token: None,
        }
    }

    /// Alibaba's published V3 example (REFERENCE.md).
    #[test]
    fn published_v3_vector() {
        let r = vector();
        let query = canonical_query(r.params);
        assert_eq!(
            query,
            "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai"
        );
        let (_, headers) = sign_rpc(&r, "YourAccessKeyId", "YourAccessKeySecret");
        let unsigned: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| k != "authorization")
            .cloned()
            .collect();
        let (canonical, signed_headers) =
            canonical_request("POST", "/", &query, &unsigned, &sha256_hex(b""));
        assert_eq!(
            signed_headers,
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        let auth = &headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .expect("signed")
            .1;
        assert_eq!(
            auth,
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    #[test]
    fn encoding_is_rfc3986() {
        assert_eq!(percent_encode("a b*c~d/e+f=g"), "a%20b%2Ac~d%2Fe%2Bf%3Dg");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(
            canonical_query(&[("b".into(), "2".into()), ("a".into(), "x y".into())]),
            "a=x%20y&b=2"
        );
    }

    #[test]
    fn security_token_is_signed() {
        let mut r = vector();
        r.security_token = Some("sts-token");
        let (_, headers) = sign_rpc(&r, "id", "secret");
        let auth = &headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .expect("signed")
            .1;
        assert!(auth.contains("x-acs-security-token"), "{auth}");
    }
}
