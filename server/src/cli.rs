//! The binary's tools besides serving: `confab publish CHANNEL JSON` (the server API from a
//! shell), `confab api-key new NAME` (a key and its line for `--api-keys-file`) and
//! `confab account create USERNAME` (an account, made with an API key: the only way to
//! register a username `--operators` names).

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
    /// Accounts, made through a running server's API with an API key.
    Account {
        #[command(subcommand)]
        action: AccountAction,
    },
}

#[derive(Subcommand)]
enum AccountAction {
    /// Registers USERNAME with the password read from standard input (one line): also a
    /// username named in the server's --operators, which visitors cannot take.
    Create {
        username: String,
        /// The server (http only: for loopback and private networks).
        #[arg(long, env = "CONFAB_URL", default_value = "http://127.0.0.1:3000")]
        url: String,
        /// An API key listed in the server's --api-keys-file.
        #[arg(long, env = "CONFAB_API_KEY", hide_env_values = true)]
        key: String,
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
    if !["publish", "api-key", "account"].contains(&first.as_str()) {
        return None;
    }
    let tools = Tools::parse();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| {
                eprintln!("confab: cannot start the async runtime: {err}");
                ExitCode::FAILURE
            })
    };
    Some(match tools.tool {
        Tool::ApiKey {
            action: KeyAction::New { name },
        } => new_key(&name),
        Tool::Publish {
            channel,
            json,
            url,
            key,
        } => match runtime() {
            Ok(runtime) => runtime.block_on(publish(&channel, &json, &url, &key)),
            Err(code) => code,
        },
        Tool::Account {
            action: AccountAction::Create { username, url, key },
        } => {
            let mut password = String::new();
            if std::io::stdin().read_line(&mut password).is_err() {
                eprintln!("confab: cannot read the password from standard input");
                return Some(ExitCode::from(2));
            }
            let password = password.trim_end_matches(['\r', '\n']);
            let body = serde_json::json!({"username": username, "password": password});
            match runtime() {
                Ok(runtime) => {
                    runtime.block_on(post(&url, "/api/accounts", &key, &body, |answer| {
                        let user = serde_json::from_str::<serde_json::Value>(answer)
                            .ok()
                            .map(|answer| answer["user"].to_string())
                            .unwrap_or_default();
                        println!("created {user}");
                    }))
                }
                Err(code) => code,
            }
        }
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
    let body = serde_json::json!({"channel": channel, "data": data});
    post(url, "/api/publish", key, &body, |answer| {
        println!("{answer}")
    })
    .await
}

/// POSTs `body` to `path` of the server at `url` with the API key, and says what came of
/// it: 0 on success (`done` gets the answer), 1 when refused or unreachable, 2 for bad input.
async fn post(
    url: &str,
    path: &str,
    key: &str,
    body: &serde_json::Value,
    done: impl FnOnce(&str),
) -> ExitCode {
    let Some(authority) = url
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|authority| !authority.is_empty() && !authority.contains('/'))
    else {
        eprintln!("confab: --url must look like http://host:port");
        return ExitCode::from(2);
    };
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
        done(answer);
        ExitCode::SUCCESS
    } else {
        eprintln!("confab: {status}: {answer}");
        ExitCode::FAILURE
    }
}
