//! Invariant: a node accepts every state write the workload makes (the
//! workload writes no reserved key and stays within the limits). Planted
//! bug: `RefusedWrite`.

use std::fmt::Display;

/// Node `n` answered the workload's write with `result`.
pub fn check<T, E: Display>(n: usize, result: &Result<T, E>) -> Result<(), String> {
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("write refused on n{n}: {e}")),
    }
}
