//! The gauges of one scrape, collected before any is set, for [`super::exporter`]. Several
//! pool groups can describe the same series (a group a reload replaced, still serving its
//! last clients, and its successor): each value says how theirs combine, so the series
//! shows one value rather than whichever group was read last. A series the previous scrape
//! set that nothing reports any more (a removed database once its last client has left, a
//! replica no longer configured, a user whose clients all left) is set to zero once instead
//! of keeping its last value forever.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// A series' labels, in the order they are given.
pub type Labels = Vec<(&'static str, String)>;
/// A gauge's name and labels.
pub type Series = (&'static str, Labels);

/// How values reported for the same series combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Counts of things each group has (servers by state, reserve in use).
    Sum,
    /// The worst of them (the longest wait).
    Max,
    /// The first group's, which is the current one (the configured pool size, replica
    /// state as the current monitor sees it).
    First,
}

/// The values of one scrape.
#[derive(Debug, Default)]
pub struct Gauges {
    values: BTreeMap<Series, f64>,
}

impl Gauges {
    pub fn put(&mut self, name: &'static str, labels: Labels, value: f64, merge: Merge) {
        match self.values.entry((name, labels)) {
            Entry::Vacant(e) => {
                e.insert(value);
            }
            Entry::Occupied(mut e) => {
                let v = e.get_mut();
                *v = match merge {
                    Merge::Sum => *v + value,
                    Merge::Max => v.max(value),
                    Merge::First => *v,
                };
            }
        }
    }

    /// The series of `previous` not reported now.
    fn stale<'a>(&'a self, previous: &'a BTreeSet<Series>) -> impl Iterator<Item = &'a Series> {
        previous.iter().filter(|s| !self.values.contains_key(*s))
    }

    /// Sets every gauge, zeroes the stale ones, and returns the series set now: the next
    /// scrape's `previous`.
    pub fn publish(self, previous: &BTreeSet<Series>) -> BTreeSet<Series> {
        for ((name, labels), value) in &self.values {
            metrics::gauge!(*name, labels).set(*value);
        }
        for (name, labels) in self.stale(previous) {
            metrics::gauge!(*name, labels).set(0.0);
        }
        self.values.into_keys().collect()
    }

    #[cfg(test)]
    fn get(&self, name: &'static str, labels: &Labels) -> Option<f64> {
        self.values.get(&(name, labels.clone())).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(db: &str) -> Labels {
        vec![("database", db.to_owned()), ("user", "u".to_owned())]
    }

    #[test]
    fn values_of_one_series_combine_by_their_rule() {
        let mut g = Gauges::default();
        let l = labels("db");
        for (name, merge) in [
            ("sum", Merge::Sum),
            ("max", Merge::Max),
            ("first", Merge::First),
        ] {
            g.put(name, l.clone(), 2.0, merge);
            g.put(name, l.clone(), 3.0, merge);
            g.put(name, l.clone(), 1.0, merge);
        }
        assert_eq!(g.get("sum", &l), Some(6.0));
        assert_eq!(g.get("max", &l), Some(3.0));
        assert_eq!(g.get("first", &l), Some(2.0));
        g.put("max", labels("other"), 1.0, Merge::Max);
        assert_eq!(
            g.get("max", &labels("other")),
            Some(1.0),
            "other labels apart"
        );
    }

    #[test]
    fn a_series_nobody_reports_any_more_is_stale_once() {
        let mut first = Gauges::default();
        first.put("pgweir_pool_size", labels("gone"), 5.0, Merge::First);
        first.put("pgweir_pool_size", labels("kept"), 5.0, Merge::First);
        let previous = first.publish(&BTreeSet::new());
        let mut second = Gauges::default();
        second.put("pgweir_pool_size", labels("kept"), 6.0, Merge::First);
        let stale: Vec<_> = second.stale(&previous).cloned().collect();
        assert_eq!(stale, vec![("pgweir_pool_size", labels("gone"))]);
        let previous = second.publish(&previous);
        assert_eq!(Gauges::default().stale(&previous).count(), 1);
        assert!(!previous.contains(&("pgweir_pool_size", labels("gone"))));
    }
}
