//! AWS SDK configuration for the stand-ins: a fixed region, static test credentials (the
//! stand-ins never check them, but the SDK signs every request), and the stand-in's endpoint.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

/// The configuration every SDK client of a test gets: `endpoint` (dynalite, the API Gateway
/// emulator's management API…), `us-east-1`, static credentials.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDTEST", "test", None, None, "static",
        )))
        .build()
}
