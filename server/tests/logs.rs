//! `--log-format json`: one JSON object per line, for log shippers; a wrong format is refused.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn json_logs_are_one_object_per_line() {
    let mut confab = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["--port", "0", "--log-format", "json", "--log", "info"])
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("confab starts");
    let stdout = confab.stdout.take().expect("stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let listening = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a log line in time");
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|err| panic!("{err}: {line}"));
        assert!(event["timestamp"].is_string(), "{event}");
        assert!(event["level"].is_string(), "{event}");
        if event["fields"]["message"] == "listening" {
            break event;
        }
    };
    confab.kill().expect("kill");
    let _ = confab.wait();
    assert_eq!(listening["level"], "INFO");
    assert!(listening["fields"]["addr"]
        .as_str()
        .is_some_and(|addr| addr.starts_with("127.0.0.1:")));
    assert_eq!(listening["fields"]["engine"], "memory");
}

#[test]
fn an_unknown_log_format_is_refused_with_the_choices() {
    let output = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["--log-format", "xml"])
        .output()
        .expect("confab runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("xml") && stderr.contains("text") && stderr.contains("json"),
        "{stderr}"
    );
}
