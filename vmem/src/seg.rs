//! Segment structures and their lists.
