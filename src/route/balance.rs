//! Choosing among the nodes that may serve a transaction: [`pick`] sends it to the one with
//! the least load per unit of weight, so a replica of weight 2 takes twice the transactions
//! of one of weight 1, and nodes equally loaded take turns. The relay builds the
//! [`Candidate`]s from the usable replicas (and the primary, for `target = "any"`).

use std::cmp::Ordering;

/// A node the relay may use, with its configured weight and how many of its servers are busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The caller's name for the node, returned by [`pick`].
    pub index: usize,
    /// Its share of the reads; a weight of 0 makes it a last resort.
    pub weight: u32,
    /// Transactions it is running now.
    pub outstanding: usize,
}

impl Candidate {
    /// Orders by load: `(outstanding + 1) / weight`, counting the transaction being placed so
    /// an idle node of weight 2 beats an idle one of weight 1. Compared by cross-multiplying
    /// in u128, which neither overflows nor rounds.
    fn load_cmp(&self, other: &Candidate) -> Ordering {
        let mine = (self.outstanding as u128 + 1) * u128::from(other.weight);
        let theirs = (other.outstanding as u128 + 1) * u128::from(self.weight);
        mine.cmp(&theirs)
    }
}

/// The `index` of the least-loaded candidate; among equally loaded ones, the
/// `turn % count`-th, so a caller that advances `turn` on each pick spreads equal load
/// evenly. None when there is no candidate.
pub fn pick(candidates: &[Candidate], turn: u64) -> Option<usize> {
    let least = candidates.iter().min_by(|a, b| a.load_cmp(b)).copied()?;
    let tied = || {
        candidates
            .iter()
            .filter(move |c| c.load_cmp(&least) == Ordering::Equal)
    };
    let count = tied().count() as u64;
    let nth = usize::try_from(turn % count).unwrap_or(0);
    tied().nth(nth).map(|c| c.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(index: usize, weight: u32, outstanding: usize) -> Candidate {
        Candidate {
            index,
            weight,
            outstanding,
        }
    }

    #[test]
    fn nothing_to_pick_from() {
        assert_eq!(pick(&[], 0), None);
        assert_eq!(pick(&[], 7), None);
    }

    #[test]
    fn the_least_loaded_wins() {
        let nodes = [node(0, 1, 3), node(1, 1, 1), node(2, 1, 2)];
        for turn in 0..5 {
            assert_eq!(pick(&nodes, turn), Some(1));
        }
    }

    #[test]
    fn load_is_per_unit_of_weight() {
        // (3 + 1) / 2 = 2 beats (2 + 1) / 1 = 3.
        assert_eq!(pick(&[node(0, 1, 2), node(1, 2, 3)], 0), Some(1));
        // Idle: 1 / 2 beats 1 / 1.
        assert_eq!(pick(&[node(0, 1, 0), node(1, 2, 0)], 0), Some(1));
        // (4 + 1) / 2 = 2.5 loses to (1 + 1) / 1 = 2.
        assert_eq!(pick(&[node(0, 1, 1), node(1, 2, 4)], 0), Some(0));
    }

    #[test]
    fn ties_take_turns() {
        let nodes = [node(5, 1, 2), node(6, 1, 2), node(7, 1, 2)];
        let picks: Vec<_> = (0..6).map(|t| pick(&nodes, t)).collect();
        let expected = [5, 6, 7, 5, 6, 7].map(Some);
        assert_eq!(picks, expected);
    }

    #[test]
    fn ties_are_by_load_not_by_counts() {
        // (1 + 1) / 2 == (0 + 1) / 1: a busy node of weight 2 ties with an idle one of weight 1.
        let nodes = [node(0, 2, 1), node(1, 1, 0), node(2, 1, 3)];
        assert_eq!(pick(&nodes, 0), Some(0));
        assert_eq!(pick(&nodes, 1), Some(1));
        assert_eq!(pick(&nodes, 2), Some(0));
    }

    /// Simulates picks where each chosen node keeps its transaction: the weights decide
    /// the shares.
    #[test]
    fn weights_decide_the_shares() {
        let mut nodes = [node(0, 1, 0), node(1, 2, 0), node(2, 3, 0)];
        for turn in 0..600 {
            let chosen = pick(&nodes, turn).expect("a candidate");
            nodes[chosen].outstanding += 1;
        }
        let shares: Vec<_> = nodes.iter().map(|n| n.outstanding).collect();
        assert_eq!(shares, [100, 200, 300]);
    }

    #[test]
    fn weight_zero_is_a_last_resort() {
        assert_eq!(pick(&[node(0, 0, 0), node(1, 1, 50)], 0), Some(1));
        assert_eq!(pick(&[node(0, 0, 0)], 3), Some(0));
        let zeros = [node(0, 0, 0), node(1, 0, 9)];
        assert_eq!(pick(&zeros, 0), Some(0));
        assert_eq!(pick(&zeros, 1), Some(1));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let nodes = [node(0, u32::MAX, usize::MAX), node(1, 1, usize::MAX - 1)];
        assert_eq!(pick(&nodes, u64::MAX), Some(0));
        let same = [node(0, 1, 0), node(1, 1, 0)];
        assert_eq!(pick(&same, u64::MAX), Some(1));
    }
}
