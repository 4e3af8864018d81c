//! The SCIM endpoint over real HTTP: the router served alone on 127.0.0.1 with a real SQLite
//! store in a temporary directory, driven the way Entra ID, Okta and JumpCloud drive it.

use airlock_store::{OpenOptions, Store};
use anyhow::{ensure, Context as _};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SCIM: &str = "application/scim+json";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

struct Server {
    base: String,
    token: String,
    store: Store,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("airlock.db").display());
        let store = Store::open(&url, OpenOptions::create()).await?;
        let (_, token) = store.create_scim_token("idp", 1).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let router = airlock_server::scim_router(store.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Server {
            base: format!("http://{addr}/scim/v2"),
            token,
            store,
            http: reqwest::Client::new(),
            _dir: dir,
        })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends `body` as SCIM JSON and returns the status, the ETag and the parsed body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Option<String>, Value)> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.header("content-type", SCIM).body(body.to_string());
        }
        read(request.send().await?).await
    }

    async fn create_user(&self, user_name: &str) -> anyhow::Result<String> {
        let (status, _, body) = self
            .send(
                Method::POST,
                "/Users",
                Some(json!({"schemas": [USER], "userName": user_name, "active": true})),
            )
            .await?;
        ensure!(status == StatusCode::CREATED, "{status}: {body}");
        Ok(body["id"].as_str().context("id")?.to_owned())
    }

    async fn create_group(&self, name: &str, members: &[&str]) -> anyhow::Result<String> {
        let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
        let (status, _, body) = self
            .send(
                Method::POST,
                "/Groups",
                Some(json!({"schemas": [GROUP], "displayName": name, "members": members})),
            )
            .await?;
        ensure!(status == StatusCode::CREATED, "{status}: {body}");
        Ok(body["id"].as_str().context("id")?.to_owned())
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, _, body) = self.send(Method::GET, path, None).await?;
        ensure!(status == StatusCode::OK, "{status}: {body}");
        Ok(body)
    }
}

async fn read(response: reqwest::Response) -> anyhow::Result<(StatusCode, Option<String>, Value)> {
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await?;
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).with_context(|| format!("body is not JSON: {text}"))?
    };
    Ok((status, etag, body))
}

fn patch(operations: Value) -> Option<Value> {
    Some(json!({"schemas": [PATCH_OP], "Operations": operations}))
}

fn is_error(body: &Value, status: &str) -> bool {
    body["schemas"][0] == "urn:ietf:params:scim:api:messages:2.0:Error" && body["status"] == status
}

fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_created_user_is_returned_with_location_etag_and_can_be_read_back() -> anyhow::Result<()>
{
    let server = Server::start().await?;
    let response = server
        .request(Method::POST, "/Users")
        .header("content-type", SCIM)
        .body(
            json!({"schemas": [USER], "userName": "Ada@Example.com", "password": "hunter2",
                   "name": {"givenName": "Ada", "familyName": "Lovelace"}})
            .to_string(),
        )
        .send()
        .await?;
    ensure!(response.status() == StatusCode::CREATED);
    let location = response
        .headers()
        .get("location")
        .context("location header")?
        .to_str()?
        .to_owned();
    let (_, etag, created) = read(response).await?;
    let id = created["id"].as_str().context("id")?;
    ensure!(location == format!("/scim/v2/Users/{id}"), "{location}");
    ensure!(etag.as_deref() == Some("W/\"1\""), "{etag:?}");
    ensure!(created["meta"]["resourceType"] == "User");
    ensure!(
        created.get("password").is_none(),
        "password is never returned"
    );
    let read_back = server.get(&format!("/Users/{id}")).await?;
    ensure!(read_back == created);
    let projected = server
        .get(&format!("/Users/{id}?attributes=userName"))
        .await?;
    ensure!(projected.get("name").is_none() && projected["userName"] == "Ada@Example.com");
    Ok(())
}

/// The store answers the common lists itself (a page without a filter, `id`, `userName` and
/// `externalId` lookups, also as one term of an `and`); whatever it does, the answer is the
/// one filtering, sorting and paging every stored resource gives.
#[tokio::test]
async fn lists_the_store_answers_itself_equal_filtering_everything() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let mut ids = Vec::new();
    for i in 0..15 {
        let (status, _, body) = server
            .send(
                Method::POST,
                "/Users",
                Some(
                    json!({"schemas": [USER], "userName": format!("User{i:02}@example.com"),
                    "externalId": format!("ext-{}", i % 5), "active": i % 3 != 0}),
                ),
            )
            .await?;
        ensure!(status == StatusCode::CREATED, "{status}: {body}");
        ids.push(body["id"].as_str().context("id")?.to_owned());
    }
    let queries = [
        String::new(),
        "startIndex=1&count=4".into(),
        "startIndex=5&count=4".into(),
        "startIndex=14&count=4".into(),
        "startIndex=40&count=4".into(),
        "startIndex=0&count=0".into(),
        "count=500".into(),
        "startIndex=3&attributes=userName".into(),
        format!("filter=id eq \"{}\"", ids[7]),
        "filter=id eq \"nope\"".into(),
        "filter=userName eq \"user03@EXAMPLE.com\"".into(),
        "filter=externalId eq \"ext-2\"".into(),
        "filter=externalId eq \"EXT-2\"".into(),
        "filter=externalId eq \"ext-1\" and active eq true&count=1&startIndex=2".into(),
        "filter=active eq true and userName eq \"user04@example.com\"".into(),
        "filter=externalId eq \"ext-1\" and userName eq \"user02@example.com\"".into(),
        "filter=userName sw \"user1\"&sortBy=userName&sortOrder=descending".into(),
        "sortBy=userName&sortOrder=descending&count=3".into(),
    ];
    let everything = server.store.scim_list("User").await?;
    for query in &queries {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let parsed = airlock_scim::ListQuery::from_params(
            airlock_scim::ResourceType::User,
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        let expected = airlock_scim::list_response(
            airlock_scim::ResourceType::User,
            &everything,
            &parsed,
            airlock_server::scim::MAX_RESULTS,
        )?;
        let encoded: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish();
        let got = server.get(&format!("/Users?{encoded}")).await?;
        ensure!(got == expected, "{query}: got {got}\nexpected {expected}");
    }
    Ok(())
}

#[tokio::test]
async fn a_user_name_filter_matches_case_insensitively_and_lists_page() -> anyhow::Result<()> {
    let server = Server::start().await?;
    for name in ["ada@example.com", "grace@example.com", "alan@example.com"] {
        server.create_user(name).await?;
    }
    let list = server
        .get("/Users?filter=userName%20eq%20%22Ada@Example.com%22")
        .await?;
    ensure!(list["totalResults"] == 1, "{list}");
    ensure!(list["Resources"][0]["userName"] == "ada@example.com");

    let page = server.get("/Users?startIndex=2&count=1").await?;
    ensure!(
        page["totalResults"] == 3 && page["startIndex"] == 2,
        "{page}"
    );
    ensure!(page["Resources"].as_array().map(Vec::len) == Some(1));
    ensure!(page["Resources"][0]["userName"] == "grace@example.com");

    let excluded = server
        .get("/Users?excludedAttributes=active&filter=userName%20sw%20%22a%22")
        .await?;
    ensure!(excluded["totalResults"] == 2, "{excluded}");
    ensure!(excluded["Resources"][0].get("active").is_none());

    let (status, _, body) = server
        .send(Method::GET, "/Users?filter=userName%20eq", None)
        .await?;
    ensure!(status == StatusCode::BAD_REQUEST && body["scimType"] == "invalidFilter");
    Ok(())
}

#[tokio::test]
async fn a_duplicate_user_name_in_any_case_is_a_uniqueness_conflict() -> anyhow::Result<()> {
    let server = Server::start().await?;
    server.create_user("ada@example.com").await?;
    let (status, _, body) = server
        .send(
            Method::POST,
            "/Users",
            Some(json!({"schemas": [USER], "userName": "ADA@example.com"})),
        )
        .await?;
    ensure!(status == StatusCode::CONFLICT, "{status}");
    ensure!(
        is_error(&body, "409") && body["scimType"] == "uniqueness",
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn put_replaces_the_user_and_bumps_the_etag() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let id = server.create_user("ada").await?;
    let (status, etag, body) = server
        .send(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(
                json!({"schemas": [USER], "userName": "ada", "active": false,
                        "emails": [{"value": "ada@example.com", "primary": true}]}),
            ),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status}: {body}");
    ensure!(etag.as_deref() == Some("W/\"2\""));
    ensure!(body["active"] == false && body["id"] == id.as_str());
    ensure!(server.get(&format!("/Users/{id}")).await? == body);
    Ok(())
}

#[tokio::test]
async fn okta_deactivates_with_a_replace_of_active_false() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let id = server.create_user("ada").await?;
    let (status, _, body) = server
        .send(
            Method::PATCH,
            &format!("/Users/{id}"),
            patch(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status}: {body}");
    ensure!(server.get(&format!("/Users/{id}")).await?["active"] == false);
    Ok(())
}

#[tokio::test]
async fn entra_capitalised_ops_and_string_booleans_are_understood() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let id = server.create_user("ada").await?;
    let (status, _, body) = server
        .send(
            Method::PATCH,
            &format!("/Users/{id}"),
            patch(json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": "displayName", "value": "Ada L"},
            ])),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status}: {body}");
    let user = server.get(&format!("/Users/{id}")).await?;
    ensure!(
        user["active"] == false && user["displayName"] == "Ada L",
        "{user}"
    );
    Ok(())
}

#[tokio::test]
async fn okta_removes_a_group_member_with_a_value_filter() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let ada = server.create_user("ada").await?;
    let grace = server.create_user("grace").await?;
    let group = server.create_group("eng", &[&ada, &grace]).await?;
    let (status, _, body) = server
        .send(
            Method::PATCH,
            &format!("/Groups/{group}"),
            patch(json!([{"op": "remove", "path": format!("members[value eq \"{ada}\"]")}])),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status}: {body}");
    ensure!(member_ids(&server.get(&format!("/Groups/{group}")).await?) == vec![grace]);
    Ok(())
}

#[tokio::test]
async fn entra_removes_group_members_by_listing_their_values() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let ada = server.create_user("ada").await?;
    let grace = server.create_user("grace").await?;
    let alan = server.create_user("alan").await?;
    let group = server.create_group("eng", &[&ada, &grace, &alan]).await?;
    let (status, _, body) = server
        .send(
            Method::PATCH,
            &format!("/Groups/{group}"),
            patch(json!([{"op": "Remove", "path": "members",
                          "value": [{"value": ada}, {"value": alan}]}])),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status}: {body}");
    ensure!(member_ids(&server.get(&format!("/Groups/{group}")).await?) == vec![grace]);
    Ok(())
}

#[tokio::test]
async fn a_member_may_be_pushed_before_its_user_but_must_name_one() -> anyhow::Result<()> {
    let server = Server::start().await?;
    // Eventual consistency: an IdP may add the membership before it creates the user.
    let (status, _, _) = server
        .send(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "eng",
                        "members": [{"value": "not-yet-created"}]})),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status}");
    let group = server.create_group("ops", &[]).await?;
    let (status, _, body) = server
        .send(
            Method::PATCH,
            &format!("/Groups/{group}"),
            patch(json!([{"op": "add", "path": "members", "value": [{"display": "no value"}]}])),
        )
        .await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status}");
    ensure!(body["scimType"] == "invalidValue", "{body}");
    ensure!(member_ids(&server.get(&format!("/Groups/{group}")).await?).is_empty());
    Ok(())
}

#[tokio::test]
async fn a_patch_that_fails_half_way_leaves_the_resource_unchanged() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let id = server.create_user("ada").await?;
    let before = server.get(&format!("/Users/{id}")).await?;
    let (status, _, body) = server
        .send(
            Method::PATCH,
            &format!("/Users/{id}"),
            patch(json!([
                {"op": "replace", "path": "active", "value": false},
                {"op": "replace", "path": "noSuchAttribute", "value": "x"},
            ])),
        )
        .await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status}: {body}");
    ensure!(is_error(&body, "400"), "{body}");
    ensure!(server.get(&format!("/Users/{id}")).await? == before);
    Ok(())
}

#[tokio::test]
async fn delete_removes_the_resource_and_unknown_ids_are_not_found() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let id = server.create_user("ada").await?;
    let (status, _, _) = server
        .send(Method::DELETE, &format!("/Users/{id}"), None)
        .await?;
    ensure!(status == StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::DELETE] {
        let (status, _, body) = server.send(method, &format!("/Users/{id}"), None).await?;
        ensure!(
            status == StatusCode::NOT_FOUND && is_error(&body, "404"),
            "{body}"
        );
    }
    let (status, _, _) = server
        .send(
            Method::PUT,
            "/Users/unknown",
            Some(json!({"schemas": [USER], "userName": "x"})),
        )
        .await?;
    ensure!(status == StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn a_stale_if_match_is_refused_with_412_on_put_patch_and_delete() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let id = server.create_user("ada").await?;
    let path = format!("/Users/{id}");
    let stale = "W/\"7\"";
    let put = server
        .request(Method::PUT, &path)
        .header("content-type", SCIM)
        .header("if-match", stale)
        .body(json!({"schemas": [USER], "userName": "ada", "active": false}).to_string());
    let patch_request = server
        .request(Method::PATCH, &path)
        .header("content-type", SCIM)
        .header("if-match", stale)
        .body(
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]})
                .to_string(),
        );
    let delete = server
        .request(Method::DELETE, &path)
        .header("if-match", stale);
    for request in [put, patch_request, delete] {
        let (status, _, body) = read(request.send().await?).await?;
        ensure!(
            status == StatusCode::PRECONDITION_FAILED,
            "{status}: {body}"
        );
        ensure!(is_error(&body, "412"));
    }
    let current = server
        .request(Method::PATCH, &path)
        .header("content-type", SCIM)
        .header("if-match", "W/\"1\"")
        .body(
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]})
                .to_string(),
        );
    let (status, etag, _) = read(current.send().await?).await?;
    ensure!(status == StatusCode::OK && etag.as_deref() == Some("W/\"2\""));
    Ok(())
}

#[tokio::test]
async fn missing_invalid_and_revoked_tokens_are_401_and_never_echoed() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let url = format!("{}/Users", server.base);
    let wrong = "airlock_scim_not-a-real-token";
    let (_, revoked) = server.store.create_scim_token("old-idp", 1).await?;
    server.store.revoke_scim_token("old-idp", 2).await?;
    let requests = [
        server.http.get(&url),
        server.http.get(&url).bearer_auth(wrong),
        server.http.get(&url).bearer_auth(&revoked),
        server.http.get(&url).basic_auth("idp", Some(&server.token)),
        server
            .http
            .get(format!("{}/ServiceProviderConfig", server.base)),
    ];
    for request in requests {
        let response = request.send().await?;
        ensure!(response.status() == StatusCode::UNAUTHORIZED);
        let challenge = response
            .headers()
            .get("www-authenticate")
            .context("WWW-Authenticate")?
            .to_str()?
            .to_owned();
        ensure!(challenge.starts_with("Bearer"), "{challenge}");
        let text = response.text().await?;
        for secret in [wrong, revoked.as_str(), server.token.as_str()] {
            ensure!(!text.contains(secret), "token echoed: {text}");
        }
        let body: Value = serde_json::from_str(&text)?;
        ensure!(is_error(&body, "401"), "{body}");
    }
    Ok(())
}

#[tokio::test]
async fn bodies_must_be_json_of_at_most_one_mebibyte() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let user = json!({"schemas": [USER], "userName": "ada"}).to_string();
    let response = server
        .request(Method::POST, "/Users")
        .header("content-type", "text/plain")
        .body(user.clone())
        .send()
        .await?;
    let (status, _, body) = read(response).await?;
    ensure!(status == StatusCode::UNSUPPORTED_MEDIA_TYPE && is_error(&body, "415"));

    let response = server
        .request(Method::POST, "/Users")
        .header("content-type", "application/json; charset=utf-8")
        .body(user)
        .send()
        .await?;
    ensure!(response.status() == StatusCode::CREATED);

    let big = format!(
        "{{\"schemas\": [\"{USER}\"], \"userName\": \"{}\"}}",
        "x".repeat(1024 * 1024 + 1)
    );
    let response = server
        .request(Method::POST, "/Users")
        .header("content-type", SCIM)
        .body(big)
        .send()
        .await?;
    let (status, _, body) = read(response).await?;
    ensure!(
        status == StatusCode::PAYLOAD_TOO_LARGE && is_error(&body, "413"),
        "{status}"
    );

    let response = server
        .request(Method::POST, "/Users")
        .header("content-type", SCIM)
        .body("{\"schemas\": [")
        .send()
        .await?;
    let (status, _, body) = read(response).await?;
    ensure!(status == StatusCode::BAD_REQUEST && body["scimType"] == "invalidSyntax");
    Ok(())
}

#[tokio::test]
async fn the_jumpcloud_test_connection_flow_creates_and_deletes_a_user_and_a_group(
) -> anyhow::Result<()> {
    let server = Server::start().await?;
    let config = server.get("/ServiceProviderConfig").await?;
    ensure!(config["patch"]["supported"] == true && config["etag"]["supported"] == true);
    let user = server.create_user("jctestuser@example.com").await?;
    let group = server.create_group("JC Test Group", &[&user]).await?;
    let found = server
        .get("/Groups?filter=displayName%20eq%20%22JC%20Test%20Group%22")
        .await?;
    ensure!(found["totalResults"] == 1, "{found}");
    for path in [format!("/Groups/{group}"), format!("/Users/{user}")] {
        let (status, _, _) = server.send(Method::DELETE, &path, None).await?;
        ensure!(status == StatusCode::NO_CONTENT, "{path}: {status}");
    }
    ensure!(server.get("/Users").await?["totalResults"] == 0);
    ensure!(server.get("/Groups").await?["totalResults"] == 0);
    Ok(())
}

#[tokio::test]
async fn discovery_endpoints_describe_users_groups_and_their_schemas() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let types = server.get("/ResourceTypes").await?;
    ensure!(types["totalResults"] == 2, "{types}");
    ensure!(types["Resources"][0]["endpoint"] == "/Users");
    let schemas = server.get("/Schemas").await?;
    let ids: Vec<&str> = schemas["Resources"]
        .as_array()
        .context("Resources")?
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    ensure!(ids.contains(&USER) && ids.contains(&GROUP), "{ids:?}");
    let user_name = schemas["Resources"][0]["attributes"]
        .as_array()
        .context("attributes")?
        .iter()
        .find(|a| a["name"] == "userName")
        .context("userName attribute")?;
    ensure!(
        user_name["uniqueness"] == "server" && user_name["required"] == true,
        "{user_name}"
    );
    Ok(())
}

#[tokio::test]
async fn every_listed_resource_type_and_schema_location_answers_the_resource() -> anyhow::Result<()>
{
    let server = Server::start().await?;
    let base_path = "/scim/v2";
    for list in ["/ResourceTypes", "/Schemas"] {
        let listed = server.get(list).await?;
        let resources = listed["Resources"].as_array().context("Resources")?;
        ensure!(!resources.is_empty(), "{listed}");
        for resource in resources {
            let location = resource["meta"]["location"].as_str().context("location")?;
            let path = location.strip_prefix(base_path).context("under /scim/v2")?;
            let one = server.get(path).await?;
            ensure!(one == *resource, "{path}: {one} is not {resource}");
        }
    }
    for unknown in [
        "/ResourceTypes/Device",
        "/Schemas/urn:ietf:params:scim:schemas:core:2.0:Device",
    ] {
        let (status, _, body) = server.send(Method::GET, unknown, None).await?;
        ensure!(
            status == StatusCode::NOT_FOUND && is_error(&body, "404"),
            "{unknown}: {status} {body}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_schemas_declare_the_whole_core_user_and_enterprise_extension() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let names = |schema: &Value| -> Vec<String> {
        schema["attributes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|a| a["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let user = names(&server.get(&format!("/Schemas/{USER}")).await?);
    for name in [
        "userName",
        "name",
        "displayName",
        "nickName",
        "profileUrl",
        "title",
        "userType",
        "preferredLanguage",
        "locale",
        "timezone",
        "active",
        "password",
        "emails",
        "phoneNumbers",
        "ims",
        "photos",
        "addresses",
        "groups",
        "entitlements",
        "roles",
        "x509Certificates",
    ] {
        ensure!(
            user.iter().any(|n| n == name),
            "{name} missing from {user:?}"
        );
    }
    let enterprise = names(&server.get(&format!("/Schemas/{ENTERPRISE}")).await?);
    for name in [
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
        "manager",
    ] {
        ensure!(
            enterprise.iter().any(|n| n == name),
            "{name} missing from {enterprise:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_user_with_every_core_and_enterprise_attribute_is_stored_without_its_password(
) -> anyhow::Result<()> {
    let server = Server::start().await?;
    let (status, _, created) = server
        .send(
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": [USER, ENTERPRISE],
                "userName": "bjensen@example.com",
                "nickName": "Babs",
                "profileUrl": "https://login.example.com/bjensen",
                "title": "Tour Guide",
                "userType": "Employee",
                "preferredLanguage": "en-US",
                "locale": "en-US",
                "timezone": "America/Los_Angeles",
                "password": "t1meMa$heen",
                "phoneNumbers": [{"value": "555-555-5555", "type": "work"}],
                "ims": [{"value": "someaimhandle", "type": "aim"}],
                "photos": [{"value": "https://photos.example.com/p/F", "type": "photo"}],
                "addresses": [{"locality": "Hollywood", "type": "work"}],
                "entitlements": [{"value": "viewer"}],
                "roles": [{"value": "operator"}],
                "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJ"}],
                ENTERPRISE: {
                    "employeeNumber": "701984", "costCenter": "4130",
                    "organization": "Universal Studios", "division": "Theme Park",
                    "department": "Tour Operations",
                    "manager": {"value": "26118915", "$ref": "../Users/26118915", "displayName": "John Smith"},
                },
            })),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status}: {created}");
    let id = created["id"].as_str().context("id")?;
    ensure!(created.get("password").is_none(), "{created}");
    ensure!(created["ims"][0]["value"] == "someaimhandle", "{created}");
    ensure!(created[ENTERPRISE]["costCenter"] == "4130", "{created}");
    // Entra ID writes into the extension with a value object carrying its own `schemas`.
    let (status, _, patched) = server
        .send(
            Method::PATCH,
            &format!("/Users/{id}"),
            patch(json!([{
                "op": "Replace",
                "path": ENTERPRISE,
                "value": {"schemas": [ENTERPRISE], "division": "Studios", "organization": "NBC"},
            }])),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status}: {patched}");
    ensure!(
        patched[ENTERPRISE]["division"] == "Studios" && patched[ENTERPRISE]["costCenter"] == "4130",
        "{patched}"
    );
    let stored = server.store.scim_get("User", id).await?.context("stored")?;
    ensure!(
        !stored.resource.to_string().contains("t1meMa$heen"),
        "{}",
        stored.resource
    );
    Ok(())
}

#[tokio::test]
async fn search_requests_are_answered_with_a_list_response() -> anyhow::Result<()> {
    let server = Server::start().await?;
    for name in ["alice", "bob", "carol"] {
        server.create_user(name).await?;
    }
    server.create_group("Ops", &[]).await?;
    let search = |filter: &str| {
        Some(json!({
            "schemas": [SEARCH],
            "filter": filter,
            "attributes": ["userName", "displayName"],
            "sortBy": "userName",
            "sortOrder": "descending",
            "startIndex": 1,
            "count": 2,
        }))
    };
    let (status, _, users) = server
        .send(
            Method::POST,
            "/Users/.search",
            search("userName ne \"alice\" or userName eq \"alice\""),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status}: {users}");
    ensure!(
        users["schemas"][0] == "urn:ietf:params:scim:api:messages:2.0:ListResponse"
            && users["totalResults"] == 3
            && users["itemsPerPage"] == 2
            && users["Resources"][0]["userName"] == "carol"
            && users["Resources"][0].get("active").is_none(),
        "{users}"
    );
    let (status, _, groups) = server
        .send(
            Method::POST,
            "/Groups/.search",
            Some(json!({"schemas": [SEARCH], "filter": "displayName eq \"ops\""})),
        )
        .await?;
    ensure!(
        status == StatusCode::OK && groups["totalResults"] == 1,
        "{status}: {groups}"
    );
    let (status, _, all) = server
        .send(Method::POST, "/.search", Some(json!({"schemas": [SEARCH]})))
        .await?;
    ensure!(
        status == StatusCode::OK && all["totalResults"] == 4,
        "{status}: {all}"
    );
    let (status, _, bad) = server
        .send(
            Method::POST,
            "/Users/.search",
            Some(json!({"schemas": [SEARCH], "filter": "userName zz \"x\""})),
        )
        .await?;
    ensure!(
        status == StatusCode::BAD_REQUEST && bad["scimType"] == "invalidFilter",
        "{status}: {bad}"
    );
    Ok(())
}

#[tokio::test]
async fn unsupported_endpoints_and_methods_answer_with_a_scim_error_body() -> anyhow::Result<()> {
    let server = Server::start().await?;
    for (method, path) in [
        (Method::GET, "/Me"),
        (Method::POST, "/Bulk"),
        (Method::GET, "/Bulk"),
    ] {
        let (status, _, body) = server.send(method.clone(), path, None).await?;
        ensure!(
            status == StatusCode::NOT_IMPLEMENTED && is_error(&body, "501"),
            "{method} {path}: {status} {body}"
        );
    }
    for (method, path) in [
        (Method::DELETE, "/ServiceProviderConfig"),
        (Method::POST, "/Schemas"),
        (Method::GET, "/.search"),
        (Method::GET, "/Users/.search"),
        (Method::DELETE, "/Users"),
    ] {
        let response = server.request(method.clone(), path).send().await?;
        let allow = response.headers().get("allow").cloned();
        let (status, _, body) = read(response).await?;
        ensure!(
            status == StatusCode::METHOD_NOT_ALLOWED && is_error(&body, "405") && allow.is_some(),
            "{method} {path}: {status} {body}"
        );
    }
    let config = server.get("/ServiceProviderConfig").await?;
    ensure!(config["bulk"]["supported"] == false, "{config}");
    Ok(())
}
