//! The dashboard's live feed (browser only): its own WebSocket (the session cookie signs it
//! in), subscribed to the figures' channel, reconnecting 2 s after a loss; and the clock that
//! turns the reports into one point a second.

use super::figures::{Figures, Report};
use crate::protocol::{ClientMsg, ServerMsg};
use futures::{SinkExt, StreamExt};
use gloo_net::websocket::{futures::WebSocket, Message};
use leptos::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The channel the instances publish their figures on.
const CHANNEL: &str = "confab:stats";

fn socket_url() -> String {
    let location = window().location();
    let secure = location.protocol().is_ok_and(|p| p == "https:");
    let host = location.host().unwrap_or_default();
    format!("{}://{host}/ws", if secure { "wss" } else { "ws" })
}

pub fn start(figures: RwSignal<Figures>, live: RwSignal<bool>) {
    let stopped = Arc::new(AtomicBool::new(false));
    let clock = set_interval_with_handle(
        move || figures.update(|f| f.tick(js_sys::Date::now())),
        Duration::from_secs(1),
    )
    .ok();
    on_cleanup({
        let stopped = stopped.clone();
        move || {
            stopped.store(true, Ordering::Relaxed);
            if let Some(clock) = clock {
                clock.clear();
            }
        }
    });
    leptos::task::spawn_local(async move {
        while !stopped.load(Ordering::Relaxed) {
            if let Ok(socket) = WebSocket::open(&socket_url()) {
                follow(socket, figures, live, &stopped).await;
            }
            live.try_set(false);
            gloo_timers::future::sleep(Duration::from_secs(2)).await;
        }
    });
}

async fn follow(
    socket: WebSocket,
    figures: RwSignal<Figures>,
    live: RwSignal<bool>,
    stopped: &AtomicBool,
) {
    let (mut write, mut read) = socket.split();
    let subscribe = ClientMsg::Subscribe {
        channel: CHANNEL.into(),
        since: None,
        epoch: None,
    };
    let text = serde_json::to_string(&subscribe).expect("requests serialize");
    if write.send(Message::Text(text)).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = read.next().await {
        if stopped.load(Ordering::Relaxed) {
            return;
        }
        let Message::Text(text) = message else {
            continue;
        };
        match crate::server_events::decode(&text) {
            Ok(ServerMsg::Subscribed { .. }) => {
                live.try_set(true);
            }
            Ok(ServerMsg::Publication { channel, data, .. }) if channel == CHANNEL => {
                if let Ok(report) = serde_json::from_value::<Report>(data) {
                    figures.try_update(|f| f.report(report, js_sys::Date::now()));
                }
            }
            Ok(ServerMsg::Error { error, .. }) => {
                leptos::logging::warn!("dashboard feed refused: {error}");
                return;
            }
            _ => {}
        }
    }
}
