//! What one fleet member does with one budget at each poll, decided without I/O from what
//! Postgres' lock table showed ([`View`]) and what the member knows of itself ([`Local`]):
//! its fair share, which free slots to try to lock, how many of its slots to give back and
//! whether to announce that it waits for more ([`Plan`]). [`super::coordinator`] reads the
//! view, takes and releases the locks this plan names, and nothing else.
//!
//! Members are the coordination backends holding the budget's member lock, ordered by
//! backend pid, which every member reads alike; the share is `max / members`, the
//! remainder going to the lowest pids. A member may always grow to its share from free
//! slots; beyond it, it borrows free slots only while no member below its share waits.
//! It gives back slots without a server at once, idle ones when any other member waits,
//! and borrowed ones when a member below its share waits.

use std::collections::{BTreeMap, BTreeSet};

/// A slot's number, `0..max`: the second key of its advisory lock.
pub type Slot = u32;

/// One poll's reading of a budget's locks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Coordination backends holding the member lock, by pid.
    pub members: BTreeSet<i32>,
    /// Each locked slot and the pid holding it.
    pub holders: BTreeMap<Slot, i32>,
    /// Members holding the waiting lock: they want more slots than they hold.
    pub waiting: BTreeSet<i32>,
}

/// What the member knows of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local<'a> {
    /// Its coordination backend's pid.
    pub me: i32,
    /// The budget (`max_db_connections` or `max_user_connections`).
    pub max: usize,
    /// The slots it holds.
    pub held: &'a BTreeSet<Slot>,
    /// Servers its pools could use now: in use, logging in, or wanted by queued clients.
    pub want: usize,
    /// Servers open against the budget now.
    pub used: usize,
}

/// What to do this poll.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Free slots to try to lock.
    pub take: Vec<Slot>,
    /// How many held slots to give back: the member lowers its allowance by this much now
    /// and unlocks them once its servers are down to it ([`releasable`]).
    pub give: usize,
    /// Whether to hold the waiting lock.
    pub wait: bool,
    /// Its fair share.
    pub share: usize,
    /// Members seen, itself included.
    pub members: usize,
}

/// The plan for this poll. `before` is the previous poll's view: a slot another backend
/// held then is left alone this poll even if it is free now, so the servers of a member
/// that just died (whose backends Postgres may not have ended yet) are gone before their
/// slots are reused.
pub fn plan(view: &View, before: &View, local: &Local<'_>) -> Plan {
    let mut members = view.members.clone();
    members.insert(local.me);
    let shares = shares(&members, local.max);
    let share = shares.get(&local.me).copied().unwrap_or(0);
    let held = local.held.len();
    let want = local.want.min(local.max);
    let held_by = |pid: i32| view.holders.values().filter(|p| **p == pid).count();
    let others_wait = view.waiting.iter().any(|p| *p != local.me);
    let needy = view
        .waiting
        .iter()
        .any(|p| *p != local.me && shares.get(p).is_some_and(|s| held_by(*p) < *s));
    let mut take = Vec::new();
    if want > held {
        let fair = (want - held).min(share.saturating_sub(held));
        let borrow = if needy { 0 } else { want - held - fair };
        let free = (0..local.max as Slot).filter(|s| {
            !view.holders.contains_key(s)
                && !local.held.contains(s)
                && before.holders.get(s).is_none_or(|p| *p == local.me)
        });
        take = free.take(fair + borrow).collect();
    }
    let empty = held.saturating_sub(local.used.max(want));
    let idle = if others_wait {
        held.saturating_sub(want)
    } else {
        0
    };
    let borrowed = if needy { held.saturating_sub(share) } else { 0 };
    let over = held.saturating_sub(local.max);
    let give = empty.max(idle).max(borrowed).max(over);
    Plan {
        wait: (held + take.len()).saturating_sub(give) < want,
        give,
        take,
        share,
        members: members.len(),
    }
}

/// Each member's fair share of `max`: equal parts, the remainder one each to the lowest
/// pids.
fn shares(members: &BTreeSet<i32>, max: usize) -> BTreeMap<i32, usize> {
    let n = members.len().max(1);
    let (base, rest) = (max / n, max % n);
    let extra = |rank: usize| usize::from(rank < rest);
    members
        .iter()
        .enumerate()
        .map(|(rank, pid)| (*pid, base + extra(rank)))
        .collect()
}

/// How many of `give` slots can be unlocked now: those the open servers no longer need.
pub fn releasable(held: usize, give: usize, used: usize) -> usize {
    give.min(held.saturating_sub(used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(members: &[i32], holders: &[(Slot, i32)], waiting: &[i32]) -> View {
        View {
            members: members.iter().copied().collect(),
            holders: holders.iter().copied().collect(),
            waiting: waiting.iter().copied().collect(),
        }
    }

    fn slots(range: std::ops::Range<Slot>) -> BTreeSet<Slot> {
        range.collect()
    }

    fn local(me: i32, held: &BTreeSet<Slot>, want: usize, used: usize) -> Local<'_> {
        Local {
            me,
            max: 10,
            held,
            want,
            used,
        }
    }

    #[test]
    fn shares_split_the_budget_and_the_remainder_goes_to_the_lowest_pids() {
        let members = [30, 10, 20].into_iter().collect();
        let s = shares(&members, 10);
        assert_eq!((s[&10], s[&20], s[&30]), (4, 3, 3));
        assert_eq!(shares(&BTreeSet::new(), 10).len(), 0);
    }

    #[test]
    fn a_lone_member_borrows_the_whole_budget() {
        let held = BTreeSet::new();
        let v = view(&[1], &[], &[]);
        let p = plan(&v, &v, &local(1, &held, 10, 0));
        assert_eq!(p.take, (0..10).collect::<Vec<_>>());
        assert_eq!((p.share, p.members, p.give, p.wait), (10, 1, 0, false));
    }

    #[test]
    fn a_newcomer_waits_and_the_borrower_gives_back_down_to_its_share() {
        let held = slots(0..10);
        let holders: Vec<_> = (0..10).map(|s| (s, 1)).collect();
        let v = view(&[1, 2], &holders, &[]);
        let newcomer = plan(&v, &v, &local(2, &BTreeSet::new(), 10, 0));
        assert!(newcomer.take.is_empty() && newcomer.wait);
        assert_eq!(newcomer.share, 5);
        let v = view(&[1, 2], &holders, &[2]);
        let borrower = plan(&v, &v, &local(1, &held, 10, 10));
        assert_eq!((borrower.give, borrower.share), (5, 5));
        assert!(borrower.wait, "it still wants all ten");
        assert_eq!(
            releasable(10, 5, 10),
            0,
            "not before its servers are down to five"
        );
        assert_eq!(releasable(10, 5, 7), 3);
    }

    #[test]
    fn members_at_their_share_keep_it_while_both_wait() {
        let held = slots(0..5);
        let mut holders: Vec<_> = (0..5).map(|s| (s, 1)).collect();
        holders.extend((5..10).map(|s| (s, 2)));
        let v = view(&[1, 2], &holders, &[1, 2]);
        let p = plan(&v, &v, &local(1, &held, 10, 5));
        assert_eq!((p.give, p.wait), (0, true));
        assert!(p.take.is_empty());
    }

    #[test]
    fn a_dead_member_s_slots_cool_for_one_poll_then_go_to_the_survivor() {
        let held = slots(0..5);
        let mut holders: Vec<_> = (0..5).map(|s| (s, 1)).collect();
        let mine = holders.clone();
        holders.extend((5..10).map(|s| (s, 2)));
        let before = view(&[1, 2], &holders, &[1, 2]);
        let now = view(&[1], &mine, &[1]);
        let p = plan(&now, &before, &local(1, &held, 10, 5));
        assert!(p.take.is_empty(), "its backends may not have ended yet");
        assert_eq!(p.share, 10);
        let p = plan(&now, &now, &local(1, &held, 10, 5));
        assert_eq!(p.take, (5..10).collect::<Vec<_>>());
        assert!(!p.wait);
    }

    #[test]
    fn unused_slots_go_back_and_idle_ones_only_when_someone_waits() {
        let held = slots(0..6);
        let holders: Vec<_> = (0..6).map(|s| (s, 1)).collect();
        let v = view(&[1, 2], &holders, &[]);
        let p = plan(&v, &v, &local(1, &held, 2, 4));
        assert_eq!(p.give, 2, "two slots have no server");
        let v = view(&[1, 2], &holders, &[2]);
        let p = plan(&v, &v, &local(1, &held, 2, 4));
        assert_eq!(
            p.give, 4,
            "the idle servers' slots too, for a waiting member"
        );
    }

    #[test]
    fn no_borrowing_while_a_member_below_its_share_waits() {
        let held = slots(0..5);
        let holders: Vec<_> = (0..5).map(|s| (s, 1)).chain([(5, 2)]).collect();
        let v = view(&[1, 2], &holders, &[2]);
        let p = plan(&v, &v, &local(1, &held, 10, 5));
        assert!(p.take.is_empty());
        let v = view(&[1, 2], &holders, &[]);
        let p = plan(&v, &v, &local(1, &held, 10, 5));
        assert_eq!(p.take, (6..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_smaller_budget_after_a_restart_gives_back_the_excess() {
        let held = slots(0..10);
        let v = view(&[1], &[], &[]);
        let p = plan(
            &v,
            &v,
            &Local {
                max: 6,
                ..local(1, &held, 10, 10)
            },
        );
        assert_eq!(p.give, 4);
    }
}
