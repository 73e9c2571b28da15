//! Customer-group welcomes a manager sees and acts on: the group welcome
//! material qunyun keeps in WeCom (its template id), and the owner digests of
//! newcomers, each of which can become an owner-confirmed mass message with
//! one action (docs/wecom.md#mass-messages).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::rules::{Content, OutRoute, Outbound};
use crate::store;
use crate::store::outbox::Enqueued;
use crate::store::welcome::{OwnerDigest, SyncedMaterial};

/// The rule set's group welcome material and what WeCom holds.
#[derive(Debug, Clone, Serialize)]
pub struct MaterialStatus {
    /// The text in the rule set in force (empty: none kept).
    pub wanted: String,
    pub synced: Option<SyncedMaterial>,
    /// WeCom holds exactly the rule set's text.
    pub in_sync: bool,
}

impl MaterialStatus {
    /// One line for the CLI and the console.
    pub fn describe(&self) -> String {
        match (&self.synced, self.wanted.trim().is_empty()) {
            (_, true) => "入群欢迎语素材：规则未设置 (welcome.group_material)".to_string(),
            (None, false) => "入群欢迎语素材：尚未同步到企业微信".to_string(),
            (Some(synced), false) => format!(
                "入群欢迎语素材：template_id {}{}",
                synced.template_id,
                if self.in_sync {
                    "（已同步）"
                } else {
                    "（规则已改，等待同步）"
                }
            ),
        }
    }
}

pub async fn material(ops: &Ops) -> OpsResult<MaterialStatus> {
    let rules = ops.in_force().await?.rules;
    let mut conn = ops.pool.acquire().await?;
    let synced = store::welcome::synced_material(&mut conn).await?;
    let wanted = rules.doc.welcome.group_material.trim().to_string();
    let in_sync = synced.as_ref().is_some_and(|s| s.material == wanted);
    Ok(MaterialStatus {
        wanted,
        synced,
        in_sync,
    })
}

/// The newest owner digests first.
pub async fn digests(ops: &Ops, limit: i64) -> OpsResult<Vec<OwnerDigest>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(store::welcome::recent_digests(&mut conn, limit).await?)
}

/// The mass message a digest became.
#[derive(Debug, Clone, Serialize)]
pub struct MassRequested {
    pub digest_id: i64,
    pub chat_id: String,
    pub owner: String,
    /// The outbox key of the mass message.
    pub key: String,
}

/// Turns a digest's suggested welcome into a mass message to its chat that
/// the owner confirms in the client. Once per digest: a second request is
/// refused, so the group never gets the welcome twice.
pub async fn send_to_owner(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    digest_id: i64,
) -> OpsResult<MassRequested> {
    actor.require(Role::Operator)?;
    let mut tx = ops.begin().await?;
    let digest = store::welcome::get_digest(&mut tx, digest_id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("owner digest {digest_id}")))?;
    let key = format!("owner_welcome:{digest_id}");
    if !store::welcome::mark_mass_requested(&mut tx, digest_id, &key, &actor.name, now).await? {
        return Err(OpsError::invalid(
            "digest",
            format!(
                "digest {digest_id} was already sent to the owner by {}",
                digest.mass_requested_by.as_deref().unwrap_or("someone")
            ),
        ));
    }
    let mass = Outbound::new(
        key.clone(),
        OutRoute::CustomerGroupMass {
            owner: Some(digest.owner.clone()),
            chat_ids: vec![digest.chat_id.clone()],
        },
        Content::text(digest.suggestion.clone()),
    );
    if store::outbox::enqueue(&mut tx, &mass, &ops.scheduler.app, now).await? == Enqueued::Duplicate
    {
        return Err(OpsError::invalid("digest", "already queued"));
    }
    audit(
        &mut tx,
        actor,
        now,
        "welcome.send_to_owner",
        &digest_id.to_string(),
        &digest.chat_id,
    )
    .await?;
    tx.commit().await?;
    Ok(MassRequested {
        digest_id,
        chat_id: digest.chat_id,
        owner: digest.owner,
        key,
    })
}
