//! The dashboard's figures: each instance's latest report, and a minute of totals.

use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};

/// Seconds of history the charts show.
pub const HISTORY: usize = 60;
/// An instance not heard from for this long is gone (stopped, or cut off).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))] // the feed is the browser's
const SILENT_MS: f64 = 5_000.0;

/// What an instance publishes every second (see the server's `stats` module).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub server_id: String,
    pub engine: String,
    pub connections: u64,
    pub rooms: u64,
    pub messages_per_sec: u64,
    pub deliveries_per_sec: u64,
    pub p99_ms: Option<u64>,
    pub healthy: bool,
    pub problem: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    messages: u64,
    deliveries: u64,
    connections: u64,
    p99: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    Messages,
    Deliveries,
    Connections,
    P99,
}

impl Totals {
    fn get(&self, series: Series) -> Option<u64> {
        match series {
            Series::Messages => Some(self.messages),
            Series::Deliveries => Some(self.deliveries),
            Series::Connections => Some(self.connections),
            Series::P99 => self.p99,
        }
    }
}

/// A row of the instances table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Row {
    pub server_id: String,
    pub engine: String,
    pub connections: u64,
    pub messages: u64,
    pub deliveries: u64,
    pub p99: String,
    pub health: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// Each instance's latest report and when it came (ms).
    latest: BTreeMap<String, (Report, f64)>,
    history: VecDeque<Totals>,
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))] // `report`, `tick`: the browser's feed
impl Figures {
    pub fn report(&mut self, report: Report, now_ms: f64) {
        self.latest
            .insert(report.server_id.clone(), (report, now_ms));
    }

    /// A second passed: instances gone silent are dropped, and the totals of the others join
    /// the history.
    pub fn tick(&mut self, now_ms: f64) {
        self.latest.retain(|_, (_, at)| now_ms - *at < SILENT_MS);
        let reports = || self.latest.values().map(|(report, _)| report);
        let totals = Totals {
            messages: reports().map(|r| r.messages_per_sec).sum(),
            deliveries: reports().map(|r| r.deliveries_per_sec).sum(),
            connections: reports().map(|r| r.connections).sum(),
            p99: reports().filter_map(|r| r.p99_ms).max(),
        };
        self.history.push_back(totals);
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }

    pub fn instances(&self) -> usize {
        self.latest.len()
    }

    pub fn connections(&self) -> u64 {
        self.latest.values().map(|(r, _)| r.connections).sum()
    }

    pub fn rooms(&self) -> u64 {
        self.latest.values().map(|(r, _)| r.rooms).sum()
    }

    /// "ok", or which instances cannot reach their backend and why.
    pub fn health(&self) -> String {
        let unhealthy: Vec<String> = self
            .latest
            .values()
            .filter(|(r, _)| !r.healthy)
            .map(|(r, _)| {
                format!(
                    "{}: {}",
                    r.server_id,
                    r.problem.as_deref().unwrap_or("unhealthy")
                )
            })
            .collect();
        match (self.latest.is_empty(), unhealthy.is_empty()) {
            (true, _) => "–".into(),
            (false, true) => "ok".into(),
            (false, false) => unhealthy.join("; "),
        }
    }

    /// The newest total of a series.
    pub fn now(&self, series: Series) -> Option<u64> {
        self.history.back().and_then(|t| t.get(series))
    }

    /// The series as SVG polyline points in a `width` × `height` box: the newest at the right
    /// edge, one step per second, the top at the largest value shown.
    pub fn points(&self, series: Series, width: f64, height: f64) -> String {
        let values: Vec<Option<u64>> = self.history.iter().map(|t| t.get(series)).collect();
        let top = values.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
        let step = width / (HISTORY - 1) as f64;
        let start = HISTORY - values.len();
        values
            .iter()
            .enumerate()
            .filter_map(|(i, value)| {
                let value = (*value)? as f64;
                let x = (start + i) as f64 * step;
                let y = height - value / top * (height - 2.0) - 1.0;
                Some(format!("{x:.1},{y:.1}"))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn rows(&self) -> Vec<Row> {
        self.latest
            .values()
            .map(|(r, _)| Row {
                server_id: r.server_id.clone(),
                engine: r.engine.clone(),
                connections: r.connections,
                messages: r.messages_per_sec,
                deliveries: r.deliveries_per_sec,
                p99: r.p99_ms.map_or("–".into(), |ms| format!("{ms} ms")),
                health: if r.healthy {
                    "ok".into()
                } else {
                    r.problem.clone().unwrap_or_else(|| "unhealthy".into())
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, messages: u64, p99: Option<u64>, healthy: bool) -> Report {
        Report {
            server_id: id.into(),
            engine: "redis".into(),
            connections: 10,
            rooms: 2,
            messages_per_sec: messages,
            deliveries_per_sec: messages * 3,
            p99_ms: p99,
            healthy,
            problem: (!healthy).then(|| "redis unreachable".into()),
        }
    }

    #[test]
    fn totals_add_instances_and_drop_silent_ones() {
        let mut figures = Figures::default();
        figures.report(report("a", 4, Some(3), true), 0.0);
        figures.report(report("b", 6, Some(9), false), 0.0);
        figures.tick(1_000.0);
        assert_eq!(figures.instances(), 2);
        assert_eq!(figures.now(Series::Messages), Some(10));
        assert_eq!(figures.now(Series::Deliveries), Some(30));
        assert_eq!(figures.now(Series::P99), Some(9));
        assert_eq!(figures.connections(), 20);
        assert_eq!(figures.health(), "b: redis unreachable");
        figures.report(report("a", 1, None, true), 5_500.0);
        figures.tick(6_000.0);
        assert_eq!(figures.instances(), 1, "b went silent");
        assert_eq!(figures.now(Series::P99), None);
        assert_eq!(figures.health(), "ok");
    }

    #[test]
    fn points_end_at_the_right_edge_and_scale_to_the_top() {
        let mut figures = Figures::default();
        for (second, messages) in [2u64, 4].into_iter().enumerate() {
            figures.report(report("a", messages, None, true), second as f64 * 1_000.0);
            figures.tick(second as f64 * 1_000.0 + 1.0);
        }
        let points = figures.points(Series::Messages, 59.0, 10.0);
        assert_eq!(points, "58.0,5.0 59.0,1.0");
        for _ in 0..100 {
            figures.tick(1_500.0);
        }
        assert_eq!(figures.history.len(), HISTORY);
    }
}
