//! The LDAP source against a real OpenLDAP `slapd` that the test kit starts on 127.0.0.1 with a
//! JumpCloud-shaped, seeded tree (see `airlock_testkit::slapd` for its people and groups).
//! Tests share one server and never change its sample tree; a test that needs its own entries
//! makes them under a fresh OU.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use airlock_core::directory::{DirectorySnapshot, GroupName, PersonStatus};
use airlock_directory::ldap::{
    Disabled, ErrorClass, ErrorKind, LdapError, LdapSettings, LdapSource, Membership, Operation,
};
use airlock_directory::{DirectoryError, Source};
use airlock_testkit::slapd::{self, ldif_binary_line, ldif_line, Slapd, LIMITED_SIZE};
use secrecy::SecretString;
use url::Url;

/// Settings for the shared server's sample tree over plain LDAP.
fn settings(kit: &Slapd) -> LdapSettings {
    let mut s = LdapSettings::new(
        Url::parse(&kit.url).expect("kit url"),
        kit.bind_dn.clone(),
        SecretString::from(kit.bind_password.clone()),
        kit.users_dn.clone(),
        kit.users_dn.clone(),
    );
    s.timeout = Duration::from_secs(10);
    s.disabled = Disabled::Present {
        attr: "pwdAccountLockedTime".into(),
    };
    s
}

async fn read(settings: LdapSettings) -> Result<DirectorySnapshot, LdapError> {
    LdapSource::new(settings).read().await
}

async fn read_ok(settings: LdapSettings) -> DirectorySnapshot {
    match read(settings).await {
        Ok(snapshot) => snapshot,
        Err(err) => panic!("read failed: {err}"),
    }
}

/// username -> (sorted transitive groups, status).
fn by_username(snapshot: &DirectorySnapshot) -> BTreeMap<String, (Vec<String>, PersonStatus)> {
    snapshot
        .people
        .values()
        .map(|p| {
            let groups = p.groups.iter().map(|g| g.0.clone()).collect();
            (p.username.clone(), (groups, p.status))
        })
        .collect()
}

/// What the sample tree holds, read with `Disabled::Present("pwdAccountLockedTime")`.
fn expected_sample() -> BTreeMap<String, (Vec<String>, PersonStatus)> {
    use PersonStatus::{Active, Suspended};
    let rows: [(&str, &[&str], PersonStatus); 13] = [
        (
            "alice",
            &["airflow-admins", "airflow-users", "engineering"],
            Active,
        ),
        ("bob", &["airflow-users", "data-science"], Active),
        ("carol", &["airflow-users", "engineering"], Suspended),
        ("dave", &["airflow-users", "data-science"], Active),
        ("erin", &["airflow-users"], Active),
        ("frank", &["airflow-admins"], Active),
        ("grace", &["cycle-a", "cycle-b"], Active),
        ("heidi", &["ops, on-call"], Active),
        ("ivan", &[], Active),
        ("jsmith", &["airflow-users", "engineering"], Active),
        ("judy", &[], Active),
        ("mallory", &[], Active),
        (
            "zoe",
            &["airflow-users", "data-science", "ops, on-call"],
            Active,
        ),
    ];
    rows.into_iter()
        .map(|(user, groups, status)| {
            let groups = groups.iter().map(|g| (*g).to_owned()).collect();
            (user.to_owned(), (groups, status))
        })
        .collect()
}

fn sample_groups() -> Vec<GroupName> {
    [
        "airflow-admins",
        "airflow-users",
        "cycle-a",
        "cycle-b",
        "data-science",
        "empty",
        "engineering",
        "ops, on-call",
    ]
    .into_iter()
    .map(|g| GroupName(g.to_owned()))
    .collect()
}

/// A port on 127.0.0.1 that nothing listens on (it was free a moment ago).
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

#[tokio::test]
async fn reading_the_jumpcloud_tree_with_member_lists_resolves_nested_groups_and_keeps_the_empty_group(
) {
    let kit = slapd::shared();
    let snapshot = read_ok(settings(kit)).await;

    assert_eq!(by_username(&snapshot), expected_sample());
    assert_eq!(
        snapshot.groups.iter().cloned().collect::<Vec<_>>(),
        sample_groups()
    );
    // Ids are entryUUIDs; the person without a uid was skipped, not given an empty username.
    for (id, person) in &snapshot.people {
        assert_eq!(&person.id, id);
        assert_eq!(id.0.len(), 36, "{id} is not an entryUUID");
    }
    let zoe = snapshot
        .people
        .values()
        .find(|p| p.username == "zoe")
        .expect("zoe");
    assert_eq!(zoe.first_name.as_deref(), Some("Zoë"));
    assert_eq!(zoe.last_name.as_deref(), Some("Ångström"));
    assert_eq!(zoe.email.as_deref(), Some("zoe@example.com"));
    let judy = snapshot
        .people
        .values()
        .find(|p| p.username == "judy")
        .expect("judy");
    assert_eq!(judy.email, None);
}

#[tokio::test]
async fn reading_with_member_of_gives_the_same_snapshot_as_member_lists() {
    let kit = slapd::shared();
    let by_member = read_ok(settings(kit)).await;
    let mut s = settings(kit);
    s.membership = Membership::MemberOf {
        attr: "memberOf".into(),
    };
    let by_member_of = read_ok(s).await;
    assert_eq!(by_member_of, by_member);
}

#[tokio::test]
async fn paging_with_pages_smaller_than_the_directory_gives_the_same_snapshot() {
    let kit = slapd::shared();
    let whole = read_ok(settings(kit)).await;
    for page_size in [1, 3] {
        let mut s = settings(kit);
        s.page_size = page_size;
        assert_eq!(read_ok(s).await, whole, "page size {page_size}");
    }
}

#[tokio::test]
async fn the_jumpcloud_preset_reads_the_kit_tree_over_ldaps() {
    let kit = slapd::shared();
    let mut s = LdapSettings::jumpcloud(
        &kit.org_id,
        kit.bind_dn.clone(),
        SecretString::from(kit.bind_password.clone()),
    );
    assert_eq!(s.user_base_dn, kit.users_dn);
    // Only the address differs from JumpCloud's: the kit's LDAPS port and CA.
    s.url = Url::parse(&kit.ldaps_url).expect("kit ldaps url");
    s.ca_pem = Some(kit.ca_pem.clone());
    let source = LdapSource::new(s);
    assert_eq!(
        source.describe(),
        format!("ldap ldaps://127.0.0.1:{}", kit.ldaps_port())
    );
    let snapshot = source.read().await.expect("read over ldaps");
    assert_eq!(by_username(&snapshot), expected_sample());
    // The preset keys people by uid.
    assert!(snapshot.people.keys().any(|id| id.0 == "alice"));
}

#[tokio::test]
async fn starttls_and_ldaps_with_the_kits_ca_read_the_tree() {
    let kit = slapd::shared();
    let plain = read_ok(settings(kit)).await;

    let mut starttls = settings(kit);
    starttls.starttls = true;
    starttls.ca_pem = Some(kit.ca_pem.clone());
    assert_eq!(read_ok(starttls).await, plain);

    let mut ldaps = settings(kit);
    ldaps.url = Url::parse(&kit.ldaps_url).expect("kit ldaps url");
    ldaps.ca_pem = Some(kit.ca_pem.clone());
    assert_eq!(read_ok(ldaps).await, plain);
}

#[tokio::test]
async fn starttls_and_ldaps_without_the_ca_fail_as_permanent_tls_errors() {
    let kit = slapd::shared();
    let mut starttls = settings(kit);
    starttls.starttls = true;
    let mut ldaps = settings(kit);
    ldaps.url = Url::parse(&kit.ldaps_url).expect("kit ldaps url");

    for s in [starttls, ldaps] {
        let err = read(s).await.expect_err("the kit's CA is not trusted");
        assert!(matches!(err.kind, ErrorKind::Tls(_)), "{err}");
        assert_eq!(err.operation, Operation::Connect, "{err}");
        assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
        let message = err.to_string();
        assert!(message.starts_with("ldap ldap"), "{message}");
        assert!(message.contains("127.0.0.1"), "{message}");
        assert!(message.contains("certificate"), "{message}");
    }
}

#[tokio::test]
async fn a_wrong_bind_password_is_a_permanent_error_that_does_not_show_the_password() {
    let kit = slapd::shared();
    let wrong = format!("{}-wrong", kit.bind_password);
    let mut s = settings(kit);
    s.bind_password = SecretString::from(wrong.clone());
    let err = read(s).await.expect_err("wrong password");

    assert_eq!(err.result_code(), Some(49), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(
        err.operation,
        Operation::Bind {
            dn: kit.bind_dn.clone()
        }
    );
    let message = err.to_string();
    assert!(message.contains(&kit.url), "{message}");
    assert!(message.contains("invalid credentials (49)"), "{message}");
    assert!(!message.contains(&wrong), "{message}");
    assert!(!format!("{err:?}").contains(&wrong));

    // Through the crate's Source the same, in one line.
    let mut s = settings(kit);
    s.bind_password = SecretString::from(wrong.clone());
    let err = Source::Ldap(LdapSource::new(s))
        .read()
        .await
        .expect_err("wrong password");
    assert!(matches!(err, DirectoryError::Ldap(_)));
    assert!(!err.to_string().contains(&wrong));
    assert!(!err.to_string().contains('\n'));
}

#[tokio::test]
async fn a_closed_port_is_a_transient_error_after_the_retries() {
    let port = closed_port();
    let mut s = settings(slapd::shared());
    s.url = Url::parse(&format!("ldap://127.0.0.1:{port}")).expect("url");
    s.retries = 1;
    let err = read(s).await.expect_err("nothing listens");
    assert!(matches!(err.kind, ErrorKind::Unreachable(_)), "{err}");
    assert_eq!(err.operation, Operation::Connect);
    assert!(err.is_transient());
    assert!(
        err.to_string().starts_with(&format!(
            "ldap ldap://127.0.0.1:{port}: connect: cannot connect"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_transient_timeout() {
    // The kernel completes the handshake for the backlog; nobody ever reads or answers.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let port = silent.local_addr().expect("local addr").port();
    let mut s = settings(slapd::shared());
    s.url = Url::parse(&format!("ldap://127.0.0.1:{port}")).expect("url");
    s.timeout = Duration::from_millis(300);
    s.retries = 0;
    let err = read(s).await.expect_err("no answer");
    assert!(matches!(err.kind, ErrorKind::Timeout(_)), "{err}");
    assert!(matches!(err.operation, Operation::Bind { .. }), "{err}");
    assert!(err.is_transient());
    drop(silent);
}

#[tokio::test]
async fn a_filter_injection_attempt_in_a_configured_value_is_escaped() {
    let kit = slapd::shared();
    // Unescaped, this would become (&(objectClass=inetOrgPerson)(memberOf=*)(uid=*)): everyone
    // in any group.
    let injected = read_ok(settings(kit).only_members_of("*)(uid=*")).await;
    assert!(injected.people.is_empty(), "{:?}", by_username(&injected));
    // The raw filter it would have become does match people, so the escaping is what stopped it.
    let mut raw = settings(kit);
    raw.user_filter = "(&(objectClass=inetOrgPerson)(memberOf=*)(uid=*))".into();
    assert!(read_ok(raw).await.people.len() > 5);

    // The same setting with a real group DN narrows the read as meant.
    let engineering = format!("cn=engineering,{}", kit.users_dn);
    let narrowed = read_ok(settings(kit).only_members_of(&engineering)).await;
    let usernames: Vec<_> = by_username(&narrowed).into_keys().collect();
    assert_eq!(usernames, ["alice", "carol", "jsmith"]);
}

#[tokio::test]
async fn disabled_people_are_suspended_by_attribute_presence_or_value() {
    let kit = slapd::shared();
    let locked = by_username(&read_ok(settings(kit)).await);
    assert_eq!(locked["carol"].1, PersonStatus::Suspended);
    assert_eq!(locked["dave"].1, PersonStatus::Active);

    let mut s = settings(kit);
    s.disabled = Disabled::ValueIn {
        attr: "employeeType".into(),
        values: vec!["Suspended".into(), "terminated".into()],
    };
    let by_value = by_username(&read_ok(s).await);
    assert_eq!(by_value["dave"].1, PersonStatus::Suspended);
    assert_eq!(by_value["mallory"].1, PersonStatus::Active, "contractor");
    assert_eq!(by_value["carol"].1, PersonStatus::Active);

    let mut s = settings(kit);
    s.disabled = Disabled::Never;
    assert!(read_ok(s).await.active().count() == 13);
}

#[tokio::test]
async fn a_server_size_limit_fails_the_read_instead_of_returning_fewer_people() {
    let kit = slapd::shared();
    for page_size in [3, 500] {
        let mut s = settings(kit);
        s.bind_dn = kit.limited_bind_dn.clone();
        s.page_size = page_size;
        let err = read(s).await.expect_err("more people than the limit");
        assert!(matches!(err.kind, ErrorKind::Incomplete(_)), "{err}");
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(
            err.operation,
            Operation::SearchPeople {
                base: kit.users_dn.clone()
            }
        );
        let message = err.to_string();
        assert!(message.contains("size limit exceeded (4)"), "{message}");
        assert!(
            message.contains(&format!("after {LIMITED_SIZE} entries")),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_base_dn_that_does_not_exist_is_a_permanent_no_such_object_error() {
    let kit = slapd::shared();
    let mut s = settings(kit);
    s.group_base_dn = format!("ou=Nowhere,{}", kit.base_dn);
    let err = read(s).await.expect_err("no such base");
    assert_eq!(err.result_code(), Some(32), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(
        err.to_string().contains("search groups under `ou=Nowhere,"),
        "{err}"
    );
}

#[tokio::test]
async fn a_referral_fails_the_read_unless_referrals_are_ignored() {
    let kit = slapd::shared();
    let ou = kit.fresh_ou("referral").expect("fresh ou");
    kit.ldif(&format!(
        "dn: uid=local,{ou}\nobjectClass: inetOrgPerson\nuid: local\ncn: Local\nsn: Local\n\n\
         dn: ou=elsewhere,{ou}\nobjectClass: referral\nobjectClass: extensibleObject\n\
         ou: elsewhere\nref: ldap://127.0.0.1:{}/ou=elsewhere,{ou}\n",
        closed_port()
    ))
    .expect("seed a referral");
    let mut s = settings(kit);
    s.user_base_dn = ou.clone();
    s.group_base_dn = ou.clone();
    let err = read(s.clone()).await.expect_err("a referral");
    assert!(matches!(err.kind, ErrorKind::Incomplete(_)), "{err}");
    assert!(err.to_string().contains("does not follow"), "{err}");

    s.ignore_referrals = true;
    let snapshot = read_ok(s).await;
    assert_eq!(snapshot.people.len(), 1);
}

#[tokio::test]
async fn changes_in_the_directory_show_in_the_next_read() {
    let kit = slapd::shared();
    let ou = kit.fresh_ou("changes").expect("fresh ou");
    let person = |uid: &str| {
        format!(
            "dn: uid={uid},{ou}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\n"
        )
    };
    kit.ldif(&format!(
        "{}{}dn: cn=team,{ou}\nobjectClass: groupOfNames\ncn: team\nmember: uid=p1,{ou}\n\n\
         dn: cn=outer,{ou}\nobjectClass: groupOfNames\ncn: outer\nmember: cn=team,{ou}\n",
        person("p1"),
        person("p2"),
    ))
    .expect("seed");
    let mut s = settings(kit);
    s.user_base_dn = ou.clone();
    s.group_base_dn = ou.clone();
    let before = by_username(&read_ok(s.clone()).await);
    assert_eq!(before["p1"].0, ["outer", "team"]);
    assert!(before["p2"].0.is_empty());

    // p2 joins the team; p1 leaves the directory (refint drops it from the group).
    kit.ldif(&format!(
        "dn: cn=team,{ou}\nchangetype: modify\nadd: member\nmember: uid=p2,{ou}\n-\n\n\
         dn: uid=p1,{ou}\nchangetype: delete\n"
    ))
    .expect("change");
    let after = read_ok(s).await;
    let after_by_name = by_username(&after);
    assert!(!after_by_name.contains_key("p1"));
    assert_eq!(after_by_name["p2"].0, ["outer", "team"]);
    assert_eq!(after.groups.len(), 2);
}

#[tokio::test]
async fn two_people_with_the_same_id_fail_the_read() {
    let kit = slapd::shared();
    let ou = kit.fresh_ou("dupes").expect("fresh ou");
    kit.ldif(&format!(
        "dn: cn=First,{ou}\nobjectClass: inetOrgPerson\nuid: same\ncn: First\nsn: A\n\n\
         dn: cn=Second,{ou}\nobjectClass: inetOrgPerson\nuid: same\ncn: Second\nsn: B\n"
    ))
    .expect("seed");
    let mut s = settings(kit);
    s.user_base_dn = ou.clone();
    s.group_base_dn = ou;
    s.id_attr = "uid".into();
    let err = read(s).await.expect_err("duplicate ids");
    assert!(matches!(err.kind, ErrorKind::InvalidData(_)), "{err}");
    assert_eq!(err.operation, Operation::BuildSnapshot);
    assert!(err.to_string().contains("same id `same`"), "{err}");
}

#[tokio::test]
async fn tricky_names_in_dns_match_their_group_memberships() {
    let kit = slapd::shared();
    let ou = kit.fresh_ou("tricky").expect("fresh ou");
    // A comma, a plus, a leading space and non-ASCII in RDNs; the member values are spelled
    // with other escapes and case than the entries' own DNs.
    kit.ldif(&format!(
        "{}\nobjectClass: inetOrgPerson\nuid: plus\ncn: a+b\nsn: x\n\n\
         {}\nobjectClass: inetOrgPerson\nuid: accent\ncn: Ünïcødé, Jr.\nsn: y\n\n\
         dn: cn=crew,{ou}\nobjectClass: groupOfNames\ncn: crew\n{}\n{}\n",
        ldif_line("dn", &format!("cn=a\\+b,{ou}")),
        ldif_line("dn", &format!("cn=Ünïcødé\\, Jr.,{ou}")),
        ldif_line("member", &format!("CN=A\\2BB,{}", ou.to_uppercase())),
        ldif_line("member", &format!("cn=ünïcødé\\2c jr.,{ou}")),
    ))
    .expect("seed");
    let mut s = settings(kit);
    s.user_base_dn = ou.clone();
    s.group_base_dn = ou;
    let people = by_username(&read_ok(s).await);
    assert_eq!(people["plus"].0, ["crew"]);
    assert_eq!(people["accent"].0, ["crew"]);
}

#[tokio::test]
async fn the_active_directory_preset_reads_guids_account_control_and_nested_member_of() {
    let kit = slapd::shared();
    let ou = kit.fresh_ou("ad").expect("fresh ou");
    // The kit's slapd has AD's account attributes on an auxiliary class; people and groups
    // otherwise use OpenLDAP's classes (AD's `user`, `group` and objectCategory do not exist).
    let ascii_guid: Vec<u8> = (0x01..=0x10).collect();
    let binary_guid: Vec<u8> = (0xf0..=0xff).collect();
    kit.ldif(&format!(
        "dn: cn=Ann Admin,{ou}\nobjectClass: inetOrgPerson\nobjectClass: airlockAdAccount\n\
         cn: Ann Admin\nsn: Admin\ngivenName: Ann\nmail: ann@corp.example.com\n\
         sAMAccountName: ann\nuserAccountControl: 512\n{}\n\n\
         dn: cn=Dan Disabled,{ou}\nobjectClass: inetOrgPerson\nobjectClass: airlockAdAccount\n\
         cn: Dan Disabled\nsn: Disabled\nsAMAccountName: dan\nuserAccountControl: 514\n{}\n\n\
         dn: cn=Inner,{ou}\nobjectClass: groupOfNames\ncn: Inner\n\
         member: cn=Ann Admin,{ou}\nmember: cn=Dan Disabled,{ou}\n\n\
         dn: cn=Outer,{ou}\nobjectClass: groupOfNames\ncn: Outer\nmember: cn=Inner,{ou}\n",
        ldif_binary_line("objectGUID", &ascii_guid),
        ldif_binary_line("objectGUID", &binary_guid),
    ))
    .expect("seed");

    let mut s = LdapSettings::active_directory(
        Url::parse(&kit.url).expect("kit url"),
        ou,
        kit.bind_dn.clone(),
        SecretString::from(kit.bind_password.clone()),
    );
    s.user_filter = "(objectClass=airlockAdAccount)".into();
    s.group_filter = "(objectClass=groupOfNames)".into();
    let snapshot = read_ok(s).await;

    let ids: Vec<(&str, &str, PersonStatus)> = snapshot
        .people
        .values()
        .map(|p| (p.id.0.as_str(), p.username.as_str(), p.status))
        .collect();
    assert_eq!(
        ids,
        [
            (
                "04030201-0605-0807-090a-0b0c0d0e0f10",
                "ann",
                PersonStatus::Active
            ),
            (
                "f3f2f1f0-f5f4-f7f6-f8f9-fafbfcfdfeff",
                "dan",
                PersonStatus::Suspended
            ),
        ]
    );
    let people = by_username(&snapshot);
    assert_eq!(people["ann"].0, ["Inner", "Outer"]);
    assert_eq!(people["dan"].0, ["Inner", "Outer"]);
}
