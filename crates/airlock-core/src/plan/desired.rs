//! How [`desired`](super::desired) shares work between instances.
//!
//! What a person gets on an instance depends on the instance only through which grants and
//! scope groups select it. So:
//! - every person's username, grants (by group) and scope groups are worked out once
//!   ([`People`]), and the people are sorted by username once, so that each instance's maps are
//!   built from sorted runs (people sharing a username sit next to each other);
//! - instances that the same grants and scope groups select form a class, whose people part
//!   (accounts, exclusions, warnings) is computed once and copied to each of them;
//! - a desired account is shared ([`Arc`]) by every instance that wants the same one, and is
//!   reused across classes for a person whose grants there are the same.
//!
//! Service accounts, roles as code and protected accounts are then applied per instance,
//! exactly as before. The result equals the straightforward planner's (`reference.rs`).

use super::{non_empty, threads, DesiredAccount, DesiredInstance, InstanceRef, Warning};
use crate::directory::{DirectorySnapshot, GroupName, Person, PersonStatus};
use crate::model::{InstanceName, RoleName, Username};
use crate::policy::Policy;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

/// One person's facts that hold on every instance.
struct Facts<'a> {
    person: &'a Person,
    /// Their Airflow username, or why none can be derived.
    username: Result<Username, String>,
    /// Into [`People::grants`]: the grants for their groups, by group name then in policy order
    /// (the order their reasons are listed in).
    grants: Range<usize>,
    /// Into [`People::scopes`]: the scope groups they belong to.
    scopes: Range<usize>,
}

/// Every person's [`Facts`], sorted by username (ties in directory order; people without a
/// username last), with the per-grant reasons rendered once.
struct People<'a> {
    facts: Vec<Facts<'a>>,
    /// Indices into `policy.grants`.
    grants: Vec<usize>,
    /// Indices into `policy.scope_groups`.
    scopes: Vec<usize>,
    /// Per grant: `group G grants R1, R2` (shared by the accounts it alone grants to).
    reasons: Vec<Arc<str>>,
    /// Per grant: its roles, interned (equal names share one text, so that the planner can
    /// recognise a role by its address).
    roles: Vec<Vec<RoleName>>,
    /// Per grant: its roles as bits (bit `i`: the `i`-th distinct role name of the grants), or
    /// `None` when the grants name more than 64 roles; equal unions share one role set.
    role_bits: Vec<Option<u64>>,
    /// The default roles, as the accounts that get them share them.
    default_roles: Arc<BTreeSet<RoleName>>,
}

/// Role sets and reasons already built, shared by the accounts that have the same.
#[derive(Default)]
struct Shared {
    /// Role sets by their bits ([`People::role_bits`]).
    role_sets: HashMap<u64, Arc<BTreeSet<RoleName>>>,
    /// `in scope: default roles`, and the empty reason.
    default_reason: Option<Arc<str>>,
    empty_reason: Option<Arc<str>>,
}

impl<'a> People<'a> {
    fn new(policy: &Policy, directory: &'a DirectorySnapshot) -> Self {
        let mut by_group: HashMap<&GroupName, (Vec<usize>, Vec<usize>), BuildFx> =
            HashMap::default();
        for (i, g) in policy.grants.iter().enumerate() {
            by_group.entry(&g.group).or_default().0.push(i);
        }
        for (i, (g, _)) in policy.scope_groups.iter().enumerate() {
            by_group.entry(g).or_default().1.push(i);
        }
        let (mut grants, mut scopes) = (Vec::new(), Vec::new());
        let mut facts: Vec<Facts<'a>> = directory
            .people
            .values()
            .map(|person| {
                let (g0, s0) = (grants.len(), scopes.len());
                for (g, s) in person.groups.iter().filter_map(|g| by_group.get(g)) {
                    grants.extend_from_slice(g);
                    scopes.extend_from_slice(s);
                }
                Facts {
                    person,
                    username: policy.username.derive(person),
                    grants: g0..grants.len(),
                    scopes: s0..scopes.len(),
                }
            })
            .collect();
        // Stable: people sharing a username stay in directory order.
        facts.sort_by(|a, b| match (&a.username, &b.username) {
            (Ok(a), Ok(b)) => a.cmp(b),
            (a, b) => a.is_err().cmp(&b.is_err()),
        });
        let reasons = policy
            .grants
            .iter()
            .map(|g| {
                let names: Vec<&str> = g.roles.iter().map(RoleName::as_str).collect();
                Arc::from(format!("group {} grants {}", g.group, names.join(", ")))
            })
            .collect();
        // Each distinct role name once, with its bit.
        let mut interned: HashMap<&str, (RoleName, usize)> = HashMap::new();
        let (mut roles, mut role_bits) = (Vec::new(), Vec::new());
        for g in &policy.grants {
            let mut bits = Some(0u64);
            let mut names = Vec::with_capacity(g.roles.len());
            for r in &g.roles {
                let next = interned.len();
                let (name, bit) = interned.entry(r.as_str()).or_insert((r.clone(), next));
                names.push(name.clone());
                bits = bits.and_then(|b| (*bit < 64).then(|| b | 1 << *bit));
            }
            roles.push(names);
            role_bits.push(bits);
        }
        Self {
            facts,
            grants,
            scopes,
            reasons,
            roles,
            role_bits,
            default_roles: Arc::new(policy.default_roles.clone()),
        }
    }
}

/// A fast hash for the group names the policy names, looked up once per membership. Not
/// resistant to chosen collisions, which needs no resistance here: the table holds only the
/// policy's groups, so a directory's group names can make a lookup compare with at most those.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type BuildFx = std::hash::BuildHasherDefault<Fx>;

/// Which grants and scope groups select an instance: instances with equal classes get the same
/// people part.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    grants: Vec<bool>,
    scopes: Vec<bool>,
}

impl Class {
    fn of(policy: &Policy, inst: &InstanceRef<'_>) -> Self {
        Self {
            grants: (policy.grants.iter())
                .map(|g| g.instances.matches(inst.name, inst.labels))
                .collect(),
            scopes: (policy.scope_groups.iter())
                .map(|(_, sel)| sel.matches(inst.name, inst.labels))
                .collect(),
        }
    }
}

/// The people part of one class: accounts, exclusions and in-scope leavers (no roles yet), and
/// the warnings' messages.
type Part = (DesiredInstance, Vec<String>);

/// A person's account built for one class, with which of their grants applied there (bit `i`:
/// their `i`-th grant), so that a class where the same ones apply reuses it.
struct Cached {
    applied: u64,
    account: Arc<DesiredAccount>,
}

/// Computes what each instance should hold: see [`super::desired`]. With many people, each
/// class's people part is built in username ranges on the machine's cores
/// ([`threads::parts_for`]); the result does not depend on how many.
pub(super) fn desired(
    policy: &Policy,
    directory: &DirectorySnapshot,
    instances: &[InstanceRef<'_>],
) -> (BTreeMap<InstanceName, DesiredInstance>, Vec<Warning>) {
    let parts = threads::parts_for(directory.people.len());
    desired_in_parts(policy, directory, instances, parts)
}

/// [`desired`], with each class's people part built in (at most) `parts` username ranges,
/// each on its own thread (the first on this one).
pub(super) fn desired_in_parts(
    policy: &Policy,
    directory: &DirectorySnapshot,
    instances: &[InstanceRef<'_>],
    parts: usize,
) -> (BTreeMap<InstanceName, DesiredInstance>, Vec<Warning>) {
    let people = People::new(policy, directory);
    let mut classes: Vec<Class> = Vec::new();
    let class_of: Vec<usize> = instances
        .iter()
        .map(|inst| {
            let class = Class::of(policy, inst);
            classes.iter().position(|c| *c == class).unwrap_or_else(|| {
                classes.push(class);
                classes.len() - 1
            })
        })
        .collect();
    let mut uses = vec![0usize; classes.len()];
    for &c in &class_of {
        uses[c] += 1;
    }
    let mut done: Vec<Option<Part>> = vec![None; classes.len()];
    let mut cache: Vec<Option<Cached>> = Vec::new();
    cache.resize_with(people.facts.len(), || None);
    let cuts = cuts(&people.facts, parts);
    let mut shared: Vec<Shared> = Vec::new();
    shared.resize_with(cuts.len() + 1, Shared::default);
    let mut warnings = BTreeSet::new();
    let mut out = BTreeMap::new();
    for (inst, &c) in instances.iter().zip(&class_of) {
        let part = done[c].get_or_insert_with(|| {
            people_part(&people, &classes[c], &cuts, &mut cache, &mut shared)
        });
        uses[c] -= 1;
        // The class's last instance takes its part instead of copying it.
        let (mut d, messages) = if uses[c] == 0 {
            std::mem::take(part)
        } else {
            part.clone()
        };
        warnings.extend(messages.into_iter().map(|message| Warning {
            instance: Some(inst.name.clone()),
            message,
        }));
        finish_instance(policy, inst, &mut d, &mut warnings);
        out.insert(inst.name.clone(), d);
    }
    (out, warnings.into_iter().collect())
}

/// Up to `parts - 1` increasing indices that cut the people (sorted by username) into about
/// equal ranges, never inside a run of people sharing a username.
fn cuts(facts: &[Facts<'_>], parts: usize) -> Vec<usize> {
    let step = facts.len() / parts.max(1);
    let mut cuts: Vec<usize> = Vec::new();
    for k in 1..parts.max(1) {
        let mut at = (k * step).max(cuts.last().map_or(1, |c| c + 1));
        let same = |a: &Facts<'_>, b: &Facts<'_>| match (&a.username, &b.username) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        while at < facts.len() && same(&facts[at - 1], &facts[at]) {
            at += 1;
        }
        if at < facts.len() {
            cuts.push(at);
        }
    }
    cuts
}

/// What one username range yields for a class, in username order.
#[derive(Default)]
struct Pieces {
    accounts: Vec<(Username, Arc<DesiredAccount>)>,
    excluded: Vec<(Username, String)>,
    inactive: Vec<Username>,
    conflicts: Vec<Username>,
    messages: Vec<String>,
}

/// The people part of one class, from people sorted by username, built in the ranges `cuts`
/// makes (each on its own thread, with its own [`Shared`]) and put together in order.
fn people_part(
    people: &People<'_>,
    class: &Class,
    cuts: &[usize],
    cache: &mut [Option<Cached>],
    shared: &mut [Shared],
) -> Part {
    let bounds: Vec<usize> = (std::iter::once(0).chain(cuts.iter().copied()))
        .chain(std::iter::once(people.facts.len()))
        .collect();
    // Disjoint slices of the cache, one per range.
    let mut slices: Vec<&mut [Option<Cached>]> = Vec::with_capacity(bounds.len() - 1);
    let mut rest = cache;
    for w in bounds.windows(2) {
        let (mine, more) = rest.split_at_mut(w[1] - w[0]);
        slices.push(mine);
        rest = more;
    }
    let jobs = (bounds.windows(2)).zip(slices).zip(shared.iter_mut());
    let jobs = jobs.map(|((w, cache), shared)| (w[0]..w[1], cache, shared));
    let pieces = threads::in_order(jobs, |(range, cache, shared)| {
        people_range(people, class, range, cache, shared)
    });
    let mut all = Pieces::default();
    for p in pieces {
        all.accounts.extend(p.accounts);
        all.excluded.extend(p.excluded);
        all.inactive.extend(p.inactive);
        all.conflicts.extend(p.conflicts);
        all.messages.extend(p.messages);
    }
    let d = DesiredInstance {
        accounts: Arc::new(all.accounts.into_iter().collect()),
        roles: BTreeMap::new(),
        excluded: Arc::new(all.excluded.into_iter().collect()),
        inactive_in_scope: Arc::new(all.inactive.into_iter().collect()),
        conflicts: Arc::new(all.conflicts.into_iter().collect()),
    };
    (d, all.messages)
}

/// The people of `range` (sorted by username; `cache` is theirs): each run of people sharing a
/// username yields at most one account, one exclusion and one in-scope leaver, exactly as
/// inserting them one by one in directory order would (first spelling kept, last reason wins).
fn people_range(
    people: &People<'_>,
    class: &Class,
    range: Range<usize>,
    cache: &mut [Option<Cached>],
    shared: &mut Shared,
) -> Pieces {
    let facts = &people.facts[range];
    // Most people get an account: room for all of them (a run yields at most one).
    let mut accounts = Vec::with_capacity(facts.len());
    let (mut excluded, mut inactive) = (Vec::new(), Vec::new());
    let mut conflicts = Vec::new();
    let mut messages = Vec::new();
    let mut granted: Vec<usize> = Vec::new();
    let mut claimants: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < facts.len() {
        let username = match &facts[i].username {
            Ok(u) => u,
            Err(why) => {
                let f = &facts[i];
                applied(people, class, f, &mut granted);
                let in_scope = !granted.is_empty() || in_scope_group(people, class, f);
                if in_scope && f.person.status == PersonStatus::Active {
                    messages.push(format!("person {} gets no account: {why}", f.person.id));
                }
                i += 1;
                continue;
            }
        };
        let run = i..i + facts[i..]
            .iter()
            .take_while(|f| f.username.as_ref().is_ok_and(|u| u == username))
            .count();
        i = run.end;
        claimants.clear();
        let mut exclusion: Option<(&Username, &str)> = None;
        let mut leaver: Option<&Username> = None;
        for j in run {
            let f = &facts[j];
            let mask = applied(people, class, f, &mut granted);
            let in_scope = !granted.is_empty() || in_scope_group(people, class, f);
            let why_not = match (f.person.status, in_scope) {
                (PersonStatus::Suspended, _) => "suspended in the directory",
                (PersonStatus::Staged, _) => "not yet activated in the directory",
                (PersonStatus::Active, false) => "in no group with access to this instance",
                (PersonStatus::Active, true) => {
                    claimants.push(j);
                    if claimants.len() == 1 {
                        let account = account_for(people, shared, f, &granted, mask, &mut cache[j]);
                        accounts.push((username_of(f).clone(), account));
                    }
                    continue;
                }
            };
            if in_scope {
                leaver.get_or_insert(username_of(f));
            }
            let first = exclusion.map_or(username_of(f), |(first, _)| first);
            exclusion = Some((first, why_not));
        }
        if claimants.len() > 1 {
            accounts.pop();
            let ids: Vec<String> = (claimants.iter())
                .map(|&j| facts[j].person.id.to_string())
                .collect();
            let username = username_of(&facts[claimants[0]]);
            messages.push(conflict_message(&ids, username));
            conflicts.push(username.clone());
        } else if claimants.len() == 1 && accounts.last().is_some_and(|(_, a)| a.email.is_empty()) {
            accounts.pop();
            messages.push(format!(
                "{} has no email in the directory; Airflow requires one",
                username_of(&facts[claimants[0]])
            ));
        }
        excluded.extend(exclusion.map(|(u, why)| (u.clone(), why.to_string())));
        inactive.extend(leaver.cloned());
    }
    Pieces {
        accounts,
        excluded,
        inactive,
        conflicts,
        messages,
    }
}

/// Fills `granted` with the person's grants that select this class, in reason order, and
/// returns which of their grants those are (bit `i`: their `i`-th; 0 when they have more than
/// 64, which only turns off reuse).
fn applied(people: &People<'_>, class: &Class, f: &Facts<'_>, granted: &mut Vec<usize>) -> u64 {
    granted.clear();
    let mut mask = 0u64;
    for (bit, &g) in people.grants[f.grants.clone()].iter().enumerate() {
        if class.grants[g] {
            granted.push(g);
            if bit < 64 {
                mask |= 1 << bit;
            }
        }
    }
    if f.grants.len() > 64 {
        0
    } else {
        mask
    }
}

fn in_scope_group(people: &People<'_>, class: &Class, f: &Facts<'_>) -> bool {
    people.scopes[f.scopes.clone()]
        .iter()
        .any(|&s| class.scopes[s])
}

fn username_of<'f>(f: &'f Facts<'_>) -> &'f Username {
    f.username
        .as_ref()
        .expect("invariant: only people with a username are in a run")
}

/// The account an active, in-scope person gets where `granted` applies; reused from `cached`
/// when the same grants applied in an earlier class.
fn account_for(
    people: &People<'_>,
    shared: &mut Shared,
    f: &Facts<'_>,
    granted: &[usize],
    applied: u64,
    cached: &mut Option<Cached>,
) -> Arc<DesiredAccount> {
    let reusable = f.grants.len() <= 64;
    if let Some(c) = cached.as_ref().filter(|c| reusable && c.applied == applied) {
        return Arc::clone(&c.account);
    }
    let username = username_of(f);
    let (roles, reason) = roles_and_reason(people, shared, granted);
    // Where other grants applied in an earlier class, the profile is the same: shared.
    let account = match cached.as_ref() {
        Some(c) => Arc::new(DesiredAccount {
            username: c.account.username.clone(),
            person: c.account.person.clone(),
            email: Arc::clone(&c.account.email),
            first_name: Arc::clone(&c.account.first_name),
            last_name: Arc::clone(&c.account.last_name),
            roles,
            reason,
        }),
        None => {
            let local = username.as_str().split('@').next().unwrap_or_default();
            Arc::new(DesiredAccount {
                username: username.clone(),
                person: Some(f.person.id.clone()),
                email: Arc::from(f.person.email.as_deref().unwrap_or_default()),
                first_name: non_empty(f.person.first_name.as_deref(), local),
                last_name: non_empty(f.person.last_name.as_deref(), "-"),
                roles,
                reason,
            })
        }
    };
    if reusable && cached.is_none() {
        *cached = Some(Cached {
            applied,
            account: Arc::clone(&account),
        });
    }
    account
}

/// The roles `granted` gives (the default roles when they give none) and the reason: the
/// grants' reasons joined by `; `. Equal role sets, and the reason of a single grant, are
/// shared.
fn roles_and_reason(
    people: &People<'_>,
    shared: &mut Shared,
    granted: &[usize],
) -> (Arc<BTreeSet<RoleName>>, Arc<str>) {
    let bits = (granted.iter()).try_fold(0u64, |acc, &g| people.role_bits[g].map(|b| acc | b));
    let roles = match bits {
        Some(0) => None,
        Some(bits) => Some(Arc::clone(
            shared
                .role_sets
                .entry(bits)
                .or_insert_with(|| Arc::new(union(people, granted))),
        )),
        None => Some(Arc::new(union(people, granted))),
    };
    let joined = |extra: Option<&str>| {
        let parts = || (granted.iter().map(|&g| &*people.reasons[g])).chain(extra);
        let mut reason = String::with_capacity(parts().map(|p| p.len() + 2).sum());
        for part in parts() {
            if !reason.is_empty() {
                reason.push_str("; ");
            }
            reason.push_str(part);
        }
        Arc::from(reason)
    };
    match roles {
        Some(roles) if !roles.is_empty() => {
            let reason = match granted {
                [g] => Arc::clone(&people.reasons[*g]),
                _ => joined(None),
            };
            (roles, reason)
        }
        _ if !people.default_roles.is_empty() => {
            const DEFAULT: &str = "in scope: default roles";
            let reason = match granted {
                [] => Arc::clone(
                    shared
                        .default_reason
                        .get_or_insert_with(|| Arc::from(DEFAULT)),
                ),
                _ => joined(Some(DEFAULT)),
            };
            (Arc::clone(&people.default_roles), reason)
        }
        _ => {
            let reason = match granted {
                [] => Arc::clone(shared.empty_reason.get_or_insert_with(|| Arc::from(""))),
                [g] => Arc::clone(&people.reasons[*g]),
                _ => joined(None),
            };
            (Arc::new(BTreeSet::new()), reason)
        }
    }
}

/// The union of the roles of `granted`.
fn union(people: &People<'_>, granted: &[usize]) -> BTreeSet<RoleName> {
    (granted.iter())
        .flat_map(|&g| people.roles[g].iter().cloned())
        .collect()
}

/// What is per instance: service accounts, roles as code, protected and airlock's own account.
fn finish_instance(
    policy: &Policy,
    inst: &InstanceRef<'_>,
    d: &mut DesiredInstance,
    warnings: &mut BTreeSet<Warning>,
) {
    for sa in policy
        .service_accounts
        .iter()
        .filter(|s| s.instances.matches(inst.name, inst.labels))
    {
        if d.accounts.contains_key(&sa.username) {
            warnings.insert(Warning {
                instance: Some(inst.name.clone()),
                message: format!(
                    "service account {} shadows a person with the same username",
                    sa.username
                ),
            });
        }
        forget(d, &sa.username);
        Arc::make_mut(&mut d.accounts).insert(
            sa.username.clone(),
            Arc::new(DesiredAccount {
                username: sa.username.clone(),
                person: None,
                email: Arc::from(sa.email.as_str()),
                first_name: Arc::from(sa.username.as_str()),
                last_name: Arc::from("service account"),
                roles: Arc::new(sa.roles.clone()),
                reason: Arc::from("service account in policy"),
            }),
        );
    }
    for spec in policy
        .roles
        .iter()
        .filter(|r| r.instances.matches(inst.name, inst.labels))
    {
        d.roles.insert(spec.name.clone(), spec.permissions.clone());
    }
    let airlock = Username::new(inst.airlock_user).ok();
    for protected in policy.protected.iter().chain(airlock.iter()) {
        if d.accounts.contains_key(protected) {
            Arc::make_mut(&mut d.accounts).remove(protected);
            warnings.insert(Warning {
                instance: Some(inst.name.clone()),
                message: format!("{protected} is protected; airlock leaves it as it is"),
            });
        }
        forget(d, protected);
    }
}

/// Drops `username`'s exclusion and in-scope-leaver entries, copying a shared map only when
/// it holds the name.
fn forget(d: &mut DesiredInstance, username: &Username) {
    if d.excluded.contains_key(username) {
        Arc::make_mut(&mut d.excluded).remove(username);
    }
    if d.inactive_in_scope.contains(username) {
        Arc::make_mut(&mut d.inactive_in_scope).remove(username);
    }
    if d.conflicts.contains(username) {
        Arc::make_mut(&mut d.conflicts).remove(username);
    }
}

/// The warning for a username that several people claim.
pub(super) fn conflict_message(ids: &[String], username: &Username) -> String {
    format!(
        "people {} all map to username {username}; airlock changes nothing for {username} until the directory resolves the conflict",
        ids.join(", ")
    )
}
