//! Channels: real-time data that is not chat (a dashboard's numbers, a job's progress), on
//! the same connections and the same engine as rooms.
//!
//! A channel is carried exactly like a room: its subscribers are the local members of a hub
//! entry, the instance subscribes the engine's pub/sub when the first one arrives and
//! unsubscribes after the last leaves, and a publication is serialized once and handed to
//! every subscriber as the same bytes. So everything that holds for a room's delivery holds
//! here too: bounded queues, per-instance fan-out, the subscriber's catch-up and probe, and
//! the placement of "past one Redis" (a channel lands on a shard or cluster slot by its key).
//!
//! A channel whose namespace keeps history is carried like a room's messages too: each
//! publication is stored (with an offset of the same shape as a message id) and published in
//! one step, delivered once per subscriber, caught up after a pub/sub gap, and resumed with
//! `since` + `epoch` exactly or answered `recovered: false`.
//!
//! Where the namespace says so, a channel has presence like a room (the same engine calls,
//! under its hub key) and announces users' first subscription and last unsubscription
//! (`joined`, `left`). What a room has and a channel does not: typing, read positions. Who
//! may subscribe and publish, and what is kept, is the namespaces' business
//! ([`crate::namespaces`]), checked before the node is asked.

use super::announcements::Change;
use super::{answers, Node};
use crate::engine::{EngineResult, Kept, Position, Resume, Retention};
use crate::hub::Outbox;
use crate::namespaces::ChannelFeatures;
use crate::wire::{channel_key, channel_of, encode, json_len, publication, ConnectionId};
use app::protocol::{ErrorCode, KeptPublication, Member, ServerMsg, User};
use app::validate::{Invalid, MessageId};

/// Publication data within `max` bytes of JSON.
pub fn check_data(data: &serde_json::Value, max: usize) -> Result<(), Invalid> {
    let size = json_len(data);
    if size > max {
        return Err(Invalid::new(
            ErrorCode::DataTooLarge,
            format!("the data is {size} bytes of JSON; at most {max} are allowed"),
        ));
    }
    Ok(())
}

/// A channel's subscription request, as the node needs it.
pub struct SubscribeRequest<'a> {
    pub conn: ConnectionId,
    pub outbox: &'a Outbox,
    pub user: &'a User,
    pub channel: &'a str,
    /// Where the subscriber stands in the channel's history (`since` and `epoch`).
    pub since: Option<Position>,
    pub features: ChannelFeatures,
    /// The connection is subscribed already (subscribing again, to resume): it is present.
    pub again: bool,
}

impl Node {
    /// Subscribes the connection to a channel and queues the `subscribed` answer (with the
    /// kept history, where the namespace keeps one); the publications that follow reach it
    /// after the answer, each once: like a room's join, the subscription is held until the
    /// answer is queued, and held publications already in the answer are dropped.
    pub async fn subscribe_channel(&self, request: SubscribeRequest<'_>) -> EngineResult<()> {
        let SubscribeRequest {
            conn,
            outbox,
            user,
            channel,
            since,
            features,
            again,
        } = request;
        let key = channel_key(channel);
        if self.hub.join(&key, conn, &user.id, outbox) {
            if let Err(err) = self.engine.broker.subscribe(&key).await {
                self.hub.leave(&key, conn);
                return Err(err);
            }
        }
        let answer = match self
            .subscribed_answer(&key, conn, user, since, features, again)
            .await
        {
            Ok(answer) => answer,
            Err(err) => {
                let user = Some(user);
                if let Err(cleanup) = self
                    .unsubscribe_channel(conn, user, channel, features)
                    .await
                {
                    tracing::warn!(channel, error = %cleanup, "could not undo a failed subscribe");
                }
                return Err(err);
            }
        };
        let floor = answer.floor;
        let frame = encode(&ServerMsg::Subscribed {
            channel: channel.to_string(),
            recovered: answer.recovered,
            epoch: answer.epoch,
            publications: answer
                .publications
                .into_iter()
                .map(|kept| KeptPublication {
                    data: kept.data,
                    offset: kept.offset.to_string(),
                })
                .collect(),
            presence: answer.presence,
            presence_total: answer.presence_total,
        });
        self.hub.admit(&key, conn, frame, floor);
        Ok(())
    }

    /// Registers the subscriber's presence (announcing a user new to the channel) and reads
    /// what the answer holds: the kept history and who is here.
    async fn subscribed_answer(
        &self,
        key: &str,
        conn: ConnectionId,
        user: &User,
        since: Option<Position>,
        features: ChannelFeatures,
        again: bool,
    ) -> EngineResult<KeptAnswer> {
        let presence = &self.engine.presence;
        let new_here = features.presence && !again && presence.join(key, conn, user).await?;
        if new_here && features.join_leave {
            let joined = ServerMsg::Joined {
                channel: channel_of(key).unwrap_or(key).to_string(),
                user_id: user.id.clone(),
                name: user.name.clone(),
            };
            self.announcements
                .changed(key, &user.id, Change::Joined, encode(&joined), Some(conn))
                .await;
        }
        let mut answer = match features.keep {
            Some(keep) => self.kept_answer(key, since, keep).await?,
            None => KeptAnswer {
                recovered: since.map(|_| false),
                ..KeptAnswer::default()
            },
        };
        if features.presence {
            let mut members = presence.members(key).await?;
            let budget = answers::members_budget(self.settings.max_answer_bytes);
            answer.presence_total = answers::cut_members(&mut members, budget);
            answer.presence = Some(members);
        }
        Ok(answer)
    }

    /// What a subscriber to a channel with history is given: exactly what came after `since`
    /// if that can be had, else the newest kept publications.
    async fn kept_answer(
        &self,
        key: &str,
        since: Option<Position>,
        keep: Retention,
    ) -> EngineResult<KeptAnswer> {
        let channels = &self.engine.channels;
        let budget = answers::items_budget(self.settings.max_answer_bytes);
        if let Some(since) = &since {
            let read = channels
                .kept_since(key, since, self.settings.resume_max)
                .await?;
            if let Resume::Recovered(publications) = answers::fitting(read.found, budget) {
                return Ok(KeptAnswer {
                    floor: publications
                        .last()
                        .map(|kept| kept.offset)
                        .or(Some(since.id)),
                    publications,
                    recovered: Some(true),
                    epoch: Some(read.epoch),
                    ..KeptAnswer::default()
                });
            }
        }
        let limit = self.settings.history_page.min(keep.size);
        let mut read = channels.recent(key, limit).await?;
        answers::keep_newest_that_fit(&mut read.found, budget);
        Ok(KeptAnswer {
            floor: read.found.last().map(|kept| kept.offset),
            publications: read.found,
            recovered: since.map(|_| false),
            epoch: Some(read.epoch),
            ..KeptAnswer::default()
        })
    }

    /// Ends the connection's subscription: the last local subscriber unsubscribes the
    /// instance; where presence is tracked, the connection leaves it, and a user with no other
    /// connection there is announced as gone (`user` is None for a connection that never
    /// signed in).
    pub async fn unsubscribe_channel(
        &self,
        conn: ConnectionId,
        user: Option<&User>,
        channel: &str,
        features: ChannelFeatures,
    ) -> EngineResult<()> {
        let key = channel_key(channel);
        if self.hub.leave(&key, conn) {
            self.engine.broker.unsubscribe(&key).await?;
        }
        let Some(user) = user.filter(|_| features.presence) else {
            return Ok(());
        };
        if self.engine.presence.leave(&key, conn, user).await? && features.join_leave {
            let left = ServerMsg::Left {
                channel: channel.to_string(),
                user_id: user.id.clone(),
                name: user.name.clone(),
            };
            self.announcements
                .changed(&key, &user.id, Change::Left, encode(&left), None)
                .await;
        }
        Ok(())
    }

    /// Delivers `data` to every subscriber of `channel` on every instance (the publisher too,
    /// when it is one), kept in the channel's history first when its namespace keeps one.
    /// Returns the publication's offset in that history.
    pub async fn publish(
        &self,
        channel: &str,
        data: serde_json::Value,
        keep: Option<Retention>,
    ) -> EngineResult<Option<MessageId>> {
        let key = channel_key(channel);
        let metrics = self.hub.metrics();
        let offset = match keep {
            Some(keep) => Some(self.engine.channels.publish_kept(&key, &data, keep).await?),
            None => {
                let frame = publication(channel, &data, None);
                self.engine.broker.publish(&key, frame, None).await?;
                None
            }
        };
        metrics.publications.increment(1);
        Ok(offset)
    }
}

/// A `subscribed` answer, before it is encoded.
#[derive(Default)]
struct KeptAnswer {
    publications: Vec<Kept>,
    recovered: Option<bool>,
    epoch: Option<String>,
    /// The newest publication the subscriber has once it read the answer.
    floor: Option<MessageId>,
    presence: Option<Vec<Member>>,
    /// How many are present, when `presence` was cut to fit the answer.
    presence_total: Option<usize>,
}
