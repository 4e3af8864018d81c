//! The governance API against a real OpenID Connect provider (npm `oidc-provider`, set up like
//! JumpCloud's OIDC application: issuer with a trailing slash, groups claim as a list or a
//! string), a file directory and a SQLite store: people ask, approvers approve, auditors read,
//! and every forged, expired, misdirected or unsigned token is refused without a trace of it
//! in the answer. No Airflow is needed (grants reach Airflow through the planner, tested in
//! airlock-engine and `airlock serve`'s tests).

use airlock_core::{Clock, FixedClock};
use airlock_store::{NewApiToken, OpenOptions, Store};
use airlock_testkit::oidc::{jwt_header, Groups, OidcProvider, OidcUser};
use anyhow::{ensure, Context as _};
use base64::Engine as _;
use serde_json::{json, Value};
use std::sync::Arc;

const PEOPLE: &str = "people:
  - username: alice
    email: alice@example.com
    groups: [eng]
  - username: bob
    email: bob@example.com
    groups: [sre]
  - username: audra
    email: audra@example.com
    groups: [audit]
  - username: carol
    email: carol@example.com
    groups: [eng]
";

const POLICY: &str = r#"
[access]
auditors = ["audit"]

[[access.rules]]
roles = ["Op"]
instances = { labels = { env = "prod" } }
requesters = ["eng"]
approvers = { groups = ["sre"] }
approvals = 1
max_duration = "4h"
"#;

struct World {
    dir: tempfile::TempDir,
    idp: OidcProvider,
    clock: Arc<FixedClock>,
    store: Store,
    base: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for World {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn users() -> Vec<OidcUser> {
    vec![
        OidcUser::new("alice", Groups::list(["eng", "airflow-users"])),
        // JumpCloud sends a single group as a string.
        OidcUser::new("bob", Groups::one("airflow-users")),
        OidcUser::new("audra", Groups::list(["airflow-users"])),
        OidcUser::new("carol", Groups::None),
        // Signs in at the provider, but the directory does not know her.
        OidcUser::new("mallory", Groups::list(["airflow-users"])),
    ]
}

impl World {
    async fn new(oidc_extra: &str) -> anyhow::Result<World> {
        let idp = OidcProvider::start(users())?;
        World::with(idp, oidc_extra).await
    }

    async fn with(idp: OidcProvider, oidc_extra: &str) -> anyhow::Result<World> {
        let dir = tempfile::tempdir()?;
        let config = format!(
            "policy = \"policy.toml\"\n\
             [store]\nurl = \"sqlite://{db}\"\n\
             [directory]\nkind = \"file\"\npath = \"people.yaml\"\n\
             [instances.prod-eu]\nurl = \"http://127.0.0.1:9\"\nlabels = {{ env = \"prod\" }}\nusername = \"airlock\"\npassword = \"unused\"\n\
             [instances.staging]\nurl = \"http://127.0.0.1:9\"\nlabels = {{ env = \"staging\" }}\nusername = \"airlock\"\npassword = \"unused\"\n\
             [api]\ndirectory_max_age_secs = 5\n\
             [api.oidc]\nissuer = \"{issuer}\"\naudience = \"{audience}\"\n{oidc_extra}\n",
            db = dir.path().join("airlock.db").display(),
            issuer = idp.issuer(),
            audience = idp.audience(),
        );
        let path = dir.path().join("airlock.toml");
        std::fs::write(&path, &config)?;
        std::fs::write(dir.path().join("policy.toml"), POLICY)?;
        std::fs::write(dir.path().join("people.yaml"), PEOPLE)?;
        let config = airlock_config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let store = Store::open(
            &format!("sqlite://{}", dir.path().join("airlock.db").display()),
            OpenOptions::create(),
        )
        .await?;
        let source = airlock_directory::Source::File(airlock_directory::file::FileSource::new(
            dir.path().join("people.yaml"),
        ));
        let clock = Arc::new(FixedClock::new(chrono::Utc::now()));
        let api = airlock_api::Api::new(&config, Arc::new(source), store.clone(), clock.clone())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let app = airlock_api::router(api);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(World {
            dir,
            idp,
            clock,
            store,
            base,
            http: reqwest::Client::new(),
            server,
        })
    }

    /// An access token of `user`, signed in through the provider.
    async fn token(&self, user: &str) -> anyhow::Result<String> {
        Ok(self.idp.sign_in(user).await?.access_token)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, Value, reqwest::header::HeaderMap)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("{path}: not JSON: {text}"))?
        };
        Ok((status, value, headers))
    }

    async fn get(&self, path: &str, token: &str) -> anyhow::Result<(u16, Value)> {
        let (s, v, _) = self
            .call(reqwest::Method::GET, path, Some(token), None, &[])
            .await?;
        Ok((s, v))
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let (s, v, _) = self
            .call(reqwest::Method::POST, path, Some(token), Some(body), &[])
            .await?;
        Ok((s, v))
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }
}

/// A refusal: the status, a problem body, and no trace of the token in it.
fn refused(status: u16, body: &Value, want: u16, needle: &str, token: &str) -> anyhow::Result<()> {
    ensure!(status == want, "status {status}, wanted {want}: {body}");
    ensure!(body["status"] == want, "problem status: {body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    ensure!(
        detail.contains(needle),
        "detail {detail:?} lacks {needle:?}"
    );
    let text = body.to_string();
    for part in token.split('.').filter(|p| p.len() > 8) {
        ensure!(!text.contains(part), "the answer echoes the token: {text}");
    }
    Ok(())
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn a_person_asks_an_approver_approves_and_the_auditor_reads_the_trail() -> anyhow::Result<()>
{
    let w = World::new("").await?;
    let alice = w.token("alice@example.com").await?;
    let bob = w.token("bob").await?;
    let audra = w.token("audra").await?;

    let (s, me) = w.get("/api/v1/me", &alice).await?;
    ensure!(s == 200, "{me}");
    ensure!(
        me["kind"] == "person" && me["person"]["id"] == "alice",
        "{me}"
    );
    ensure!(
        me["token_groups"] == json!(["eng", "airflow-users"]),
        "{me}"
    );
    ensure!(
        me["reads_all_requests"] == false && me["reads_audit"] == false,
        "{me}"
    );
    let (_, me) = w.get("/api/v1/me", &bob).await?;
    ensure!(
        me["token_groups"] == json!(["airflow-users"]),
        "a string claim is one group: {me}"
    );

    let ask = json!({"roles": ["Op"], "labels": {"env": "prod"}, "duration": "2h", "reason": "backfill INC-7"});
    let key = [("Idempotency-Key", "inc-7-op")];
    let (s, r, h) = w
        .call(
            reqwest::Method::POST,
            "/api/v1/requests",
            Some(&alice),
            Some(ask.clone()),
            &key,
        )
        .await?;
    ensure!(s == 201, "{r}");
    ensure!(
        r["state"] == "pending" && r["instances"] == json!(["prod-eu"]),
        "{r}"
    );
    ensure!(r["duration_secs"] == 7200, "{r}");
    let id = r["id"].as_str().context("id")?.to_owned();
    ensure!(
        h.get("location").and_then(|l| l.to_str().ok()) == Some(&format!("/api/v1/requests/{id}")),
        "{h:?}"
    );
    // The same key and body: the same request. The same key for another body: 409.
    let (s, again, _) = w
        .call(
            reqwest::Method::POST,
            "/api/v1/requests",
            Some(&alice),
            Some(ask),
            &key,
        )
        .await?;
    ensure!(s == 201 && again["id"] == id.as_str(), "{again}");
    let other = json!({"roles": ["Op"], "instances": ["prod-eu"], "duration": "1h", "reason": "x"});
    let (s, p, h) = w
        .call(
            reqwest::Method::POST,
            "/api/v1/requests",
            Some(&alice),
            Some(other),
            &key,
        )
        .await?;
    refused(s, &p, 409, "idempotency key", &alice)?;
    ensure!(
        h.get("content-type").and_then(|c| c.to_str().ok()) == Some("application/problem+json"),
        "{h:?}"
    );

    // Nobody approves their own; an auditor decides nothing; a stranger does not even see it.
    let (s, p) = w
        .post(&format!("/api/v1/requests/{id}/approve"), &alice, json!({}))
        .await?;
    refused(s, &p, 403, "", &alice)?;
    let (s, p) = w
        .post(&format!("/api/v1/requests/{id}/approve"), &audra, json!({}))
        .await?;
    refused(s, &p, 403, "", &audra)?;
    let carol = w.token("carol").await?;
    let (s, p) = w.get(&format!("/api/v1/requests/{id}"), &carol).await?;
    refused(s, &p, 404, "no access request", &carol)?;

    let (s, r) = w
        .post(
            &format!("/api/v1/requests/{id}/approve"),
            &bob,
            json!({"comment": "ok for INC-7"}),
        )
        .await?;
    ensure!(s == 200, "{r}");
    ensure!(r["state"] == "approved" && r["active"] == true, "{r}");
    ensure!(r["approvals"][0]["by"] == "bob", "{r}");
    let (_, grants) = w.get("/api/v1/grants", &alice).await?;
    ensure!(
        grants["items"].as_array().map(Vec::len) == Some(1),
        "{grants}"
    );
    let (_, grants) = w.get("/api/v1/grants", &carol).await?;
    ensure!(
        grants["items"] == json!([]),
        "carol sees no one else's grant: {grants}"
    );

    // The auditor reads everything; the requester does not read the trail.
    let (s, p) = w.get("/api/v1/audit", &alice).await?;
    refused(s, &p, 403, "", &alice)?;
    let (s, trail) = w.get("/api/v1/audit?limit=1000", &audra).await?;
    ensure!(s == 200, "{trail}");
    let ops: Vec<(String, String)> = trail["items"]
        .as_array()
        .context("items")?
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or("").into(),
                e["operation"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    ensure!(
        ops == [
            (
                "person:alice".to_owned(),
                "access_request.create".to_owned()
            ),
            ("person:bob".to_owned(), "access_request.approve".to_owned())
        ],
        "{ops:?}"
    );
    let (s, people) = w
        .get("/api/v1/people?q=EXAMPLE.com&limit=2", &audra)
        .await?;
    ensure!(
        s == 200 && people["items"].as_array().map(Vec::len) == Some(2),
        "{people}"
    );
    let next = people["next"].as_str().context("next page")?;
    let (_, rest) = w
        .get(&format!("/api/v1/people?limit=2&after={next}"), &audra)
        .await?;
    ensure!(
        rest["items"].as_array().map(Vec::len) == Some(2) && rest.get("next").is_none(),
        "{rest}"
    );
    let (s, p) = w.get("/api/v1/people", &alice).await?;
    refused(s, &p, 403, "", &alice)?;
    let (s, own) = w.get("/api/v1/people/alice", &alice).await?;
    ensure!(s == 200 && own["groups"] == json!(["eng"]), "{own}");
    let (s, inst) = w.get("/api/v1/instances", &audra).await?;
    ensure!(
        s == 200 && inst.as_array().map(Vec::len) == Some(2),
        "{inst}"
    );
    Ok(())
}

#[tokio::test]
async fn forged_expired_misdirected_and_unsigned_tokens_are_refused() -> anyhow::Result<()> {
    let w = World::new("").await?;
    let tokens = w.idp.sign_in("alice").await?;
    let good = tokens.access_token.clone();
    let (s, _) = w.get("/api/v1/me", &good).await?;
    ensure!(s == 200);
    let header = jwt_header(&good)?;
    let kid = header["kid"].as_str().context("kid")?.to_owned();
    let claims = airlock_testkit::oidc::jwt_payload(&good)?;

    // The ID token is meant for the client, not the API.
    let (s, p) = w.get("/api/v1/me", &tokens.id_token).await?;
    refused(s, &p, 401, "another audience", &tokens.id_token)?;

    // `alg: none`, with the real claims.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": kid})),
        b64(&claims)
    );
    let (s, p) = w.get("/api/v1/me", &none).await?;
    refused(s, &p, 401, "algorithm none is not accepted", &none)?;

    // HMAC signed with the provider's public key as the secret (the classic confusion).
    let public = w.idp.jwks().to_string();
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(kid.clone());
    let hmac = jsonwebtoken::encode(
        &hs,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )?;
    let (s, p) = w.get("/api/v1/me", &hmac).await?;
    refused(s, &p, 401, "algorithm HS256 is not accepted", &hmac)?;

    // Signed by a key of the attacker's, under the provider's key id and under a new one.
    let pem = w.dir.path().join("attacker.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem)
        .output()?;
    ensure!(
        made.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&pem)?)?;
    let mut rs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    rs.kid = Some(kid.clone());
    let forged = jsonwebtoken::encode(&rs, &claims, &key)?;
    let (s, p) = w.get("/api/v1/me", &forged).await?;
    refused(s, &p, 401, "signature does not verify", &forged)?;
    rs.kid = Some("attacker-key".into());
    let unknown = jsonwebtoken::encode(&rs, &claims, &key)?;
    let (s, p) = w.get("/api/v1/me", &unknown).await?;
    refused(s, &p, 401, "key the issuer does not publish", &unknown)?;

    // A token whose payload was edited after signing.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut edited = claims.clone();
    edited["email"] = json!("bob@example.com");
    parts[1] = b64(&edited);
    let tampered = parts.join(".");
    let (s, p) = w.get("/api/v1/me", &tampered).await?;
    refused(s, &p, 401, "signature does not verify", &tampered)?;

    // Garbage, and no token at all.
    let (s, p) = w.get("/api/v1/me", "not-a-jwt").await?;
    refused(s, &p, 401, "not a signed JWT", "not-a-jwt")?;
    let (s, p, h) = w
        .call(reqwest::Method::GET, "/api/v1/me", None, None, &[])
        .await?;
    refused(s, &p, 401, "Authorization: Bearer", "")?;
    ensure!(h.get("www-authenticate").is_some(), "{h:?}");

    // Time: past `exp` (beyond the 30 s leeway), and before `iat`.
    let exp = claims["exp"].as_i64().context("exp")?;
    let now = w.clock.now().timestamp();
    w.advance(exp - now + 31);
    let (s, p) = w.get("/api/v1/me", &good).await?;
    refused(s, &p, 401, "expired", &good)?;
    w.advance(-(exp - now + 31) - 3600);
    let (s, p) = w.get("/api/v1/me", &good).await?;
    refused(s, &p, 401, "not valid yet", &good)?;
    Ok(())
}

#[tokio::test]
async fn rotated_keys_are_fetched_again_and_dropped_keys_stop_working() -> anyhow::Result<()> {
    let mut w = World::new("").await?;
    let before = w.token("alice").await?;
    let (s, _) = w.get("/api/v1/me", &before).await?;
    ensure!(s == 200);
    w.idp.rotate_keys(false)?;
    let after = w.token("alice").await?;
    ensure!(jwt_header(&after)?["kid"] != jwt_header(&before)?["kid"]);
    // A key id it does not hold makes the verifier read the JWKS again, at most every 10 s.
    w.advance(11);
    let (s, p) = w.get("/api/v1/me", &after).await?;
    ensure!(s == 200, "a token of the new key: {p}");
    let (s, p) = w.get("/api/v1/me", &before).await?;
    refused(s, &p, 401, "key the issuer does not publish", &before)?;
    Ok(())
}

#[tokio::test]
async fn the_directory_decides_who_the_token_names_and_leavers_are_refused() -> anyhow::Result<()> {
    let w = World::new("required_groups = [\"airflow-users\"]").await?;
    // Signed in at the provider, unknown to the directory.
    let mallory = w.token("mallory").await?;
    let (s, p) = w.get("/api/v1/me", &mallory).await?;
    refused(s, &p, 403, "names nobody in the directory", &mallory)?;
    // Not assigned to the application (no group claimed at all).
    let carol = w.token("carol").await?;
    let (s, p) = w.get("/api/v1/me", &carol).await?;
    refused(s, &p, 403, "none of those allowed", &carol)?;
    // A single group as a string counts.
    let bob = w.token("bob").await?;
    let (s, p) = w.get("/api/v1/me", &bob).await?;
    ensure!(s == 200, "{p}");

    // Alice leaves: once the directory read is older than 5 s, her token opens nothing.
    let alice = w.token("alice").await?;
    let ask = json!({"roles": ["Op"], "instances": ["prod-eu"], "reason": "deploy"});
    let (s, _) = w.post("/api/v1/requests", &alice, ask.clone()).await?;
    ensure!(s == 201);
    let people = PEOPLE.replace(
        "    groups: [eng]\n  - username: bob",
        "    status: suspended\n    groups: [eng]\n  - username: bob",
    );
    std::fs::write(w.dir.path().join("people.yaml"), people)?;
    w.advance(6);
    let (s, p) = w.post("/api/v1/requests", &alice, ask).await?;
    refused(s, &p, 403, "not an active person", &alice)?;
    let (s, p) = w.get("/api/v1/requests", &alice).await?;
    refused(s, &p, 403, "not an active person", &alice)?;
    let (s, p) = w.get("/api/v1/me", &alice).await?;
    refused(s, &p, 403, "not an active person", &alice)?;
    Ok(())
}

#[tokio::test]
async fn api_tokens_act_within_their_scopes_until_revoked_or_expired() -> anyhow::Result<()> {
    let w = World::new("").await?;
    let now = w.clock.now().timestamp_millis();
    let issue =
        |name: &str, person: Option<&str>, scopes: &[&str], lifetime_ms: Option<i64>| NewApiToken {
            name: name.into(),
            person: person.map(str::to_owned),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            lifetime_ms,
        };
    let (_, reader) = w
        .store
        .issue_api_token(
            &issue("report", None, &["requests:read", "audit:read"], None),
            "operator:t",
            now,
        )
        .await?;
    let (_, bot) = w
        .store
        .issue_api_token(
            &issue(
                "ticket-bot",
                Some("alice"),
                &["requests:write", "requests:read"],
                Some(3_600_000),
            ),
            "operator:t",
            now,
        )
        .await?;
    ensure!(reader.starts_with("airlock_api_") && bot.starts_with("airlock_api_"));

    let (s, me) = w.get("/api/v1/me", &bot).await?;
    ensure!(
        s == 200 && me["kind"] == "token" && me["person"]["id"] == "alice",
        "{me}"
    );
    let ask = json!({"roles": ["Op"], "instances": ["prod-eu"], "reason": "from ticket OPS-1", "ticket": "OPS-1"});
    let (s, r) = w.post("/api/v1/requests", &bot, ask.clone()).await?;
    ensure!(s == 201 && r["requester"] == "alice", "{r}");
    let id = r["id"].as_str().context("id")?.to_owned();
    // Within its scopes only: no deciding, no directory, no trail.
    let (s, p) = w.get("/api/v1/audit", &bot).await?;
    refused(s, &p, 403, "lacks the scope audit:read", &bot)?;
    let (s, p) = w.get("/api/v1/people", &bot).await?;
    refused(s, &p, 403, "lacks the scope directory:read", &bot)?;
    // A token without a person reads what its scopes say and changes nothing.
    let (s, list) = w.get("/api/v1/requests", &reader).await?;
    ensure!(s == 200 && list["items"][0]["id"] == id.as_str(), "{list}");
    let (s, p) = w.post("/api/v1/requests", &reader, ask.clone()).await?;
    refused(s, &p, 403, "lacks the scope requests:write", &reader)?;
    let (s, trail) = w.get("/api/v1/audit", &reader).await?;
    ensure!(s == 200, "{trail}");
    let create = trail["items"]
        .as_array()
        .context("items")?
        .iter()
        .find(|e| e["operation"] == "access_request.create")
        .context("create event")?
        .clone();
    ensure!(create["actor"] == "person:alice", "{create}");
    ensure!(
        create["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ticket-bot")),
        "the token is named in the trail: {create}"
    );
    ensure!(
        trail["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|e| e["operation"] == "api_token.create")),
        "issuing is audited: {trail}"
    );
    ensure!(
        !trail.to_string().contains(&bot[12..]),
        "no secret in the trail"
    );

    // Expired after its hour; revoked at once.
    w.advance(3601);
    let (s, p) = w.get("/api/v1/me", &bot).await?;
    refused(s, &p, 401, "unknown, revoked or expired", &bot)?;
    w.store
        .revoke_api_token("report", "operator:t", w.clock.now().timestamp_millis())
        .await?;
    let (s, p) = w.get("/api/v1/requests", &reader).await?;
    refused(s, &p, 401, "unknown, revoked or expired", &reader)?;
    let (s, p) = w.get("/api/v1/me", "airlock_api_made-up").await?;
    refused(
        s,
        &p,
        401,
        "unknown, revoked or expired",
        "airlock_api_made-up",
    )?;
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_problem_and_changes_nothing() -> anyhow::Result<()> {
    let w = World::new("").await?;
    let alice = w.token("alice").await?;
    for (body, needle, status) in [
        (json!({"roles": []}), "roles", 400),
        (
            json!({"roles": ["Op"], "instances": ["nowhere"]}),
            "no instance named `nowhere`",
            400,
        ),
        (
            json!({"roles": ["Op"], "labels": {"env": "mars"}}),
            "no configured instance carries env=mars",
            400,
        ),
        (
            json!({"roles": ["Op"], "instances": ["prod-eu"], "duration": "soon"}),
            "duration",
            400,
        ),
        (
            json!({"roles": ["Op"], "instances": ["prod-eu"], "reason": "x", "sudo": true}),
            "unknown field",
            400,
        ),
        (
            json!({"roles": ["Op"], "instances": ["prod-eu"], "reason": "x", "duration": "9h"}),
            "longer than",
            422,
        ),
        (
            json!({"roles": ["Admin"], "instances": ["prod-eu"], "reason": "x"}),
            "",
            422,
        ),
    ] {
        let (s, p) = w.post("/api/v1/requests", &alice, body.clone()).await?;
        refused(s, &p, status, needle, &alice).with_context(|| body.to_string())?;
    }
    let (s, p, _) = w
        .call(
            reqwest::Method::POST,
            "/api/v1/requests",
            Some(&alice),
            Some(json!({"roles": ["Op"]})),
            &[("Idempotency-Key", "has space")],
        )
        .await?;
    refused(s, &p, 400, "Idempotency-Key", &alice)?;
    let (s, p) = w.get("/api/v1/requests?limit=0", &alice).await?;
    refused(s, &p, 400, "limit", &alice)?;
    let (s, p) = w.get("/api/v1/requests?state=granted", &alice).await?;
    refused(s, &p, 400, "state", &alice)?;
    let (s, p) = w.get("/api/v1/nothing-here", &alice).await?;
    refused(s, &p, 404, "no such API route", &alice)?;
    let (s, p, _) = w
        .call(
            reqwest::Method::DELETE,
            "/api/v1/requests",
            Some(&alice),
            None,
            &[],
        )
        .await?;
    refused(s, &p, 405, "not allowed", &alice)?;
    let (_, list) = w.get("/api/v1/requests", &alice).await?;
    ensure!(list["items"] == json!([]), "nothing was stored: {list}");

    // The document needs no token and is OpenAPI 3.1.
    let doc: Value = w
        .http
        .get(format!("{}/api/v1/openapi.json", w.base))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    Ok(())
}

#[tokio::test]
async fn requests_page_in_creation_order_and_each_caller_sees_their_own() -> anyhow::Result<()> {
    let w = World::new("").await?;
    let alice = w.token("alice").await?;
    let carol = w.token("carol").await?;
    let bob = w.token("bob").await?;
    let mut ids = Vec::new();
    for (i, who) in [&alice, &carol, &alice, &carol, &alice].iter().enumerate() {
        let ask = json!({"roles": ["Op"], "instances": ["prod-eu"], "reason": format!("r{i}")});
        let (s, r) = w.post("/api/v1/requests", who, ask).await?;
        ensure!(s == 201, "{r}");
        ids.push(r["id"].as_str().context("id")?.to_owned());
    }
    let (_, page) = w.get("/api/v1/requests?limit=2", &alice).await?;
    let got: Vec<&str> = page["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    ensure!(got == [ids[0].as_str(), ids[2].as_str()], "{page}");
    let next = page["next"].as_str().context("next")?;
    let (_, page) = w
        .get(&format!("/api/v1/requests?limit=2&after={next}"), &alice)
        .await?;
    let got: Vec<&str> = page["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    ensure!(got == [ids[4].as_str()], "{page}");
    let (_, none) = w.get("/api/v1/requests?requester=carol", &alice).await?;
    ensure!(none["items"] == json!([]), "not carol's: {none}");
    let (_, own) = w.get("/api/v1/requests?requester=alice", &alice).await?;
    ensure!(own["items"].as_array().map(Vec::len) == Some(3), "{own}");
    // The approver sees every request their rule gives them.
    let (_, all) = w
        .get("/api/v1/requests?state=pending&limit=1000", &bob)
        .await?;
    ensure!(all["items"].as_array().map(Vec::len) == Some(5), "{all}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_ask_who_had_access_at_a_moment_and_others_are_refused() -> anyhow::Result<()> {
    use airlock_core::inventory::Snapshot;
    use airlock_core::{Account, InstanceName, RoleName, Username};
    let w = World::new("").await?;
    let alice = w.token("alice").await?;
    let audra = w.token("audra").await?;
    let at =
        |s: &str| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&chrono::Utc));
    let account = |name: &str, roles: &[&str]| -> anyhow::Result<Account> {
        Ok(Account {
            username: Username::new(name)?,
            email: format!("{name}@example.com"),
            first_name: name.into(),
            last_name: "X".into(),
            roles: roles
                .iter()
                .map(|r| RoleName::new(*r))
                .collect::<Result<_, _>>()?,
            active: true,
            last_login: None,
            login_count: None,
            fail_login_count: None,
            created_on: None,
            changed_on: None,
        })
    };
    for (t, dana) in [
        ("2026-11-01T00:00:00Z", "Admin"),
        ("2026-11-02T00:00:00Z", "Admin"),
        ("2026-11-03T00:00:00Z", "Viewer"),
    ] {
        let snapshot = Snapshot::new(
            InstanceName::new("prod-eu")?,
            at(t)?,
            "3.3.2".into(),
            vec![account("dana", &[dana])?, account("eve", &["Op"])?],
            Vec::new(),
        );
        airlock_engine::history::observe(&w.store, &snapshot, &format!("snapshot:{t}")).await?;
    }

    let (s, v) = w
        .get("/api/v1/access?at=2026-11-01T12:00:00Z&role=Admin", &audra)
        .await?;
    ensure!(s == 200, "{v}");
    ensure!(v["items"].as_array().map(Vec::len) == Some(1), "{v}");
    ensure!(
        v["items"][0]["username"] == "dana" && v["items"][0]["certainty"] == "observed",
        "{v}"
    );
    ensure!(v["evidence"][0]["before"]["observations"] == 2, "{v}");
    let (s, v) = w
        .get(
            "/api/v1/access?at=2026-11-02T12:00:00Z&person=DANA@example.com",
            &audra,
        )
        .await?;
    ensure!(s == 200, "{v}");
    ensure!(
        v["items"][0]["certainty"] == "changed_in_gap"
            && v["items"][0]["next_roles"] == json!(["Viewer"]),
        "{v}"
    );

    // Not an auditor: refused, and nothing of the answer in the problem.
    let (s, p) = w
        .get("/api/v1/access?at=2026-11-01T12:00:00Z", &alice)
        .await?;
    refused(s, &p, 403, "", &alice)?;
    ensure!(!p.to_string().contains("dana"), "{p}");
    // Bad input: a problem naming the parameter.
    let (s, p) = w.get("/api/v1/access?at=yesterday", &audra).await?;
    refused(s, &p, 400, "at", &audra)?;
    let (s, p) = w
        .get("/api/v1/access?since=2026-11-01T00:00:00Z", &audra)
        .await?;
    refused(s, &p, 400, "", &audra)?;
    // Anonymous: 401.
    let (s, _) = w.get("/api/v1/access", "").await?;
    ensure!(s == 401, "{s}");
    Ok(())
}
