//! The key lifecycle planner.
