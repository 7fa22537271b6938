//! Observation: reads what exists, at Contabo ([`contabo`]) and in each
//! cluster ([`clusters`]), and returns it as plain data for the planner.
//! Nothing here decides anything.

pub mod clusters;
pub mod contabo;
