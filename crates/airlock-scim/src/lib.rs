//! The pure core of airlock's SCIM 2.0 service provider (RFC 7643, RFC 7644).
//!
//! Identity providers (Microsoft Entra ID, Okta, JumpCloud) push users and groups to a SCIM
//! endpoint. This crate holds everything about that exchange that can be decided without a
//! network or a database:
//!
//! - [`schema`]: the User, Group and enterprise-User attributes airlock supports and their
//!   characteristics (type, `caseExact`, mutability, returned, uniqueness);
//! - [`path`] and [`filter`]: attribute paths and filters, parsed, printed, checked against the
//!   schema and evaluated;
//! - [`patch`]: PATCH, applied atomically, with the quirks of real clients;
//! - [`resource`]: checking bodies for POST and merging them for PUT;
//! - [`query`]: `attributes`/`excludedAttributes`, sorting, paging, `ListResponse`;
//! - [`search`]: `SearchRequest` bodies (`POST .../.search`) and the root search across types;
//! - [`error`]: [`ScimError`] and the RFC 7644 error body;
//! - [`body`]: a request body's bytes read as JSON, or `400 invalidSyntax`;
//! - [`allowance`]: which groups a client may create or change (`--groups` on its token).
//!
//! Resources are `serde_json::Value`s in the SCIM JSON representation; the schema is typed
//! static data. Every function is deterministic given its inputs.
//!
//! Not here, by design: HTTP routing, authentication, ETags and `meta.version`/`lastModified`
//! (which need a clock), `id` assignment, storage and uniqueness checks, `/Bulk`, and the discovery endpoints (`/ServiceProviderConfig`, `/Schemas`,
//! `/ResourceTypes`), which the HTTP layer can render from [`schema`].
#![warn(missing_docs)]

pub mod allowance;
pub mod body;
pub mod error;
pub mod filter;
mod json;
pub mod patch;
pub mod path;
pub mod query;
pub mod resource;
pub mod schema;
pub mod search;

pub use allowance::{check_group_write, check_user_write, AllowanceError, GroupAllowance};
pub use error::{ScimError, ScimType};
pub use filter::{CompValue, CompareOp, CompiledFilter, Filter, MAX_FILTER_DEPTH, MAX_FILTER_LEN};
pub use patch::{apply_patch, apply_patch_in_place, PatchOpKind, PatchOperation, PatchRequest};
pub use path::{AttrPath, Path};
pub use query::{list_response, matching, ListQuery, ListResponse, Page, Projection, SortOrder};
pub use resource::{replace_resource, validate_resource};
pub use schema::{
    ResourceType, ENTERPRISE_USER_SCHEMA, ERROR_MESSAGE, GROUP_SCHEMA, LIST_RESPONSE_MESSAGE,
    PATCH_OP_MESSAGE, SEARCH_REQUEST_MESSAGE, USER_SCHEMA,
};
pub use search::search_all;
