//! Secrets from AWS Systems Manager Parameter Store, for the Lambda front.
//!
//! On AWS no secret is an environment variable or a template parameter: a secret setting `X`
//! (e.g. `NOTION_API_KEY`) is given as `X_PARAMETER`, the name of a SecureString parameter, and
//! read in the first invocation with one signed `GetParameters` call (decrypted). Why not the
//! Parameters and Secrets Lambda Extension: its layer ARN differs per region and account, and it
//! cannot be called during INIT anyway; one call per cold start is the same cost. Why not
//! Secrets Manager: $0.40 per secret-month would be most of this system's bill; standard
//! parameters are free.
//!
//! The call is a plain HTTPS POST of the SSM JSON protocol, signed with SigV4 by `aws-sigv4`
//! (already in the tree through the SDK), so the Lambda does not carry the large SSM SDK crate.
//! `AWS_ENDPOINT_URL_SSM` points it at a stand-in, as it would the SDK.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde_json::{Value, json};

use crate::config::Source;

/// The settings that are secrets, and may be given as `<NAME>_PARAMETER` instead.
pub const SECRET_SETTINGS: [&str; 5] =
    ["NOTION_API_KEY", "OPENROUTER_API_KEY", "CLOUD_API_KEY", "AGENT_TOKEN", "NOTION_WEBHOOK_TOKEN"];

/// `GetParameters` takes at most ten names.
const MAX_NAMES_PER_CALL: usize = 10;

/// Why the secrets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// No region or no credentials in the environment: a setup mistake.
    #[error("parameter store: {0}")]
    Setup(String),
    /// The request could not be signed.
    #[error("parameter store: signing the request: {0}")]
    Signing(Box<dyn std::error::Error + Send + Sync>),
    /// No answer came (network, timeout): worth retrying.
    #[error("parameter store unreachable: {0}")]
    Unreachable(#[from] reqwest::Error),
    /// SSM answered that it cannot serve now (throttling, 5xx): worth retrying.
    #[error("parameter store unavailable: {0}")]
    Unavailable(String),
    /// SSM refused (access denied, bad request): retrying will not help.
    #[error("parameter store refused: {0}")]
    Refused(String),
}

impl SecretsError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Unreachable(_))
    }
}

/// A reader of SSM parameters.
pub struct ParameterStore {
    sdk: SdkConfig,
    http: reqwest::Client,
    endpoint: String,
    region: String,
}

impl ParameterStore {
    /// A reader with the region and credentials of `sdk`, at `endpoint` if given (the value of
    /// `AWS_ENDPOINT_URL_SSM`), else at the SDK's endpoint override or the regional endpoint.
    pub fn new(sdk: SdkConfig, http: reqwest::Client, endpoint: Option<String>) -> Result<Self, SecretsError> {
        let region = sdk.region().map(|region| region.to_string()).ok_or_else(|| {
            SecretsError::Setup("no AWS region (AWS_REGION) is set; Lambda sets it for every function".into())
        })?;
        let endpoint = endpoint
            .or_else(|| sdk.endpoint_url().map(str::to_owned))
            .unwrap_or_else(|| format!("https://ssm.{region}.amazonaws.com"));
        Ok(Self { sdk, http, endpoint: endpoint.trim_end_matches('/').to_owned(), region })
    }

    /// Decrypted values of the parameters `names` that exist; missing ones are left out.
    pub async fn get(&self, names: &[String]) -> Result<BTreeMap<String, String>, SecretsError> {
        let mut values = BTreeMap::new();
        for batch in names.chunks(MAX_NAMES_PER_CALL) {
            let body = json!({ "Names": batch, "WithDecryption": true }).to_string();
            let reply = self.call("AmazonSSM.GetParameters", body).await?;
            for parameter in reply["Parameters"].as_array().into_iter().flatten() {
                if let (Some(name), Some(value)) = (parameter["Name"].as_str(), parameter["Value"].as_str()) {
                    values.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        Ok(values)
    }

    async fn call(&self, target: &str, body: String) -> Result<Value, SecretsError> {
        let provider = self
            .sdk
            .credentials_provider()
            .ok_or_else(|| SecretsError::Setup("no AWS credentials provider is configured".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|error| SecretsError::Setup(format!("no AWS credentials: {error}")))?;
        let identity: Identity = credentials.into();
        let url = format!("{}/", self.endpoint);
        let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target)];
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ssm")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|error| SecretsError::Signing(error.into()))?
            .into();
        let signable = SignableRequest::new("POST", &url, headers.into_iter(), SignableBody::Bytes(body.as_bytes()))
            .map_err(|error| SecretsError::Signing(error.into()))?;
        let (instructions, _) =
            sign(signable, &params).map_err(|error| SecretsError::Signing(error.into()))?.into_parts();
        let mut request = self.http.post(&url).timeout(Duration::from_secs(10)).body(body);
        for (name, value) in headers.into_iter().chain(instructions.headers()) {
            request = request.header(name, value);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let reply: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(reply);
        }
        // Errors name their type as `…#ThrottlingException`; the message never holds a value.
        let kind = reply["__type"].as_str().unwrap_or_default().rsplit('#').next().unwrap_or_default().to_owned();
        let message = reply["message"].as_str().or(reply["Message"].as_str()).unwrap_or_default();
        let description = format!("{status} {kind}: {message}");
        if status.is_server_error() || status.as_u16() == 429 || kind.contains("Throttling") {
            Err(SecretsError::Unavailable(description))
        } else {
            Err(SecretsError::Refused(description))
        }
    }
}

/// A secret setting whose SSM parameter does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingParameter {
    /// The setting, e.g. `CLOUD_API_KEY`.
    pub setting: &'static str,
    /// The parameter its `_PARAMETER` variable names.
    pub parameter: String,
}

/// Fills the secret settings that `source` gives only as `<NAME>_PARAMETER` from the
/// parameter store, in one call. A parameter that does not exist is logged (by name, never a
/// value), left unset and returned, so the caller can refuse what needs it with a reason.
pub async fn resolve(source: &mut Source, store: &ParameterStore) -> Result<Vec<MissingParameter>, SecretsError> {
    let wanted: Vec<(&'static str, String)> = SECRET_SETTINGS
        .into_iter()
        .filter(|setting| source.value(setting).is_none())
        .filter_map(|setting| source.value(&format!("{setting}_PARAMETER")).map(|parameter| (setting, parameter)))
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = wanted.iter().map(|(_, parameter)| parameter.clone()).collect();
    let values = store.get(&names).await?;
    let mut missing = Vec::new();
    for (setting, parameter) in wanted {
        match values.get(&parameter) {
            Some(value) => source.set(setting, value),
            None => {
                tracing::warn!(setting, parameter, "the SSM parameter does not exist; the setting stays unset");
                missing.push(MissingParameter { setting, parameter });
            }
        }
    }
    Ok(missing)
}
