//! Schedules: recurring messages that fire once per occurrence, on time, in their time
//! zone. [`occurrence`] is the pure time math.

pub mod occurrence;
