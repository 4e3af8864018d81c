//! The handlers of `/api/v1`. Each one authenticates ([`Authed`]), reads the directory, asks
//! the one decision function what the caller may do, and calls the engine; failures are
//! [`ApiError`]s, turned into problems in one place (`problem`).
//!
//! A request the caller may not read is answered 404, as if it did not exist.

use crate::auth::{Authed, Principal};
use crate::views::{
    AccessAtView, AccountView, AuditPage, CreateRequest, Decision, Extension, InstanceView, MeView,
    Page, PersonView, RequestView,
};
use crate::{Api, ApiError, API_BASE_PATH, DEFAULT_PAGE, MAX_BODY_BYTES, MAX_PAGE};
use airlock_core::access::{self, AccessRequest, Action, Draft, Labels, RequestId, Scope};
use airlock_core::directory::{DirectorySnapshot, PersonId};
use airlock_core::RoleName;
use airlock_engine::access::Governance;
use airlock_store::RequestFilter;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

pub(crate) type Shared = Arc<Api>;

/// The longest an API request may take before it is answered 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Store pages read at most to fill one page of requests the caller may see.
const SCAN_PAGES: usize = 10;
/// The longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 200;

pub(crate) fn router(api: Shared) -> Router {
    let routes = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/me", get(me))
        .route("/requests", get(list_requests).post(create_request))
        .route("/requests/{id}", get(get_request))
        .route("/requests/{id}/approve", post(approve))
        .route("/requests/{id}/deny", post(deny))
        .route("/requests/{id}/cancel", post(cancel))
        .route("/requests/{id}/revoke", post(revoke))
        .route("/requests/{id}/extend", post(extend))
        .route("/grants", get(grants))
        .route("/people", get(people))
        .route("/people/{id}", get(one_person))
        .route("/instances", get(instances))
        .route("/instances/{name}/accounts", get(accounts))
        .route("/audit", get(audit))
        .route("/access", get(access_at))
        .fallback(not_found)
        .layer(middleware::map_response(method_not_allowed))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(time_limit))
        .with_state(api);
    Router::new().nest(API_BASE_PATH, routes)
}

async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!("api request timed out; answering 503");
            ApiError::Unavailable("the request took too long; a change either happened whole or not at all, retry later".into())
                .into_response()
        }
    }
}

/// axum's own 405 (empty body) as a problem.
async fn method_not_allowed(response: Response) -> Response {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && response.headers().get(header::CONTENT_TYPE).is_none()
    {
        let allow = response.headers().get(header::ALLOW).cloned();
        let mut r =
            ApiError::MethodNotAllowed("this method is not allowed here".into()).into_response();
        if let Some(allow) = allow {
            r.headers_mut().insert(header::ALLOW, allow);
        }
        return r;
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such API route; see /api/v1/openapi.json".into())
}

/// The request context of one call: the caller, the directory it is decided with.
struct Call<'a> {
    api: &'a Api,
    who: Principal,
    directory: Arc<DirectorySnapshot>,
}

impl<'a> Call<'a> {
    /// The call of `who`, who must be active in the directory if they are a person (deny by
    /// default: a leaver's token opens nothing, not even `/me`).
    async fn new(api: &'a Api, who: Principal) -> Result<Call<'a>, ApiError> {
        let directory = api.directory.get().await?;
        let call = Call {
            api,
            who,
            directory,
        };
        call.active()?;
        Ok(call)
    }

    fn labels(&self) -> Labels<'_> {
        self.api
            .instances
            .iter()
            .map(|i| (&i.name, &i.labels))
            .collect()
    }

    fn may(&self, action: Action<'_>) -> Result<(), ApiError> {
        access::authorize_caller(
            &self.api.policy,
            &self.labels(),
            &self.directory,
            self.who.caller(),
            action,
        )
        .map_err(ApiError::from)
    }

    fn governance(&self) -> Governance<'_> {
        Governance {
            policy: &self.api.policy,
            instances: &self.api.instances,
            store: &self.api.store,
            clock: self.api.clock.as_ref(),
            via: self.who.via(),
        }
    }

    /// The acting person, if any, is active in the directory (a token without a person acts
    /// for no one and passes).
    fn active(&self) -> Result<(), ApiError> {
        match self.who.person() {
            Some(p) => access::active(&self.directory, p)
                .map(|_| ())
                .map_err(ApiError::from),
            None => Ok(()),
        }
    }

    /// The acting person, when the only requests they may read are their own: no rule makes
    /// them an approver, and they read nothing else (`authorize`'s `Read`).
    fn only_own(&self) -> Option<&PersonId> {
        let id = self.who.person()?;
        let person = self.directory.people.get(id)?;
        let approves = (self.api.policy.rules.iter()).any(|r| r.approvers.include(person));
        (!approves && self.may(Action::ReadAll).is_err()).then_some(id)
    }

    /// The person acting, for an action that needs one.
    fn person(&self) -> Result<&PersonId, ApiError> {
        self.who.person().ok_or_else(|| {
            ApiError::Forbidden("a token that acts as no person may only read".into())
        })
    }

    /// The request `id`, if the caller may read it (404 otherwise, as if it did not exist).
    async fn readable(&self, id: &str) -> Result<AccessRequest, ApiError> {
        let r = self.governance().get(id).await?;
        match self.may(Action::Read(&r)) {
            Ok(()) => Ok(r),
            Err(_) => Err(ApiError::NotFound(format!("no access request has id {id}"))),
        }
    }

    fn view(&self, r: &AccessRequest) -> RequestView {
        RequestView::of(r, self.api.clock.now())
    }
}

fn json_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::Invalid(format!("the body is not valid: {e}")))
}

fn path_id(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|e| ApiError::Invalid(format!("the path is not valid: {}", e.body_text())))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::Invalid(format!("the query is not valid: {}", e.body_text())))
}

fn limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        _ => Err(ApiError::Invalid(format!(
            "limit must be between 1 and {MAX_PAGE}"
        ))),
    }
}

fn duration(text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.map(|t| {
        airlock_config::parse_duration(t).map_err(|e| ApiError::Invalid(format!("duration: {e}")))
    })
    .transpose()
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This API's OpenAPI 3.1 document")))]
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/api/v1/me", tag = "identity",
    responses((status = 200, body = MeView), (status = 401, body = crate::Problem)),
    security(("bearer" = [])))]
async fn me(State(api): State<Shared>, Authed(who): Authed) -> Result<Json<MeView>, ApiError> {
    let call = Call::new(&api, who).await?;
    let person = call
        .who
        .person()
        .and_then(|id| call.directory.people.get(id))
        .map(PersonView::from);
    let (kind, token, scopes, token_groups) = match &call.who {
        Principal::Person { groups, .. } => ("person", None, vec![], groups.clone()),
        Principal::Token { name, scopes, .. } => (
            "token",
            Some(name.clone()),
            scopes.iter().map(|s| s.name().to_owned()).collect(),
            vec![],
        ),
    };
    Ok(Json(MeView {
        kind: kind.into(),
        person,
        token,
        scopes,
        token_groups,
        reads_all_requests: call.may(Action::ReadAll).is_ok(),
        reads_directory: call.may(Action::ReadDirectory).is_ok(),
        reads_audit: call.may(Action::ReadAudit).is_ok(),
    }))
}

/// `GET /requests` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RequestQuery {
    /// Only requests in this state.
    state: Option<String>,
    /// Only this requester's (directory id).
    requester: Option<String>,
    /// The previous page's `next`.
    after: Option<String>,
    /// Items per page (1 to 1000, default 100).
    limit: Option<usize>,
}

const STATES: &[&str] = access::State::NAMES;

/// Requests the caller may read, in id (creation) order, from after `after`.
async fn visible(
    call: &Call<'_>,
    mut filter: RequestFilter,
    want: usize,
    keep: impl Fn(&AccessRequest) -> bool,
) -> Result<Page<RequestView>, ApiError> {
    let all = call.may(Action::ReadAll).is_ok();
    let mut items = Vec::new();
    for _ in 0..SCAN_PAGES {
        filter.limit = airlock_store::MAX_PAGE;
        let page = call.governance().list(&filter).await?;
        let full = page.len() == airlock_store::MAX_PAGE;
        for r in &page {
            filter.after = Some(r.id.0.clone());
            if keep(r) && (all || call.may(Action::Read(r)).is_ok()) {
                items.push(call.view(r));
                if items.len() == want {
                    let next = Some(r.id.0.clone());
                    return Ok(Page { items, next });
                }
            }
        }
        if !full {
            return Ok(Page { items, next: None });
        }
    }
    // Many requests the caller may not see: hand back where the scan stopped.
    Ok(Page {
        items,
        next: filter.after,
    })
}

/// The caller may list requests at all: a person (active, as every call's), or a token with
/// `requests:read`.
fn may_list(call: &Call<'_>) -> Result<(), ApiError> {
    if let Principal::Token { scopes, .. } = &call.who {
        if !scopes.contains(&Scope::ReadRequests) {
            return Err(ApiError::Forbidden(format!(
                "this token lacks the scope {}",
                Scope::ReadRequests
            )));
        }
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/requests", tag = "requests", params(RequestQuery),
    responses((status = 200, body = Page<RequestView>), (status = 400, body = crate::Problem),
        (status = 401, body = crate::Problem), (status = 403, body = crate::Problem)),
    security(("bearer" = [])))]
async fn list_requests(
    State(api): State<Shared>,
    Authed(who): Authed,
    q: Result<Query<RequestQuery>, QueryRejection>,
) -> Result<Json<Page<RequestView>>, ApiError> {
    let q = query(q)?;
    let want = limit(q.limit)?;
    if let Some(s) = &q.state {
        if !STATES.contains(&s.as_str()) {
            return Err(ApiError::Invalid(format!(
                "state: one of {}",
                STATES.join(", ")
            )));
        }
    }
    let call = Call::new(&api, who).await?;
    may_list(&call)?;
    let mut requester = q.requester;
    if let Some(own) = call.only_own() {
        // Someone who approves nothing and reads nothing else sees their own requests: ask
        // the store for those alone, not every request to filter.
        match &requester {
            Some(r) if r != &own.0 => {
                return Ok(Json(Page {
                    items: vec![],
                    next: None,
                }))
            }
            _ => requester = Some(own.0.clone()),
        }
    }
    let filter = RequestFilter {
        states: q.state.into_iter().collect(),
        requester,
        after: q.after,
        limit: 0,
    };
    Ok(Json(visible(&call, filter, want, |_| true).await?))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .filter(|k| k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::Invalid(format!(
                "Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

fn created(call: &Call<'_>, r: &AccessRequest) -> Response {
    let mut resp = (StatusCode::CREATED, Json(call.view(r))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{API_BASE_PATH}/requests/{}", r.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[utoipa::path(post, path = "/api/v1/requests", tag = "requests", request_body = CreateRequest,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Retrying with the same key and body returns the first request; another body is 409")),
    responses((status = 201, body = RequestView), (status = 400, body = crate::Problem),
        (status = 403, body = crate::Problem), (status = 409, body = crate::Problem),
        (status = 422, description = "refused by the access policy", body = crate::Problem)),
    security(("bearer" = [])))]
async fn create_request(
    State(api): State<Shared>,
    Authed(who): Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let ask: CreateRequest = json_body(&body)?;
    if ask.roles.is_empty() {
        return Err(ApiError::Invalid("roles: name at least one role".into()));
    }
    let call = Call::new(&api, who).await?;
    call.may(Action::Request)?;
    let requester = call.person()?.clone();
    let roles = (ask.roles.iter())
        .map(|r| RoleName::new(r).map_err(|e| ApiError::Invalid(format!("roles: {e}"))))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let labels: Vec<(String, String)> = ask.labels.into_iter().collect();
    let instances = airlock_engine::access::select_instances(
        &api.instances,
        &ask.instances,
        &labels,
        ("instances", "labels"),
    )
    .map_err(ApiError::Invalid)?;
    let draft = Draft {
        roles,
        instances,
        duration_secs: duration(ask.duration.as_deref())?,
        reason: ask.reason,
        ticket: ask.ticket,
        extends: None,
    };
    let r = call
        .governance()
        .request(&call.directory, &requester, draft, key.as_deref())
        .await?;
    Ok(created(&call, &r))
}

#[utoipa::path(get, path = "/api/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "The request's id")),
    responses((status = 200, body = RequestView), (status = 404, body = crate::Problem)),
    security(("bearer" = [])))]
async fn get_request(
    State(api): State<Shared>,
    Authed(who): Authed,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<RequestView>, ApiError> {
    let id = path_id(id)?;
    let call = Call::new(&api, who).await?;
    let r = call.readable(&id).await?;
    Ok(Json(call.view(&r)))
}

/// What a decision endpoint does.
#[derive(Clone, Copy)]
enum Decide {
    Approve,
    Deny,
    Revoke,
    Cancel,
}

async fn decide(
    api: &Api,
    who: Principal,
    id: Result<Path<String>, PathRejection>,
    body: &Bytes,
    what: Decide,
) -> Result<Json<RequestView>, ApiError> {
    let id = path_id(id)?;
    let decision: Decision = json_body(body)?;
    let call = Call::new(api, who).await?;
    let r = call.readable(&id).await?;
    call.may(match what {
        Decide::Approve | Decide::Deny => Action::Decide(&r),
        Decide::Revoke => Action::Revoke(&r),
        Decide::Cancel => Action::Cancel(&r),
    })?;
    let by = call.person()?;
    let gov = call.governance();
    let d = &call.directory;
    let next = match what {
        Decide::Approve => gov.approve(d, &id, by, decision.comment).await?,
        Decide::Deny => gov.deny(d, &id, by, decision.comment).await?,
        Decide::Revoke => gov.revoke(d, &id, by, decision.comment).await?,
        Decide::Cancel => gov.cancel(&id, by).await?,
    };
    Ok(Json(call.view(&next)))
}

#[utoipa::path(post, path = "/api/v1/requests/{id}/approve", tag = "requests",
    params(("id" = String, Path)), request_body(content = Decision, description = "optional"),
    responses((status = 200, body = RequestView), (status = 403, body = crate::Problem),
        (status = 404, body = crate::Problem), (status = 409, body = crate::Problem)),
    security(("bearer" = [])))]
async fn approve(
    State(api): State<Shared>,
    Authed(who): Authed,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<RequestView>, ApiError> {
    decide(&api, who, id, &body, Decide::Approve).await
}

#[utoipa::path(post, path = "/api/v1/requests/{id}/deny", tag = "requests",
    params(("id" = String, Path)), request_body(content = Decision, description = "optional"),
    responses((status = 200, body = RequestView), (status = 403, body = crate::Problem),
        (status = 404, body = crate::Problem), (status = 409, body = crate::Problem)),
    security(("bearer" = [])))]
async fn deny(
    State(api): State<Shared>,
    Authed(who): Authed,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<RequestView>, ApiError> {
    decide(&api, who, id, &body, Decide::Deny).await
}

#[utoipa::path(post, path = "/api/v1/requests/{id}/cancel", tag = "requests",
    params(("id" = String, Path)),
    responses((status = 200, body = RequestView), (status = 403, body = crate::Problem),
        (status = 404, body = crate::Problem), (status = 409, body = crate::Problem)),
    security(("bearer" = [])))]
async fn cancel(
    State(api): State<Shared>,
    Authed(who): Authed,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<RequestView>, ApiError> {
    decide(&api, who, id, &body, Decide::Cancel).await
}

#[utoipa::path(post, path = "/api/v1/requests/{id}/revoke", tag = "requests",
    params(("id" = String, Path)), request_body(content = Decision, description = "optional"),
    responses((status = 200, body = RequestView), (status = 403, body = crate::Problem),
        (status = 404, body = crate::Problem), (status = 409, body = crate::Problem)),
    security(("bearer" = [])))]
async fn revoke(
    State(api): State<Shared>,
    Authed(who): Authed,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<RequestView>, ApiError> {
    decide(&api, who, id, &body, Decide::Revoke).await
}

#[utoipa::path(post, path = "/api/v1/requests/{id}/extend", tag = "requests",
    params(("id" = String, Path, description = "The grant to extend")),
    request_body(content = Extension, description = "optional"),
    responses((status = 201, description = "A new request for the same roles and instances", body = RequestView),
        (status = 403, body = crate::Problem), (status = 404, body = crate::Problem),
        (status = 422, body = crate::Problem)),
    security(("bearer" = [])))]
async fn extend(
    State(api): State<Shared>,
    Authed(who): Authed,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let ext: Extension = json_body(&body)?;
    let call = Call::new(&api, who).await?;
    let earlier = call.readable(&id).await?;
    call.may(Action::Request)?;
    let requester = call.person()?.clone();
    if earlier.requester != requester {
        return Err(ApiError::Forbidden(format!(
            "only the requester of {id} can extend it"
        )));
    }
    let draft = Draft {
        roles: earlier.roles.clone(),
        instances: earlier.instances.clone(),
        duration_secs: duration(ext.duration.as_deref())?,
        reason: ext.reason.or(earlier.reason.clone()),
        ticket: earlier.ticket.clone(),
        extends: Some(RequestId(id)),
    };
    let r = call
        .governance()
        .request(&call.directory, &requester, draft, None)
        .await?;
    Ok(created(&call, &r))
}

#[utoipa::path(get, path = "/api/v1/grants", tag = "requests",
    responses((status = 200, description = "Grants in force now that the caller may read", body = Page<RequestView>)),
    security(("bearer" = [])))]
async fn grants(
    State(api): State<Shared>,
    Authed(who): Authed,
) -> Result<Json<Page<RequestView>>, ApiError> {
    let call = Call::new(&api, who).await?;
    may_list(&call)?;
    let now = api.clock.now();
    let all = call.may(Action::ReadAll).is_ok();
    let items = airlock_engine::access::grants(&api.store)
        .await?
        .iter()
        .filter(|r| r.active_at(now).is_some())
        .filter(|r| all || call.may(Action::Read(r)).is_ok())
        .map(|r| call.view(r))
        .collect();
    Ok(Json(Page { items, next: None }))
}

/// Paging parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// The previous page's `next`.
    after: Option<String>,
    /// Items per page (1 to 1000, default 100).
    limit: Option<usize>,
    /// Only items whose id, username, email or name contains this (ASCII case ignored).
    q: Option<String>,
}

fn page_of<T>(mut items: Vec<T>, want: usize, key: impl Fn(&T) -> String) -> Page<T> {
    if items.len() > want {
        items.truncate(want);
        let next = items.last().map(&key);
        Page { items, next }
    } else {
        Page { items, next: None }
    }
}

#[utoipa::path(get, path = "/api/v1/people", tag = "directory", params(PageQuery),
    responses((status = 200, body = Page<PersonView>), (status = 403, body = crate::Problem)),
    security(("bearer" = [])))]
async fn people(
    State(api): State<Shared>,
    Authed(who): Authed,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Page<PersonView>>, ApiError> {
    let q = query(q)?;
    let want = limit(q.limit)?;
    let call = Call::new(&api, who).await?;
    call.may(Action::ReadDirectory)?;
    let needle = q.q.map(|s| s.to_ascii_lowercase());
    let start = q.after.map(PersonId);
    let range = match &start {
        Some(after) => call
            .directory
            .people
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
        None => call.directory.people.range(..),
    };
    let items: Vec<PersonView> = range
        .map(|(_, p)| PersonView::from(p))
        .filter(|p| {
            needle.as_deref().is_none_or(|n| {
                [
                    Some(&p.id),
                    Some(&p.username),
                    p.email.as_ref(),
                    p.name.as_ref(),
                ]
                .into_iter()
                .flatten()
                .any(|v| v.to_ascii_lowercase().contains(n))
            })
        })
        .take(want + 1)
        .collect();
    Ok(Json(page_of(items, want, |p| p.id.clone())))
}

#[utoipa::path(get, path = "/api/v1/people/{id}", tag = "directory",
    params(("id" = String, Path, description = "Directory id")),
    responses((status = 200, body = PersonView), (status = 404, body = crate::Problem)),
    security(("bearer" = [])))]
async fn one_person(
    State(api): State<Shared>,
    Authed(who): Authed,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<PersonView>, ApiError> {
    let id = PersonId(path_id(id)?);
    let call = Call::new(&api, who).await?;
    let own = call.who.person() == Some(&id) && matches!(call.who, Principal::Person { .. });
    if !own {
        call.may(Action::ReadDirectory)?;
    }
    call.directory
        .people
        .get(&id)
        .map(|p| Json(PersonView::from(p)))
        .ok_or_else(|| ApiError::NotFound(format!("nobody in the directory has id {id}")))
}

#[utoipa::path(get, path = "/api/v1/instances", tag = "directory",
    responses((status = 200, body = Vec<InstanceView>), (status = 403, body = crate::Problem)),
    security(("bearer" = [])))]
async fn instances(
    State(api): State<Shared>,
    Authed(who): Authed,
) -> Result<Json<Vec<InstanceView>>, ApiError> {
    let call = Call::new(&api, who).await?;
    call.may(Action::ReadDirectory)?;
    let mut out = Vec::new();
    for i in &api.instances {
        let last = api
            .store
            .latest_complete_snapshots(i.name.as_str(), 1)
            .await?
            .into_iter()
            .next();
        out.push(InstanceView {
            name: i.name.to_string(),
            labels: i.labels.clone(),
            last_inventory_at: last
                .as_ref()
                .and_then(|s| chrono::DateTime::from_timestamp_millis(s.finished_at_ms)),
            accounts: last
                .as_ref()
                .and_then(|s| usize::try_from(s.meta.user_count).ok()),
            airflow_version: last.map(|s| s.meta.airflow_version),
        });
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/instances/{name}/accounts", tag = "directory",
    params(("name" = String, Path, description = "The instance"), PageQuery),
    responses((status = 200, body = Page<AccountView>), (status = 403, body = crate::Problem),
        (status = 404, body = crate::Problem)),
    security(("bearer" = [])))]
async fn accounts(
    State(api): State<Shared>,
    Authed(who): Authed,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Page<AccountView>>, ApiError> {
    let name = path_id(name)?;
    let q = query(q)?;
    let want = limit(q.limit)?;
    let call = Call::new(&api, who).await?;
    call.may(Action::ReadDirectory)?;
    if !api.instances.iter().any(|i| i.name.as_str() == name) {
        return Err(ApiError::NotFound(format!(
            "no instance named {name} is configured"
        )));
    }
    let Some(last) = api
        .store
        .latest_complete_snapshots(&name, 1)
        .await?
        .into_iter()
        .next()
    else {
        return Ok(Json(Page {
            items: vec![],
            next: None,
        }));
    };
    let snapshot: airlock_core::inventory::Snapshot = serde_json::from_str(&last.payload_json)
        .map_err(|e| {
            tracing::error!(instance = %name, error = %e, "api: a stored inventory is unreadable");
            ApiError::Internal(
                "the instance's stored inventory is unreadable; see the server log".into(),
            )
        })?;
    let needle = q.q.map(|s| s.to_ascii_lowercase());
    let items: Vec<AccountView> = snapshot
        .accounts
        .iter()
        .filter(|a| {
            q.after
                .as_deref()
                .is_none_or(|after| a.username.as_str() > after)
        })
        .filter(|a| {
            needle.as_deref().is_none_or(|n| {
                a.username.as_str().to_ascii_lowercase().contains(n)
                    || a.email.to_ascii_lowercase().contains(n)
            })
        })
        .take(want + 1)
        .map(|a| AccountView {
            username: a.username.as_str().to_owned(),
            email: a.email.clone(),
            roles: a.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            active: a.active,
            last_login: a.last_login,
        })
        .collect();
    Ok(Json(page_of(items, want, |a| a.username.clone())))
}

/// `GET /audit` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Events after this sequence number (the previous page's `next`; default 0).
    after: Option<u64>,
    /// Events per page (1 to 1000, default 100).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = crate::Problem)),
    security(("bearer" = [])))]
async fn audit(
    State(api): State<Shared>,
    Authed(who): Authed,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let q = query(q)?;
    let want = limit(q.limit)?;
    let call = Call::new(&api, who).await?;
    call.may(Action::ReadAudit)?;
    let from = q.after.unwrap_or(0).saturating_add(1);
    let events = api
        .store
        .audit_events(from, u32::try_from(want).unwrap_or(1000))
        .await?;
    let next = (events.len() == want)
        .then(|| events.last().map(|e| e.seq.to_string()))
        .flatten();
    let items = events
        .iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    Ok(Json(AuditPage { items, next }))
}

/// `GET /access` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AccessAtQuery {
    /// The moment, RFC 3339 (default: now).
    at: Option<String>,
    /// Only this instance (default: every instance ever observed).
    instance: Option<String>,
    /// Only holders of this role.
    role: Option<String>,
    /// Only this person: an Airflow username or an email.
    person: Option<String>,
}

/// Who had access to what at a moment, from the observations airlock recorded (every complete
/// inventory snapshot), with what each instance's answer rests on. For auditors and admins.
#[utoipa::path(get, path = "/api/v1/access", tag = "audit", params(AccessAtQuery),
    responses((status = 200, body = AccessAtView), (status = 400, body = crate::Problem),
        (status = 403, body = crate::Problem)),
    security(("bearer" = [])))]
async fn access_at(
    State(api): State<Shared>,
    Authed(who): Authed,
    q: Result<Query<AccessAtQuery>, QueryRejection>,
) -> Result<Json<AccessAtView>, ApiError> {
    let q = query(q)?;
    let call = Call::new(&api, who).await?;
    call.may(Action::ReadAudit)?;
    let at = match q.at.as_deref() {
        None => api.clock.now(),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| {
                ApiError::Invalid("at: not an RFC 3339 time such as 2026-12-01T00:00:00Z".into())
            })?,
    };
    let role = (q.role.as_deref())
        .map(RoleName::new)
        .transpose()
        .map_err(|e| ApiError::Invalid(format!("role: {e}")))?;
    let filter = airlock_core::history::Filter {
        role,
        person: q.person,
    };
    let instances: Vec<String> = q.instance.into_iter().collect();
    let answer = airlock_engine::history::access_at(&api.store, at, &instances, &filter).await?;
    Ok(Json(AccessAtView::from(&answer)))
}
