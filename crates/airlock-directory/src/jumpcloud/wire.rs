//! The parts of JumpCloud's JSON this source reads, named as the spec names them
//! (`systemuserslist`, `systemuserreturn`, `UserGroup`, `GraphConnection`, `GraphObject`).
//! Unknown properties are ignored; a missing required one is a malformed answer.

use serde::Deserialize;

/// v1 `systemuserslist`: one page of `GET /api/systemusers`.
#[derive(Debug, Deserialize)]
pub(super) struct SystemUsersList {
    /// `results`: the page.
    pub results: Vec<SystemUser>,
    /// `totalCount`: users in the whole list; must not change while paging.
    #[serde(rename = "totalCount")]
    pub total_count: u64,
}

/// v1 `systemuserreturn`, reduced to what a person needs.
#[derive(Debug, Deserialize)]
pub(super) struct SystemUser {
    /// `_id`: the stable object id.
    #[serde(rename = "_id")]
    pub id: String,
    /// `username`.
    pub username: String,
    /// `email`.
    #[serde(default)]
    pub email: Option<String>,
    /// `firstname`.
    #[serde(default)]
    pub firstname: Option<String>,
    /// `lastname`.
    #[serde(default)]
    pub lastname: Option<String>,
    /// `state`: `STAGED`, `ACTIVATED` or `SUSPENDED` (absent on old records).
    #[serde(default)]
    pub state: Option<String>,
    /// `suspended`.
    #[serde(default)]
    pub suspended: Option<bool>,
    /// `activated`.
    #[serde(default)]
    pub activated: Option<bool>,
    /// `account_locked`.
    #[serde(default)]
    pub account_locked: Option<bool>,
}

/// v2 `UserGroup`, reduced to its id and name.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct UserGroup {
    /// `id`.
    pub id: String,
    /// `name`.
    pub name: String,
}

/// v2 `GraphConnection`: an edge from the group to one member (`to`).
#[derive(Debug, Deserialize)]
pub(super) struct GraphConnection {
    /// `to` (required).
    pub to: GraphObject,
}

/// v2 `GraphObject`.
#[derive(Debug, Deserialize)]
pub(super) struct GraphObject {
    /// `id` (required).
    pub id: String,
    /// `type` (required): `user` for user group members.
    #[serde(rename = "type")]
    pub kind: String,
}
