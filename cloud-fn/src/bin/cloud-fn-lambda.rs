//! `cloud-fn-lambda`: the AWS Lambda entry point (`bootstrap` in the deployment zip). Every
//! event of the deployment reaches [`LambdaFront::handle`]; see `template.yaml`.

use std::sync::Arc;

use cloud_fn::config::Source;
use cloud_fn::lambda::LambdaFront;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = std::time::Instant::now();
    // CloudWatch keeps each line as a log event; colours would only add escape codes.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .without_time() // CloudWatch stamps every line
        .init();
    let settings = Source::new(None)?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let front = Arc::new(LambdaFront::new(sdk, settings));
    tracing::info!(init_ms = %format_args!("{:.1}", started.elapsed().as_secs_f64() * 1000.0), "ready for events");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let front = front.clone();
        async move { front.handle(event).await }
    }))
    .await
}
