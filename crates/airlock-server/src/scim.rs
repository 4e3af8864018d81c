//! The SCIM 2.0 endpoint (RFC 7644) under `/scim/v2`: Users and Groups pushed by identity
//! providers (Entra ID, Okta, JumpCloud), kept in the state store.
//!
//! Every route needs a bearer token issued with `airlock scim token create`; the token is
//! checked by its hash and never logged or echoed. Bodies must be `application/scim+json` or
//! `application/json` and at most 1 MiB. Resources carry an ETag (`W/"<version>"`) and
//! `If-Match` is honoured on PUT, PATCH and DELETE (412 only to a client that sent one);
//! writes to one resource are applied one after the other under its lock in the store, each
//! to the result of the one before, so concurrent PATCHes without `If-Match` all succeed.
//! Every write is audited with its client as actor (`scim:CLIENT`), in the write's
//! transaction. A client whose token carries a group allowance (`--groups`) may only create
//! or change groups whose names it allows; anything else is 403, audited as refused, and
//! writes nothing. Passwords are accepted but never stored or returned. Every failure becomes
//! an RFC 7644 error body in one place ([`Failure`]).
//!
//! Discovery (`/ServiceProviderConfig`, `/ResourceTypes[/{name}]`, `/Schemas[/{urn}]`) is
//! rendered from `airlock-scim`'s schema tables; `POST /.search`, `/Users/.search` and
//! `/Groups/.search` take a `SearchRequest` (RFC 7644 §3.4.3). `/Me` and `/Bulk` answer 501,
//! and a method a route does not have answers 405, both with a SCIM error body.
//!
//! The SCIM rules themselves (schema checks, filters, PATCH, PUT merge, projection, paging,
//! search requests) are `airlock-scim`'s; storage is `airlock-store`'s. Not here: `/Bulk`,
//! `/Me`, sorting beyond what `airlock-scim` offers, and applying changes to Airflow (each
//! write leaves a pending change per instance, which the service's sync loops apply).

use std::sync::Arc;

use airlock_audit::{NewEvent, Outcome, Target};
use airlock_core::{Clock, SystemClock};
use airlock_scim::schema::{AttributeDef, Mutability, Returned, SchemaDef, Uniqueness};
use airlock_scim::{
    apply_patch, check_group_write, check_user_write, list_response, replace_resource, search_all,
    validate_resource, GroupAllowance, ListQuery, ListResponse, Page, PatchRequest, Projection,
    ResourceType, ScimError, LIST_RESPONSE_MESSAGE,
};
use airlock_store::{scim_actor, ScimResource, ScimWriteError, ScimWriteKind, Store, StoreError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde_json::{json, Value};

/// Where the endpoint is mounted.
pub const SCIM_BASE_PATH: &str = "/scim/v2";
/// The SCIM media type (RFC 7644 §3.1).
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";
/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most resources one list response holds.
pub const MAX_RESULTS: usize = 200;
/// Up to this many resources (or group members) are filtered, printed or patched on the
/// request's worker: less work than handing the worker off (`airlock_engine::cpu_bound`).
const SMALL_WORK: usize = 64;

const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

struct ScimState {
    store: Store,
    clock: Arc<dyn Clock>,
}

/// The SCIM client a request authenticated as: its token's client name (the actor of the
/// changes it makes) and the groups it may write (`None`: any).
#[derive(Debug, Clone)]
struct Client {
    name: String,
    allowance: Option<GroupAllowance>,
}

/// The rail name a refused group write is audited under.
const GROUP_ALLOWANCE_RAIL: &str = "scim_group_allowance";

/// The longest a SCIM request may take before it is answered 503 (a store that does not
/// answer must never hang an identity provider's request).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// What `Retry-After` says when the store is unavailable.
const RETRY_AFTER_SECS: &str = "5";

impl ScimState {
    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}

type Shared = Arc<ScimState>;

/// The SCIM endpoint alone, with its routes under `/scim/v2`, reading the wall clock. Tests
/// and benchmarks serve it by itself. Every write records a pending change for each consumer
/// registered in the store (`Store::scim_register_consumers`; `airlock serve` registers its
/// instances).
pub fn scim_router(store: Store) -> Router {
    scim_router_with(store, Arc::new(SystemClock))
}

/// [`scim_router`] with an injected clock (for `meta.created`/`lastModified` and token use).
pub fn scim_router_with(store: Store, clock: Arc<dyn Clock>) -> Router {
    let state = Arc::new(ScimState { store, clock });
    let routes = Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{name}", get(one_resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{urn}", get(one_schema))
        .route("/.search", post(search_everything))
        .route("/Me", any(not_implemented))
        .route("/Me/{*rest}", any(not_implemented))
        .route("/Bulk", any(not_implemented))
        .route("/{kind}", get(list).post(create))
        .route("/{kind}/.search", post(search))
        .route(
            "/{kind}/{id}",
            get(get_one).put(replace).patch(patch).delete(delete),
        )
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::map_response(method_not_allowed))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(time_limit))
        .with_state(state);
    Router::new().nest(SCIM_BASE_PATH, routes)
}

/// A SCIM failure on its way to becoming an error response: the endpoint's one rescue point.
#[derive(Debug)]
pub(crate) struct Failure(ScimError);

impl From<ScimError> for Failure {
    fn from(err: ScimError) -> Self {
        Failure(err)
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure(match err {
            StoreError::ScimConflict { attribute, .. } => {
                ScimError::uniqueness(format!("{attribute} is already in use"))
            }
            StoreError::ScimNotFound { .. } => not_found_error(),
            StoreError::ScimPreconditionFailed { .. } => precondition_failed(),
            other if other.is_unavailable() => {
                tracing::warn!(error = %other, "scim request refused: the state store is unavailable");
                unavailable()
            }
            other => {
                tracing::error!(error = %other, "scim request failed in the state store");
                ScimError::new(500, None, "the state store failed; see the server log")
            }
        })
    }
}

fn unavailable() -> ScimError {
    ScimError::new(
        503,
        None,
        "the state store is unavailable; nothing was changed, retry later",
    )
}

/// Answers 503 to a request that takes longer than [`REQUEST_TIMEOUT`]. A write cut short
/// here either committed whole or not at all (one transaction), and the client retries.
async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!("scim request timed out; answering 503");
            Failure(unavailable()).into_response()
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [(header::CONTENT_TYPE, SCIM_CONTENT_TYPE)],
            self.0.to_json().to_string(),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"airlock-scim\""),
            );
        }
        response
    }
}

fn not_found_error() -> ScimError {
    ScimError::new(404, None, "resource not found")
}

fn precondition_failed() -> ScimError {
    ScimError::new(
        412,
        None,
        "the resource was modified: its version does not match If-Match",
    )
}

async fn not_found() -> Failure {
    Failure(ScimError::new(404, None, "no such SCIM endpoint"))
}

/// `/Me` and `/Bulk` (RFC 7644 §3.11, §3.7): not offered, as `ServiceProviderConfig` says.
async fn not_implemented() -> Failure {
    Failure(ScimError::new(
        501,
        None,
        "this SCIM endpoint is not implemented by airlock",
    ))
}

/// Gives the router's bodiless 405 (a method the route does not have) a SCIM error body,
/// keeping its `Allow` header.
async fn method_not_allowed(response: Response) -> Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut answer = Failure(ScimError::new(
        405,
        None,
        "this SCIM endpoint does not support the request's method",
    ))
    .into_response();
    if let Some(allow) = allow {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}

async fn authenticate(State(state): State<Shared>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            let token = token.trim();
            (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
        });
    let Some(token) = token else {
        return Failure(ScimError::new(
            401,
            None,
            "authentication required: send `Authorization: Bearer <token>`",
        ))
        .into_response();
    };
    match state
        .store
        .authenticate_scim_client(&token, state.now_ms())
        .await
    {
        Ok(Some(client)) => {
            let allowance = match client.groups.as_deref().map(GroupAllowance::from_patterns) {
                None => None,
                Some(Ok(allowance)) => Some(allowance),
                Some(Err(err)) => {
                    tracing::error!(client = %client.name, error = %err, "scim client's stored group allowance is invalid; refusing its requests");
                    return Failure(ScimError::new(
                        500,
                        None,
                        "this client's group allowance is invalid; see the server log",
                    ))
                    .into_response();
                }
            };
            tracing::debug!(client = %client.name, method = %request.method(), path = %request.uri().path(), "scim request");
            request.extensions_mut().insert(Client {
                name: client.name,
                allowance,
            });
            next.run(request).await
        }
        Ok(None) => Failure(ScimError::new(
            401,
            None,
            "the bearer token is not valid (unknown, revoked or expired)",
        ))
        .into_response(),
        Err(err) => Failure::from(err).into_response(),
    }
}

fn resource_type(kind: &str) -> Result<ResourceType, Failure> {
    match kind {
        "Users" => Ok(ResourceType::User),
        "Groups" => Ok(ResourceType::Group),
        _ => Err(Failure(ScimError::new(404, None, "no such SCIM endpoint"))),
    }
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn projection(rt: ResourceType, query: Option<&str>) -> Result<Projection, Failure> {
    let pairs = query_pairs(query);
    let find = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    Ok(Projection::parse(
        rt,
        find("attributes"),
        find("excludedAttributes"),
    )?)
}

/// Checks the content type and parses the body as JSON (the pure part, bytes to a value or
/// `invalidSyntax`, is `airlock_scim::body::parse_json`, fuzzed there).
fn json_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Value, Failure> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media_type != SCIM_CONTENT_TYPE && media_type != "application/json" {
        return Err(Failure(ScimError::new(
            415,
            None,
            "the request body must be application/scim+json or application/json",
        )));
    }
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Failure(ScimError::new(
                413,
                None,
                "the request body is larger than 1 MiB",
            ))
        } else {
            Failure(ScimError::invalid_syntax(
                "the request body could not be read",
            ))
        }
    })?;
    Ok(airlock_scim::body::parse_json(&bytes)?)
}

/// What `If-Match` asks for.
enum IfMatch {
    /// No header, or `*`.
    Any,
    /// This version.
    Version(i64),
    /// A tag no version can match.
    Never,
}

fn if_match(headers: &HeaderMap) -> IfMatch {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return IfMatch::Any;
    };
    let Ok(value) = value.to_str() else {
        return IfMatch::Never;
    };
    let value = value.trim();
    if value == "*" {
        return IfMatch::Any;
    }
    let tag = value.strip_prefix("W/").unwrap_or(value);
    tag.trim_matches('"')
        .parse::<i64>()
        .map_or(IfMatch::Never, IfMatch::Version)
}

fn resource_response(
    status: StatusCode,
    rt: ResourceType,
    stored: &ScimResource,
    projection: &Projection,
) -> Response {
    let body = projection.project(rt, &stored.resource);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, SCIM_CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{}\"", stored.version)) {
        headers.insert(header::ETAG, etag);
    }
    if status == StatusCode::CREATED {
        if let Some(location) = stored.resource["meta"]["location"]
            .as_str()
            .and_then(|l| HeaderValue::from_str(l).ok())
        {
            headers.insert(header::LOCATION, location);
        }
    }
    response
}

fn scim_json(body: Value) -> Response {
    scim_body(body.to_string())
}

fn scim_body(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, SCIM_CONTENT_TYPE)],
        body,
    )
        .into_response()
}

/// Group members must name a member by `value`. They need not exist yet: RFC 7644 does not
/// require referential integrity, and identity providers may push a membership before the
/// user (eventual consistency). The directory source ignores members that match no User, so a
/// dangling member grants nothing until that User arrives.
fn check_members(rt: ResourceType, resource: &Value) -> Result<(), ScimError> {
    if rt != ResourceType::Group {
        return Ok(());
    }
    let Some(members) = resource.get("members").and_then(Value::as_array) else {
        return Ok(());
    };
    for (i, member) in members.iter().enumerate() {
        if member
            .get("value")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ScimError::invalid_value(format!(
                "members[{i}].value must name a member"
            )));
        }
    }
    Ok(())
}

async fn list(
    State(state): State<Shared>,
    Path(kind): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Failure> {
    let rt = resource_type(&kind)?;
    let pairs = query_pairs(query.as_deref());
    let query = ListQuery::from_params(
        rt,
        pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    )?;
    list_matching(&state, rt, &query).await
}

/// `POST /Users/.search`, `POST /Groups/.search`: a list whose query is a `SearchRequest`.
async fn search(
    State(state): State<Shared>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    let rt = resource_type(&kind)?;
    let body = json_body(&headers, body)?;
    let query = ListQuery::from_search_request(rt, &body)?;
    list_matching(&state, rt, &query).await
}

/// `POST /.search`: a `SearchRequest` over Users and Groups.
async fn search_everything(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    let body = json_body(&headers, body)?;
    let users = state.store.scim_list(ResourceType::User.name()).await?;
    let groups = state.store.scim_list(ResourceType::Group.name()).await?;
    let response = airlock_engine::cpu_bound(|| {
        search_all(
            &[
                (ResourceType::User, users.as_slice()),
                (ResourceType::Group, groups.as_slice()),
            ],
            &body,
            MAX_RESULTS,
        )
        .map(|body| body.to_string())
    })?;
    Ok(scim_body(response))
}

async fn list_matching(
    state: &ScimState,
    rt: ResourceType,
    query: &ListQuery,
) -> Result<Response, Failure> {
    let store = &state.store;
    let resources = match Lookup::of(rt, query) {
        Lookup::Page => return page(state, rt, query).await,
        Lookup::Id(id) => (store.scim_get(rt.name(), id).await?)
            .map(|stored| stored.resource)
            .into_iter()
            .collect(),
        Lookup::Unique(value) => store.scim_find_unique(rt.name(), value).await?,
        Lookup::ExternalId(value) => store.scim_find_external_id(rt.name(), value).await?,
        Lookup::Scan => store.scim_list(rt.name()).await?,
    };
    // The whole filter and the sort are applied to what the store found, so an index only
    // narrows the candidates and never changes the answer. Thousands of resources are CPU
    // work: off the runtime's worker.
    let heavy = resources.len() > SMALL_WORK;
    let body = airlock_engine::cpu_bound_when(heavy, || {
        list_response(rt, &resources, query, MAX_RESULTS).map(|body| body.to_string())
    })?;
    Ok(scim_body(body))
}

/// A list without a filter or `sortBy`: the page comes from the store, in creation order,
/// so reading every resource page by page reads each one once.
async fn page(state: &ScimState, rt: ResourceType, query: &ListQuery) -> Result<Response, Failure> {
    let page = Page::new(query.start_index, query.count, MAX_RESULTS);
    let stored = (state.store)
        .scim_page(rt.name(), page.start_index - 1, page.count)
        .await?;
    let body = airlock_engine::cpu_bound(|| {
        ListResponse {
            total_results: stored.total,
            start_index: page.start_index,
            resources: (stored.resources.iter())
                .map(|r| query.projection.project(rt, r))
                .collect(),
        }
        .to_json()
        .to_string()
    });
    Ok(scim_body(body))
}

/// How the store answers a list request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup<'q> {
    /// No filter and no `sortBy`: the page itself, from the store.
    Page,
    /// `id eq "..."`: by primary key.
    Id(&'q str),
    /// `userName eq "..."` (Users) or `displayName eq "..."` (Groups): the unique index.
    Unique(&'q str),
    /// `externalId eq "..."`: its index.
    ExternalId(&'q str),
    /// Any other filter: every resource, filtered here.
    Scan,
}

impl<'q> Lookup<'q> {
    /// The narrowest lookup for `query`: its filter, or one term of a top-level `and`, that is
    /// `<attribute> eq "<string>"` for an indexed attribute.
    fn of(rt: ResourceType, query: &'q ListQuery) -> Self {
        let Some(filter) = &query.filter else {
            return if query.sort_by.is_none() {
                Lookup::Page
            } else {
                Lookup::Scan
            };
        };
        let terms = match filter {
            airlock_scim::Filter::And(terms) => terms.as_slice(),
            one => std::slice::from_ref(one),
        };
        (terms.iter())
            .filter_map(|term| Lookup::term(rt, term))
            .min_by_key(|lookup| match lookup {
                Lookup::Id(_) => 0,
                Lookup::Unique(_) => 1,
                _ => 2,
            })
            .unwrap_or(Lookup::Scan)
    }

    fn term(rt: ResourceType, filter: &'q airlock_scim::Filter) -> Option<Self> {
        let airlock_scim::Filter::Compare {
            attr,
            op: airlock_scim::CompareOp::Eq,
            value: airlock_scim::CompValue::String(value),
        } = filter
        else {
            return None;
        };
        if attr.schema.is_some() || attr.sub_attr.is_some() {
            return None;
        }
        let unique = match rt {
            ResourceType::User => "userName",
            ResourceType::Group => "displayName",
        };
        let name = attr.name.as_str();
        if name.eq_ignore_ascii_case("id") {
            Some(Lookup::Id(value))
        } else if name.eq_ignore_ascii_case(unique) {
            Some(Lookup::Unique(value))
        } else if name.eq_ignore_ascii_case("externalId") {
            Some(Lookup::ExternalId(value))
        } else {
            None
        }
    }
}

async fn create(
    State(state): State<Shared>,
    Extension(client): Extension<Client>,
    Path(kind): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    let rt = resource_type(&kind)?;
    let body = json_body(&headers, body)?;
    let projection = projection(rt, query.as_deref())?;
    let resource = validate_resource(rt, &body)?;
    check_members(rt, &resource)?;
    if rt == ResourceType::Group {
        if let Err(err) = check_group_write(client.allowance.as_ref(), None, Some(&resource)) {
            return Err(refused(&state, &client, ScimWriteKind::Create, rt, None, err).await);
        }
    }
    let stored = state
        .store
        .scim_create(rt.name(), resource, state.now_ms(), &client.name)
        .await?;
    Ok(resource_response(
        StatusCode::CREATED,
        rt,
        &stored,
        &projection,
    ))
}

/// Audits a write the client's group allowance refused (nothing was written) and returns
/// the 403 to answer. If the audit append fails, the answer is the store's failure instead.
async fn refused(
    state: &ScimState,
    client: &Client,
    kind: ScimWriteKind,
    rt: ResourceType,
    id: Option<&str>,
    err: ScimError,
) -> Failure {
    tracing::warn!(client = %client.name, resource_type = rt.name(), "scim write refused: outside the client's group allowance");
    let mut event = NewEvent::new(
        state.clock.now(),
        scim_actor(&client.name),
        kind.operation(rt.name()),
        Outcome::Refused {
            rail: GROUP_ALLOWANCE_RAIL.to_owned(),
        },
    );
    event.target = id.map(|id| Target::ScimResource {
        resource_type: rt.name().to_owned(),
        id: id.to_owned(),
    });
    event.reason = Some("the group's name is outside the client's group allowance".to_owned());
    match state.store.append_audit(vec![event]).await {
        Ok(_) => Failure(err),
        Err(store_err) => Failure::from(store_err),
    }
}

async fn read(state: &ScimState, rt: ResourceType, id: &str) -> Result<ScimResource, Failure> {
    state
        .store
        .scim_get(rt.name(), id)
        .await?
        .ok_or(Failure(not_found_error()))
}

async fn get_one(
    State(state): State<Shared>,
    Path((kind, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, Failure> {
    let rt = resource_type(&kind)?;
    let projection = projection(rt, query.as_deref())?;
    let stored = read(&state, rt, &id).await?;
    Ok(resource_response(StatusCode::OK, rt, &stored, &projection))
}

async fn replace(
    State(state): State<Shared>,
    Extension(client): Extension<Client>,
    Path((kind, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    let rt = resource_type(&kind)?;
    let body = json_body(&headers, body)?;
    let projection = projection(rt, query.as_deref())?;
    let write = Write {
        state: &state,
        client: &client,
        rt,
        id: &id,
        kind: ScimWriteKind::Replace,
    };
    let stored = write
        .apply(&headers, move |stored| {
            replace_resource(rt, &stored.resource, &body)
        })
        .await?;
    Ok(resource_response(StatusCode::OK, rt, &stored, &projection))
}

async fn patch(
    State(state): State<Shared>,
    Extension(client): Extension<Client>,
    Path((kind, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    let rt = resource_type(&kind)?;
    let body = json_body(&headers, body)?;
    let projection = projection(rt, query.as_deref())?;
    let request = PatchRequest::from_json(&body)?;
    let write = Write {
        state: &state,
        client: &client,
        rt,
        id: &id,
        kind: ScimWriteKind::Patch,
    };
    let stored = write
        .apply(&headers, move |stored| {
            apply_patch(rt, &stored.resource, &request)
        })
        .await?;
    Ok(resource_response(StatusCode::OK, rt, &stored, &projection))
}

/// A PUT or PATCH of one resource by one client.
struct Write<'a> {
    state: &'a ScimState,
    client: &'a Client,
    rt: ResourceType,
    id: &'a str,
    kind: ScimWriteKind,
}

impl Write<'_> {
    /// Stores what `change` makes of the stored resource, under the resource's lock in the
    /// store (so a concurrent write is applied before or after this one, never lost). Only a
    /// client that sent `If-Match` can get a 412. A group outside the client's allowance,
    /// before or after the change, is a 403 (audited) and nothing is written.
    async fn apply(
        &self,
        headers: &HeaderMap,
        change: impl FnOnce(&ScimResource) -> Result<Value, ScimError> + Send + 'static,
    ) -> Result<ScimResource, Failure> {
        let (rt, allowance) = (self.rt, self.client.allowance.clone());
        let expected = match if_match(headers) {
            IfMatch::Any => None,
            IfMatch::Version(v) => Some(v),
            IfMatch::Never => {
                read(self.state, rt, self.id).await?;
                return Err(Failure(precondition_failed()));
            }
        };
        if rt == ResourceType::User {
            user_write_allowed(self.state, self.client, self.kind, self.id).await?;
        }
        let result: Result<ScimResource, ScimWriteError<ScimError>> = self
            .state
            .store
            .scim_update(
                rt.name(),
                self.id,
                expected,
                self.kind,
                self.state.now_ms(),
                &self.client.name,
                // A PATCH of a group with thousands of members is CPU work: off the worker
                // (a user, or a small group, costs less than moving the worker would).
                move |stored| {
                    let heavy = rt == ResourceType::Group
                        && (stored.resource.get("members"))
                            .and_then(Value::as_array)
                            .is_some_and(|m| m.len() > SMALL_WORK);
                    airlock_engine::cpu_bound_when(heavy, || {
                        let allowance = allowance.as_ref();
                        if rt == ResourceType::Group {
                            check_group_write(allowance, Some(&stored.resource), None)?;
                        }
                        let resource = change(stored)?;
                        check_members(rt, &resource)?;
                        if rt == ResourceType::Group {
                            check_group_write(allowance, None, Some(&resource))?;
                        }
                        Ok(resource)
                    })
                },
            )
            .await;
        match result {
            Ok(stored) => Ok(stored),
            Err(ScimWriteError::Store(err)) => Err(Failure::from(err)),
            Err(ScimWriteError::Rejected(err)) if err.status == 403 => {
                Err(refused(self.state, self.client, self.kind, rt, Some(self.id), err).await)
            }
            Err(ScimWriteError::Rejected(err)) => Err(Failure(err)),
        }
    }
}

/// A restricted client's write of the User `id` is refused (403, audited) while the user is a
/// member of a group outside its allowance ([`check_user_write`]). The groups are read before
/// the write: a membership added by another client in between is not seen by this check.
async fn user_write_allowed(
    state: &ScimState,
    client: &Client,
    kind: ScimWriteKind,
    id: &str,
) -> Result<(), Failure> {
    let Some(allowance) = client.allowance.as_ref() else {
        return Ok(());
    };
    let groups = state.store.scim_list(ResourceType::Group.name()).await?;
    let checked = airlock_engine::cpu_bound_when(groups.len() > SMALL_WORK, || {
        check_user_write(Some(allowance), id, &groups)
    });
    match checked {
        Ok(()) => Ok(()),
        Err(err) => Err(refused(state, client, kind, ResourceType::User, Some(id), err).await),
    }
}

async fn delete(
    State(state): State<Shared>,
    Extension(client): Extension<Client>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let rt = resource_type(&kind)?;
    let expected = match if_match(&headers) {
        IfMatch::Any => None,
        IfMatch::Version(v) => Some(v),
        IfMatch::Never => {
            // Still a 404 for an unknown id, as for any other request.
            read(&state, rt, &id).await?;
            return Err(Failure(precondition_failed()));
        }
    };
    if rt == ResourceType::User {
        user_write_allowed(&state, &client, ScimWriteKind::Delete, &id).await?;
    }
    let allowance = client.allowance.clone();
    let result: Result<(), ScimWriteError<ScimError>> = state
        .store
        .scim_delete_checked(
            rt.name(),
            &id,
            expected,
            state.now_ms(),
            &client.name,
            move |stored| {
                if rt == ResourceType::Group {
                    check_group_write(allowance.as_ref(), Some(&stored.resource), None)
                } else {
                    Ok(())
                }
            },
        )
        .await;
    match result {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(ScimWriteError::Store(err)) => Err(Failure::from(err)),
        Err(ScimWriteError::Rejected(err)) => {
            Err(refused(&state, &client, ScimWriteKind::Delete, rt, Some(&id), err).await)
        }
    }
}

async fn service_provider_config() -> Response {
    scim_json(json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "documentationUri": "https://example.invalid/airlock/scim",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A token issued with `airlock scim token create --client NAME`",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{SCIM_BASE_PATH}/ServiceProviderConfig")},
    }))
}

fn list_of(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_MESSAGE],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

const RESOURCE_TYPES: [ResourceType; 2] = [ResourceType::User, ResourceType::Group];

fn resource_type_json(rt: ResourceType) -> Value {
    let extensions: Vec<Value> = rt
        .extensions()
        .iter()
        .map(|ext| json!({"schema": ext.id, "required": false}))
        .collect();
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": rt.name(),
        "name": rt.name(),
        "endpoint": format!("/{}s", rt.name()),
        "schema": rt.core_schema().id,
        "schemaExtensions": extensions,
        "meta": {"resourceType": "ResourceType", "location": format!("{SCIM_BASE_PATH}/ResourceTypes/{}", rt.name())},
    })
}

async fn resource_types() -> Response {
    scim_json(list_of(
        RESOURCE_TYPES.into_iter().map(resource_type_json).collect(),
    ))
}

/// `GET /ResourceTypes/{name}`: `User` or `Group` (case-insensitively), else 404.
async fn one_resource_type(Path(name): Path<String>) -> Result<Response, Failure> {
    RESOURCE_TYPES
        .into_iter()
        .find(|rt| rt.name().eq_ignore_ascii_case(&name))
        .map(|rt| scim_json(resource_type_json(rt)))
        .ok_or_else(|| Failure(ScimError::new(404, None, "no such resource type")))
}

/// Every schema airlock serves: each resource type's core schema and its extensions.
fn all_schemas() -> Vec<&'static SchemaDef> {
    let mut all: Vec<&'static SchemaDef> = Vec::new();
    for rt in RESOURCE_TYPES {
        all.push(rt.core_schema());
        all.extend(rt.extensions().iter().copied());
    }
    all
}

fn schema_json(schema: &SchemaDef) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": schema.id,
        "name": schema.name,
        "attributes": schema.attributes.iter().map(attribute_json).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{SCIM_BASE_PATH}/Schemas/{}", schema.id)},
    })
}

async fn schemas() -> Response {
    scim_json(list_of(
        all_schemas().into_iter().map(schema_json).collect(),
    ))
}

/// `GET /Schemas/{urn}`: a schema by its URN (case-insensitively), else 404.
async fn one_schema(Path(urn): Path<String>) -> Result<Response, Failure> {
    all_schemas()
        .into_iter()
        .find(|schema| schema.id.eq_ignore_ascii_case(&urn))
        .map(|schema| scim_json(schema_json(schema)))
        .ok_or_else(|| Failure(ScimError::new(404, None, "no such schema")))
}

fn attribute_json(attr: &AttributeDef) -> Value {
    let mut out = json!({
        "name": attr.name,
        "type": attr.kind.to_string(),
        "multiValued": attr.multi_valued,
        "required": attr.required,
        "caseExact": attr.case_exact,
        "mutability": match attr.mutability {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        },
        "returned": match attr.returned {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        },
        "uniqueness": match attr.uniqueness {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        },
    });
    if !attr.canonical_values.is_empty() {
        out["canonicalValues"] = json!(attr.canonical_values);
    }
    if !attr.sub_attributes.is_empty() {
        out["subAttributes"] =
            Value::Array(attr.sub_attributes.iter().map(attribute_json).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_scim::ScimType;

    fn headers(if_match_value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_MATCH,
            HeaderValue::from_str(if_match_value).expect("valid header"),
        );
        headers
    }

    #[test]
    fn if_match_accepts_weak_and_strong_tags_and_a_star() {
        assert!(matches!(if_match(&headers("W/\"3\"")), IfMatch::Version(3)));
        assert!(matches!(if_match(&headers("\"3\"")), IfMatch::Version(3)));
        assert!(matches!(if_match(&headers("*")), IfMatch::Any));
        assert!(matches!(if_match(&HeaderMap::new()), IfMatch::Any));
        assert!(matches!(if_match(&headers("W/\"2\"")), IfMatch::Version(2)));
        assert!(matches!(if_match(&headers("garbage")), IfMatch::Never));
    }

    #[test]
    fn only_users_and_groups_are_resource_endpoints() {
        assert!(matches!(resource_type("Users"), Ok(ResourceType::User)));
        assert!(matches!(resource_type("Groups"), Ok(ResourceType::Group)));
        assert!(resource_type("users").is_err());
    }

    #[test]
    fn store_failures_never_leak_their_message() {
        let Failure(err) = Failure::from(StoreError::ScimConflict {
            resource_type: "User".into(),
            attribute: "userName",
        });
        assert_eq!(
            (err.status, err.scim_type),
            (409, Some(ScimType::Uniqueness))
        );
    }
}
