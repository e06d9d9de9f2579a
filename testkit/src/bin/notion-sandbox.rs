//! `notion-sandbox`: the Notion API stand-in as a process, for demos. Creates a "Questions"
//! database (Status, Tags) and prints its id, then serves until Ctrl-C.

use std::net::SocketAddr;

use clap::Parser;
use testkit::NotionSandbox;

/// A Notion-API-compatible sandbox with an empty questions database.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Integration token clients must present.
    #[arg(long, env = "NOTION_API_KEY", hide_env_values = true)]
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let sandbox = NotionSandbox::start_on(args.listen, &args.token).await?;
    let (database, _) = sandbox.create_questions_database();
    println!("listening on {}", sandbox.url());
    println!("NOTION_DATABASE_ID={database}");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
