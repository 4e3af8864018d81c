//! The kit's OIDC provider: a real `oidc-provider` shaped like JumpCloud's OIDC application.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use airlock_testkit::oidc::{jwt_header, jwt_payload};
use airlock_testkit::{Groups, OidcProvider, OidcUser};
use serde_json::{json, Value};

fn users() -> Vec<OidcUser> {
    vec![
        OidcUser {
            sub: "5f0c1a2b3c4d5e6f70819a01".to_owned(),
            email: "alice@example.com".to_owned(),
            username: "alice".to_owned(),
            name: "Alice Smith".to_owned(),
            groups: Groups::list(["airflow-admins", "engineering"]),
        },
        OidcUser {
            sub: "5f0c1a2b3c4d5e6f70819a02".to_owned(),
            email: "bob@example.com".to_owned(),
            username: "bob".to_owned(),
            name: "Bob Jones".to_owned(),
            groups: Groups::one("data-science"),
        },
        OidcUser::new("carol", Groups::None),
    ]
}

async fn get_json(url: &str) -> Value {
    let response = reqwest::get(url).await.expect("GET");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.expect("JSON body")
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("a keys array")
        .iter()
        .map(|k| k["kid"].as_str().expect("a kid").to_owned())
        .collect()
}

fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

#[tokio::test]
async fn discovery_names_the_issuer_with_its_trailing_slash() {
    let idp = OidcProvider::start(users()).expect("provider starts");
    let issuer = idp.issuer();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    assert!(issuer.ends_with('/'), "{issuer}");
    assert_eq!(
        idp.discovery_url(),
        format!("{issuer}.well-known/openid-configuration")
    );

    let discovery = get_json(&idp.discovery_url()).await;
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        discovery["jwks_uri"],
        format!("{issuer}jwks"),
        "endpoints hang off the issuer without a double slash"
    );
    let served = get_json(discovery["jwks_uri"].as_str().expect("jwks_uri")).await;
    assert_eq!(served, idp.jwks());
    assert_eq!(idp.jwks()["keys"][0]["alg"], "RS256");
    assert!(
        idp.jwks()["keys"][0].get("d").is_none(),
        "only public keys are published"
    );
}

#[tokio::test]
async fn sign_in_returns_jumpcloud_shaped_id_and_access_tokens() {
    let idp = OidcProvider::start(users()).expect("provider starts");
    let issuer = idp.issuer();

    let alice = idp
        .sign_in("alice@example.com")
        .await
        .expect("alice signs in");
    let header = jwt_header(&alice.id_token).expect("ID token header");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(
        Some(header["kid"].clone()),
        idp.jwks()["keys"].get(0).map(|k| k["kid"].clone())
    );
    let id = jwt_payload(&alice.id_token).expect("ID token payload");
    assert_eq!(id["iss"], issuer.as_str());
    assert_eq!(id["aud"], idp.client_id());
    assert_eq!(id["sub"], "5f0c1a2b3c4d5e6f70819a01");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["name"], "Alice Smith");
    assert_eq!(id["groups"], json!(["airflow-admins", "engineering"]));

    let header = jwt_header(&alice.access_token).expect("access token is a JWT");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    let access = jwt_payload(&alice.access_token).expect("access token payload");
    assert_eq!(access["iss"], issuer.as_str());
    assert_eq!(access["aud"], idp.audience());
    assert_eq!(idp.audience(), "airlock-api");
    assert_eq!(access["sub"], "5f0c1a2b3c4d5e6f70819a01");
    assert_eq!(access["client_id"], idp.client_id());
    assert_eq!(access["email"], "alice@example.com");
    assert_eq!(access["groups"], json!(["airflow-admins", "engineering"]));
    assert_eq!(alice.expires_in, 3600);
    assert!(access["exp"].as_u64() > access["iat"].as_u64());

    // Bob by his sub: one group, as a plain string, in both tokens.
    let bob = idp
        .sign_in("5f0c1a2b3c4d5e6f70819a02")
        .await
        .expect("bob signs in");
    let id = jwt_payload(&bob.id_token).expect("payload");
    assert_eq!(id["email"], "bob@example.com");
    assert_eq!(id["groups"], "data-science");
    assert_eq!(
        jwt_payload(&bob.access_token).expect("payload")["groups"],
        "data-science"
    );

    // Carol by username: no groups claim at all.
    let carol = idp.sign_in("carol").await.expect("carol signs in");
    let id = jwt_payload(&carol.id_token).expect("payload");
    assert_eq!(id["email"], "carol@example.com");
    assert!(id.get("groups").is_none(), "{id}");
    assert!(jwt_payload(&carol.access_token)
        .expect("payload")
        .get("groups")
        .is_none());
}

#[tokio::test]
async fn an_unknown_user_cannot_sign_in() {
    let idp = OidcProvider::start(users()).expect("provider starts");
    let err = idp
        .sign_in("mallory@example.com")
        .await
        .expect_err("nobody of that name");
    assert!(format!("{err:#}").contains("knows no user"), "{err:#}");
}

#[tokio::test]
async fn audience_lifetimes_claim_name_and_a_second_key_are_configurable() {
    let idp = OidcProvider::builder(users())
        .audience("https://api.example.com/airlock")
        .access_token_ttl(Duration::from_secs(120))
        .id_token_ttl(Duration::from_secs(300))
        .groups_claim("memberOf")
        .es256_key(true)
        .start()
        .expect("provider starts");
    assert_eq!(idp.resource(), "https://api.example.com/airlock");
    let algs: Vec<Value> = idp.jwks()["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["alg"].clone())
        .collect();
    assert_eq!(algs, [json!("RS256"), json!("ES256")]);

    let tokens = idp.sign_in("alice").await.expect("alice signs in");
    assert_eq!(tokens.expires_in, 120);
    assert_eq!(
        jwt_header(&tokens.id_token).expect("header")["alg"],
        "RS256"
    );
    let id = jwt_payload(&tokens.id_token).expect("payload");
    assert_eq!(
        id["exp"].as_u64().expect("exp") - id["iat"].as_u64().expect("iat"),
        300
    );
    assert_eq!(id["memberOf"], json!(["airflow-admins", "engineering"]));
    assert!(id.get("groups").is_none());
    let access = jwt_payload(&tokens.access_token).expect("payload");
    assert_eq!(access["aud"], "https://api.example.com/airlock");
    assert_eq!(access["memberOf"], json!(["airflow-admins", "engineering"]));
}

#[tokio::test]
async fn rotating_keys_changes_the_kid_and_the_published_set() {
    let mut idp = OidcProvider::start(users()).expect("provider starts");
    let port = idp.port();
    let first = jwt_header(&idp.sign_in("alice").await.expect("sign in").id_token).expect("header")
        ["kid"]
        .as_str()
        .expect("kid")
        .to_owned();
    assert_eq!(kids(&idp.jwks()), [first.as_str()]);

    idp.rotate_keys(false)
        .expect("rotate, dropping the old key");
    assert_eq!(idp.port(), port);
    let tokens = idp.sign_in("alice").await.expect("sign in after rotation");
    let second = jwt_header(&tokens.id_token).expect("header")["kid"]
        .as_str()
        .expect("kid")
        .to_owned();
    assert_ne!(second, first);
    assert_eq!(
        jwt_header(&tokens.access_token).expect("header")["kid"],
        second.as_str()
    );
    assert_eq!(kids(&idp.jwks()), [second.as_str()]);
    assert_eq!(get_json(&format!("{}jwks", idp.issuer())).await, idp.jwks());

    idp.rotate_keys(true).expect("rotate, keeping the old key");
    let third = jwt_header(&idp.sign_in("bob").await.expect("sign in").id_token).expect("header")
        ["kid"]
        .as_str()
        .expect("kid")
        .to_owned();
    assert!(third != first && third != second);
    assert_eq!(kids(&idp.jwks()), [third, second]);
    assert_eq!(get_json(&format!("{}jwks", idp.issuer())).await, idp.jwks());
}

#[test]
fn a_dropped_provider_is_gone_with_its_directory() {
    let idp = OidcProvider::start(users()).expect("provider starts");
    let (home, port) = (idp.home().to_owned(), idp.port());
    assert!(accepts(port));
    drop(idp);
    assert!(!home.exists(), "{} is left behind", home.display());
    assert!(!accepts(port), "something still listens on {port}");
}
