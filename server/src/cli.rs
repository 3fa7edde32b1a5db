//! The binary's tools besides serving: `confab publish CHANNEL JSON` (the server API from a
//! shell) and `confab api-key new NAME` (a key and its line for `--api-keys-file`).

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
#[command(
    name = "confab",
    about = "Confab's tools (run `confab` alone to serve)"
)]
struct Tools {
    #[command(subcommand)]
    tool: Tool,
}

#[derive(Subcommand)]
enum Tool {
    /// Publishes JSON data to a channel through a running server's API.
    Publish {
        channel: String,
        /// Any JSON value, e.g. '{"cpu": 0.5}'.
        json: String,
        /// The server (http only: for loopback and private networks).
        #[arg(long, env = "CONFAB_URL", default_value = "http://127.0.0.1:3000")]
        url: String,
        /// An API key listed in the server's --api-keys-file.
        #[arg(long, env = "CONFAB_API_KEY", hide_env_values = true)]
        key: String,
    },
    /// API keys.
    ApiKey {
        #[command(subcommand)]
        action: KeyAction,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// Makes a new key: prints it (give it to the backend) and the line to add to the
    /// server's --api-keys-file (which holds only its hash).
    New { name: String },
}

/// Runs a tool when the first argument names one; None: serve.
pub fn run() -> Option<ExitCode> {
    let first = std::env::args().nth(1)?;
    if first != "publish" && first != "api-key" {
        return None;
    }
    let tools = Tools::parse();
    Some(match tools.tool {
        Tool::ApiKey {
            action: KeyAction::New { name },
        } => new_key(&name),
        Tool::Publish {
            channel,
            json,
            url,
            key,
        } => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(publish(&channel, &json, &url, &key)),
            Err(err) => {
                eprintln!("confab: cannot start the async runtime: {err}");
                ExitCode::FAILURE
            }
        },
    })
}

fn new_key(name: &str) -> ExitCode {
    if name.is_empty() || name.contains(char::is_whitespace) {
        eprintln!("confab: a key's name is one word");
        return ExitCode::from(2);
    }
    let key = crate::api_keys::new_key();
    println!("key:  {key}");
    println!("line: {}", crate::api_keys::file_line(name, &key));
    ExitCode::SUCCESS
}

async fn publish(channel: &str, json: &str, url: &str, key: &str) -> ExitCode {
    let data: serde_json::Value = match serde_json::from_str(json) {
        Ok(data) => data,
        Err(err) => {
            eprintln!("confab: the data is not JSON: {err}");
            return ExitCode::from(2);
        }
    };
    let Some(authority) = url
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|authority| !authority.is_empty() && !authority.contains('/'))
    else {
        eprintln!("confab: --url must look like http://host:port");
        return ExitCode::from(2);
    };
    let body = serde_json::json!({"channel": channel, "data": data}).to_string();
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = match tokio::time::timeout(std::time::Duration::from_secs(10), exchange).await {
        Ok(Ok(response)) => String::from_utf8_lossy(&response).into_owned(),
        Ok(Err(err)) => {
            eprintln!("confab: cannot reach {url}: {err}");
            return ExitCode::FAILURE;
        }
        Err(_) => {
            eprintln!("confab: {url} did not answer within 10 s");
            return ExitCode::FAILURE;
        }
    };
    let status: u16 = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let answer = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    if (200..300).contains(&status) {
        println!("{answer}");
        ExitCode::SUCCESS
    } else {
        eprintln!("confab: {status}: {answer}");
        ExitCode::FAILURE
    }
}
