//! The live dashboard (`/dashboard`, operators only): the deployment as every instance
//! reports it once a second on the channel `confab:stats` — instances, connections, rooms,
//! messages and deliveries per second, p99 delivery latency, Redis health — as numbers and
//! charts that update in place.
//!
//! The page is rendered on the server (who may see it is decided there); in the browser it
//! subscribes to the channel over its own WebSocket ([`feed`]) and keeps the last minute of
//! totals ([`Figures`]). Charts are plain SVG polylines in the theme's colours; each carries
//! its current value in text and in its accessible name, so a screen reader reads numbers.

#[cfg(feature = "hydrate")]
mod feed;
mod figures;

use crate::api::{error_text, Clearance, DashboardAccess};
use crate::components::Session;
use crate::server_call::run;
use figures::{Figures, Series, HISTORY};
use leptos::prelude::*;

#[component]
pub fn DashboardPage() -> impl IntoView {
    let session = Session::expect();
    let access = crate::api::page_data(move || session.version(), |_| run(DashboardAccess {}));
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match access.await {
                    Ok(Clearance::Operator) => view! { <Dashboard/> }.into_any(),
                    Ok(Clearance::NotOperator) => {
                        refuse(http_status::FORBIDDEN);
                        view! {
                            <section class="card">
                                <h1>"Operators only"</h1>
                                <p>"The dashboard is for the accounts this server names as operators."</p>
                            </section>
                        }.into_any()
                    }
                    Ok(Clearance::SignedOut) => {
                        refuse(http_status::UNAUTHORIZED);
                        view! {
                            <section class="card">
                                <h1>"Operators only"</h1>
                                <p><a href="/signin?next=/dashboard">"Sign in"</a>" with an operator's account to see the dashboard."</p>
                            </section>
                        }.into_any()
                    }
                    Err(err) => view! {
                        <section class="card"><p class="form-error" role="alert">{error_text(&err)}</p></section>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// HTTP statuses of the refusals, without depending on `http` in the browser.
mod http_status {
    pub const UNAUTHORIZED: u16 = 401;
    pub const FORBIDDEN: u16 = 403;
}

/// The page's HTTP status, when the server renders a refusal.
fn refuse(status: u16) {
    #[cfg(feature = "ssr")]
    if let (Some(response), Ok(status)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::StatusCode::from_u16(status),
    ) {
        response.set_status(status);
    }
    #[cfg(not(feature = "ssr"))]
    let _ = status;
}

#[component]
fn Dashboard() -> impl IntoView {
    let figures = RwSignal::new(Figures::default());
    let live = RwSignal::new(false);
    #[cfg(feature = "hydrate")]
    feed::start(figures, live);
    let status = move || if live.get() { "Live" } else { "Connecting…" };
    let now = move |read: fn(&Figures) -> String| move || figures.with(read);
    view! {
        <section class="card dashboard" data-testid="dashboard">
            <header class="room-head">
                <h1>"Dashboard"</h1>
                <span class=move || if live.get() { "status online" } else { "status waiting" }
                    data-testid="dashboard-status" aria-live="polite">{status}</span>
            </header>
            <dl class="totals">
                <div><dt>"Instances"</dt><dd data-testid="instances">{now(|f| f.instances().to_string())}</dd></div>
                <div><dt>"Connections"</dt><dd data-testid="connections">{now(|f| f.connections().to_string())}</dd></div>
                <div><dt>"Rooms and channels"</dt><dd data-testid="rooms">{now(|f| f.rooms().to_string())}</dd></div>
                <div><dt>"Redis"</dt><dd data-testid="health">{now(Figures::health)}</dd></div>
            </dl>
            <div class="charts">
                <Chart figures title="Messages per second" unit="" series=Series::Messages testid="messages"/>
                <Chart figures title="Deliveries per second" unit="" series=Series::Deliveries testid="deliveries"/>
                <Chart figures title="Connections" unit="" series=Series::Connections testid="connections-chart"/>
                <Chart figures title="p99 delivery latency" unit=" ms" series=Series::P99 testid="p99"/>
            </div>
            <table class="instances">
                <caption>"Instances"</caption>
                <thead><tr><th scope="col">"Instance"</th><th scope="col">"Engine"</th><th scope="col">"Connections"</th>
                    <th scope="col">"Messages/s"</th><th scope="col">"Deliveries/s"</th><th scope="col">"p99"</th><th scope="col">"Health"</th></tr></thead>
                <tbody>
                    <For each=move || figures.with(Figures::rows) key=|row| row.clone() children=|row| view! {
                        <tr>
                            <td>{row.server_id}</td><td>{row.engine}</td><td>{row.connections}</td>
                            <td>{row.messages}</td><td>{row.deliveries}</td><td>{row.p99}</td><td>{row.health}</td>
                        </tr>
                    }/>
                </tbody>
            </table>
        </section>
    }
}

/// One metric over the last minute: its value now, and a line of its history.
#[component]
fn Chart(
    figures: RwSignal<Figures>,
    title: &'static str,
    unit: &'static str,
    series: Series,
    testid: &'static str,
) -> impl IntoView {
    let value = move || figures.with(|f| f.now(series));
    let label = move || match value() {
        Some(value) => format!("{title}: {value}{unit} now, over the last minute"),
        None => format!("{title}: no figures yet"),
    };
    let points = move || figures.with(|f| f.points(series, 300.0, 60.0));
    view! {
        <figure class="chart">
            <figcaption>
                {title}" "
                <strong data-testid=testid>{move || value().map_or("–".to_string(), |v| format!("{v}{unit}"))}</strong>
            </figcaption>
            <svg viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label=label>
                <polyline points=points data-testid=format!("{testid}-line")/>
            </svg>
            <p class="hint">{format!("last {HISTORY} s")}</p>
        </figure>
    }
}
