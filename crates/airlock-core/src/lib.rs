//! airlock's pure domain model.
//!
//! Names (`InstanceName`, `Username`, `RoleName`), what an Airflow instance holds (`Account`,
//! `Role`, `Permission`), inventory flags and snapshot diffs, and the injected `Clock`.
//!
//! This crate does no I/O and knows nothing of HTTP, databases or async runtimes: every
//! function here is deterministic given its inputs, which is what lets the planner and the
//! inventory logic be tested exhaustively without a server.
#![warn(missing_docs)]

pub mod access;
pub mod clock;
pub mod directory;
pub mod history;
pub mod inventory;
pub mod model;
pub mod plan;
pub mod policy;

pub use clock::{Clock, FixedClock, SystemClock};
pub use model::{Account, InstanceName, NameError, Permission, Role, RoleName, Username};
