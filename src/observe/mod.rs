//! Observation: reads what exists (at Contabo, later in each cluster) and
//! returns it as plain data for the planner. Nothing here decides anything.

pub mod contabo;
