//! A JumpCloud imitation for tests: the three routes the source reads, served by axum on
//! 127.0.0.1 from in-memory data, with key checks, `Link` headers, injectable faults and a record
//! of every request and every body served (for the spec checks in `spec.rs`).
//!
//! It is deliberately strict where JumpCloud is documented (limit at most 100, `fields`
//! projection, sort keys it supports) and answers 400 to anything it does not understand, so a
//! client mistake shows up as a failing test rather than a silently wrong page.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

/// v1 system users.
pub const USERS_ROUTE: &str = "/api/systemusers";
/// v2 user groups.
pub const GROUPS_ROUTE: &str = "/api/v2/usergroups";
/// v2 members of one user group (axum and OpenAPI share the `{param}` syntax).
pub const MEMBERS_ROUTE: &str = "/api/v2/usergroups/{group_id}/members";
/// Every route the fixture serves, with its method.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", USERS_ROUTE),
    ("get", GROUPS_ROUTE),
    ("get", MEMBERS_ROUTE),
];

/// The key the fixture accepts.
pub const API_KEY: &str = "jc-fixture-key-5e1f0a77c2b94d3e";

/// One of the served routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Users,
    Groups,
    Members,
}

impl Route {
    pub fn template(self) -> &'static str {
        match self {
            Route::Users => USERS_ROUTE,
            Route::Groups => GROUPS_ROUTE,
            Route::Members => MEMBERS_ROUTE,
        }
    }
}

/// What to do to a request instead of (or before) answering it normally.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answer this status with a small JSON error body.
    Status(u16),
    /// Answer 429 with `Retry-After: secs`.
    TooManyRequests { retry_after_secs: u64 },
    /// Send the first half of the body, then break the connection.
    TruncatedBody,
    /// Answer 200 with a body that is not JSON.
    MalformedJson,
    /// Answer 200 with JSON of the wrong shape.
    WrongShape,
    /// Wait this long, then answer normally.
    Hang(Duration),
    /// Leave the last item off the page (keeping `totalCount` and `Link`).
    ShortPage,
    /// Answer 200 with a JSON body of this many bytes, streamed without a `Content-Length`
    /// (an endless or hostile answer).
    Huge(usize),
}

/// One user group and its members.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub name: String,
    /// `(id, type)`: type is `user` unless a test wants otherwise.
    pub members: Vec<(String, String)>,
}

/// What the fixture serves.
#[derive(Debug, Clone, Default)]
pub struct Data {
    /// Full `systemuserreturn` objects.
    pub users: Vec<Value>,
    pub groups: Vec<Group>,
}

pub fn user_id(n: usize) -> String {
    format!("5f0c{n:020x}")
}

pub fn group_id(n: usize) -> String {
    format!("6a1d{n:020x}")
}

impl Data {
    /// 250 users (3 pages of 100), some suspended, locked, staged or from before `state`
    /// existed; 106 groups (2 pages), two with more than 100 members and one empty.
    pub fn standard() -> Self {
        let mut users = Vec::new();
        for n in 0..250 {
            let mut user = json!({
                "_id": user_id(n),
                "username": format!("user{n:03}"),
                "email": format!("user{n:03}@example.com"),
                "firstname": format!("First{n}"),
                "lastname": format!("Last{n}"),
                "state": "ACTIVATED",
                "activated": true,
                "suspended": false,
                "account_locked": false,
                "department": "Data",
                "displayname": format!("First{n} Last{n}"),
                "created": "2024-01-02T03:04:05.000Z",
                "unix_uid": 5000 + n,
                "mfa": {"configured": false, "exclusion": false},
            });
            let fields = user.as_object_mut().expect("invariant: a json object");
            match n % 10 {
                1 => {
                    fields.insert("state".into(), json!("SUSPENDED"));
                    fields.insert("suspended".into(), json!(true));
                }
                2 => {
                    fields.insert("account_locked".into(), json!(true));
                    fields.insert("account_locked_date".into(), Value::Null);
                }
                3 => {
                    fields.insert("state".into(), json!("STAGED"));
                    fields.insert("activated".into(), json!(false));
                }
                _ => {}
            }
            if n % 25 == 4 {
                fields.remove("state");
            }
            if n % 25 == 5 {
                fields.remove("state");
                fields.insert("activated".into(), json!(false));
            }
            if n % 40 == 6 {
                fields.insert("firstname".into(), json!(""));
                fields.remove("lastname");
            }
            users.push(user);
        }
        let user = |n: usize| (user_id(n), "user".to_owned());
        let mut groups = vec![
            Group {
                id: group_id(0),
                name: "airflow-admins".into(),
                members: (0..150).map(user).collect(),
            },
            Group {
                id: group_id(1),
                name: "airflow-viewers".into(),
                members: (100..220).rev().map(user).collect(),
            },
            Group {
                id: group_id(2),
                name: "data-eng".into(),
                members: (240..250).map(user).collect(),
            },
            Group {
                id: group_id(3),
                name: "empty-group".into(),
                members: Vec::new(),
            },
        ];
        for t in 0..102 {
            let mut members = vec![user(t * 7 % 250)];
            if t * 13 % 250 != t * 7 % 250 {
                members.push(user(t * 13 % 250));
            }
            groups.push(Group {
                id: group_id(100 + t),
                name: format!("team-{t:03}"),
                members,
            });
        }
        // Stored out of name order: the fixture sorts only when asked to.
        groups.reverse();
        Data { users, groups }
    }
}

/// A request as the fixture received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub route: Route,
    pub method: String,
    pub path: String,
    /// Decoded query pairs, in order, repeated names kept.
    pub query: Vec<(String, String)>,
    /// Lowercase header names and values (`x-api-key` values redacted).
    pub headers: Vec<(String, String)>,
}

/// A 200 body the fixture sent.
#[derive(Debug, Clone)]
pub struct Served {
    pub route: Route,
    pub body: Value,
}

type Mutation = Box<dyn FnOnce(&mut Data) + Send>;

struct Shared {
    base: String,
    api_key: String,
    org_id: Option<String>,
    data: Mutex<Data>,
    faults: Mutex<HashMap<Route, VecDeque<Fault>>>,
    always: Mutex<HashMap<Route, Fault>>,
    links: Mutex<HashSet<Route>>,
    link_base: Mutex<Option<String>>,
    mutations: Mutex<Vec<(Route, usize, Option<Mutation>)>>,
    requests: Mutex<Vec<Recorded>>,
    served: Mutex<Vec<Served>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fixture; stops when dropped.
pub struct Fixture {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fixture {
    /// Serves `data`, accepting [`API_KEY`], `Link` on the groups list only.
    pub async fn start(data: Data) -> Self {
        Self::start_with(data, None).await
    }

    /// Serves `data` and, when `org_id` is set, insists on that `x-org-id`.
    pub async fn start_with(data: Data, org_id: Option<&str>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fixture on 127.0.0.1");
        let addr = listener.local_addr().expect("fixture address");
        let shared = Arc::new(Shared {
            base: format!("http://{addr}"),
            api_key: API_KEY.to_owned(),
            org_id: org_id.map(str::to_owned),
            data: Mutex::new(data),
            faults: Mutex::default(),
            always: Mutex::default(),
            links: Mutex::new(HashSet::from([Route::Groups])),
            link_base: Mutex::default(),
            mutations: Mutex::default(),
            requests: Mutex::default(),
            served: Mutex::default(),
        });
        let app = Router::new()
            .route(USERS_ROUTE, get(users))
            .route(GROUPS_ROUTE, get(groups))
            .route(MEMBERS_ROUTE, get(members))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fixture serves");
        });
        Fixture { addr, shared, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).expect("fixture url")
    }

    /// The next `times` requests to `route` meet `fault`.
    pub fn inject(&self, route: Route, fault: Fault, times: usize) {
        let mut faults = lock(&self.shared.faults);
        let queue = faults.entry(route).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    /// Every request to `route` meets `fault`.
    pub fn inject_always(&self, route: Route, fault: Fault) {
        lock(&self.shared.always).insert(route, fault);
    }

    /// Whether `route` answers with `Link: <...>; rel="next"` when more pages follow.
    pub fn set_links(&self, route: Route, on: bool) {
        let mut links = lock(&self.shared.links);
        if on {
            links.insert(route);
        } else {
            links.remove(&route);
        }
    }

    /// Makes next links point at another origin.
    pub fn set_link_base(&self, base: &str) {
        *lock(&self.shared.link_base) = Some(base.to_owned());
    }

    /// Changes the data once `after` answers to `route` have been served.
    pub fn mutate_after(
        &self,
        route: Route,
        after: usize,
        change: impl FnOnce(&mut Data) + Send + 'static,
    ) {
        lock(&self.shared.mutations).push((route, after, Some(Box::new(change))));
    }

    /// Changes the data now.
    pub fn mutate(&self, change: impl FnOnce(&mut Data)) {
        change(&mut lock(&self.shared.data));
    }

    pub fn data(&self) -> Data {
        lock(&self.shared.data).clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    pub fn requests_to(&self, route: Route) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.route == route)
            .count()
    }

    pub fn served(&self) -> Vec<Served> {
        lock(&self.shared.served).clone()
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

/// Records, checks credentials and applies a pending fault; `Err` is the answer to send.
async fn admit(
    shared: &Shared,
    route: Route,
    path: String,
    headers: &HeaderMap,
    query: &Option<String>,
) -> Result<(Option<Fault>, Vec<(String, String)>), Response> {
    let recorded_headers = headers
        .iter()
        .map(|(name, value)| {
            let value = if name.as_str() == "x-api-key" {
                "<redacted>".to_owned()
            } else {
                value.to_str().unwrap_or("<binary>").to_owned()
            };
            (name.as_str().to_owned(), value)
        })
        .collect();
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    lock(&shared.requests).push(Recorded {
        route,
        method: "GET".into(),
        path,
        query: pairs.clone(),
        headers: recorded_headers,
    });
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(shared.api_key.as_str()) {
        return Err(error(StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    if let Some(org) = &shared.org_id {
        match headers.get("x-org-id").and_then(|v| v.to_str().ok()) {
            None => return Err(error(StatusCode::UNAUTHORIZED, "ID not included")),
            Some(sent) if sent != org => {
                return Err(error(StatusCode::NOT_FOUND, "Organization ID Not Found"))
            }
            Some(_) => {}
        }
    }
    let fault = lock(&shared.faults)
        .get_mut(&route)
        .and_then(VecDeque::pop_front)
        .or_else(|| lock(&shared.always).get(&route).copied());
    match fault {
        Some(Fault::Status(code)) => Err(error(
            StatusCode::from_u16(code).expect("a valid status"),
            "injected failure",
        )),
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            response.headers_mut().insert(
                "retry-after",
                HeaderValue::from_str(&retry_after_secs.to_string()).expect("digits"),
            );
            Err(response)
        }
        Some(Fault::MalformedJson) => Err((
            StatusCode::OK,
            [("content-type", "application/json")],
            "<html><body>upstream hiccup</body></html>",
        )
            .into_response()),
        Some(Fault::Huge(size)) => {
            let chunk = Bytes::from(" ".repeat(64 << 10));
            let chunks = size.div_ceil(chunk.len());
            let stream = futures::stream::iter(
                std::iter::once(Bytes::from_static(b"["))
                    .chain(std::iter::repeat_n(chunk, chunks))
                    .map(Ok::<_, std::io::Error>),
            );
            Err((
                StatusCode::OK,
                [("content-type", "application/json")],
                Body::from_stream(stream),
            )
                .into_response())
        }
        Some(Fault::WrongShape) => Err((
            StatusCode::OK,
            axum::Json(json!({ "unexpected": { "shape": true } })),
        )
            .into_response()),
        Some(Fault::Hang(wait)) => {
            tokio::time::sleep(wait).await;
            Ok((None, pairs))
        }
        other => Ok((other, pairs)),
    }
}

/// Sends a 200 JSON body, applying a truncation fault and recording what was served.
fn answer(
    shared: &Shared,
    route: Route,
    fault: Option<Fault>,
    body: Value,
    link: Option<String>,
) -> Response {
    let text = serde_json::to_vec(&body).expect("json encodes");
    let mut response = if matches!(fault, Some(Fault::TruncatedBody)) {
        // Headers and half the body go out; then the connection breaks.
        let half = Bytes::copy_from_slice(&text[..text.len() / 2]);
        let first = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(half) });
        let cut = futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected truncation",
            ))
        });
        Response::new(Body::from_stream(futures::StreamExt::chain(first, cut)))
    } else {
        lock(&shared.served).push(Served { route, body });
        Response::new(Body::from(text))
    };
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(link) = link {
        response
            .headers_mut()
            .insert("link", HeaderValue::from_str(&link).expect("link is text"));
    }
    let mut mutations = lock(&shared.mutations);
    for (on, after, change) in mutations.iter_mut() {
        if *on == route {
            *after = after.saturating_sub(1);
            if *after == 0 {
                if let Some(change) = change.take() {
                    change(&mut lock(&shared.data));
                }
            }
        }
    }
    response
}

/// `limit` (default 10, at most 100) and `skip` (default 0); `Err` says what is wrong.
fn paging(query: &[(String, String)]) -> Result<(usize, usize), &'static str> {
    let get = |name: &str, default: usize| -> Result<usize, &'static str> {
        match query.iter().find(|(k, _)| k == name) {
            None => Ok(default),
            Some((_, v)) => v.parse().map_err(|_| "bad paging parameter"),
        }
    };
    let limit = get("limit", 10)?;
    if limit > 100 {
        return Err("limit must be at most 100");
    }
    Ok((limit, get("skip", 0)?))
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn project(item: &Value, fields: Option<&[&str]>, always: &str) -> Value {
    let Some(fields) = fields else {
        return item.clone();
    };
    let object = item.as_object().expect("invariant: items are objects");
    let kept: Map<String, Value> = object
        .iter()
        .filter(|(k, _)| k.as_str() == always || fields.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(kept)
}

fn page<T: Clone>(items: &[T], skip: usize, limit: usize, fault: Option<Fault>) -> Vec<T> {
    let mut page: Vec<T> = items.iter().skip(skip).take(limit).cloned().collect();
    if matches!(fault, Some(Fault::ShortPage)) {
        page.pop();
    }
    page
}

/// `<base path?query with skip moved on>; rel="next"` when more items follow.
fn next_link(
    shared: &Shared,
    route: Route,
    path: &str,
    query: &[(String, String)],
    skip: usize,
    limit: usize,
    total: usize,
) -> Option<String> {
    if !lock(&shared.links).contains(&route) || skip + limit >= total {
        return None;
    }
    let base = lock(&shared.link_base)
        .clone()
        .unwrap_or_else(|| shared.base.clone());
    let mut url = url::Url::parse(&format!("{base}{path}")).expect("link url");
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query {
            if k == "skip" {
                pairs.append_pair(k, &(skip + limit).to_string());
            } else {
                pairs.append_pair(k, v);
            }
        }
        if param(query, "skip").is_none() {
            pairs.append_pair("skip", &(skip + limit).to_string());
        }
    }
    Some(format!("<{url}>; rel=\"next\""))
}

async fn users(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let route = Route::Users;
    let (fault, query) = match admit(&shared, route, USERS_ROUTE.into(), &headers, &raw).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let (limit, skip) = match paging(&query) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    if param(&query, "filter").is_some() || param(&query, "search").is_some() {
        return error(StatusCode::BAD_REQUEST, "the fixture does not filter");
    }
    let mut all = lock(&shared.data).users.clone();
    match param(&query, "sort").unwrap_or("") {
        "" => {}
        "_id" => all.sort_by(|a, b| a["_id"].as_str().cmp(&b["_id"].as_str())),
        _ => return error(StatusCode::BAD_REQUEST, "the fixture sorts only by _id"),
    }
    let fields: Option<Vec<&str>> = param(&query, "fields")
        .filter(|f| !f.is_empty())
        .map(|f| f.split(' ').collect());
    let results: Vec<Value> = page(&all, skip, limit, fault)
        .iter()
        .map(|u| project(u, fields.as_deref(), "_id"))
        .collect();
    let body = json!({ "results": results, "totalCount": all.len() });
    answer(&shared, route, fault, body, None)
}

async fn groups(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let route = Route::Groups;
    let (fault, query) = match admit(&shared, route, GROUPS_ROUTE.into(), &headers, &raw).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let (limit, skip) = match paging(&query) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let mut all: Vec<Group> = lock(&shared.data).groups.clone();
    match param(&query, "sort").unwrap_or("") {
        "" => {}
        "name" => all.sort_by(|a, b| a.name.cmp(&b.name)),
        _ => return error(StatusCode::BAD_REQUEST, "the fixture sorts only by name"),
    }
    let fields: Option<Vec<&str>> = param(&query, "fields")
        .filter(|f| !f.is_empty())
        .map(|f| f.split(',').collect());
    let items: Vec<Value> = page(&all, skip, limit, fault)
        .iter()
        .map(|g| {
            let full = json!({
                "id": g.id,
                "name": g.name,
                "type": "user_group",
                "description": format!("{} (fixture)", g.name),
                "membershipMethod": "STATIC",
                "attributes": {"sudo": {"enabled": false, "withoutPassword": false}},
            });
            project(&full, fields.as_deref(), "id")
        })
        .collect();
    let link = next_link(&shared, route, GROUPS_ROUTE, &query, skip, limit, all.len());
    answer(&shared, route, fault, Value::Array(items), link)
}

async fn members(
    State(shared): State<Arc<Shared>>,
    Path(group): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let route = Route::Members;
    let path = format!("/api/v2/usergroups/{group}/members");
    let (fault, query) = match admit(&shared, route, path.clone(), &headers, &raw).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let (limit, skip) = match paging(&query) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let found = lock(&shared.data)
        .groups
        .iter()
        .find(|g| g.id == group)
        .map(|g| g.members.clone());
    let Some(all) = found else {
        return error(StatusCode::NOT_FOUND, "group not found");
    };
    let items: Vec<Value> = page(&all, skip, limit, fault)
        .iter()
        .map(|(id, kind)| json!({ "to": { "id": id, "type": kind } }))
        .collect();
    let link = next_link(&shared, route, &path, &query, skip, limit, all.len());
    answer(&shared, route, fault, Value::Array(items), link)
}
