//! Integration tests of the state store against real databases: the shared suite runs on
//! SQLite (a temporary file) and on PostgreSQL (a fresh database on the machine's server, see
//! `support`), plus the checks only one backend can have (files, locks, connection failures).

/// Generates `sqlite::<name>` and `postgres::<name>` tests in the calling module for each
/// function `<name>(TestDb)` of the suite module `$suite` (a module of this crate). Defined
/// before the modules, so that each suite can use it.
macro_rules! on_both_backends {
    ($suite:ident => $($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() -> anyhow::Result<()> {
                    let db = crate::support::TestDb::new(airlock_store::Backend::Sqlite).await;
                    crate::$suite::$test(db).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() -> anyhow::Result<()> {
                    let db = crate::support::TestDb::new(airlock_store::Backend::Postgres).await;
                    crate::$suite::$test(db).await
                }
            )+
        }
    };
}

mod access;
mod api_tokens;
mod audit;
mod delivery;
mod history;
mod leases;
mod postgres_only;
mod postgres_tls;
mod scim;
mod sqlite_only;
mod suite;
mod support;

on_both_backends!(
    suite =>
    the_store_reports_which_backend_it_uses,
    a_new_store_is_at_the_newest_schema_version,
    reopening_a_store_applies_no_migration_twice_and_keeps_its_data,
    a_begun_snapshot_is_running_until_it_finishes,
    a_completed_snapshot_returns_its_metadata_and_payload_unchanged,
    failed_snapshot_is_never_returned_as_complete,
    a_finished_snapshot_cannot_be_finished_again,
    latest_complete_snapshots_are_newest_first_and_skip_running_and_failed,
    snapshots_started_in_the_same_millisecond_have_one_stable_order,
    latest_complete_snapshots_only_return_the_requested_instance,
    snapshot_runs_list_every_status_newest_first_and_filter_by_instance,
    recording_a_created_account_twice_is_idempotent,
    created_accounts_compare_usernames_case_insensitively,
    usernames_fold_ascii_letters_only_as_fab_does,
    forgetting_a_created_account_touches_only_that_instance,
    a_store_migrated_by_a_newer_airlock_is_refused_before_migrating,
    clones_of_a_store_write_concurrently_without_losing_rows,
);
