//! Fuzzing the config loader with arbitrary input, bounded so that it runs with the rest of the
//! test suite (`docs/fuzzing.md`; the longer, coverage-guided run is `scripts/fuzz.sh`).
//!
//! - Any text, with any `AIRLOCK_*` overrides, is a [`Config`] or a [`LoadError`]: never a
//!   panic. So is any text given to [`PgUrl::parse`].
//! - A secret (an instance password, the store URL's password, the JumpCloud API key, the
//!   LDAP bind password, the checkpoint signing key), written in the file, given through an
//!   env var or an override, never appears in the error of a configuration made invalid in
//!   random ways, nor in the `Debug` of a configuration that still loads.
//!
//! Cases per property: `PROPTEST_CASES` when set, else the counts below (a few seconds each in
//! a debug build on two cores).

use std::path::{Path, PathBuf};

use airlock_config::pg_url::PgUrl;
use airlock_config::{load_str, Config, LoadError};
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

/// Where arbitrary configs claim to live: a directory that does not exist, so that relative
/// secret, policy and key files resolve to nothing.
const NOWHERE: &str = "/nonexistent-airlock-fuzz/airlock.toml";

// ---- arbitrary text ---------------------------------------------------------------------------

/// Pieces of real configs, so that arbitrary combinations get past the TOML parser.
fn config_line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(vec![
            "[store]", "[inventory]", "[instances.prod]", "[instances.prod-eu]", "[instances.\"a b\"]",
            "[directory]", "[serve]", "[audit.checkpoints]", "[[instances]]", "[instances]",
            "url = \"https://airflow.example.com/\"", "url = \"http://127.0.0.1:8080\"",
            "url = \"postgres://u:pw@db.example.com/a?sslmode=verify-full&sslrootcert=system\"",
            "url = \"sqlite://airlock.db\"", "url = \"sqlite://\"", "url = 5",
            "username = \"airlock\"", "username = \"\"", "password = \"pw\"",
            "password = { env = \"PW\" }", "password = { file = \"pw\" }",
            "password = { env = \"PW\", file = \"pw\" }", "password = {}", "password = [1]",
            "kind = \"file\"", "kind = \"jumpcloud\"", "kind = \"ldap\"", "kind = \"scim\"",
            "kind = \"nope\"", "path = \"people.yaml\"", "api_key = { env = \"JC\" }",
            "bind_dn = \"cn=a\"", "bind_password = \"pw\"", "preset = \"jumpcloud\"",
            "org_id = \"o\"", "starttls = true", "allow_insecure = \"yes\"", "api = \"v3\"",
            "api = \"v9\"", "timeout_secs = 0", "timeout_secs = -1", "timeout_secs = 1e3",
            "max_concurrency = 99999999999999999999", "token_lifetime_secs = 0",
            "labels = { env = \"prod\" }", "labels = { env = 1 }", "inactive_after_days = 0",
            "listen = \"127.0.0.1:0\"", "listen = \"[::1\"", "metrics_listen = \"x\"",
            "signing_key_file = \"key\"", "key_name = \"k\"", "file = \"cp\"",
            "url = \"https://cp.example.com\"", "interval_secs = 0", "policy = \"policy.toml\"",
            "tls_cert_file = \"c.pem\"", "max_connections = 0", "sync_interval_secs = 0",
            "é = 1", "a.b.c = 1", "\"\\u00e9\" = \"\\ud800\"", "x = \"\"\"", "x = '''", "x = [",
            "x = {", "= 1", "[", "]", "\"", "#", "\t", "\u{feff}", "key = \"é\u{301}\"",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
        1 => "[a-z_.]{1,12} = [\"0-9a-zé\\[\\]{}=,. ]{0,16}",
    ]
}

fn config_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(config_line(), 0..24).prop_map(|lines| lines.join("\n")),
        1 => proptest::collection::vec(config_line(), 0..24).prop_map(|lines| lines.concat()),
        1 => any::<String>(),
    ]
}

/// `AIRLOCK_*` overrides, well-formed or not.
fn overrides() -> impl Strategy<Value = Vec<(String, String)>> {
    let segment = prop_oneof![
        4 => proptest::sample::select(vec![
            "STORE", "URL", "INSTANCES", "PROD", "PROD_EU", "PASSWORD", "USERNAME", "LABELS",
            "MAX_RETRIES", "TIMEOUT_SECS", "ALLOW_INSECURE", "DIRECTORY", "KIND", "STARTTLS",
            "SERVE", "CONCURRENCY", "AUDIT", "CHECKPOINTS", "", "é", "-",
        ])
        .prop_map(str::to_owned),
        1 => "[A-Za-z0-9_]{0,6}",
    ];
    let name =
        proptest::collection::vec(segment, 1..5).prop_map(|s| format!("AIRLOCK_{}", s.join("__")));
    let value = prop_oneof![
        proptest::sample::select(vec![
            "true",
            "false",
            "3",
            "-1",
            "x",
            "{ env = \"prod\" }",
            "{",
            "",
            "1 2"
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    proptest::collection::vec((name, value), 0..4)
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn any_text_with_any_overrides_loads_or_is_a_load_error(text in config_text(), vars in overrides()) {
        match load_str(&text, Path::new(NOWHERE), &vars) {
            Ok(_) => {}
            Err(LoadError::Invalid { errors, .. }) => {
                prop_assert!(!errors.is_empty(), "an invalid config with no error");
                for e in &errors {
                    prop_assert!(!e.to_string().contains('\n'), "not one line: {e}");
                }
            }
            Err(other) => prop_assert!(false, "load_str never reads the config file: {other}"),
        }
    }

    #[test]
    fn any_text_is_a_postgres_url_or_a_pg_url_error(text in prop_oneof![
        any::<String>(),
        pg_url_text(),
    ]) {
        match PgUrl::parse(&text) {
            Ok(url) => prop_assert!(!url.host.is_empty()),
            Err(err) => prop_assert!(!err.to_string().contains('\n')),
        }
    }
}

fn pg_url_text() -> impl Strategy<Value = String> {
    let part = proptest::sample::select(vec![
        "postgres://",
        "postgresql://",
        "u",
        ":",
        "pw",
        "@",
        "db.example.com",
        "127.0.0.1",
        "[::1]",
        "[::1",
        ":5432",
        ":99999",
        "/",
        "a",
        "?",
        "&",
        "=",
        "sslmode",
        "require",
        "verify-full",
        "verify-ca",
        "prefer",
        "disable",
        "sslrootcert",
        "system",
        "/ca.pem",
        "ca.pem",
        "sslcert",
        "sslkey",
        "host",
        "hostaddr",
        "/run/pg",
        "%2Frun",
        "%",
        "%zz",
        "#",
        "options",
        "-c x",
        "application_name",
        "é",
    ]);
    proptest::collection::vec(part, 0..16).prop_map(|parts| parts.concat())
}

// ---- secrets never in errors ------------------------------------------------------------------

/// A configuration with one secret, somewhere a secret goes, and a way to load it.
#[derive(Debug, Clone)]
struct Case {
    text: String,
    vars: Vec<(String, String)>,
    /// A signing key file to write (its content holds the secret).
    key_file: Option<String>,
    /// What must never be shown.
    secret: String,
}

#[derive(Debug, Clone, Copy)]
enum Place {
    PasswordLiteral,
    PasswordEnv,
    PasswordOverride,
    StoreUrlLiteral,
    StoreUrlEnv,
    StoreUrlOverride,
    JumpcloudKey,
    LdapBindPassword,
    SigningKey,
}

/// A way to make the configuration invalid (or, for some, still valid).
#[derive(Debug, Clone)]
enum Breakage {
    InstanceUrl(&'static str),
    EmptyUsername,
    UnknownKey,
    WrongType(&'static str),
    ZeroConcurrency,
    /// Replaces the query of the store URL (after the password).
    StoreQuery(&'static str),
    /// Replaces the host of the store URL (after the password).
    StoreHost(&'static str),
    DuplicateKey,
    SecretShape,
    MissingEnv,
    BadOverride(&'static str, &'static str),
    KeyName(&'static str),
    /// Cuts the text at a fraction of its length.
    Truncate(prop::sample::Index),
    /// Inserts text at a fraction of its length.
    Insert(prop::sample::Index, &'static str),
    /// Cuts the signing key file at a fraction of its length.
    KeyFileCut(prop::sample::Index),
}

fn place() -> impl Strategy<Value = Place> {
    proptest::sample::select(vec![
        Place::PasswordLiteral,
        Place::PasswordEnv,
        Place::PasswordOverride,
        Place::StoreUrlLiteral,
        Place::StoreUrlEnv,
        Place::StoreUrlOverride,
        Place::JumpcloudKey,
        Place::LdapBindPassword,
        Place::SigningKey,
    ])
}

fn breakage() -> impl Strategy<Value = Breakage> {
    prop_oneof![
        proptest::sample::select(vec![
            "ftp://x",
            "http://airflow.example.com",
            "https://u:p@airflow.example.com",
            "https://a/?q",
            "not a url",
            "",
        ])
        .prop_map(Breakage::InstanceUrl),
        Just(Breakage::EmptyUsername),
        Just(Breakage::UnknownKey),
        proptest::sample::select(vec![
            "timeout_secs",
            "max_retries",
            "allow_insecure",
            "labels",
            "api"
        ])
        .prop_map(Breakage::WrongType),
        Just(Breakage::ZeroConcurrency),
        proptest::sample::select(vec![
            "sslmode=verify_full",
            "sslmode=verify-ca",
            "sslmode=prefer",
            "sslmode=disable",
            "",
            "sslmode=require&sslmode=require",
            "sslmode=verify-full",
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "sslmode=verify-full&sslrootcert=ca.pem",
            "sslmode=require&sslrootcert=system",
            "sslmode=require&sslcert=/c.pem",
            "password=x",
            "sslmode=require&x=1",
            "sslmode=require&host=/run/pg",
            "sslmode=%zz",
            "sslmode=re quire",
        ])
        .prop_map(Breakage::StoreQuery),
        proptest::sample::select(vec![
            "db.example.com",
            "db.example.com:99999",
            "db.example.com:x",
            "",
            "[::1",
            "127.0.0.1",
            "db example.com",
            "%",
        ])
        .prop_map(Breakage::StoreHost),
        Just(Breakage::DuplicateKey),
        Just(Breakage::SecretShape),
        Just(Breakage::MissingEnv),
        proptest::sample::select(vec![
            ("AIRLOCK_INSTANCES__PROD__MAX_RETRIES", "many"),
            ("AIRLOCK_INSTANCES__PROD__URL__X", "1"),
            ("AIRLOCK_INSTANCES__PROD__PASWORD", "x"),
            ("AIRLOCK_STORE____URL", "x"),
            ("AIRLOCK_INSTANCES__PROD__LABELS", "{"),
            ("AIRLOCK_INSTANCES__PROD__ALLOW_INSECURE", "yes"),
        ])
        .prop_map(|(name, value)| Breakage::BadOverride(name, value)),
        proptest::sample::select(vec!["other", "", "a b", "a+b"]).prop_map(Breakage::KeyName),
        any::<prop::sample::Index>().prop_map(Breakage::Truncate),
        (
            any::<prop::sample::Index>(),
            proptest::sample::select(vec![
                "\"",
                "\n",
                "[",
                "]",
                "=",
                "{",
                "}",
                "\n[instances.x]\n",
                "\\",
                "é",
                "#",
                "'",
            ])
        )
            .prop_map(|(at, text)| Breakage::Insert(at, text)),
        any::<prop::sample::Index>().prop_map(Breakage::KeyFileCut),
    ]
}

/// Secrets: long enough never to appear in a message by chance, in the characters a URL carries
/// without escaping.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{14,24}".prop_map(|s| format!("Sx{s}"))
}

/// The text of a valid signing key file made from `secret`, and its secret part (the base64
/// seed after the last `+`).
fn key_text(name: &str, secret: &str) -> (String, String) {
    let mut seed = [0u8; 32];
    for (byte, s) in seed.iter_mut().zip(secret.bytes().cycle()) {
        *byte = s;
    }
    let text = airlock_audit::note::NoteSigner::from_seed(name, &seed)
        .expect("a valid key name")
        .to_private_text();
    // After the fourth `+` (`PRIVATE+KEY+<name>+<id>+<data>`): base64 itself may hold `+`.
    let secret = text
        .trim()
        .splitn(5, '+')
        .nth(4)
        .unwrap_or_default()
        .to_owned();
    (format!("{}\n", text.trim()), secret)
}

fn build(place: Place, secret: &str, breakages: &[Breakage]) -> Case {
    let mut password = "password = { env = \"PROD_PW\" }".to_owned();
    let mut vars = vec![("PROD_PW".to_owned(), "not-the-secret".to_owned())];
    let mut store_host = "db.example.com".to_owned();
    let mut store_query = "sslmode=verify-full&sslrootcert=system".to_owned();
    let mut store = None;
    let mut directory = String::new();
    let mut audit = String::new();
    let mut key_file = None;
    let mut key_name = "airlock-test";
    let mut instance_url = "https://airflow.example.com/";
    let mut username = "airlock";
    let mut extra = String::new();
    let mut shown_secret = secret.to_owned();
    for breakage in breakages {
        match breakage {
            Breakage::InstanceUrl(url) => instance_url = url,
            Breakage::EmptyUsername => username = "",
            Breakage::UnknownKey => extra.push_str("pasword = \"x\"\n"),
            Breakage::WrongType(key) => extra.push_str(&format!("{key} = [\"x\"]\n")),
            Breakage::ZeroConcurrency => extra.push_str("max_concurrency = 0\n"),
            Breakage::StoreQuery(query) => store_query = (*query).to_owned(),
            Breakage::StoreHost(host) => store_host = (*host).to_owned(),
            Breakage::DuplicateKey => extra.push_str("username = \"again\"\n"),
            Breakage::SecretShape | Breakage::MissingEnv => {}
            Breakage::BadOverride(name, value) => {
                vars.push(((*name).to_owned(), (*value).to_owned()))
            }
            Breakage::KeyName(name) => key_name = name,
            Breakage::Truncate(_) | Breakage::Insert(..) | Breakage::KeyFileCut(_) => {}
        }
    }
    let shape_broken = breakages.iter().any(|b| matches!(b, Breakage::SecretShape));
    let env_missing = breakages.iter().any(|b| matches!(b, Breakage::MissingEnv));
    let url = format!("postgres://airlock:{secret}@{store_host}/airlock?{store_query}");
    let secret_var = |vars: &mut Vec<(String, String)>, name: &str, value: &str| {
        if !env_missing {
            vars.push((name.to_owned(), value.to_owned()));
        }
    };
    let literal = |value: &str| {
        if shape_broken {
            format!("{{ env = \"X\", literal = \"{value}\" }}")
        } else {
            format!("\"{value}\"")
        }
    };
    match place {
        Place::PasswordLiteral => password = format!("password = {}", literal(secret)),
        Place::PasswordEnv => {
            password = "password = { env = \"SECRET_PW\" }".to_owned();
            secret_var(&mut vars, "SECRET_PW", secret);
        }
        Place::PasswordOverride => {
            vars.push((
                "AIRLOCK_INSTANCES__PROD__PASSWORD".to_owned(),
                secret.to_owned(),
            ));
        }
        Place::StoreUrlLiteral => store = Some(format!("url = {}", literal(&url))),
        Place::StoreUrlEnv => {
            store = Some("url = { env = \"STORE_URL\" }".to_owned());
            secret_var(&mut vars, "STORE_URL", &url);
        }
        Place::StoreUrlOverride => vars.push(("AIRLOCK_STORE__URL".to_owned(), url.clone())),
        Place::JumpcloudKey => {
            directory = format!(
                "[directory]\nkind = \"jumpcloud\"\napi_key = {}\n",
                literal(secret)
            );
        }
        Place::LdapBindPassword => {
            directory = format!(
                "[directory]\nkind = \"ldap\"\nurl = \"ldaps://ldap.example.com\"\nbind_dn = \"cn=airlock,dc=example,dc=com\"\nbind_password = {}\nuser_base_dn = \"ou=people,dc=example,dc=com\"\ngroup_base_dn = \"ou=groups,dc=example,dc=com\"\n",
                literal(secret)
            );
        }
        Place::SigningKey => {
            let (mut text, mut seed) = key_text("airlock-test", secret);
            for breakage in breakages {
                if let Breakage::KeyFileCut(at) = breakage {
                    text.truncate(at.index(text.len() + 1));
                }
            }
            // What is left of the seed is still secret, once long enough to mean something.
            let kept = text.trim_end().splitn(5, '+').nth(4).unwrap_or_default();
            if kept.len() >= 12 && seed.starts_with(kept) {
                seed = kept.to_owned();
            }
            shown_secret = seed;
            key_file = Some(text);
            audit = format!(
                "[audit.checkpoints]\nsigning_key_file = \"signing.key\"\nkey_name = \"{key_name}\"\nfile = \"checkpoint\"\n"
            );
        }
    }
    let store = store
        .map(|line| format!("[store]\n{line}\n"))
        .unwrap_or_default();
    let mut text = format!(
        "{store}[instances.prod]\nurl = \"{instance_url}\"\nusername = \"{username}\"\n{password}\n{extra}{directory}{audit}"
    );
    for breakage in breakages {
        match breakage {
            Breakage::Truncate(at) => {
                let at = floor_char_boundary(&text, at.index(text.len() + 1));
                text.truncate(at);
            }
            Breakage::Insert(at, insert) => {
                let at = floor_char_boundary(&text, at.index(text.len() + 1));
                text.insert_str(at, insert);
            }
            _ => {}
        }
    }
    Case {
        text,
        vars,
        key_file,
        secret: shown_secret,
    }
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Loads the case from a throw-away directory holding its key file.
fn load_case(case: &Case) -> (Result<Config, LoadError>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    if let Some(key) = &case.key_file {
        let path = dir.path().join("signing.key");
        std::fs::write(&path, key).expect("write key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }
    let path: PathBuf = dir.path().join("airlock.toml");
    (load_str(&case.text, &path, &case.vars), dir)
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn a_secret_never_appears_in_the_error_of_a_broken_config(
        place in place(),
        secret in secret(),
        breakages in proptest::collection::vec(breakage(), 0..4),
    ) {
        let case = build(place, &secret, &breakages);
        let secret = &case.secret;
        let (result, _dir) = load_case(&case);
        match result {
            Err(err) => {
                let shown = format!("{err}\n{err:?}");
                prop_assert!(!shown.contains(secret.as_str()), "the secret leaked ({place:?}):\n{shown}\nconfig:\n{}", case.text);
            }
            Ok(config) => {
                let shown = format!("{config:?}");
                prop_assert!(!shown.contains(secret.as_str()), "the secret is in Debug ({place:?}):\n{shown}");
            }
        }
    }

    #[test]
    fn a_store_url_error_never_shows_the_password(
        secret in secret(),
        user in "[a-z]{0,6}",
        host in prop_oneof![
            proptest::sample::select(vec!["db.example.com", "127.0.0.1", "[::1]", "", "db.example.com:5432"]).prop_map(str::to_owned),
            "[a-zA-Z0-9.%:\\[\\]-]{0,12}",
        ],
        query in pg_url_text(),
    ) {
        let url = format!("postgres://{user}:{secret}@{host}/db?{query}");
        if let Err(err) = PgUrl::parse(&url) {
            let shown = format!("{err}\n{err:?}");
            prop_assert!(!shown.contains(&secret), "the password leaked: {shown}");
        }
    }
}

/// The well-formed case of each place loads, so the property above is not vacuous.
#[test]
fn every_secret_place_loads_when_nothing_is_broken() {
    for place in [
        Place::PasswordLiteral,
        Place::PasswordEnv,
        Place::PasswordOverride,
        Place::StoreUrlLiteral,
        Place::StoreUrlEnv,
        Place::StoreUrlOverride,
        Place::JumpcloudKey,
        Place::LdapBindPassword,
        Place::SigningKey,
    ] {
        let case = build(place, "SxSecretValue12345", &[]);
        let (result, _dir) = load_case(&case);
        assert!(
            result.is_ok(),
            "{place:?}: {:?}\n{}",
            result.err(),
            case.text
        );
    }
}
