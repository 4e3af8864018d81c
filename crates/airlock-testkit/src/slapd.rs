//! A real OpenLDAP `slapd` on 127.0.0.1 with a JumpCloud-shaped, seeded directory.
//!
//! [`shared`] starts one server per test binary on first use; [`start`] starts a private one.
//! Either way the kit writes its own throw-away configuration (a `slapd.conf`) and database in a
//! temporary directory, never touching the machine's slapd service or `/etc/ldap/slapd.d`, and
//! runs `slapd -d none -h "ldap://127.0.0.1:P/ ldaps://127.0.0.1:P2/" -f slapd.conf` under the
//! same supervisor as the Airflow servers (`airflow/supervisor.rs`), so the server dies
//! when its handle is dropped or the test process ends, however it ends.
//!
//! The server has:
//! - one `mdb` database for the suffix `o=<org id>,dc=jumpcloud,dc=com` ([`Slapd::base_dn`]),
//!   with the `memberof` overlay (people and nested groups get `memberOf`), `refint` (deleting
//!   a person removes them from groups) and `ppolicy` (so `pwdAccountLockedTime` exists);
//! - a root DN for seeding ([`Slapd::admin_dn`]), a read-only bind user ([`Slapd::bind_dn`])
//!   and a second read-only bind user whose searches are limited to [`LIMITED_SIZE`] entries
//!   ([`Slapd::limited_bind_dn`]);
//! - StartTLS on the `ldap://` port and LDAPS on a second port, with a server certificate for
//!   `127.0.0.1` and `localhost` signed by a throw-away CA ([`Slapd::ca_pem`]) made with the
//!   `openssl` command;
//! - the sample tree below under `ou=Users` ([`Slapd::users_dn`]), where JumpCloud keeps both
//!   its users (`inetOrgPerson`, RDN `uid`) and its groups (`groupOfNames`, RDN `cn`).
//!
//! | person | DN's RDN | notes | direct groups |
//! |---|---|---|---|
//! | alice | `uid=alice` | | airflow-admins, engineering |
//! | bob | `uid=bob` | | data-science |
//! | carol | `uid=carol` | `pwdAccountLockedTime: 000001010000Z` | engineering |
//! | dave | `uid=dave` | `employeeType: suspended` | data-science |
//! | jsmith | `cn=Smith\, John` | a comma in the RDN | engineering |
//! | zoe | `cn=Zoë Ångström` | non-ASCII RDN and names | data-science, `ops, on-call` |
//! | erin | `uid=erin` | | airflow-users |
//! | frank | `uid=frank` | | airflow-admins |
//! | grace | `uid=grace` | | cycle-a |
//! | heidi | `uid=heidi` | | `ops, on-call` |
//! | ivan, judy, mallory | `uid=…` | judy has no `mail` | none |
//! | (none) | `cn=No Username` | no `uid` | none |
//!
//! Groups: `airflow-users` has the *groups* `engineering` and `data-science` as members (plus
//! erin); `cycle-a` and `cycle-b` are members of each other; `empty` has only the empty DN as
//! member (`groupOfNames` requires one), i.e. no people; `ops, on-call` has a comma in its name.
//!
//! Tests must not change the sample tree (other tests read it); a test that needs its own
//! entries creates them under [`Slapd::fresh_ou`] with [`Slapd::ldif`].
//!
//! Besides core, cosine, nis and inetOrgPerson the schema has an auxiliary class
//! `airlockAdAccount` with Active Directory's `sAMAccountName`, `userAccountControl` and binary
//! `objectGUID`, so tests can build AD-shaped people (AD's `user`/`group` classes and
//! `objectCategory` are not there).
//!
//! What it does not do: replication, SASL, client certificates, or imitate Active Directory
//! beyond those three attributes.

use std::fmt;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use base64::Engine as _;

use crate::airflow::random_secret;
use crate::airflow::supervisor::Supervised;

/// The organisation id of the shared server (JumpCloud ids are 24 hex digits).
pub const SHARED_ORG_ID: &str = "5f0c1a2b3c4d5e6f70819203";

/// How many entries one search of [`Slapd::limited_bind_dn`] may return.
pub const LIMITED_SIZE: usize = 5;

/// Where Debian installs slapd's loadable modules (`back_mdb`, `memberof`, ...).
const MODULE_DIR: &str = "/usr/lib/ldap";

/// Where Debian installs the schema files.
const SCHEMA_DIR: &str = "/etc/ldap/schema";

/// Active Directory's account attributes (with AD's own OIDs) on an auxiliary class, so that
/// tests can build AD-shaped people: `sAMAccountName`, `userAccountControl` and the binary
/// `objectGUID`. The class's OID is under OpenLDAP's experimental arc.
const AD_SCHEMA: &str = "\
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.2 NAME 'objectGUID'
  EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.4203.666.11.1717.1 NAME 'airlockAdAccount' AUXILIARY
  MAY ( sAMAccountName $ userAccountControl $ objectGUID ) )
";

/// What to install when a tool is missing.
const INSTALL_HINT: &str = "install Debian's packages: apt-get install -y slapd ldap-utils openssl";

/// How long slapd may take to accept connections after being spawned.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// How often the ports are polled while slapd starts.
const STARTUP_POLL: Duration = Duration::from_millis(50);

/// How many log lines a startup error carries.
const LOG_TAIL_LINES: usize = 30;

/// How many times a start is retried when another process took a free port first.
const PORT_ATTEMPTS: usize = 3;

/// A running slapd on 127.0.0.1; stopped (with its directory) when dropped.
pub struct Slapd {
    /// `ldap://127.0.0.1:PORT` (plain, StartTLS available).
    pub url: String,
    /// `ldaps://127.0.0.1:PORT2`.
    pub ldaps_url: String,
    /// The PEM certificate of the throw-away CA that signed the server certificate.
    pub ca_pem: Vec<u8>,
    /// The organisation id in the suffix.
    pub org_id: String,
    /// The suffix: `o=<org id>,dc=jumpcloud,dc=com`.
    pub base_dn: String,
    /// `ou=Users,<base_dn>`: the sample people and groups.
    pub users_dn: String,
    /// The read-only bind user: `cn=airlock-reader,<base_dn>`.
    pub bind_dn: String,
    /// Its password (a throw-away test credential).
    pub bind_password: String,
    /// A read-only bind user whose searches stop after [`LIMITED_SIZE`] entries (paged or not):
    /// `cn=airlock-limited,<base_dn>`, same password as [`Slapd::bind_password`].
    pub limited_bind_dn: String,
    /// The root DN (bypasses access control; for seeding).
    pub admin_dn: String,
    /// Its password.
    pub admin_password: String,
    port: u16,
    ldaps_port: u16,
    ldapmodify: PathBuf,
    // Field order matters: the process stops (and its supervisor removes the home) before the
    // TempDir is dropped.
    process: Supervised,
    home: tempfile::TempDir,
}

impl fmt::Debug for Slapd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slapd")
            .field("url", &self.url)
            .field("ldaps_url", &self.ldaps_url)
            .field("base_dn", &self.base_dn)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &"<redacted>")
            .field("admin_password", &"<redacted>")
            .field("home", &self.home.path())
            .finish_non_exhaustive()
    }
}

static SHARED: OnceLock<Result<Slapd, String>> = OnceLock::new();

/// One server per test binary (org id [`SHARED_ORG_ID`]), started and seeded on first use,
/// shared by all tests of the binary. Never dropped: it stops when the test process exits.
///
/// Blocking; tests calling it concurrently wait for the same start.
///
/// # Panics
/// When the server cannot be started (the message says why, with the log's tail); every later
/// call panics with the same message instead of trying again.
pub fn shared() -> &'static Slapd {
    match SHARED.get_or_init(|| start_with_org(SHARED_ORG_ID).map_err(|err| format!("{err:#}"))) {
        Ok(server) => server,
        Err(message) => panic!("shared slapd is unavailable: {message}"),
    }
}

/// A fresh, private, seeded server with a random org id, stopped when dropped.
pub fn start() -> anyhow::Result<Slapd> {
    let org_id = uuid::Uuid::new_v4().simple().to_string()[..24].to_owned();
    start_with_org(&org_id)
}

/// A fresh, private, seeded server for `org_id`, stopped when dropped.
pub fn start_with_org(org_id: &str) -> anyhow::Result<Slapd> {
    if org_id.is_empty() || !org_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("the org id must be ASCII letters and digits, got {org_id:?}");
    }
    let tools = Tools::find()?;
    let mut attempt = 1;
    loop {
        match start_once(&tools, org_id) {
            Ok(server) => return Ok(server),
            Err(StartError::PortTaken(err)) if attempt < PORT_ATTEMPTS => {
                eprintln!("airlock-testkit: retrying slapd start: {err:#}");
                attempt += 1;
            }
            Err(StartError::PortTaken(err) | StartError::Other(err)) => return Err(err),
        }
    }
}

impl Slapd {
    /// The plain LDAP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The LDAPS port on 127.0.0.1.
    pub fn ldaps_port(&self) -> u16 {
        self.ldaps_port
    }

    /// The server's throw-away directory (configuration, database, certificates, log).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The last `lines` lines of the server log, for a failing test's message.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Applies `ldif` as the root DN with `ldapmodify -a`: records without a `changetype` are
    /// added; `changetype: modify`, `delete` and `modrdn` records work as usual. Stops at the
    /// first failing record. Blocking.
    pub fn ldif(&self, ldif: &str) -> anyhow::Result<()> {
        run_ldapmodify(
            &self.ldapmodify,
            &self.url,
            &self.admin_dn,
            &self.home.path().join("admin.pw"),
            ldif,
        )
    }

    /// Creates a new, uniquely named `ou=<prefix>-<random>` under the base DN and returns its DN:
    /// a place for a test's own entries that no other test reads.
    pub fn fresh_ou(&self, prefix: &str) -> anyhow::Result<String> {
        let name = format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let dn = format!("ou={},{}", dn_escape(&name), self.base_dn);
        self.ldif(&format!(
            "{}\nobjectClass: organizationalUnit\n{}\n",
            ldif_line("dn", &dn),
            ldif_line("ou", &name)
        ))?;
        Ok(dn)
    }
}

/// One LDIF line `attr: value`, base64-encoded (`attr:: …`) when the value is not a safe string
/// (non-ASCII, a leading space, colon or `<`, a trailing space, or a line break).
pub fn ldif_line(attr: &str, value: &str) -> String {
    let safe = value
        .bytes()
        .all(|b| b.is_ascii() && b != b'\n' && b != b'\r' && b != 0)
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ');
    if safe {
        format!("{attr}: {value}")
    } else {
        format!(
            "{attr}:: {}",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

/// One LDIF line `attr:: <base64>` for a binary value (e.g. an `objectGUID`).
pub fn ldif_binary_line(attr: &str, value: &[u8]) -> String {
    format!(
        "{attr}:: {}",
        base64::engine::general_purpose::STANDARD.encode(value)
    )
}

/// Escapes an attribute value for use in an RDN (RFC 4514): `, + " \ < > ; =` and NUL always,
/// a leading space or `#` and a trailing space.
pub fn dn_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
        } else if special {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

/// The external programs the kit runs.
struct Tools {
    slapd: PathBuf,
    ldapmodify: PathBuf,
    openssl: PathBuf,
}

impl Tools {
    fn find() -> anyhow::Result<Self> {
        let tools = Self {
            slapd: find_program("slapd")?,
            ldapmodify: find_program("ldapmodify")?,
            openssl: find_program("openssl")?,
        };
        for module in ["back_mdb.la", "memberof.la", "refint.la", "ppolicy.la"] {
            let path = Path::new(MODULE_DIR).join(module);
            if !path.exists() {
                bail!("slapd module {} is missing; {INSTALL_HINT}", path.display());
            }
        }
        Ok(tools)
    }
}

/// `name` on `PATH`, or in `/usr/sbin` and `/usr/bin` (slapd lives in sbin, which a normal
/// user's `PATH` may lack).
fn find_program(name: &str) -> anyhow::Result<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("`{name}` is not installed; {INSTALL_HINT}"))
}

enum StartError {
    /// slapd could not bind a port: worth another try on other ports.
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(err: anyhow::Error) -> Self {
        Self::Other(err)
    }
}

fn start_once(tools: &Tools, org_id: &str) -> Result<Slapd, StartError> {
    let home = tempfile::Builder::new()
        .prefix("airlock-slapd-")
        .tempdir()
        .context("cannot create a temporary directory for slapd")?;
    let dir = home.path();
    std::fs::create_dir(dir.join("db")).context("cannot create the slapd database directory")?;
    make_certificates(&tools.openssl, dir)?;

    let base_dn = format!("o={org_id},dc=jumpcloud,dc=com");
    let admin_dn = format!("cn=admin,{base_dn}");
    let bind_dn = format!("cn=airlock-reader,{base_dn}");
    let limited_bind_dn = format!("cn=airlock-limited,{base_dn}");
    let admin_password = random_secret(24);
    let bind_password = random_secret(24);
    write_file(&dir.join("admin.pw"), admin_password.as_bytes())?;
    write_file(&dir.join("airlock-ad.schema"), AD_SCHEMA.as_bytes())?;
    write_file(
        &dir.join("slapd.conf"),
        slapd_conf(dir, &base_dn, &admin_dn, &admin_password, &limited_bind_dn).as_bytes(),
    )?;

    let port = free_port()?;
    let ldaps_port = free_port()?;
    let url = format!("ldap://127.0.0.1:{port}");
    let ldaps_url = format!("ldaps://127.0.0.1:{ldaps_port}");
    let debug = if std::env::var_os("AIRLOCK_TESTKIT_VERBOSE").is_some() {
        "stats"
    } else {
        "none"
    };
    let started = Instant::now();
    let mut process = Supervised::spawn(
        &tools.slapd,
        &[
            // Any -d keeps slapd in the foreground (the supervisor needs that); `none` still
            // prints errors.
            "-d".to_owned(),
            debug.to_owned(),
            "-h".to_owned(),
            format!("{url}/ {ldaps_url}/"),
            "-f".to_owned(),
            dir.join("slapd.conf").display().to_string(),
        ],
        &[("LDAPNOINIT".to_owned(), "1".to_owned())],
        dir,
        &dir.join("slapd.log"),
    )?;
    wait_until_listening(&mut process, &[port, ldaps_port])?;

    let users_dn = format!("ou=Users,{base_dn}");
    let seed = seed_ldif(
        &base_dn,
        &users_dn,
        &bind_dn,
        &limited_bind_dn,
        &bind_password,
    );
    run_ldapmodify(
        &tools.ldapmodify,
        &url,
        &admin_dn,
        &dir.join("admin.pw"),
        &seed,
    )
    .map_err(|err| {
        let tail = process.log_tail(LOG_TAIL_LINES);
        anyhow::anyhow!("{err:#}\nlast lines of the slapd log:\n{tail}")
    })?;
    if std::env::var_os("AIRLOCK_TESTKIT_VERBOSE").is_some() {
        eprintln!(
            "airlock-testkit: slapd up on ports {port}/{ldaps_port} in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }

    let ca_pem = std::fs::read(dir.join("ca.pem")).context("cannot read the test CA")?;
    Ok(Slapd {
        url,
        ldaps_url,
        ca_pem,
        org_id: org_id.to_owned(),
        base_dn,
        users_dn,
        bind_dn,
        bind_password,
        limited_bind_dn,
        admin_dn,
        admin_password,
        port,
        ldaps_port,
        ldapmodify: tools.ldapmodify.clone(),
        process,
        home,
    })
}

fn slapd_conf(
    dir: &Path,
    base_dn: &str,
    admin_dn: &str,
    admin_password: &str,
    limited_bind_dn: &str,
) -> String {
    let dir = dir.display();
    format!(
        r#"# Written by airlock-testkit for one test server; removed with it.
include {SCHEMA_DIR}/core.schema
include {SCHEMA_DIR}/cosine.schema
include {SCHEMA_DIR}/nis.schema
include {SCHEMA_DIR}/inetorgperson.schema
include {dir}/airlock-ad.schema
modulepath {MODULE_DIR}
moduleload back_mdb
moduleload memberof
moduleload refint
moduleload ppolicy
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
TLSCACertificateFile {dir}/ca.pem
TLSCertificateFile {dir}/server.pem
TLSCertificateKeyFile {dir}/server.key
sizelimit unlimited

database mdb
maxsize 67108864
suffix "{base_dn}"
rootdn "{admin_dn}"
rootpw {admin_password}
directory {dir}/db
index objectClass eq
limits dn.exact="{limited_bind_dn}" size={LIMITED_SIZE}
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
overlay refint
refint_attributes member
overlay ppolicy
"#
    )
}

/// Writes `ca.pem` (a throw-away CA) and `server.pem`/`server.key` (signed by it, for
/// 127.0.0.1 and localhost) into `dir`.
fn make_certificates(openssl: &Path, dir: &Path) -> anyhow::Result<()> {
    write_file(
        &dir.join("server.ext"),
        b"subjectAltName=IP:127.0.0.1,DNS:localhost\n\
          basicConstraints=critical,CA:FALSE\n\
          keyUsage=critical,digitalSignature\n\
          extendedKeyUsage=serverAuth\n",
    )?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "7",
            "-subj",
            "/CN=airlock test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "7",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    ];
    for args in steps {
        let output = Command::new(openssl)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .context("cannot run openssl")?;
        if !output.status.success() {
            bail!(
                "`openssl {}` failed ({}): {}",
                args[0],
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    Ok(())
}

/// The base entries, the bind users and the sample tree (see the module docs).
fn seed_ldif(
    base_dn: &str,
    users_dn: &str,
    bind_dn: &str,
    limited_bind_dn: &str,
    bind_password: &str,
) -> String {
    let org = base_dn
        .strip_prefix("o=")
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default();
    let mut out = format!(
        "dn: {base_dn}\nobjectClass: organization\no: {org}\n\n\
         dn: {users_dn}\nobjectClass: organizationalUnit\nou: Users\n\n"
    );
    for (dn, cn) in [
        (bind_dn, "airlock-reader"),
        (limited_bind_dn, "airlock-limited"),
    ] {
        out.push_str(&format!(
            "dn: {dn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: {cn}\nuserPassword: {bind_password}\n\n"
        ));
    }

    struct Person<'a> {
        rdn: &'a str,
        uid: Option<&'a str>,
        given: &'a str,
        sn: &'a str,
        mail: bool,
        extra: &'a [(&'a str, &'a str)],
    }
    let people = [
        Person {
            rdn: "uid=alice",
            uid: Some("alice"),
            given: "Alice",
            sn: "Smith",
            mail: true,
            extra: &[],
        },
        Person {
            rdn: "uid=bob",
            uid: Some("bob"),
            given: "Bob",
            sn: "Jones",
            mail: true,
            extra: &[],
        },
        Person {
            rdn: "uid=carol",
            uid: Some("carol"),
            given: "Carol",
            sn: "White",
            mail: true,
            extra: &[("pwdAccountLockedTime", "000001010000Z")],
        },
        Person {
            rdn: "uid=dave",
            uid: Some("dave"),
            given: "Dave",
            sn: "Brown",
            mail: true,
            extra: &[("employeeType", "suspended")],
        },
        Person {
            rdn: "cn=Smith\\, John",
            uid: Some("jsmith"),
            given: "John",
            sn: "Smith",
            mail: true,
            extra: &[],
        },
        Person {
            rdn: "cn=Zoë Ångström",
            uid: Some("zoe"),
            given: "Zoë",
            sn: "Ångström",
            mail: true,
            extra: &[],
        },
        Person {
            rdn: "uid=erin",
            uid: Some("erin"),
            given: "Erin",
            sn: "Green",
            mail: true,
            extra: &[],
        },
        Person {
            rdn: "uid=frank",
            uid: Some("frank"),
            given: "Frank",
            sn: "Black",
            mail: true,
            extra: &[],
        },
        Person {
            rdn: "uid=grace",
            uid: Some("grace"),
            given: "Grace",
            sn: "Hopper",
            mail: true,
            extra: &[],
        },
        Person {
            rdn: "uid=heidi",
            uid: Some("heidi"),
            given: "Heidi",
            sn: "Klum",
            mail: true,
            extra: &[],
        },
        Person {
            rdn: "uid=ivan",
            uid: Some("ivan"),
            given: "Ivan",
            sn: "Petrov",
            mail: true,
            extra: &[],
        },
        Person {
            rdn: "uid=judy",
            uid: Some("judy"),
            given: "Judy",
            sn: "Garland",
            mail: false,
            extra: &[],
        },
        Person {
            rdn: "uid=mallory",
            uid: Some("mallory"),
            given: "Mallory",
            sn: "Moe",
            mail: true,
            extra: &[("employeeType", "contractor")],
        },
        Person {
            rdn: "cn=No Username",
            uid: None,
            given: "No",
            sn: "Username",
            mail: false,
            extra: &[],
        },
    ];
    for p in &people {
        let dn = format!("{},{users_dn}", p.rdn);
        let cn = if p.rdn.starts_with("cn=") {
            p.rdn["cn=".len()..].replace("\\,", ",")
        } else {
            format!("{} {}", p.given, p.sn)
        };
        out.push_str(&ldif_line("dn", &dn));
        out.push_str("\nobjectClass: inetOrgPerson\n");
        out.push_str(&ldif_line("cn", &cn));
        out.push('\n');
        out.push_str(&ldif_line("givenName", p.given));
        out.push('\n');
        out.push_str(&ldif_line("sn", p.sn));
        out.push('\n');
        if let Some(uid) = p.uid {
            out.push_str(&format!("uid: {uid}\n"));
            if p.mail {
                out.push_str(&format!("mail: {uid}@example.com\n"));
            }
        }
        for (attr, value) in p.extra {
            out.push_str(&ldif_line(attr, value));
            out.push('\n');
        }
        out.push('\n');
    }

    let person = |rdn: &str| format!("{rdn},{users_dn}");
    let group = |cn: &str| format!("cn={},{users_dn}", dn_escape(cn));
    let groups: [(&str, Vec<String>); 7] = [
        (
            "airflow-admins",
            vec![person("uid=alice"), person("uid=frank")],
        ),
        (
            "engineering",
            vec![
                person("uid=alice"),
                person("uid=carol"),
                person("cn=Smith\\, John"),
            ],
        ),
        (
            "data-science",
            vec![
                person("uid=bob"),
                person("uid=dave"),
                person("cn=Zoë Ångström"),
            ],
        ),
        (
            "airflow-users",
            vec![
                group("engineering"),
                group("data-science"),
                person("uid=erin"),
            ],
        ),
        (
            "ops, on-call",
            vec![person("cn=Zoë Ångström"), person("uid=heidi")],
        ),
        // groupOfNames requires a member: the empty DN stands for "nobody".
        ("empty", vec![String::new()]),
        ("cycle-a", vec![person("uid=grace")]),
    ];
    for (cn, members) in &groups {
        out.push_str(&ldif_line("dn", &group(cn)));
        out.push_str("\nobjectClass: groupOfNames\n");
        out.push_str(&ldif_line("cn", cn));
        out.push('\n');
        for member in members {
            if member.is_empty() {
                out.push_str("member:\n");
            } else {
                out.push_str(&ldif_line("member", member));
                out.push('\n');
            }
        }
        out.push('\n');
    }
    // The cycle is closed after both exist, so the memberof overlay gives both a memberOf.
    out.push_str(&format!(
        "dn: {}\nobjectClass: groupOfNames\ncn: cycle-b\nmember: {}\n\n\
         dn: {}\nchangetype: modify\nadd: member\nmember: {}\n-\n\n",
        group("cycle-b"),
        group("cycle-a"),
        group("cycle-a"),
        group("cycle-b"),
    ));
    out
}

fn run_ldapmodify(
    ldapmodify: &Path,
    url: &str,
    admin_dn: &str,
    password_file: &Path,
    ldif: &str,
) -> anyhow::Result<()> {
    let mut child = Command::new(ldapmodify)
        .args(["-a", "-x", "-H", url, "-D", admin_dn, "-y"])
        .arg(password_file)
        // No ~/.ldaprc or /etc/ldap/ldap.conf: only the arguments count.
        .env("LDAPNOINIT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}; {INSTALL_HINT}", ldapmodify.display()))?;
    let mut stdin = child
        .stdin
        .take()
        .expect("invariant: stdin was configured as a pipe");
    // ldapmodify reads all of its input before it exits, so writing first cannot deadlock on
    // its (small) output.
    let written = stdin.write_all(ldif.as_bytes());
    drop(stdin);
    let output = child
        .wait_with_output()
        .context("cannot wait for ldapmodify")?;
    written.context("cannot write LDIF to ldapmodify")?;
    if !output.status.success() {
        bail!(
            "ldapmodify against {url} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            last_record(&String::from_utf8_lossy(&output.stdout))
        );
    }
    Ok(())
}

/// The last thing ldapmodify said it was doing, for an error message.
fn last_record(stdout: &str) -> String {
    stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| format!(" (after: {line})"))
        .unwrap_or_default()
}

fn wait_until_listening(process: &mut Supervised, ports: &[u16]) -> Result<(), StartError> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        let failure = if let Some(reason) = process.exit_reason() {
            format!("slapd on ports {ports:?} stopped during startup: {reason}")
        } else if ports.iter().all(|&port| accepts(port)) {
            return Ok(());
        } else if Instant::now() >= deadline {
            format!(
                "slapd did not accept connections on ports {ports:?} within {} s",
                STARTUP_DEADLINE.as_secs()
            )
        } else {
            thread::sleep(STARTUP_POLL);
            continue;
        };
        let tail = process.log_tail(LOG_TAIL_LINES);
        let err = anyhow::anyhow!("{failure}; last lines of the slapd log:\n{tail}");
        return Err(if tail.contains("Address already in use") {
            StartError::PortTaken(err)
        } else {
            StartError::Other(err)
        });
    }
}

fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// A port that was free on 127.0.0.1 a moment ago (the OS picks it; we release it for slapd).
fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind 127.0.0.1:0")?;
    Ok(listener
        .local_addr()
        .context("cannot read the bound port")?
        .port())
}

fn write_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldif_lines_base64_encode_unsafe_values() {
        assert_eq!(ldif_line("uid", "alice"), "uid: alice");
        assert_eq!(ldif_line("cn", "Zoë"), "cn:: Wm/Dqw==");
        assert_eq!(ldif_line("cn", " lead"), "cn:: IGxlYWQ=");
        assert_eq!(ldif_line("cn", ":x"), "cn:: Ong=");
    }

    #[test]
    fn dn_escape_escapes_specials_and_edge_spaces() {
        assert_eq!(dn_escape("Smith, John"), "Smith\\, John");
        assert_eq!(dn_escape(" #a+b "), "\\ #a\\+b\\ ");
        assert_eq!(dn_escape("#x"), "\\#x");
        assert_eq!(dn_escape("plain"), "plain");
    }

    #[test]
    fn the_seed_names_every_group_member_by_a_dn_under_the_users_ou() {
        let seed = seed_ldif(
            "o=x,dc=jumpcloud,dc=com",
            "ou=Users,o=x,dc=jumpcloud,dc=com",
            "cn=r",
            "cn=l",
            "pw",
        );
        assert!(seed.contains("member: cn=engineering,ou=Users,o=x,dc=jumpcloud,dc=com"));
        assert!(seed.contains("dn: cn=ops\\, on-call,ou=Users,o=x,dc=jumpcloud,dc=com"));
        assert!(seed.contains("member:\n"));
    }

    #[test]
    fn a_private_server_takes_changes_and_is_gone_after_drop() {
        let server = start().expect("slapd starts");
        assert!(server.base_dn.ends_with(",dc=jumpcloud,dc=com"));
        assert!(server.ca_pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
        let ou = server.fresh_ou("kit").expect("fresh ou");
        server
            .ldif(&format!(
                "dn: uid=new,{ou}\nobjectClass: inetOrgPerson\nuid: new\ncn: New\nsn: New\n\n\
                 dn: uid=new,{ou}\nchangetype: modify\nreplace: mail\nmail: new@example.com\n-\n\n\
                 dn: uid=new,{ou}\nchangetype: delete\n"
            ))
            .expect("add, modify and delete");
        let err = server
            .ldif(&format!("dn: uid=new,{ou}\nchangetype: delete\n"))
            .expect_err("already deleted");
        assert!(format!("{err:#}").contains("No such object"), "{err:#}");

        let (home, ports) = (
            server.home().to_owned(),
            [server.port(), server.ldaps_port()],
        );
        assert!(ports.iter().all(|&port| accepts(port)));
        drop(server);
        assert!(!home.exists(), "{} is left behind", home.display());
        assert!(!ports.iter().any(|&port| accepts(port)));
    }
}
