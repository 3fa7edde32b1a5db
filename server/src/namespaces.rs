//! Channel namespaces: the operator's rules for who may subscribe to and publish on channels.
//!
//! A channel's namespace is the part of its name before the first `:` (`user:u-42` is in
//! `user`); a name without `:` is in the default namespace, `""`. Rules come from a JSON file
//! (`--namespaces-file`), one entry per namespace:
//!
//! ```json
//! { "":       { "subscribe": "signed_in", "publish": "signed_in" },
//!   "user":   { "subscribe": "owner",     "publish": "server" },
//!   "alerts": { "subscribe": "signed_in", "publish": "server" } }
//! ```
//!
//! - `subscribe`: `anyone` (also connections that never sign in: they are not counted in
//!   presence), `signed_in` (any signed-in connection), `owner` (only the user whose id is
//!   the rest of the name: `user:<id>`), or `nobody`.
//! - `publish` from a connection: `signed_in`, `owner`, or `server` (only through the server
//!   API, with an API key). The server API may publish on any known namespace.
//! - `history_size` and `history_ttl` (together, or neither): each channel keeps its newest
//!   `history_size` publications (at most 10,000), for `history_ttl` seconds after the last
//!   one. A subscriber is given them, and resumes with `since` and `epoch` exactly.
//! - `presence`: who is subscribed is tracked (per user, across instances) and given with
//!   `subscribed`; `join_leave` (needs `presence`) announces a user's first subscription and
//!   last unsubscription as `joined` / `left`.
//! - `queue: {groups, workers, ack_timeout, max_deliveries, size}`: a queue namespace.
//!   Publishing adds a job, which goes to one worker of each listed group (see
//!   [`crate::node`]'s workers); a group exists from the first job after it was listed.
//!   `workers` says who may take jobs over a WebSocket (`work`): `signed_in`, `owner` or
//!   `nobody` (the default: only backends, over the jobs API). Defaults: 30 s, 5 deliveries,
//!   100,000 jobs kept.
//! - `publish_rate` (per second, per user) and `publish_burst`: the namespace's own budget for
//!   publications from connections (the server API is not limited); without, a user's
//!   publications share their chat send rate.
//!
//! Without a file, the default namespace behaves as the articles' generic server (any
//! signed-in client subscribes and publishes) and every other namespace is unknown. A channel
//! in a namespace the file does not name is refused with `unknown_namespace`; one the rules
//! do not allow, with `forbidden`. Unknown fields in the file stop the start (a typo must not
//! silently open a namespace).

use crate::engine::{QueueRules, Retention};
use crate::limits::Rate;
use crate::wire::namespace_of;
use app::protocol::{ErrorCode, User};
use app::validate::{self, Invalid};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subscribers {
    /// Any connection, signed in or not (public data: prices, scores).
    Anyone,
    SignedIn,
    Owner,
    Nobody,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Publishers {
    SignedIn,
    Owner,
    Server,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub subscribe: Subscribers,
    pub publish: Publishers,
    /// Publications kept per channel (0: none, no history).
    #[serde(default)]
    pub history_size: usize,
    /// Seconds a channel's history is kept after its last publication.
    #[serde(default)]
    pub history_ttl: u64,
    /// Who is subscribed is tracked and given with `subscribed`.
    #[serde(default)]
    pub presence: bool,
    /// Users' first subscription and last unsubscription are announced (needs `presence`).
    #[serde(default)]
    pub join_leave: bool,
    /// Publications per second a user may send from connections in this namespace (its own
    /// budget, refilled at this rate); 0: the user's chat send rate applies.
    #[serde(default)]
    pub publish_rate: f64,
    /// How many of them at once (default: the rate, at least 1).
    #[serde(default)]
    pub publish_burst: Option<u32>,
    /// A queue namespace: its channels hold jobs for worker groups instead of publications.
    #[serde(default)]
    pub queue: Option<QueueSettings>,
}

/// Who may take a queue's jobs over a WebSocket (`work`). Backends with an API key always
/// may, over HTTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workers {
    SignedIn,
    /// Only the user whose id is the rest of the queue's name (`jobs:<id>`).
    Owner,
    /// Nobody over a WebSocket: the queue's workers are backends.
    #[default]
    Nobody,
}

/// A queue namespace's settings, as the file gives them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// The worker groups each job goes to (one worker of each). Workers join only these: a
    /// group nobody listed would start a copy of every job for whoever named it.
    pub groups: Vec<String>,
    /// Who may work over a WebSocket (default: nobody, only backends over HTTP).
    #[serde(default)]
    pub workers: Workers,
    /// Seconds a worker has to finish a job before it is given to another.
    #[serde(default = "QueueSettings::default_ack_timeout")]
    pub ack_timeout: u64,
    /// Deliveries before an unfinished job is dropped.
    #[serde(default = "QueueSettings::default_max_deliveries")]
    pub max_deliveries: u32,
    /// Jobs kept per queue (the oldest beyond it are trimmed, done or not).
    #[serde(default = "QueueSettings::default_size")]
    pub size: usize,
}

impl QueueSettings {
    fn default_ack_timeout() -> u64 {
        30
    }
    fn default_max_deliveries() -> u32 {
        5
    }
    fn default_size() -> usize {
        100_000
    }
}

/// What a channel's namespace turns on (what [`Namespaces::features`] gives the node).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelFeatures {
    /// What is kept of its publications (none: no history).
    pub keep: Option<Retention>,
    /// Who is subscribed is tracked, and given with `subscribed`.
    pub presence: bool,
    /// A user's first subscription and last unsubscription are announced (needs presence).
    pub join_leave: bool,
}

/// Confab's own namespace (the dashboard's channel, `confab:stats`): never configured.
const RESERVED: &str = "confab";

/// Most worker groups a queue namespace may list.
pub const GROUPS_MAX: usize = 32;

/// Most publications a namespace may keep per channel.
pub const HISTORY_SIZE_MAX: usize = 10_000;

/// The generic default: anyone signed in subscribes and publishes, nothing is kept.
const OPEN: Rules = Rules {
    subscribe: Subscribers::SignedIn,
    publish: Publishers::SignedIn,
    history_size: 0,
    history_ttl: 0,
    presence: false,
    join_leave: false,
    publish_rate: 0.0,
    publish_burst: None,
    queue: None,
};

impl Rules {
    fn features(&self) -> ChannelFeatures {
        ChannelFeatures {
            keep: (self.history_size > 0).then(|| Retention {
                size: self.history_size,
                ttl: Duration::from_secs(self.history_ttl),
            }),
            presence: self.presence,
            join_leave: self.join_leave,
        }
    }

    fn publish_rate(&self) -> Option<Rate> {
        (self.publish_rate > 0.0).then(|| Rate {
            per_sec: self.publish_rate,
            burst: self
                .publish_burst
                .unwrap_or(self.publish_rate.ceil() as u32)
                .max(1),
        })
    }

    fn check(&self, namespace: &str) -> Result<(), String> {
        let name = if namespace.is_empty() {
            "the default namespace"
        } else {
            namespace
        };
        if (self.history_size > 0) != (self.history_ttl > 0) {
            return Err(format!(
                "{name}: history_size and history_ttl (seconds) are set together"
            ));
        }
        if let Some(queue) = &self.queue {
            if self.history_size > 0 || self.presence {
                return Err(format!(
                    "{name}: a queue keeps jobs, not history or presence"
                ));
            }
            if queue.ack_timeout == 0 || queue.max_deliveries == 0 || queue.size == 0 {
                return Err(format!(
                    "{name}: a queue's ack_timeout, max_deliveries and size are at least 1"
                ));
            }
            if queue.groups.is_empty() || queue.groups.len() > GROUPS_MAX {
                return Err(format!(
                    "{name}: a queue lists its worker groups (\"groups\": [\"...\"], 1 to {GROUPS_MAX})"
                ));
            }
            if let Some(bad) = queue.groups.iter().find(|g| validate::channel(g).is_err()) {
                return Err(format!(
                    "{name}: “{bad}” is not a group name (1–128 of letters, digits, _ - . : @ =)"
                ));
            }
        }
        if self.join_leave && !self.presence {
            return Err(format!("{name}: join_leave needs presence"));
        }
        if !self.publish_rate.is_finite() || self.publish_rate < 0.0 {
            return Err(format!(
                "{name}: publish_rate is a number of publications per second, 0 or more"
            ));
        }
        if self.publish_burst == Some(0) {
            return Err(format!("{name}: publish_burst is at least 1"));
        }
        if self.history_size > HISTORY_SIZE_MAX {
            return Err(format!(
                "{name}: history_size is at most {HISTORY_SIZE_MAX}"
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct Namespaces {
    rules: HashMap<String, Rules>,
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces {
            rules: HashMap::from([(String::new(), OPEN)]),
        }
    }
}

/// A channel split into its namespace ([`namespace_of`]) and the rest.
fn split(channel: &str) -> (&str, &str) {
    let namespace = namespace_of(channel);
    let rest = match namespace {
        "" => channel,
        _ => &channel[namespace.len() + 1..],
    };
    (namespace, rest)
}

fn forbidden(why: String) -> Invalid {
    Invalid::new(ErrorCode::Forbidden, why)
}

impl Namespaces {
    /// The rules in `file` (JSON), or the default without one.
    pub fn load(file: Option<&str>) -> Result<Self, String> {
        let Some(file) = file else {
            return Ok(Namespaces::default());
        };
        let text =
            std::fs::read_to_string(file).map_err(|err| format!("cannot read {file}: {err}"))?;
        Namespaces::parse(&text).map_err(|err| format!("{file}: {err}"))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let rules: HashMap<String, Rules> =
            serde_json::from_str(text).map_err(|err| err.to_string())?;
        if let Some(bad) = rules.keys().find(|name| {
            !name.is_empty() && (name.contains(':') || validate::channel(name).is_err())
        }) {
            return Err(format!(
                "“{bad}” is not a namespace name (letters, digits, _ - . @ =)"
            ));
        }
        if rules.contains_key(RESERVED) {
            return Err(format!(
                "the namespace “{RESERVED}” is Confab's own (its dashboard's figures)"
            ));
        }
        for (name, namespace) in &rules {
            namespace.check(name)?;
        }
        Ok(Namespaces { rules })
    }

    /// What `channel`'s namespace turns on (nothing for an unknown namespace).
    pub fn features(&self, channel: &str) -> ChannelFeatures {
        self.rules
            .get(split(channel).0)
            .map(Rules::features)
            .unwrap_or_default()
    }

    /// The queue rules of `channel`'s namespace, if it is a queue namespace.
    pub fn queue(&self, channel: &str) -> Option<QueueRules> {
        let queue = self.rules.get(split(channel).0)?.queue.as_ref()?;
        Some(QueueRules {
            ack_timeout: Duration::from_secs(queue.ack_timeout),
            max_deliveries: queue.max_deliveries,
            size: queue.size,
            groups: queue.groups.iter().cloned().collect(),
        })
    }

    /// The queue `channel` and its rules, with `group` one of its listed groups: what a
    /// backend may work on over HTTP.
    pub fn queue_group<'a>(
        &self,
        channel: &'a str,
        group: &str,
    ) -> Result<(&'a str, QueueRules), Invalid> {
        let (channel, _) = self.rules(channel)?;
        let Some(rules) = self.queue(channel) else {
            return Err(Invalid::new(
                ErrorCode::NotAQueue,
                format!("“{channel}” is not in a queue namespace"),
            ));
        };
        if validate::channel(group).is_err() {
            return Err(Invalid::new(
                ErrorCode::InvalidMessage,
                "a group name is 1–128 of letters, digits and _ - . : @ =",
            ));
        }
        if !rules.groups.iter().any(|listed| listed == group) {
            return Err(Invalid::new(
                ErrorCode::UnknownGroup,
                format!(
                    "“{channel}” has no worker group “{}”: its namespace lists {}",
                    validate::truncate(group),
                    rules.groups.join(", ")
                ),
            ));
        }
        Ok((channel, rules))
    }

    /// Whether `user` may work in `group` of the queue `channel` over a WebSocket (the
    /// namespace's `workers` rule); the queue and its rules.
    pub fn may_work<'a>(
        &self,
        channel: &'a str,
        group: &str,
        user: &User,
    ) -> Result<(&'a str, QueueRules), Invalid> {
        let (channel, rules) = self.queue_group(channel, group)?;
        let workers = self
            .rules
            .get(split(channel).0)
            .and_then(|rules| rules.queue.as_ref())
            .map(|queue| queue.workers)
            .unwrap_or_default();
        match workers {
            Workers::SignedIn => Ok((channel, rules)),
            Workers::Owner if Self::owns(channel, user) => Ok((channel, rules)),
            Workers::Owner => Err(forbidden(format!(
                "only the user named in “{channel}” may work on it"
            ))),
            Workers::Nobody => Err(forbidden(format!(
                "“{channel}”'s workers are backends (the jobs API): its namespace names no \"workers\""
            ))),
        }
    }

    /// The namespaces that announce joins and leaves.
    pub fn announcing_leaves(&self) -> std::collections::HashSet<String> {
        self.rules
            .iter()
            .filter(|(_, rules)| rules.join_leave)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The namespace of `channel` and its own publish rate, if it has one.
    pub fn publish_rate<'a>(&self, channel: &'a str) -> Option<(&'a str, Rate)> {
        let namespace = split(channel).0;
        let rate = self.rules.get(namespace)?.publish_rate()?;
        Some((namespace, rate))
    }

    /// A valid channel in a known namespace, with its rules.
    fn rules<'a>(&self, channel: &'a str) -> Result<(&'a str, &Rules), Invalid> {
        let channel = validate::channel(channel)?;
        let (namespace, _) = split(channel);
        match self.rules.get(namespace) {
            Some(rules) => Ok((channel, rules)),
            None if namespace.is_empty() => Err(Invalid::new(
                ErrorCode::UnknownNamespace,
                "channels without a namespace are not enabled on this server",
            )),
            None => Err(Invalid::new(
                ErrorCode::UnknownNamespace,
                format!("unknown channel namespace “{namespace}”"),
            )),
        }
    }

    fn owns(channel: &str, user: &User) -> bool {
        let (namespace, rest) = split(channel);
        !namespace.is_empty() && rest == user.id
    }

    /// Whether `user` may subscribe to `channel`; the channel, checked. A queue's channel is
    /// worked on, not subscribed to.
    pub fn may_subscribe<'a>(&self, channel: &'a str, user: &User) -> Result<&'a str, Invalid> {
        let channel = self.may_subscribe_to_any(channel, user)?;
        if self.queue(channel).is_some() {
            return Err(forbidden(format!(
                "“{channel}” is a queue: take its jobs with `work`"
            )));
        }
        Ok(channel)
    }

    /// The subscribe rule alone.
    fn may_subscribe_to_any<'a>(&self, channel: &'a str, user: &User) -> Result<&'a str, Invalid> {
        let (channel, rules) = self.rules(channel)?;
        match rules.subscribe {
            Subscribers::Anyone | Subscribers::SignedIn => Ok(channel),
            Subscribers::Owner if Self::owns(channel, user) => Ok(channel),
            Subscribers::Owner => Err(forbidden(format!(
                "only the user named in “{channel}” may subscribe to it"
            ))),
            Subscribers::Nobody => Err(forbidden(format!("nobody may subscribe to “{channel}”"))),
        }
    }

    /// Whether connections that did not sign in may subscribe to `channel`.
    pub fn open_to_anyone(&self, channel: &str) -> bool {
        let open = |rules: &Rules| rules.subscribe == Subscribers::Anyone && rules.queue.is_none();
        self.rules.get(split(channel).0).is_some_and(open)
    }

    /// Whether `user`'s connection may publish on `channel`; the channel, checked.
    pub fn may_publish<'a>(&self, channel: &'a str, user: &User) -> Result<&'a str, Invalid> {
        let (channel, rules) = self.rules(channel)?;
        match rules.publish {
            Publishers::SignedIn => Ok(channel),
            Publishers::Owner if Self::owns(channel, user) => Ok(channel),
            Publishers::Owner => Err(forbidden(format!(
                "only the user named in “{channel}” may publish on it"
            ))),
            Publishers::Server => Err(forbidden(format!(
                "only the server API may publish on “{channel}”"
            ))),
        }
    }

    /// Whether the server API may publish on `channel` (any known namespace).
    pub fn may_publish_as_server<'a>(&self, channel: &'a str) -> Result<&'a str, Invalid> {
        Ok(self.rules(channel)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            name: id.into(),
            guest: true,
        }
    }

    #[test]
    fn the_default_is_the_generic_server() {
        let namespaces = Namespaces::default();
        assert!(namespaces.may_subscribe("news", &user("a")).is_ok());
        assert!(namespaces.may_publish("news", &user("a")).is_ok());
        let err = namespaces.may_subscribe("user:a", &user("a")).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownNamespace);
    }

    #[test]
    fn configured_rules_hold() {
        let namespaces = Namespaces::parse(
            r#"{"user": {"subscribe": "owner", "publish": "server"},
                "ops": {"subscribe": "nobody", "publish": "owner"}}"#,
        )
        .unwrap();
        let (ana, ben) = (user("u-ana"), user("u-ben"));
        assert!(namespaces.may_subscribe("user:u-ana", &ana).is_ok());
        let code = |result: Result<&str, Invalid>| result.unwrap_err().code;
        assert_eq!(
            code(namespaces.may_subscribe("user:u-ana", &ben)),
            ErrorCode::Forbidden
        );
        assert_eq!(
            code(namespaces.may_publish("user:u-ana", &ana)),
            ErrorCode::Forbidden
        );
        assert!(namespaces.may_publish_as_server("user:u-ana").is_ok());
        assert_eq!(
            code(namespaces.may_subscribe("ops:x", &ana)),
            ErrorCode::Forbidden
        );
        assert!(namespaces.may_publish("ops:u-ana", &ana).is_ok());
        // No "" entry: channels without a namespace are off.
        assert_eq!(
            code(namespaces.may_subscribe("news", &ana)),
            ErrorCode::UnknownNamespace
        );
        assert_eq!(
            code(namespaces.may_publish_as_server("x:1")),
            ErrorCode::UnknownNamespace
        );
    }

    #[test]
    fn history_is_kept_where_the_namespace_says() {
        let namespaces = Namespaces::parse(
            r#"{"stats": {"subscribe": "signed_in", "publish": "server",
                          "history_size": 100, "history_ttl": 300},
                "": {"subscribe": "signed_in", "publish": "signed_in"}}"#,
        )
        .unwrap();
        assert_eq!(
            namespaces.features("stats:eu").keep,
            Some(Retention {
                size: 100,
                ttl: Duration::from_secs(300)
            })
        );
        assert_eq!(namespaces.features("news"), ChannelFeatures::default());
        assert_eq!(namespaces.features("other:x"), ChannelFeatures::default());
    }

    #[test]
    fn presence_and_rates_are_per_namespace() {
        let namespaces = Namespaces::parse(
            r#"{"live": {"subscribe": "signed_in", "publish": "signed_in",
                         "presence": true, "join_leave": true, "publish_rate": 2.5},
                "ticks": {"subscribe": "signed_in", "publish": "signed_in",
                          "publish_rate": 10, "publish_burst": 20}}"#,
        )
        .unwrap();
        let live = namespaces.features("live:room");
        assert!(live.presence && live.join_leave && live.keep.is_none());
        let (namespace, rate) = namespaces.publish_rate("live:room").unwrap();
        assert_eq!((namespace, rate.per_sec, rate.burst), ("live", 2.5, 3));
        let (_, ticks) = namespaces.publish_rate("ticks:a").unwrap();
        assert_eq!(ticks.burst, 20);
        assert!(namespaces.publish_rate("other:x").is_none());
    }

    #[test]
    fn a_bad_file_says_what_is_wrong() {
        for (text, error) in [
            (
                r#"{"user": {"subscribe": "owner"}}"#,
                "missing field `publish`",
            ),
            (
                r#"{"user": {"subscribe": "owner", "publish": "server", "histroy": 5}}"#,
                "unknown field `histroy`",
            ),
            (
                r#"{"user": {"subscribe": "everyone", "publish": "server"}}"#,
                "unknown variant `everyone`",
            ),
            (
                r#"{"a:b": {"subscribe": "owner", "publish": "server"}}"#,
                "is not a namespace name",
            ),
            (
                r#"{"stats": {"subscribe": "signed_in", "publish": "server", "history_size": 10}}"#,
                "stats: history_size and history_ttl (seconds) are set together",
            ),
            (
                r#"{"": {"subscribe": "signed_in", "publish": "server", "history_ttl": 60}}"#,
                "the default namespace: history_size and history_ttl",
            ),
            (
                r#"{"s": {"subscribe": "signed_in", "publish": "server", "history_size": 10001, "history_ttl": 1}}"#,
                "s: history_size is at most 10000",
            ),
            (
                r#"{"p": {"subscribe": "signed_in", "publish": "server", "join_leave": true}}"#,
                "p: join_leave needs presence",
            ),
            (
                r#"{"confab": {"subscribe": "signed_in", "publish": "server"}}"#,
                "is Confab's own",
            ),
            (
                r#"{"q": {"subscribe": "signed_in", "publish": "server", "queue": {"groups": ["g"], "ack_timeout": 0}}}"#,
                "q: a queue's ack_timeout, max_deliveries and size are at least 1",
            ),
            (
                r#"{"q": {"subscribe": "signed_in", "publish": "server", "presence": true, "queue": {"groups": ["g"]}}}"#,
                "q: a queue keeps jobs, not history or presence",
            ),
            (
                r#"{"q": {"subscribe": "signed_in", "publish": "server", "queue": {"groups": ["g"], "ack_timout": 5}}}"#,
                "unknown field `ack_timout`",
            ),
            (
                r#"{"q": {"subscribe": "signed_in", "publish": "server", "queue": {}}}"#,
                "missing field `groups`",
            ),
            (
                r#"{"q": {"subscribe": "signed_in", "publish": "server", "queue": {"groups": []}}}"#,
                "q: a queue lists its worker groups",
            ),
            (
                r#"{"q": {"subscribe": "signed_in", "publish": "server", "queue": {"groups": ["a b"]}}}"#,
                "q: “a b” is not a group name",
            ),
            (
                r#"{"q": {"subscribe": "signed_in", "publish": "server", "queue": {"groups": ["g"], "workers": "anyone"}}}"#,
                "unknown variant `anyone`",
            ),
            (
                r#"{"p": {"subscribe": "signed_in", "publish": "signed_in", "publish_rate": -1}}"#,
                "p: publish_rate is a number",
            ),
            (
                r#"{"p": {"subscribe": "signed_in", "publish": "signed_in", "publish_rate": 2, "publish_burst": 0}}"#,
                "p: publish_burst is at least 1",
            ),
        ] {
            let err = Namespaces::parse(text).unwrap_err();
            assert!(err.contains(error), "{text}: {err}");
        }
    }
}
