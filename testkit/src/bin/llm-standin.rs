//! `llm-standin`: the OpenAI-compatible LLM stand-in as a process, for demos.

use std::net::SocketAddr;

use clap::Parser;
use testkit::LlmStandIn;

/// An OpenAI-compatible chat-completions server whose answers show what they were given.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7701")]
    listen: SocketAddr,
    /// Key clients must present.
    #[arg(long, env = "OPENROUTER_API_KEY", hide_env_values = true)]
    key: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let standin = LlmStandIn::start_on(args.listen, &args.key).await?;
    println!("OPENROUTER_BASE_URL={}", standin.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
