//! How [`plan_instance`](super::plan_instance) plans one instance: roles as code first, then
//! one merge-join of the desired accounts (sorted by username) with the instance's accounts
//! (sorted once), so each account is looked at once and nothing is looked up by name; reasons
//! and role sets are built only for the operations that need them.
//!
//! A large instance is joined in consecutive username ranges, one thread each
//! (`std::thread::scope`, as many as the machine has cores, at most eight), and the parts are
//! put together in username order: the plan is the same for any number of parts (property
//! tested against the reference planner with 2, 3 and 5 parts). Threads do no I/O; the planner
//! stays a pure function.

use super::{
    threads, DesiredAccount, InstancePlan, ManagedRecord, Op, PlanInput, PlannedOp, Warning,
};
use crate::model::{Account, Permission, Role, RoleName, Username};
use crate::policy::BUILTIN_ROLES;
use std::cmp::Ordering;
use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

/// Plans one instance: see [`super::plan_instance`]. A large instance is planned in username
/// ranges on the machine's cores ([`threads::parts_for`], counting accounts desired plus
/// held); the plan does not depend on how many.
pub(super) fn plan_instance(input: &PlanInput<'_>) -> InstancePlan {
    let size = input.desired.accounts.len() + input.actual.accounts.len();
    plan_in_parts(input, threads::parts_for(size))
}

/// Plans one instance in (at most) `parts` username ranges, each joined on its own thread (the
/// first on this one), and puts the parts together in username order.
pub(super) fn plan_in_parts(input: &PlanInput<'_>, parts: usize) -> InstancePlan {
    let mut head = Planner::new(input, input.managed.range::<Username, _>(..), 0);
    let available = head.roles();
    // The Airflow client lists accounts sorted by username, each once. The join checks that
    // as it goes (it reads every account anyway); only when they turn out otherwise are they
    // sorted, and joined again.
    let listed: Vec<&Account> = input.actual.accounts.iter().collect();
    let joined = match join_all(input, &available, &listed, parts) {
        Some(joined) => joined,
        None => {
            let sorted = by_username(&input.actual.accounts);
            join_all(input, &available, &sorted, parts)
                .unwrap_or_else(|| unreachable!("invariant: sorted accounts join"))
        }
    };
    let (mut warnings, mut managed, mut unmanaged) = (head.warnings, Vec::new(), Vec::new());
    let folded = joined.iter().all(|part| part.folded);
    let roles = head.ops[0].len();
    let mut phases = vec![head.ops];
    for part in joined {
        phases.push(part.ops);
        warnings.extend(part.warnings);
        append(&mut managed, part.managed);
        append(&mut unmanaged, part.unmanaged);
    }
    // Each operation is moved once: phase by phase, the head's and then each part's in order.
    let total = phases.iter().flatten().map(Vec::len).sum();
    let mut all: Vec<PlannedOp> = Vec::with_capacity(total);
    for phase in 0..PHASES {
        for part in &mut phases {
            all.append(&mut part[phase]);
        }
    }
    // Same order as sorting by (phase, target, op): within a phase every target has the same
    // prefix (`role ` or `account `), so comparing the names compares the targets. Account
    // operations were collected by phase in username order, one per username and phase, so
    // the order is there already when every username is spelled as its key; otherwise it is
    // usually there too (checked first: sorting would also allocate a scratch buffer). The
    // role operations (phase 0, only the head's) are always checked.
    let order = |a: &PlannedOp, b: &PlannedOp| {
        (a.op.phase(), a.op.target_name(), &a.op).cmp(&(b.op.phase(), b.op.target_name(), &b.op))
    };
    let sorted = |ops: &[PlannedOp]| ops.is_sorted_by(|a, b| order(a, b).is_le());
    let checked = if folded { &all[..roles] } else { &all[..] };
    if !sorted(checked) {
        all.sort_by(order);
    }
    debug_assert!(
        sorted(&all),
        "operations of {} out of order",
        input.instance
    );
    warnings.sort();
    InstancePlan {
        ops: all,
        warnings,
        unmanaged,
        // Pushed in username order, each once (the join sees every username once, and the
        // parts are consecutive ranges).
        managed,
    }
}

/// Appends `more` to `to`, without copying when `to` is empty.
fn append<T>(to: &mut Vec<T>, mut more: Vec<T>) {
    if to.is_empty() {
        std::mem::swap(to, &mut more);
    } else {
        to.append(&mut more);
    }
}

/// How many phases [`Op::phase`] has.
const PHASES: usize = 6;

/// Joins the desired accounts with `haves` in (at most) `parts` username ranges, each on its
/// own thread (the first on this one). `None` when `haves` are not strictly increasing by
/// username: each part checks its own accounts, and this the pairs where two parts meet.
fn join_all<'i, 'a>(
    input: &'i PlanInput<'a>,
    available: &BTreeSet<RoleName>,
    haves: &[&'a Account],
    parts: usize,
) -> Option<Vec<Planner<'i, 'a>>> {
    let keys = split_keys(input, haves, parts);
    // Keys taken from unsorted accounts need not increase (ranges of a map must).
    if !keys.is_sorted_by(|a, b| a < b) {
        return None;
    }
    let cuts: Vec<usize> = (keys.iter())
        .map(|&k| haves.partition_point(|a| a.username < *k))
        .collect();
    // Where two parts meet, the accounts must increase too (`partition_point`'s answer on
    // accounts out of order is unspecified).
    let meets = |c: usize| c == 0 || c == haves.len() || haves[c - 1].username < haves[c].username;
    if !cuts.is_sorted() || !cuts.iter().all(|&c| meets(c)) {
        return None;
    }
    let ranges = ranges(&keys);
    let parts = ranges.len();
    let starts = std::iter::once(0).chain(cuts.iter().copied());
    let ends = cuts.iter().copied().chain(std::iter::once(haves.len()));
    let jobs = ranges.into_iter().zip(starts.zip(ends));
    let joined = threads::in_order(jobs, |(range, (start, end))| {
        join(input, available, &haves[start..end], (range, parts))
    });
    joined.into_iter().collect()
}

/// A username range: from (included) and to (excluded).
type KeyRange<'k> = (Bound<&'k Username>, Bound<&'k Username>);

/// Up to `parts - 1` increasing usernames that cut the larger side of the join into about
/// equal parts.
fn split_keys<'k>(
    input: &'k PlanInput<'_>,
    haves: &[&'k Account],
    parts: usize,
) -> Vec<&'k Username> {
    let (wants, held) = (input.desired.accounts.len(), haves.len());
    let step = |n: usize| (n / parts.max(1)).max(1);
    let take = parts.saturating_sub(1);
    if wants >= held {
        let keys = input.desired.accounts.keys();
        keys.step_by(step(wants)).skip(1).take(take).collect()
    } else {
        let keys = haves.iter().copied().map(|a| &a.username);
        keys.step_by(step(held)).skip(1).take(take).collect()
    }
}

/// The consecutive ranges that `keys` (increasing, distinct) cut all usernames into.
fn ranges<'k>(keys: &[&'k Username]) -> Vec<KeyRange<'k>> {
    let from = std::iter::once(Bound::Unbounded).chain(keys.iter().map(|&k| Bound::Included(k)));
    let to = (keys.iter().map(|&k| Bound::Excluded(k))).chain(std::iter::once(Bound::Unbounded));
    from.zip(to).collect()
}

/// One merge-join of the desired accounts in `range` with `haves`, the instance's accounts
/// there; `None` as soon as `haves` are not strictly increasing by username.
fn join<'i, 'a>(
    input: &'i PlanInput<'a>,
    available: &BTreeSet<RoleName>,
    haves: &[&'a Account],
    (range, parts): (KeyRange<'_>, usize),
) -> Option<Planner<'i, 'a>> {
    // Room for every account here: those held, and this range's share of the desired ones.
    let wanted = input.desired.accounts.len().div_ceil(parts);
    let mut plan = Planner::new(input, input.managed.range(range), haves.len() + wanted);
    let conflicts = &input.desired.conflicts;
    let mut wants = input.desired.accounts.range(range).peekable();
    let mut haves = haves.iter().copied().peekable();
    let mut last: Option<&Username> = None;
    loop {
        let order = match (wants.peek(), haves.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((u, _)), Some(have)) => (*u).cmp(&have.username),
        };
        let (want, have) = match order {
            Ordering::Less => (wants.next(), None),
            Ordering::Greater => (None, haves.next()),
            Ordering::Equal => (wants.next(), haves.next()),
        };
        if let Some(have) = have {
            if last.is_some_and(|last| *last >= have.username) {
                return None;
            }
            last = Some(&have.username);
        }
        // Protected accounts, and usernames several people claim, are left as they are.
        let untouchable = |u: &Username| input.protected.contains(u) || conflicts.contains(u);
        match (want, have) {
            (Some((u, _)), _) if untouchable(u) => {}
            (Some((u, want)), have) => plan.account(available, u, want, have),
            (None, Some(have)) if untouchable(&have.username) => {}
            (None, Some(have)) => plan.leaver(have),
            (None, None) => unreachable!("invariant: one side advanced"),
        }
    }
    Some(plan)
}

/// The instance's accounts sorted by username; of accounts sharing one (case-insensitively),
/// the last listed wins, as collecting them into a map would have it.
fn by_username(accounts: &[Account]) -> Vec<&Account> {
    // Each key's first 16 bytes, read in one pass (independent reads, which the processor
    // overlaps), order most pairs without following a pointer: sorting a large instance
    // otherwise waits on a cache miss per comparison.
    let mut sorted: Vec<(u128, &Account)> = (accounts.iter())
        .map(|a| (key_prefix(a.username.key()), a))
        .collect();
    sorted.sort_by(|(p, a), (q, b)| p.cmp(q).then_with(|| a.username.cmp(&b.username)));
    // Stable sort: of equal usernames the last listed comes last; keep it in the first's place.
    sorted.dedup_by(|later, kept| {
        let same = later.0 == kept.0 && later.1.username == kept.1.username;
        if same {
            *kept = *later;
        }
        same
    });
    sorted.into_iter().map(|(_, a)| a).collect()
}

/// The first 16 bytes of `key`, zero-padded, as a number: where two differ, they order the
/// keys as the keys' bytes do (a shorter key that is a prefix of another pads with zeros, and
/// sorts first, as it should); where they are equal, the keys must be compared.
fn key_prefix(key: &str) -> u128 {
    let mut bytes = [0u8; 16];
    let n = key.len().min(16);
    bytes[..n].copy_from_slice(&key.as_bytes()[..n]);
    u128::from_be_bytes(bytes)
}

struct Planner<'i, 'a> {
    input: &'i PlanInput<'a>,
    /// airlock's records, read in step with the join (accounts come in username order).
    records: Peekable<btree_map::Range<'a, Username, ManagedRecord>>,
    /// By phase ([`Op::phase`]).
    ops: [Vec<PlannedOp>; PHASES],
    warnings: Vec<Warning>,
    /// In username order.
    managed: Vec<Username>,
    unmanaged: Vec<Username>,
    /// [`Planner::has`]'s answers, by the role name's address.
    available: Vec<(usize, bool)>,
    /// [`Planner::has_all`]'s answers, by the role set's address.
    available_sets: Vec<(usize, bool)>,
    /// Role sets held by accounts planned so far ([`Planner::held`]): most accounts hold one
    /// of a few, and their operations share it instead of each copying it.
    held: Vec<Arc<BTreeSet<RoleName>>>,
    /// Whether every account operation so far names a username spelled as its key.
    folded: bool,
}

impl<'i, 'a> Planner<'i, 'a> {
    /// A planner for the accounts whose records `records` holds, about `accounts` of them.
    fn new(
        input: &'i PlanInput<'a>,
        records: btree_map::Range<'a, Username, ManagedRecord>,
        accounts: usize,
    ) -> Self {
        Self {
            input,
            records: records.peekable(),
            ops: Default::default(),
            warnings: Vec::new(),
            managed: Vec::with_capacity(accounts),
            unmanaged: Vec::new(),
            available: Vec::new(),
            available_sets: Vec::new(),
            held: Vec::new(),
            folded: true,
        }
    }

    /// Whether accounts may hold `role` here. Desired roles are clones of the policy's names,
    /// so there are only a few distinct ones: the answer is remembered by the name's address.
    fn has(&mut self, available: &BTreeSet<RoleName>, role: &RoleName) -> bool {
        let at = role.as_str().as_ptr() as usize;
        if let Some((_, yes)) = self.available.iter().find(|(p, _)| *p == at) {
            return *yes;
        }
        let yes = available.contains(role);
        if self.available.len() < 64 {
            self.available.push((at, yes));
        }
        yes
    }

    /// Whether accounts may hold every role of `roles` here. Desired accounts granted the same
    /// roles share one set, so the answer is remembered by the set's address.
    fn has_all(&mut self, available: &BTreeSet<RoleName>, roles: &Arc<BTreeSet<RoleName>>) -> bool {
        let at = Arc::as_ptr(roles) as usize;
        if let Some((_, yes)) = self.available_sets.iter().find(|(p, _)| *p == at) {
            return *yes;
        }
        let yes = roles.iter().all(|r| self.has(available, r));
        if self.available_sets.len() < 64 {
            self.available_sets.push((at, yes));
        }
        yes
    }

    /// `roles`, as held by an account, shared with earlier accounts that hold the same.
    fn held(&mut self, roles: &BTreeSet<RoleName>) -> Arc<BTreeSet<RoleName>> {
        if let Some(set) = self.held.iter().find(|set| same_roles(set, roles)) {
            return Arc::clone(set);
        }
        let set = Arc::new(roles.clone());
        if self.held.len() < 16 {
            self.held.push(Arc::clone(&set));
        }
        set
    }

    /// airlock's record of `username`; usernames must be asked for in increasing order.
    fn record(&mut self, username: &Username) -> Option<&'a ManagedRecord> {
        while self.records.next_if(|(u, _)| *u < username).is_some() {}
        self.records
            .peek()
            .filter(|(u, _)| *u == username)
            .map(|(_, r)| *r)
    }

    fn push(&mut self, op: Op, reason: Arc<str>) {
        self.folded &= op.username().is_none_or(Username::is_folded);
        self.ops[usize::from(op.phase())].push(PlannedOp {
            instance: self.input.instance.clone(),
            op,
            reason,
        });
    }

    fn warn(&mut self, message: String) {
        self.warnings.push(Warning {
            instance: Some(self.input.instance.clone()),
            message,
        });
    }

    /// Roles as code; returns the roles accounts may hold here.
    fn roles(&mut self) -> BTreeSet<RoleName> {
        let input = self.input;
        let actual_roles: BTreeMap<&RoleName, &Role> =
            input.actual.roles.iter().map(|r| (&r.name, r)).collect();
        let mut available: BTreeSet<RoleName> = actual_roles.keys().map(|r| (*r).clone()).collect();
        for (name, wanted) in &input.desired.roles {
            let wanted: BTreeSet<Permission> = match &input.actual.catalog {
                Some(catalog) => {
                    let missing: Vec<String> = wanted
                        .difference(catalog)
                        .map(ToString::to_string)
                        .collect();
                    if !missing.is_empty() {
                        self.warn(format!(
                            "role {name}: permissions not (yet) on this instance, left out: {}",
                            missing.join("; ")
                        ));
                    }
                    wanted.intersection(catalog).cloned().collect()
                }
                None => wanted.clone(),
            };
            available.insert(name.clone());
            match actual_roles.get(name) {
                None => self.push(
                    Op::CreateRole {
                        role: name.clone(),
                        permissions: wanted,
                    },
                    "role defined in policy".into(),
                ),
                Some(role) if role.permissions != wanted => self.push(
                    Op::UpdateRole {
                        role: name.clone(),
                        add: wanted.difference(&role.permissions).cloned().collect(),
                        remove: role.permissions.difference(&wanted).cloned().collect(),
                    },
                    "role drifted from policy".into(),
                ),
                Some(_) => {}
            }
        }
        available.extend(BUILTIN_ROLES.iter().filter_map(|b| RoleName::new(*b).ok()));
        available
    }

    /// A desired account, and the instance's account of that name if it has one.
    fn account(
        &mut self,
        available: &BTreeSet<RoleName>,
        username: &Username,
        want: &DesiredAccount,
        have: Option<&Account>,
    ) {
        let roles: Arc<BTreeSet<RoleName>> = if self.has_all(available, &want.roles) {
            Arc::clone(&want.roles)
        } else {
            let missing: Vec<&str> = (want.roles.iter())
                .filter(|r| !available.contains(*r))
                .map(RoleName::as_str)
                .collect();
            self.warn(format!(
                "{username}: role(s) {} do not exist on this instance, left out",
                missing.join(", ")
            ));
            Arc::new(
                (want.roles.iter())
                    .filter(|r| available.contains(*r))
                    .cloned()
                    .collect(),
            )
        };
        self.managed.push(username.clone());
        let Some(have) = have else {
            let op = Op::CreateAccount {
                username: username.clone(),
                email: want.email.clone(),
                first_name: want.first_name.clone(),
                last_name: want.last_name.clone(),
                roles,
            };
            return self.push(op, Arc::clone(&want.reason));
        };
        if !same_roles(&have.roles, &roles) {
            let returning = self
                .record(username)
                .is_some_and(|m| m.suspended_at.is_some());
            let op = Op::SetRoles {
                username: username.clone(),
                from: self.held(&have.roles),
                to: roles,
            };
            let reason = if returning {
                Arc::from(format!("returning: {}", want.reason))
            } else {
                Arc::clone(&want.reason)
            };
            self.push(op, reason);
        }
        let email = (!have.email.eq_ignore_ascii_case(&want.email)).then(|| want.email.to_string());
        let first_name =
            (*have.first_name != *want.first_name).then(|| want.first_name.to_string());
        let last_name = (*have.last_name != *want.last_name).then(|| want.last_name.to_string());
        if email.is_some() || first_name.is_some() || last_name.is_some() {
            let op = Op::UpdateProfile {
                username: username.clone(),
                email,
                first_name,
                last_name,
            };
            self.push(op, "profile changed in the directory".into());
        }
    }

    /// An account the instance holds and nobody should: a leaver if airlock manages it or the
    /// policy's scope covers its person, otherwise unmanaged and left alone.
    fn leaver(&mut self, have: &Account) {
        let input = self.input;
        let username = &have.username;
        let in_scope_leaver = input.desired.inactive_in_scope.contains(username);
        let record = match self.record(username) {
            Some(r) => r.clone(),
            None if in_scope_leaver => ManagedRecord::default(),
            None => return self.unmanaged.push(username.clone()),
        };
        let why = (input.desired.excluded.get(username).map(String::as_str))
            .unwrap_or("no longer in the directory");
        match record.suspended_at {
            Some(at) if have.roles.is_empty() => {
                let due = (input.leavers.delete_after_secs)
                    .is_some_and(|after| (input.now - at).num_seconds() >= after);
                if due {
                    let reason = format!(
                        "leaver ({why}), suspended since {}",
                        at.format("%Y-%m-%d %H:%M UTC")
                    );
                    let op = Op::Delete {
                        username: username.clone(),
                    };
                    return self.push(op, reason.into());
                }
            }
            _ => {
                let op = Op::Suspend {
                    username: username.clone(),
                    roles: self.held(&have.roles),
                };
                self.push(op, format!("leaver: {why}").into());
            }
        }
        self.managed.push(username.clone());
    }
}

/// Whether two role sets are equal; most hold one role, compared without walking the sets.
fn same_roles(a: &BTreeSet<RoleName>, b: &BTreeSet<RoleName>) -> bool {
    a.len() == b.len()
        && match a.len() {
            0 => true,
            1 => a.first() == b.first(),
            _ => a == b,
        }
}
