//! The SCIM endpoint under attack, over real HTTP on 127.0.0.1, on a real SQLite file and a
//! fresh database on the machine's PostgreSQL: passwords never stored or echoed, control
//! characters in userName refused, group names unique case-insensitively, concurrent PATCHes
//! without If-Match all applied, every write audited with its client, expiring and rotated
//! tokens (time from an injected clock), and a client restricted to some groups.

use std::sync::Arc;

use airlock_core::FixedClock;
use airlock_store::{OpenOptions, ScimTokenOptions, Store};
use airlock_testkit::postgres::{fresh_pg_database, PgTestDb};
use anyhow::{ensure, Context as _};
use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Row as _;

const SCIM: &str = "application/scim+json";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Where a test's store lives; dropped (file or database) with the server.
#[allow(dead_code)] // held only so that dropping it removes the file or database
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(PgTestDb),
}

struct Server {
    base: String,
    token: String,
    store: Store,
    url: String,
    clock: Arc<FixedClock>,
    http: reqwest::Client,
    _db: Db,
}

fn start_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("in range")
}

impl Server {
    async fn start(backend: Backend) -> anyhow::Result<Server> {
        let (db, url) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("airlock.db").display());
                (Db::Sqlite(dir), url)
            }
            Backend::Postgres => {
                let pg = fresh_pg_database().await?;
                let url = pg.url().to_owned();
                (Db::Postgres(pg), url)
            }
        };
        let store = Store::open(&url, OpenOptions::create()).await?;
        // One registered consumer, so that every write leaves an outbox row to inspect.
        store
            .scim_register_consumers(&["prod".to_owned()], 1)
            .await?;
        let clock = Arc::new(FixedClock::new(start_time()));
        let (_, token) = store.create_scim_token("idp", 1).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let router = airlock_server::scim_router_with(store.clone(), clock.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Server {
            base: format!("http://{addr}/scim/v2"),
            token,
            store,
            url,
            clock,
            http: reqwest::Client::new(),
            _db: db,
        })
    }

    fn now_ms(&self) -> i64 {
        use airlock_core::Clock as _;
        self.clock.now().timestamp_millis()
    }

    /// Sends `body` as SCIM JSON with `token`; returns the status and the raw body text.
    async fn send_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> anyhow::Result<(StatusCode, String)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.header("content-type", SCIM).body(body.to_string());
        }
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        let response = request.send().await?;
        Ok((response.status(), response.text().await?))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let (status, text) = self.send_as(&self.token, method, path, body, None).await?;
        Ok((status, parse(&text)?))
    }

    async fn create(&self, path: &str, body: Value) -> anyhow::Result<String> {
        let (status, body) = self.send(Method::POST, path, Some(body)).await?;
        ensure!(status == StatusCode::CREATED, "{status}: {body}");
        Ok(body["id"].as_str().context("id")?.to_owned())
    }

    /// Every stored resource and outbox row and audit event, as raw text from the database.
    async fn raw_rows(&self) -> anyhow::Result<Vec<String>> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.url).await?;
        let mut out = Vec::new();
        for sql in [
            "SELECT resource_json FROM scim_resources",
            "SELECT COALESCE(previous_json, '') FROM scim_changes",
            "SELECT event_json FROM audit_events",
        ] {
            for row in sqlx::query(sql).fetch_all(&pool).await? {
                out.push(row.try_get::<String, _>(0)?);
            }
        }
        pool.close().await;
        Ok(out)
    }
}

fn parse(text: &str) -> anyhow::Result<Value> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).with_context(|| format!("body is not JSON: {text}"))
}

fn patch(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

fn is_error(body: &Value, status: &str, scim_type: Option<&str>) -> bool {
    body["schemas"][0] == ERROR
        && body["status"] == status
        && scim_type.is_none_or(|t| body["scimType"] == t)
}

macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() -> anyhow::Result<()> {
                    super::$test(super::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() -> anyhow::Result<()> {
                    super::$test(super::Backend::Postgres).await
                }
            )+
        }
    };
}

on_both_backends!(
    passwords_are_never_stored_in_resources_outbox_or_audit_nor_returned,
    group_display_names_are_unique_and_found_case_insensitively,
    concurrent_membership_patches_without_if_match_all_apply,
    every_scim_write_is_audited_with_its_client_and_the_chain_verifies,
    a_restricted_client_cannot_create_take_over_or_delete_a_foreign_group,
    an_expired_token_is_refused_and_a_rotated_one_works_only_during_its_grace,
    a_token_revoked_by_another_process_is_refused_within_a_second,
    a_restricted_client_cannot_change_or_delete_a_member_of_a_foreign_group,
);

async fn passwords_are_never_stored_in_resources_outbox_or_audit_nor_returned(
    backend: Backend,
) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let secrets = [
        "Post-Secret-1xq",
        "Put-Secret-2xq",
        "Patch-Secret-3xq",
        "Patch-Secret-4xq",
    ];
    let mut responses = Vec::new();
    let (status, text) = server
        .send_as(
            &server.token,
            Method::POST,
            "/Users",
            Some(json!({"schemas": [USER], "userName": "ada", "password": secrets[0]})),
            None,
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status}: {text}");
    let id = parse(&text)?["id"].as_str().context("id")?.to_owned();
    responses.push(text);
    let path = format!("/Users/{id}");
    for (method, body) in [
        (
            Method::PUT,
            json!({"schemas": [USER], "userName": "ada", "PassWord": secrets[1]}),
        ),
        (
            Method::PATCH,
            patch(json!([{"op": "replace", "path": "password", "value": secrets[2]}])),
        ),
        (
            Method::PATCH,
            patch(json!([{"op": "add", "value": {"PASSWORD": secrets[3], "title": "Countess"}}])),
        ),
    ] {
        let (status, text) = server
            .send_as(&server.token, method.clone(), &path, Some(body), None)
            .await?;
        ensure!(status == StatusCode::OK, "{method}: {status}: {text}");
        responses.push(text);
    }
    for query in ["", "?attributes=password", "?attributes=userName,password"] {
        let (status, text) = server
            .send_as(
                &server.token,
                Method::GET,
                &format!("{path}{query}"),
                None,
                None,
            )
            .await?;
        ensure!(status == StatusCode::OK, "{status}: {text}");
        responses.push(text);
    }
    let (_, text) = server
        .send_as(&server.token, Method::GET, "/Users", None, None)
        .await?;
    responses.push(text);
    ensure!(
        parse(&responses[3])?["title"] == "Countess",
        "the rest of the PATCH was applied"
    );

    let rows = server.raw_rows().await?;
    ensure!(
        rows.len() >= 7,
        "resources, outbox rows and audit events: {rows:?}"
    );
    for secret in secrets {
        for row in &rows {
            ensure!(!row.contains(secret), "the store holds a password: {row}");
        }
        for text in &responses {
            ensure!(
                !text.contains(secret),
                "a response echoed a password: {text}"
            );
        }
    }
    for row in &rows {
        ensure!(
            !row.to_ascii_lowercase().contains("\"password\""),
            "a password attribute was stored: {row}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn control_characters_in_user_name_are_refused_on_post_put_and_patch() -> anyhow::Result<()> {
    let server = Server::start(Backend::Sqlite).await?;
    let id = server
        .create("/Users", json!({"schemas": [USER], "userName": "grace"}))
        .await?;
    let path = format!("/Users/{id}");
    for bad in [
        "nul\u{0}x",
        "new\nline",
        "\u{1b}[2Jroot",
        "tab\tbed",
        "c1\u{9b}x",
    ] {
        let attempts = [
            (
                Method::POST,
                "/Users".to_owned(),
                json!({"schemas": [USER], "userName": bad}),
            ),
            (
                Method::PUT,
                path.clone(),
                json!({"schemas": [USER], "userName": bad}),
            ),
            (
                Method::PATCH,
                path.clone(),
                patch(json!([{"op": "replace", "path": "userName", "value": bad}])),
            ),
            (
                Method::PATCH,
                path.clone(),
                patch(json!([{"op": "replace", "value": {"userName": bad}}])),
            ),
        ];
        for (method, path, body) in attempts {
            let (status, body) = server.send(method.clone(), &path, Some(body)).await?;
            ensure!(
                status == StatusCode::BAD_REQUEST && is_error(&body, "400", Some("invalidValue")),
                "{method} {bad:?}: {status} {body}"
            );
            ensure!(
                !body.to_string().contains(bad),
                "the error echoes the value: {body}"
            );
        }
    }
    let users = server.store.scim_list("User").await?;
    ensure!(
        users.len() == 1 && users[0]["userName"] == "grace",
        "{users:?}"
    );
    ensure!(
        users[0]["meta"]["version"] == "W/\"1\"",
        "nothing was written"
    );
    Ok(())
}

async fn group_display_names_are_unique_and_found_case_insensitively(
    backend: Backend,
) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let ops = server
        .create("/Groups", json!({"schemas": [GROUP], "displayName": "Ops"}))
        .await?;
    for filter in [
        "displayName eq \"ops\"",
        "displayName eq \"OPS\"",
        "DISPLAYNAME eq \"oPs\"",
    ] {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("filter", filter)
            .finish();
        let (status, body) = server
            .send(Method::GET, &format!("/Groups?{query}"), None)
            .await?;
        ensure!(status == StatusCode::OK, "{status}: {body}");
        ensure!(
            body["totalResults"] == 1 && body["Resources"][0]["id"] == ops.as_str(),
            "{filter}: {body}"
        );
    }
    for name in ["OPS", "ops", "oPS"] {
        let (status, body) = server
            .send(
                Method::POST,
                "/Groups",
                Some(json!({"schemas": [GROUP], "displayName": name})),
            )
            .await?;
        ensure!(
            status == StatusCode::CONFLICT && is_error(&body, "409", Some("uniqueness")),
            "{name}: {status} {body}"
        );
    }
    // Renaming another group onto it, in another case, is refused too.
    let dev = server
        .create("/Groups", json!({"schemas": [GROUP], "displayName": "dev"}))
        .await?;
    let (status, body) = server
        .send(
            Method::PATCH,
            &format!("/Groups/{dev}"),
            Some(patch(
                json!([{"op": "replace", "path": "displayName", "value": "OPS"}]),
            )),
        )
        .await?;
    ensure!(
        status == StatusCode::CONFLICT && is_error(&body, "409", Some("uniqueness")),
        "{status} {body}"
    );
    // A group may change the case of its own name.
    let (status, body) = server
        .send(
            Method::PATCH,
            &format!("/Groups/{ops}"),
            Some(patch(
                json!([{"op": "replace", "path": "displayName", "value": "OPS"}]),
            )),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status} {body}");
    ensure!(server.store.scim_list("Group").await?.len() == 2);
    Ok(())
}

async fn concurrent_membership_patches_without_if_match_all_apply(
    backend: Backend,
) -> anyhow::Result<()> {
    const PATCHES: usize = 320;
    const IN_FLIGHT: usize = 16;
    let server = Arc::new(Server::start(backend).await?);
    let group = server
        .create(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "busy"}),
        )
        .await?;
    let path = format!("/Groups/{group}");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (server, path, next) = (server.clone(), path.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= PATCHES {
                    return failures;
                }
                let body = patch(json!([{"op": "add", "path": "members", "value": [{"value": format!("member-{i}")}]}]));
                match server.send(Method::PATCH, &path, Some(body)).await {
                    Ok((StatusCode::OK, _)) => {}
                    Ok((status, body)) => failures.push(format!("patch {i}: {status} {body}")),
                    Err(err) => failures.push(format!("patch {i}: {err:#}")),
                }
            }
        }));
    }
    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await?);
    }
    ensure!(
        failures.is_empty(),
        "{} of {PATCHES} patches failed, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    let (_, body) = server.send(Method::GET, &path, None).await?;
    let members: std::collections::BTreeSet<String> = body["members"]
        .as_array()
        .context("members")?
        .iter()
        .filter_map(|m| m["value"].as_str().map(str::to_owned))
        .collect();
    let expected: std::collections::BTreeSet<String> =
        (0..PATCHES).map(|i| format!("member-{i}")).collect();
    ensure!(
        members == expected,
        "lost members: {:?}",
        expected.difference(&members).collect::<Vec<_>>()
    );
    ensure!(
        body["meta"]["version"] == format!("W/\"{}\"", PATCHES + 1),
        "{}",
        body["meta"]
    );
    // A client that does send If-Match still gets 412 for a stale version.
    let (status, text) = server
        .send_as(
            &server.token,
            Method::PATCH,
            &path,
            Some(patch(
                json!([{"op": "add", "path": "members", "value": [{"value": "late"}]}]),
            )),
            Some("W/\"1\""),
        )
        .await?;
    ensure!(
        status == StatusCode::PRECONDITION_FAILED,
        "{status}: {text}"
    );
    Ok(())
}

/// (operation, actor) of every audit event, in order.
async fn audit_trail(store: &Store) -> anyhow::Result<Vec<(String, String, String)>> {
    let events = store.audit_events(1, 10_000).await?;
    Ok(events
        .into_iter()
        .map(|e| {
            let outcome = serde_json::to_value(&e.outcome).unwrap_or_default()["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (e.operation, e.actor, outcome)
        })
        .collect())
}

async fn every_scim_write_is_audited_with_its_client_and_the_chain_verifies(
    backend: Backend,
) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let user = server
        .create("/Users", json!({"schemas": [USER], "userName": "ada"}))
        .await?;
    let group = server
        .create(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "eng", "members": [{"value": user}]}),
        )
        .await?;
    for (method, path, body) in [
        (
            Method::PUT,
            format!("/Users/{user}"),
            Some(json!({"schemas": [USER], "userName": "ada", "active": false})),
        ),
        (
            Method::PATCH,
            format!("/Users/{user}"),
            Some(patch(
                json!([{"op": "replace", "path": "active", "value": true}]),
            )),
        ),
        (
            Method::PUT,
            format!("/Groups/{group}"),
            Some(json!({"schemas": [GROUP], "displayName": "eng"})),
        ),
        (
            Method::PATCH,
            format!("/Groups/{group}"),
            Some(patch(
                json!([{"op": "add", "path": "members", "value": [{"value": user}]}]),
            )),
        ),
        (Method::DELETE, format!("/Groups/{group}"), None),
        (Method::DELETE, format!("/Users/{user}"), None),
    ] {
        let (status, body) = server.send(method.clone(), &path, body).await?;
        ensure!(status.is_success(), "{method} {path}: {status} {body}");
    }
    let ops = [
        "scim_user.create",
        "scim_group.create",
        "scim_user.replace",
        "scim_user.patch",
        "scim_group.replace",
        "scim_group.patch",
        "scim_group.delete",
        "scim_user.delete",
    ];
    let trail = audit_trail(&server.store).await?;
    // The first event is the test's own token issue (create_scim_token, actor "operator").
    ensure!(
        trail[0]
            == (
                "scim_token.create".into(),
                "operator".into(),
                "succeeded".into()
            ),
        "{trail:?}"
    );
    let writes: Vec<(String, String, String)> = trail[1..].to_vec();
    let expected: Vec<(String, String, String)> = ops
        .iter()
        .map(|op| {
            (
                op.to_string(),
                "scim:idp".to_owned(),
                "succeeded".to_owned(),
            )
        })
        .collect();
    ensure!(writes == expected, "{writes:?}");
    // The membership change names the member added.
    let events = server.store.audit_events(1, 100).await?;
    let group_patch = events
        .iter()
        .find(|e| e.operation == "scim_group.patch")
        .context("group patch event")?;
    let after = group_patch.after.clone().context("after")?;
    ensure!(
        after["members_added"] == 1 && after["added"] == json!([user]),
        "{after}"
    );
    // A failed write (404) is not an event.
    let (status, _) = server
        .send(Method::DELETE, &format!("/Users/{user}"), None)
        .await?;
    ensure!(status == StatusCode::NOT_FOUND);
    ensure!(audit_trail(&server.store).await?.len() == trail.len());
    let verdict = server.store.verify_audit().await?;
    let summary = verdict.map_err(|b| anyhow::anyhow!("chain broken: {b:?}"))?;
    ensure!(summary.count == trail.len() as u64);
    Ok(())
}

async fn a_restricted_client_cannot_create_take_over_or_delete_a_foreign_group(
    backend: Backend,
) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let options = ScimTokenOptions {
        lifetime_ms: None,
        groups: Some(vec!["eng-*".to_owned(), "data-*".to_owned()]),
    };
    let (_, low) = server
        .store
        .issue_scim_token("low-trust", &options, "operator:test", 2)
        .await?;
    let forbidden = |status: StatusCode, text: &str| -> anyhow::Result<()> {
        ensure!(status == StatusCode::FORBIDDEN, "{status}: {text}");
        ensure!(is_error(&parse(text)?, "403", None), "{text}");
        ensure!(
            !text.contains("Admins"),
            "the error echoes the name: {text}"
        );
        Ok(())
    };
    // Creating a group named like an Admin grant: refused, nothing stored.
    for name in ["Admins", "admins"] {
        let (status, text) = server
            .send_as(
                &low,
                Method::POST,
                "/Groups",
                Some(json!({"schemas": [GROUP], "displayName": name})),
                None,
            )
            .await?;
        forbidden(status, &text)?;
    }
    ensure!(server.store.scim_list("Group").await?.is_empty());

    // Its own groups are fine; renaming one into a foreign name is not.
    let (status, text) = server
        .send_as(
            &low,
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "ENG-tools"})),
            None,
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status}: {text}");
    let eng = parse(&text)?["id"].as_str().context("id")?.to_owned();
    for body in [
        patch(json!([{"op": "replace", "path": "displayName", "value": "Admins"}])),
        patch(json!([{"op": "replace", "value": {"displayName": "Admins"}}])),
    ] {
        let (status, text) = server
            .send_as(
                &low,
                Method::PATCH,
                &format!("/Groups/{eng}"),
                Some(body),
                None,
            )
            .await?;
        forbidden(status, &text)?;
    }
    let (status, text) = server
        .send_as(
            &low,
            Method::PUT,
            &format!("/Groups/{eng}"),
            Some(json!({"schemas": [GROUP], "displayName": "Admins"})),
            None,
        )
        .await?;
    forbidden(status, &text)?;

    // A group the trusted client made: the restricted one can neither join it nor change or
    // delete it.
    let admins = server
        .create(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "Admins"}),
        )
        .await?;
    let mallory = server
        .create("/Users", json!({"schemas": [USER], "userName": "mallory"}))
        .await?;
    let path = format!("/Groups/{admins}");
    let attempts = [
        (
            Method::PATCH,
            Some(patch(
                json!([{"op": "add", "path": "members", "value": [{"value": mallory}]}]),
            )),
        ),
        (
            Method::PUT,
            Some(
                json!({"schemas": [GROUP], "displayName": "Admins", "members": [{"value": mallory}]}),
            ),
        ),
        (Method::DELETE, None),
    ];
    for (method, body) in attempts {
        let (status, text) = server.send_as(&low, method, &path, body, None).await?;
        forbidden(status, &text)?;
    }
    let stored = server
        .store
        .scim_get("Group", &admins)
        .await?
        .context("Admins still exists")?;
    ensure!(stored.version == 1 && stored.resource.get("members").is_none());
    let eng_stored = server.store.scim_get("Group", &eng).await?.context("eng")?;
    ensure!(eng_stored.resource["displayName"] == "ENG-tools");

    // A user in no foreign group is still the client's to create and write.
    let (status, text) = server
        .send_as(
            &low,
            Method::POST,
            "/Users",
            Some(json!({"schemas": [USER], "userName": "hr-hire"})),
            None,
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status}: {text}");

    // The refusals are in the audit chain under the restricted client's name.
    let trail = audit_trail(&server.store).await?;
    let refused: Vec<&(String, String, String)> = trail
        .iter()
        .filter(|(_, actor, outcome)| actor == "scim:low-trust" && outcome == "refused")
        .collect();
    ensure!(refused.len() == 8, "{trail:?}");
    ensure!(server.store.verify_audit().await?.is_ok());
    Ok(())
}

/// A replica remembers an accepted token for at most `TOKEN_CACHE_MS` (a second): one
/// revoked elsewhere (the CLI, another replica: another store handle) is refused once that
/// has passed, and one that expires meanwhile is refused at its expiry, not a second later.
async fn a_token_revoked_by_another_process_is_refused_within_a_second(
    backend: Backend,
) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let elsewhere = Store::open(&server.url, OpenOptions::default()).await?;
    let get = |token: String| {
        let server = &server;
        async move {
            let (status, _) = server
                .send_as(&token, Method::GET, "/Users", None, None)
                .await?;
            anyhow::Ok(status)
        }
    };
    let ttl = Duration::milliseconds(airlock_store::TOKEN_CACHE_MS);
    ensure!(get(server.token.clone()).await? == StatusCode::OK);
    elsewhere
        .revoke_scim_token_by("idp", "operator:test", server.now_ms())
        .await?;
    server.clock.advance(ttl);
    ensure!(
        get(server.token.clone()).await? == StatusCode::UNAUTHORIZED,
        "a token revoked elsewhere still works a second later"
    );

    // Expiry is never stretched by what was remembered.
    let options = ScimTokenOptions {
        lifetime_ms: Some(ttl.num_milliseconds() / 2),
        groups: None,
    };
    let (_, short) = elsewhere
        .issue_scim_token("short", &options, "operator:test", server.now_ms())
        .await?;
    ensure!(get(short.clone()).await? == StatusCode::OK);
    server.clock.advance(ttl / 2);
    ensure!(get(short).await? == StatusCode::UNAUTHORIZED);
    Ok(())
}

/// The attack: a low-trust identity provider renames a member of the trusted IdP's Admins
/// group to a person of its own (who would then hold the Admin account), or deactivates or
/// deletes an administrator. Each is a 403, audited under its name, and the user is
/// unchanged; the users it provisions itself, in its own groups, stay its to write.
async fn a_restricted_client_cannot_change_or_delete_a_member_of_a_foreign_group(
    backend: Backend,
) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let options = ScimTokenOptions {
        lifetime_ms: None,
        groups: Some(vec!["eng-*".to_owned()]),
    };
    let (_, low) = server
        .store
        .issue_scim_token("low-trust", &options, "operator:test", 2)
        .await?;
    let ada = server
        .create("/Users", json!({"schemas": [USER], "userName": "ada"}))
        .await?;
    server
        .create(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "Admins", "members": [{"value": ada}]}),
        )
        .await?;
    let path = format!("/Users/{ada}");
    let attempts = [
        (
            Method::PATCH,
            Some(patch(
                json!([{"op": "replace", "path": "userName", "value": "mallory"}]),
            )),
        ),
        (
            Method::PATCH,
            Some(patch(
                json!([{"op": "replace", "value": {"active": false}}]),
            )),
        ),
        (
            Method::PUT,
            Some(json!({"schemas": [USER], "userName": "mallory"})),
        ),
        (Method::DELETE, None),
    ];
    for (method, body) in attempts {
        let (status, text) = server
            .send_as(&low, method.clone(), &path, body, None)
            .await?;
        ensure!(
            status == StatusCode::FORBIDDEN,
            "{method}: {status}: {text}"
        );
        ensure!(is_error(&parse(&text)?, "403", None), "{text}");
    }
    let stored = server.store.scim_get("User", &ada).await?.context("ada")?;
    ensure!(
        stored.version == 1 && stored.resource["userName"] == "ada",
        "{}",
        stored.resource
    );

    // Its own user, in its own group: still its to change.
    let (status, text) = server
        .send_as(
            &low,
            Method::POST,
            "/Users",
            Some(json!({"schemas": [USER], "userName": "hire"})),
            None,
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status}: {text}");
    let hire = parse(&text)?["id"].as_str().context("id")?.to_owned();
    let (status, text) = server
        .send_as(
            &low,
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "eng-tools", "members": [{"value": hire}]})),
            None,
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status}: {text}");
    let (status, text) = server
        .send_as(
            &low,
            Method::PATCH,
            &format!("/Users/{hire}"),
            Some(patch(
                json!([{"op": "replace", "value": {"active": false}}]),
            )),
            None,
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status}: {text}");
    // The trusted client is not restricted.
    let (status, text) = server
        .send_as(
            &server.token,
            Method::PATCH,
            &path,
            Some(patch(
                json!([{"op": "replace", "value": {"active": false}}]),
            )),
            None,
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status}: {text}");

    let trail = audit_trail(&server.store).await?;
    let refused = trail
        .iter()
        .filter(|(_, actor, outcome)| actor == "scim:low-trust" && outcome == "refused")
        .count();
    ensure!(refused == 4, "{trail:?}");
    Ok(())
}

async fn an_expired_token_is_refused_and_a_rotated_one_works_only_during_its_grace(
    backend: Backend,
) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let status_with = |token: String| {
        let server = &server;
        async move {
            let (status, text) = server
                .send_as(&token, Method::GET, "/Users", None, None)
                .await?;
            if status == StatusCode::UNAUTHORIZED {
                ensure!(is_error(&parse(&text)?, "401", None), "{text}");
                ensure!(!text.contains(&token), "the token is echoed: {text}");
            }
            anyhow::Ok(status)
        }
    };
    let hour = Duration::hours(1).num_milliseconds();
    let options = ScimTokenOptions {
        lifetime_ms: Some(hour),
        groups: None,
    };
    let (_, short) = server
        .store
        .issue_scim_token("short", &options, "operator:test", server.now_ms())
        .await?;
    ensure!(status_with(short.clone()).await? == StatusCode::OK);
    server.clock.advance(Duration::minutes(59));
    ensure!(status_with(short.clone()).await? == StatusCode::OK);
    server.clock.advance(Duration::minutes(1));
    ensure!(status_with(short.clone()).await? == StatusCode::UNAUTHORIZED);

    // Rotation: the old token keeps working for the grace, then stops; the new one works and
    // lives as long as the client's tokens were issued for.
    let (_, old) = server
        .store
        .issue_scim_token("okta", &options, "operator:test", server.now_ms())
        .await?;
    let rotation = server
        .store
        .rotate_scim_token_with(
            "okta",
            Duration::minutes(10).num_milliseconds(),
            None,
            "operator:test",
            server.now_ms(),
        )
        .await?;
    let new = rotation.secret.clone();
    ensure!(rotation.expires_ms == Some(server.now_ms() + hour));
    ensure!(status_with(old.clone()).await? == StatusCode::OK);
    ensure!(status_with(new.clone()).await? == StatusCode::OK);
    server.clock.advance(Duration::minutes(9));
    ensure!(status_with(old.clone()).await? == StatusCode::OK);
    server.clock.advance(Duration::minutes(1));
    ensure!(status_with(old.clone()).await? == StatusCode::UNAUTHORIZED);
    ensure!(status_with(new.clone()).await? == StatusCode::OK);

    // Revoking ends a rotated token's grace too.
    let rotation = server
        .store
        .rotate_scim_token_with("okta", hour, None, "operator:test", server.now_ms())
        .await?;
    ensure!(status_with(new.clone()).await? == StatusCode::OK);
    server
        .store
        .revoke_scim_token_by("okta", "operator:test", server.now_ms())
        .await?;
    ensure!(status_with(new).await? == StatusCode::UNAUTHORIZED);
    ensure!(status_with(rotation.secret).await? == StatusCode::UNAUTHORIZED);

    let trail = audit_trail(&server.store).await?;
    let token_ops: Vec<&str> = trail
        .iter()
        .filter(|(_, actor, _)| actor == "operator:test")
        .map(|(op, _, _)| op.as_str())
        .collect();
    ensure!(
        token_ops
            == [
                "scim_token.create",
                "scim_token.create",
                "scim_token.rotate",
                "scim_token.rotate",
                "scim_token.revoke"
            ],
        "{trail:?}"
    );
    Ok(())
}
