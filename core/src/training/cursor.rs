//! Which prompts each step trains on: a seeded permutation per epoch and a cursor into it. The cursor
//! (epoch, index) is all a checkpoint needs to save for a resumed run to see exactly the prompts an
//! uninterrupted run would have seen, including across an epoch boundary.

use crate::data::build_prompts::shuffle;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

/// Position in the prompt stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DataCursor {
    pub epoch: u64,
    /// Index into the epoch's order of the next prompt.
    pub index: usize,
}

/// The order of `n` prompts in `epoch`: the identity without shuffling, else Fisher–Yates with
/// ChaCha8 seeded by `seed` and the epoch (so every epoch has its own, reproducible order).
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffled: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffled {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        shuffle(&mut order, &mut rng);
    }
    order
}

impl DataCursor {
    /// The next `count` prompt indices out of `n`, advancing the cursor (into the next epoch when
    /// this one runs out).
    pub fn take(&mut self, count: usize, n: usize, seed: u64, shuffled: bool) -> Vec<usize> {
        assert!(n > 0, "a prompt set is never empty here");
        let mut out = Vec::with_capacity(count);
        let mut order = epoch_order(n, seed, self.epoch, shuffled);
        while out.len() < count {
            if self.index == n {
                self.epoch += 1;
                self.index = 0;
                order = epoch_order(n, seed, self.epoch, shuffled);
            }
            out.push(order[self.index]);
            self.index += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumed_cursor_sees_the_same_prompts_across_an_epoch_boundary() {
        let (n, seed) = (5, 7);
        let mut straight = DataCursor::default();
        let all: Vec<usize> = (0..4).flat_map(|_| straight.take(3, n, seed, true)).collect();
        // Stop after two steps (6 prompts: past the first epoch of 5), save, restore, continue.
        let mut first = DataCursor::default();
        let mut resumed: Vec<usize> = (0..2).flat_map(|_| first.take(3, n, seed, true)).collect();
        let saved: DataCursor = serde_json::from_str(&serde_json::to_string(&first).unwrap()).unwrap();
        assert_eq!(saved, DataCursor { epoch: 1, index: 1 });
        let mut again = saved;
        resumed.extend((0..2).flat_map(|_| again.take(3, n, seed, true)));
        assert_eq!(resumed, all);
        // Each epoch is a permutation.
        let mut e0 = all[..5].to_vec();
        e0.sort();
        assert_eq!(e0, vec![0, 1, 2, 3, 4]);
        assert_ne!(epoch_order(n, seed, 0, true), epoch_order(n, seed, 1, true));
        assert_eq!(epoch_order(3, seed, 0, false), vec![0, 1, 2]);
    }
}
