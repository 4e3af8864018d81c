//! Test support for airlock's integration tests: starts real services on 127.0.0.1.
//!
//! - [`airflow`]: real Apache Airflow servers (3.3.2 with the FAB auth manager, and 2.11.2) from
//!   the cached virtualenvs that `scripts/install-airflow.sh` installs, shared per test binary or
//!   private per test, always killed when the test process ends, however it ends.
//! - [`proxy`]: a small fault-injecting HTTP/1.1 proxy to put in front of a real server
//!   (error statuses, delays, resets, truncated and garbage bodies).
//! - [`postgres`]: throw-away databases on the machine's PostgreSQL.
//! - [`pg_cluster`]: a throw-away PostgreSQL cluster of a test's own ([`PgCluster`]) on a free
//!   port, to stop (fast shutdown), kill (a crash) and start again on the same port with the
//!   same data; removed when dropped, and never outliving the test process; optionally with
//!   TLS only ([`PgClusterBuilder::tls`]).
//! - [`test_ca`]: a throw-away CA ([`TestCa`]) that issues server certificates for the names
//!   a test asks for.
//! - [`tcp_proxy`]: a byte-forwarding TCP proxy ([`TcpProxy`]) in front of any TCP server, on a
//!   thread of its own, that can pass, blackhole (hold everything, close nothing) or reset its
//!   connections at any time, with counters of open and accepted connections.
//! - [`insights`]: a JumpCloud Directory Insights fixture ([`InsightsFixture`]), checked
//!   against JumpCloud's Swagger description of it.
//! - [`hec`]: a local Splunk HTTP Event Collector ([`HecReceiver`]) implementing the
//!   documented event, answer and indexer-acknowledgement formats, with faults (busy, garbage,
//!   withheld acks, a crash and restart on the same port); checked against the examples of
//!   Splunk's documentation, as no real Splunk runs here.
//! - [`rsyslog`]: a real rsyslog of a test's own ([`Rsyslog`]) receiving syslog over TCP, TLS
//!   or UDP on a free port and writing what it received to a file; stoppable and restartable.
//! - [`slapd`]: a real OpenLDAP server with its own throw-away configuration and a seeded,
//!   JumpCloud-shaped directory (users, nested and empty groups, StartTLS and LDAPS).
//! - [`oidc`]: a real OpenID Connect provider (npm's `oidc-provider`, installed by
//!   `scripts/install-oidc-provider.sh`) configured like a JumpCloud OIDC application
//!   ([`OidcProvider`]): trailing-slash issuer, a `groups` claim as a list or a string, RS256 ID
//!   tokens and JWT access tokens for an API audience, sign-in through the real authorization
//!   code flow with PKCE, and key rotation.
//!
//! ```no_run
//! use airlock_testkit::airflow::{self, AirflowVersion};
//! use airlock_testkit::proxy::{Fault, FaultProxy, Rule};
//!
//! # async fn example() -> anyhow::Result<()> {
//! // One Airflow 3 per test binary, shared by its tests.
//! let server = airflow::shared(AirflowVersion::V3);
//! // A proxy that fails the second and third user listing with 503.
//! let proxy = FaultProxy::start(&server.base_url).await;
//! proxy.add_rule(Rule::new("/auth/fab/v1/users", Fault::status(503)).after(1).times(2));
//! // ... point the client under test at proxy.url(), log in as
//! // server.admin_user / server.admin_password, and assert on proxy.requests_seen().
//! # Ok(())
//! # }
//! ```
//!
//! What it does not do: imitate any service it can run for real ([`hec`] is the exception, as
//! Splunk cannot run here; it is checked against the vendor's documented examples). A test that needs a service which is missing fails
//! loudly with a message saying how to provide it; nothing here skips a test.

pub mod airflow;
pub mod hec;
pub mod insights;
pub mod oidc;
pub mod pg_cluster;
pub mod postgres;
pub mod proxy;
pub mod rsyslog;
pub mod slapd;
pub mod tcp_proxy;
pub mod test_ca;

pub use airflow::{AirflowServer, AirflowServerBuilder, AirflowVersion};
pub use hec::{HecFault, HecReceiver};
pub use insights::InsightsFixture;
pub use oidc::{Groups, OidcProvider, OidcProviderBuilder, OidcUser, Tokens};
pub use pg_cluster::{PgCluster, PgClusterBuilder};
pub use postgres::{fresh_pg_database, pg_admin_url, PgTestDb};
pub use proxy::{Fault, FaultProxy, Rule};
pub use rsyslog::{Listen as RsyslogListen, Rsyslog};
pub use slapd::Slapd;
pub use tcp_proxy::{ProxyMode, TcpProxy};
pub use test_ca::{IssuedCert, TestCa};
