//! The `confab` binary: reads the configuration, sets up logging, serves until SIGTERM or
//! Ctrl-C, then shuts down gracefully.

use clap::Parser;
use server::config::{Config, LogFormat};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    if let Some(code) = server::cli::run() {
        return code;
    }
    let config = Config::parse();
    // One worker: the current-thread scheduler, which has no work-stealing machinery and
    // parks and wakes less (measured: less CPU per delivery than a one-worker pool).
    let mut runtime = match config.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if config.worker_threads > 1 {
        runtime.worker_threads(config.worker_threads);
    }
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(serve(config)),
        Err(err) => {
            eprintln!("confab: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> ExitCode {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|err| {
        eprintln!("confab: bad --log filter ({err}); using \"info\"");
        EnvFilter::new("info")
    });
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }

    let running = match server::start(config).await {
        Ok(running) => running,
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let stopper = running.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        let _ = stopper.send(true);
    });
    match running.wait().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
