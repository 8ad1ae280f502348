//! The metadata history's linearizability checker. It lives in
//! [`roster::plan::linearizable`] so that a history recorded against real
//! agents (`roster cluster chaos run`) is judged by the same code as a
//! simulated one.

pub use roster::plan::linearizable::*;
